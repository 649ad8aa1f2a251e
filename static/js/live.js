/* Live mode (templates/models_service/live_turn.html). Hand-written, no build, no library
 * besides the vendored htmx.
 *
 * Both answers are asked for at once: one fetch() per pane reads that pane's stream of
 * server-sent events ("delta" pieces, then "done", "error" or "held") and appends the text as it
 * comes. When both panes are done the judgment form is fetched into #judge-slot (htmx
 * handles its submission). A pane that fails offers "Try again": the server replays an
 * answer it already stored, or asks the model again.
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-turn]");
  if (!root) return;
  const panes = Array.from(root.querySelectorAll("[data-stream-url]"));
  const judgeSlot = document.getElementById("judge-slot");
  const done = new Set();

  // Split a text/event-stream buffer into complete events; returns [events, rest].
  function parseEvents(buffer) {
    const events = [];
    const blocks = buffer.split(/\r?\n\r?\n/);
    const rest = blocks.pop();
    for (const block of blocks) {
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
      if (data.length) events.push({ name: name, data: data.join("\n") });
    }
    return [events, rest];
  }

  function setState(pane, text, busy) {
    pane.querySelector("[data-pane-state]").textContent = text;
    pane.querySelector("[data-pane-text]").setAttribute("aria-busy", busy ? "true" : "false");
  }

  function showJudge() {
    if (done.size !== panes.length) return;
    if (window.htmx) {
      window.htmx.ajax("GET", root.dataset.judgeUrl, { target: judgeSlot, swap: "innerHTML" });
    } else {
      fetch(root.dataset.judgeUrl, { credentials: "same-origin" })
        .then((r) => r.text())
        .then((html) => { judgeSlot.innerHTML = html; });
    }
  }

  function fail(pane, message) {
    setState(pane, "failed", false);
    const box = document.createElement("div");
    box.className = "live-error";
    box.setAttribute("role", "alert");
    const text = document.createElement("p");
    text.textContent = message;
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "button button-small";
    retry.textContent = "Try again";
    retry.addEventListener("click", () => { box.remove(); stream(pane); });
    box.append(text, retry);
    pane.append(box);
  }

  async function stream(pane) {
    const out = pane.querySelector("[data-pane-text]");
    out.textContent = "";
    setState(pane, "writing…", true);
    let finished = false;
    try {
      const response = await fetch(pane.dataset.streamUrl, {
        credentials: "same-origin",
        headers: { Accept: "text/event-stream" },
      });
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done: end } = await reader.read();
        if (value) buffer += decoder.decode(value, { stream: true });
        if (end) buffer += decoder.decode() + "\n\n";
        const [events, rest] = parseEvents(buffer);
        buffer = rest;
        for (const event of events) {
          const data = JSON.parse(event.data);
          if (event.name === "delta") {
            out.append(document.createTextNode(data.text));
          } else if (event.name === "done") {
            finished = true;
            setState(pane, data.finish_reason === "length" ? "done (cut at the length limit)" : "done", false);
            done.add(pane.dataset.pane);
            showJudge();
          } else if (event.name === "error") {
            finished = true;
            fail(pane, data.message);
          } else if (event.name === "held") {
            // Kept from annotators (a lead reviews it): nothing of it stays on screen.
            finished = true;
            out.textContent = "";
            setState(pane, "held back", false);
            const note = document.createElement("p");
            note.className = "live-error";
            note.setAttribute("role", "status");
            note.textContent = data.message;
            pane.append(note);
          }
        }
        if (end) break;
      }
      if (!finished) fail(pane, "The answer broke off before it was complete.");
    } catch (error) {
      if (!finished) fail(pane, "The answer could not be loaded (" + error.message + ").");
    }
  }

  panes.forEach(stream); // both at once
})();
