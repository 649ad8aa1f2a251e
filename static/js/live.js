/* Live mode (templates/models_service/live_turn.html). Hand-written, no build, no library
 * besides the vendored htmx.
 *
 * Both answers are asked for at once: one EventSource per pane reads that pane's stream of
 * server-sent events ("delta" pieces, then "done", "failed" or "held") and appends the text as
 * it comes. When both panes are done the judgment form is fetched into #judge-slot (htmx
 * handles its submission). A pane that fails offers "Try again": the server replays an
 * answer it already stored, or asks the model again.
 *
 * One generation per answer at a time (models_service/live.py): while another request
 * generates it (a second tab, a reload before the first stream noticed), the server sends
 * "busy" with a retry delay and closes the stream. The pane then waits and lets EventSource
 * reconnect by itself; the next connection gets the stored answer.
 */
(function () {
  "use strict";

  const root = document.querySelector("[data-live-turn]");
  if (!root) return;
  const panes = Array.from(root.querySelectorAll("[data-stream-url]"));
  const judgeSlot = document.getElementById("judge-slot");
  const done = new Set();

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

  // Reconnections after "busy" before the pane gives up (at the server's 2 s delay: minutes).
  const MAX_BUSY_WAITS = 150;

  function stream(pane) {
    const out = pane.querySelector("[data-pane-text]");
    out.textContent = "";
    setState(pane, "writing…", true);
    let finished = false;
    let waiting = false; // the last event was "busy": the connection's end is expected
    let busyWaits = 0;
    // The browser's own EventSource reads the stream. It reconnects by itself when a
    // stream ends, and a stored answer would then be replayed: every final event closes it.
    const source = new EventSource(pane.dataset.streamUrl);
    function finish() {
      finished = true;
      source.close();
    }
    source.addEventListener("delta", (event) => {
      waiting = false;
      out.append(document.createTextNode(JSON.parse(event.data).text));
    });
    source.addEventListener("busy", () => {
      // Written by another request: what this pane showed of it so far is not the answer.
      waiting = true;
      out.textContent = "";
      setState(pane, "writing (in another window)…", true);
    });
    source.addEventListener("done", (event) => {
      finish();
      const data = JSON.parse(event.data);
      setState(pane, data.finish_reason === "length" ? "done (cut at the length limit)" : "done", false);
      done.add(pane.dataset.pane);
      showJudge();
    });
    source.addEventListener("failed", (event) => {
      finish();
      fail(pane, JSON.parse(event.data).message);
    });
    source.addEventListener("held", (event) => {
      // Kept from annotators (a lead reviews it): nothing of it stays on screen.
      finish();
      out.textContent = "";
      setState(pane, "held back", false);
      const note = document.createElement("p");
      note.className = "live-error";
      note.setAttribute("role", "status");
      note.textContent = JSON.parse(event.data).message;
      pane.append(note);
    });
    source.addEventListener("error", () => {
      // The connection itself (no event from the server): a dropped stream or a refusal.
      if (finished) return;
      // After "busy" the server closes the stream on purpose; EventSource reconnects after
      // the retry delay unless the answer was an HTTP error (then it is CLOSED).
      if (waiting && source.readyState === EventSource.CONNECTING && busyWaits < MAX_BUSY_WAITS) {
        busyWaits += 1; // every end of a connection while waiting, failed reconnections included
        return;
      }
      finish();
      fail(pane, out.textContent ? "The answer broke off before it was complete." : "The answer could not be loaded.");
    });
  }

  panes.forEach(stream); // both at once
})();
