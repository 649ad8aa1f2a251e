/* The annotator's workspace (templates/annotation/annotate.html). Hand-written, no build.
 *
 * - State lives in the judge form: hidden inputs and aria-pressed buttons. The server can
 *   render any state and this script picks it up; it only adds keys and behaviour.
 * - Keys: 1 2 3 4 0 choose, q w e r strength, a s d f safety, E editor, S skip,
 *   Enter submit (Ctrl+Enter in a text field), g guidelines, ? help, Esc leaves a field.
 * - Editor (teacher-critic edit): pre-filled with the raw answer, with a live word diff.
 * - Prefetch: once a pair is on screen the next one is fetched into #prefetch. On submit
 *   it is shown at once while the server saves; the server's answer is authoritative
 *   (the engine hands back live leases first, so it names the same pair). When the
 *   server refuses, the submitted pair comes back as it was, with the messages.
 *   The next prefetch only starts once the server has confirmed: before that the
 *   annotator holds two leases and the engine would hand back the pair just submitted.
 */
(function () {
  "use strict";

  const workspace = document.getElementById("workspace");
  if (!workspace || !window.htmx) return;

  const slot = document.getElementById("pair-slot");
  const prefetchBox = document.getElementById("prefetch");
  const parked = document.getElementById("parked");
  const counter = document.getElementById("judged-today");
  const toast = document.getElementById("ws-toast");
  const guidelines = document.getElementById("guidelines");
  const help = document.getElementById("help");
  const nextUrl = workspace.dataset.nextUrl;

  const LABEL = { left: "Left", right: "Right" };
  const shownAt = new Map(); // assignment id -> performance.now() when first on screen
  const editors = new WeakMap(); // judge form -> {open, auto, base, drafts}

  let inflight = null; // {elt, root, kind, optimistic}
  let queued = null; // a form whose submission waits for the one in flight
  let prefetchFor = null; // the assignment id the prefetched pair was asked for
  let prefetchToken = 0;
  let prefetchExpires = 0; // performance.now() after which its lease is too old to show
  let countdown = null;
  let toastTimer = null;

  // --- Small helpers -------------------------------------------------------------------

  const isSide = (choice) => choice === "left" || choice === "right";
  const other = (side) => (side === "left" ? "right" : "left");
  const currentForm = () => slot.querySelector("form[data-judge-form]");
  const judgeFormOf = (elt) => {
    const root = elt && elt.closest("[data-pair-root]");
    return root ? root.querySelector("form[data-judge-form]") : null;
  };
  const field = (form, name) => form.elements.namedItem(name);
  const value = (form, name) => {
    const el = field(form, name);
    return el ? el.value : "";
  };
  const editText = (form) => form.querySelector("[data-edit-text]");
  const rawText = (form, side) => {
    const raw = form.querySelector('textarea[data-raw="' + side + '"]');
    return raw ? raw.value : "";
  };
  const shown = (el) => !!el && !el.disabled && !el.closest("[hidden]");

  function parseRoot(html) {
    const template = document.createElement("template");
    template.innerHTML = html || "";
    return template.content.querySelector("[data-pair-root]");
  }

  function setCount(n) {
    if (n !== undefined && n !== null && n !== "" && !Number.isNaN(Number(n))) counter.textContent = String(n);
  }

  function say(text, kind) {
    clearTimeout(toastTimer);
    toast.textContent = text;
    toast.className = "ws-toast ws-toast-" + (kind || "info");
    toast.hidden = !text;
    if (text && kind !== "error") toastTimer = setTimeout(() => (toast.hidden = true), 7000);
  }

  function typingIn(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    if (el.tagName === "INPUT") {
      return !["button", "submit", "reset", "checkbox", "radio", "range", "color", "file"].includes(el.type);
    }
    return false;
  }

  // --- Choice, strength, safety --------------------------------------------------------

  function setValue(form, name, val) {
    const input = field(form, name);
    if (!input) return;
    const previous = input.value;
    input.value = val;
    form.querySelectorAll('[data-set="' + name + '"]').forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.value === val));
    });
    if (name === "choice") onChoice(form, previous, val);
    if (name === "edit_base" && editorState(form).open) loadBase(form, val);
    showError(form, name, "");
    refresh(form);
  }

  function onChoice(form, previous, choice) {
    form.dataset.choice = choice;
    const safety = value(form, "safety");
    // The safety label speaks of the answers ("Left safe, Right unsafe"); the stored value
    // is relative to the preferred one. Keep what the annotator said when the side flips.
    if (isSide(previous) && isSide(choice) && previous !== choice) {
      const flipped = { chosen_safe: "chosen_unsafe", chosen_unsafe: "chosen_safe" }[safety];
      if (flipped) setValue(form, "safety", flipped);
    }
    if (!isSide(choice) && value(form, "strength")) setValue(form, "strength", "");
    if ((choice === "tie" || choice === "both_bad") && /^chosen_/.test(safety)) setValue(form, "safety", "");
    const st = editorState(form);
    if (editRequired(form)) {
      openEditor(form, { auto: true });
    } else if (st.open && st.auto && !isEdited(form)) {
      st.open = false; // opened by the choice, untouched: it goes with the choice
    }
    if (st.open) loadBase(form, wantedBase(form));
  }

  // --- The editor ------------------------------------------------------------------------

  function editorState(form) {
    let st = editors.get(form);
    if (!st) {
      st = { open: false, auto: false, base: null, drafts: {} };
      const textarea = editText(form);
      if (textarea && textarea.value) {
        // The server sent the annotator's edit back (a refused submission): keep it.
        const choice = value(form, "choice");
        st.open = true;
        st.base = isSide(choice) ? choice : value(form, "edit_base") || "left";
        st.drafts[st.base] = textarea.value;
      }
      editors.set(form, st);
    }
    return st;
  }

  // The project's rules, as the server's judgment service states them (data-rules on the
  // form): which choices need a strength, a safety label or an edit. The page only asks
  // for what the server would refuse without; it keeps no rules of its own.
  function rules(form) {
    if (!form._rules) form._rules = JSON.parse(form.dataset.rules || "{}");
    return form._rules;
  }

  function needs(form, rule, choice) {
    return (rules(form)[rule] || []).indexOf(choice) !== -1;
  }

  function editAllowed(form) {
    return !!rules(form).edit && !!form.querySelector("[data-editor]");
  }

  function editRequired(form) {
    return needs(form, "edit_required_for", value(form, "choice"));
  }

  function wantedBase(form) {
    const choice = value(form, "choice");
    return isSide(choice) ? choice : value(form, "edit_base") || "left";
  }

  function isEdited(form) {
    const st = editorState(form);
    const textarea = editText(form);
    return !!(st.open && st.base && textarea && textarea.value.trim() !== rawText(form, st.base).trim());
  }

  function loadBase(form, base) {
    const st = editorState(form);
    const textarea = editText(form);
    if (!textarea || st.base === base) return;
    if (st.base) st.drafts[st.base] = textarea.value;
    st.base = base;
    textarea.value = st.drafts[base] != null ? st.drafts[base] : rawText(form, base);
    if (!isSide(value(form, "choice"))) {
      field(form, "edit_base").value = base;
      form.querySelectorAll('[data-set="edit_base"]').forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.value === base)));
    }
    scheduleDiff(form);
  }

  function openEditor(form, options) {
    if (!form || !editAllowed(form)) return;
    const st = editorState(form);
    const auto = !!(options && options.auto);
    if (!st.open) {
      st.open = true;
      st.auto = auto;
    } else if (!auto) {
      st.auto = false;
    }
    loadBase(form, wantedBase(form));
    refresh(form);
    scheduleDiff(form);
    if (options && options.focus) {
      const textarea = editText(form);
      textarea.focus({ preventScroll: true });
      form.querySelector("[data-editor]").scrollIntoView({ block: "nearest" });
    }
  }

  function discardEdit(form) {
    const st = editorState(form);
    st.open = false;
    st.auto = false;
    st.base = null;
    st.drafts = {};
    const textarea = editText(form);
    if (textarea) textarea.value = "";
    showError(form, "edit_text", "");
    refresh(form);
  }

  function resetEdit(form) {
    const st = editorState(form);
    if (!st.base) return;
    st.drafts[st.base] = null;
    editText(form).value = rawText(form, st.base);
    scheduleDiff(form);
    refresh(form);
  }

  // --- Word diff (Myers, O((N+M)·D)) ---------------------------------------------------

  // Words (with inner apostrophes and hyphens), single CJK characters, runs of
  // whitespace, and any other single character.
  const TOKEN =
    /\s+|[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]|[\p{L}\p{M}\p{N}_]+(?:['’-][\p{L}\p{M}\p{N}_]+)*|\S/gu;
  const WORDISH = /\S+/gu;
  const MAX_EDIT_DISTANCE = 2000; // beyond this the changed middle is shown as one replacement

  const tokenize = (text) => text.match(TOKEN) || [];

  function myers(a, b, out) {
    const n = a.length;
    const m = b.length;
    if (!n && !m) return;
    if (!n) return void out.push([1, b.join("")]);
    if (!m) return void out.push([-1, a.join("")]);
    const max = n + m;
    const offset = max + 1;
    const v = new Int32Array(2 * max + 3);
    const trace = [];
    const limit = Math.min(max, MAX_EDIT_DISTANCE);
    let done = false;
    for (let d = 0; d <= limit && !done; d++) {
      trace.push(v.slice(offset - d - 1, offset + d + 2)); // v before step d, for k in [-d-1, d+1]
      for (let k = -d; k <= d; k += 2) {
        let x =
          k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
        let y = x - k;
        while (x < n && y < m && a[x] === b[y]) {
          x++;
          y++;
        }
        v[offset + k] = x;
        if (x >= n && y >= m) {
          done = true;
          break;
        }
      }
    }
    if (!done) {
      out.push([-1, a.join("")], [1, b.join("")]);
      return;
    }
    const reversed = [];
    let x = n;
    let y = m;
    for (let d = trace.length - 1; d >= 0; d--) {
      const snap = trace[d];
      const at = (k) => snap[k + d + 1];
      const k = x - y;
      const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
      const prevX = at(prevK);
      const prevY = prevX - prevK;
      while (x > prevX && y > prevY) {
        reversed.push([0, a[x - 1]]);
        x--;
        y--;
      }
      if (d > 0) {
        if (x === prevX) reversed.push([1, b[y - 1]]);
        else reversed.push([-1, a[x - 1]]);
      }
      x = prevX;
      y = prevY;
    }
    for (let i = reversed.length - 1; i >= 0; i--) out.push(reversed[i]);
  }

  function wordDiff(before, after) {
    const a = tokenize(before);
    const b = tokenize(after);
    let start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start++;
    let endA = a.length;
    let endB = b.length;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
      endA--;
      endB--;
    }
    const ops = [];
    if (start) ops.push([0, a.slice(0, start).join("")]);
    myers(a.slice(start, endA), b.slice(start, endB), ops);
    if (endA < a.length) ops.push([0, a.slice(endA).join("")]);
    // Merge runs; within a changed stretch show what went before what came.
    const merged = [];
    for (const [op, text] of ops) {
      const last = merged[merged.length - 1];
      if (last && last[0] === op) last[1] += text;
      else merged.push([op, text]);
    }
    return merged;
  }

  const diffTimers = new WeakMap();
  function scheduleDiff(form) {
    clearTimeout(diffTimers.get(form));
    diffTimers.set(form, setTimeout(() => renderDiff(form), 60));
  }

  function renderDiff(form) {
    const st = editorState(form);
    const box = form.querySelector("[data-diff]");
    const stats = form.querySelector("[data-diff-stats]");
    if (!box || !st.base) return;
    const ops = wordDiff(rawText(form, st.base), editText(form).value);
    const fragment = document.createDocumentFragment();
    let added = 0;
    let removed = 0;
    let changed = false;
    for (const [op, text] of ops) {
      if (op === 0) {
        fragment.append(text);
        continue;
      }
      changed = true;
      const words = (text.match(WORDISH) || []).length;
      if (op > 0) added += words;
      else removed += words;
      const mark = document.createElement(op > 0 ? "ins" : "del");
      // A changed line break would be invisible: show it.
      mark.textContent = /^\s+$/.test(text) && text.includes("\n") ? "¶" + text : text;
      fragment.append(mark);
    }
    box.replaceChildren(fragment);
    stats.textContent = !changed
      ? "no changes yet"
      : added || removed
        ? "+" + added + " / −" + removed + " word" + (added + removed === 1 ? "" : "s")
        : "spacing only";
  }

  // --- Code blocks: light syntax colours ---------------------------------------------
  // Spans built from text nodes only: the code's text never goes through innerHTML.

  const KEYWORDS = new Set(
    ("and as assert async await break case catch class const continue def default defer del do elif else enum " +
      "except export extends false finally fn for from func function go if impl import in interface is lambda " +
      "let loop match mod mut new nil none not null or package pass pub raise return select self static struct " +
      "super switch this throw trait true try type typeof undefined use var void where while with yield " +
      "true false none null select insert update delete where join group order limit having create table values into"
    ).split(" ")
  );
  const HASH_COMMENTS = /^(python|py|sh|bash|shell|zsh|ruby|rb|yaml|yml|r|perl|toml|dockerfile|makefile|ini|conf)$/;
  const DASH_COMMENTS = /^(sql|lua|haskell|hs)$/;
  const COMMENT = { hash: /#[^\n]*/, dash: /--[^\n]*/, c: /\/\/[^\n]*|\/\*[\s\S]*?\*\// };
  // Strings, numbers and names (names that are keywords get coloured).
  const CODE_REST = /("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|(\b\d[\d_.]*\b)|([A-Za-z_]\w*)/;

  function highlight(code) {
    if (code.dataset.lang || code.textContent.length > 20000) return;
    const lang = ((code.className.match(/language-([\w+#.-]+)/) || [])[1] || "").toLowerCase();
    code.dataset.lang = lang || "code";
    if (!lang) return;
    const comment = HASH_COMMENTS.test(lang) ? COMMENT.hash : DASH_COMMENTS.test(lang) ? COMMENT.dash : COMMENT.c;
    const pattern = new RegExp("(" + comment.source + ")|" + CODE_REST.source, "g");
    const text = code.textContent;
    const out = document.createDocumentFragment();
    let at = 0;
    for (const m of text.matchAll(pattern)) {
      const kind = m[1] ? "comment" : m[2] ? "string" : m[3] ? "number" : KEYWORDS.has(m[4].toLowerCase()) ? "keyword" : null;
      if (!kind) continue;
      if (m.index > at) out.append(text.slice(at, m.index));
      const span = document.createElement("span");
      span.className = "tok-" + kind;
      span.textContent = m[0];
      out.append(span);
      at = m.index + m[0].length;
    }
    out.append(text.slice(at));
    code.replaceChildren(out);
  }

  // --- Rendering the form's state ----------------------------------------------------

  function keysOf(form, name) {
    return Array.from(form.querySelectorAll('[data-set="' + name + '"][data-key]'))
      .filter(shown)
      .map((b) => b.dataset.key)
      .join(" ");
  }

  function nextStep(form) {
    const choice = value(form, "choice");
    if (!choice) return "Which is better? " + keysOf(form, "choice");
    if (needs(form, "strength_for", choice) && !value(form, "strength")) return "How much better? q w e r";
    if (needs(form, "safety_for", choice) && !value(form, "safety")) {
      return "Safety label: " + keysOf(form, "safety");
    }
    if (editRequired(form) && !isEdited(form)) return "Write your edit: press E";
    return "Ready: Enter submits";
  }

  function refresh(form) {
    const choice = value(form, "choice");
    form.dataset.choice = choice;

    const strength = form.querySelector('[data-group="strength"]');
    if (strength) {
      strength.querySelector("[data-options]").hidden = !isSide(choice);
      strength.querySelector("[data-hint]").hidden = isSide(choice);
    }

    form.querySelectorAll('[data-set="safety"]').forEach((button) => {
      const needsSide = button.hasAttribute("data-needs-side");
      const label = needsSide && isSide(choice) ? button.dataset[choice === "left" ? "labelLeft" : "labelRight"] : button.dataset.label;
      button.querySelector("[data-label-text]").textContent = label;
      button.disabled = needsSide && (choice === "tie" || choice === "both_bad");
    });
    const safetyGroup = form.querySelector('[data-group="safety"]');
    if (safetyGroup) safetyGroup.classList.toggle("is-optional", choice === "cant_judge");

    const editor = form.querySelector("[data-editor]");
    const st = editorState(form);
    if (editor) {
      const required = editRequired(form);
      editor.hidden = !st.open;
      editor.querySelector("[data-editor-required]").hidden = !required;
      editor.querySelector("[data-editor-close]").hidden = required;
      editor.querySelector("[data-base-toggle]").hidden = isSide(choice);
      editor.querySelectorAll('[data-set="edit_base"]').forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.value === st.base)));
      const base = LABEL[st.base] || "Left";
      editor.querySelector("[data-editor-title]").textContent = isSide(choice)
        ? "Improve the " + base + " answer"
        : choice === "both_bad"
          ? "Rewrite the less bad answer into a good one"
          : "Your edit of the " + base + " answer";
    }
    form.classList.toggle("is-editing", st.open);

    form.querySelectorAll("[data-pane]").forEach((pane) => {
      const side = pane.dataset.pane;
      const tags = [];
      if (choice === side) tags.push("Preferred");
      if (choice === "both_bad") tags.push("Bad");
      if (st.open && st.base === side) tags.push("Editing");
      pane.querySelector("[data-pane-tag]").textContent = tags.join(" · ");
      pane.classList.toggle("is-base", st.open && st.base === side);
    });

    const status = form.querySelector("[data-status]");
    if (status && !form.classList.contains("is-saving")) status.textContent = nextStep(form);
  }

  // --- Errors ------------------------------------------------------------------------

  function showError(form, name, message) {
    const root = form.closest("[data-pair-root]") || form;
    const el = root.querySelector('[data-error-for="' + name + '"]');
    if (!el) return;
    el.textContent = message || "";
    el.hidden = !message;
  }

  function problems(form) {
    const choice = value(form, "choice");
    const out = [];
    if (!choice) out.push(["choice", "Pick an answer first: " + keysOf(form, "choice") + "."]);
    if (needs(form, "strength_for", choice) && !value(form, "strength")) out.push(["strength", "Say how much better: q, w, e or r."]);
    if (needs(form, "safety_for", choice) && !value(form, "safety")) {
      out.push(["safety", "Add the safety label: " + keysOf(form, "safety") + "."]);
    }
    if (editRequired(form)) {
      const st = editorState(form);
      if (!st.open || !editText(form).value.trim()) {
        out.push(["edit_text", "This project asks for an edit here: press E and improve the answer."]);
      } else if (!isEdited(form)) {
        out.push(["edit_text", "Your edit is still the original answer: improve it."]);
      }
    }
    const limit = rules(form).edit_max;
    if (limit && editText(form) && editText(form).value.length > limit) {
      out.push(["edit_text", "Keep the edit under " + limit.toLocaleString() + " characters."]);
    }
    return out;
  }

  function showProblems(form, list) {
    ["choice", "strength", "safety", "edit_text", "edit_base"].forEach((name) => showError(form, name, ""));
    list.forEach(([name, message]) => showError(form, name, message));
    if (list.length && list[0][0] === "edit_text") openEditor(form, {});
  }

  function mergeErrors(root, response) {
    // A refused submission: keep the annotator's page exactly as it is, add the messages.
    response.querySelectorAll("[data-error-for]").forEach((p) => {
      const mine = root.querySelector('[data-error-for="' + p.dataset.errorFor + '"]');
      if (mine) {
        mine.textContent = p.textContent;
        mine.hidden = p.hidden;
      }
    });
    const decision = root.querySelector(".decision");
    const old = decision && decision.querySelector(":scope > .alert-error");
    if (old) old.remove();
    const general = response.querySelector(".decision > .alert-error");
    if (decision && general) decision.prepend(general);
    const reasonError = root.querySelector('[data-error-for="reason"]');
    if (reasonError && !reasonError.hidden) openSkip(root.querySelector("form[data-judge-form]"));
    const editError = root.querySelector('[data-error-for="edit_text"]');
    if (editError && !editError.hidden) openEditor(root.querySelector("form[data-judge-form]"), {});
  }

  // --- Skip ----------------------------------------------------------------------------

  function openSkip(form) {
    if (!form) return;
    const row = form.querySelector("[data-skip-row]");
    row.hidden = false;
    form.querySelector('[data-action="skip"]').setAttribute("aria-expanded", "true");
    row.querySelector("[data-skip-reason]").focus();
  }

  function closeSkip(form) {
    if (!form) return;
    const row = form.querySelector("[data-skip-row]");
    row.hidden = true;
    form.querySelector('[data-action="skip"]').setAttribute("aria-expanded", "false");
    showError(form, "reason", "");
    if (row.contains(document.activeElement)) document.activeElement.blur();
  }

  // --- Guidelines and help -----------------------------------------------------------

  function toggleGuidelines(open) {
    const show = open === undefined ? guidelines.hidden : open;
    guidelines.hidden = !show;
    document.querySelectorAll('[data-action="guidelines"][aria-expanded]').forEach((b) => b.setAttribute("aria-expanded", String(show)));
    try {
      localStorage.setItem("prefdata.guidelines", show ? "open" : "closed");
    } catch (e) {
      /* private mode: the panel just forgets */
    }
  }

  function openHelp() {
    if (!help.open) help.showModal();
  }

  // --- Showing a pair ----------------------------------------------------------------

  function activate(root, options) {
    const form = root.querySelector("form[data-judge-form]");
    if (options && options.countDelta) setCount(Number(counter.textContent) + options.countDelta);
    else setCount(root.dataset.judgedToday);
    const active = document.activeElement;
    if (active && active !== document.body && !slot.contains(active) && !guidelines.contains(active)) active.blur();
    if (workspace.getBoundingClientRect().top < 0) workspace.scrollIntoView({ block: "start" });
    clearInterval(countdown);
    root.querySelectorAll(".prose pre > code").forEach(highlight);
    // A link in a prompt or an answer must not take the annotator away from the pair.
    root.querySelectorAll(".prose a[href]").forEach((a) => (a.target = "_blank"));
    if (form) {
      const id = form.dataset.assignmentId;
      if (!shownAt.has(id)) shownAt.set(id, performance.now());
      editorState(form);
      refresh(form);
      if (editorState(form).open) scheduleDiff(form);
      const reason = form.querySelector("[data-skip-reason]");
      if (reason && !reason.closest("[hidden]")) reason.focus();
      startPrefetch();
    } else {
      const seconds = root.querySelector("[data-countdown]");
      if (seconds) {
        let left = Number(seconds.dataset.countdown);
        countdown = setInterval(() => {
          left = Math.max(0, left - 1);
          seconds.textContent = String(left);
          if (!left || !slot.contains(seconds)) clearInterval(countdown);
        }, 1000);
      }
    }
  }

  function setPrefetch(state) {
    workspace.dataset.prefetch = state;
  }

  function startPrefetch() {
    const form = currentForm();
    if (!form || inflight) return;
    const id = form.dataset.assignmentId;
    if (prefetchFor === id) return;
    prefetchFor = id;
    prefetchBox.replaceChildren();
    setPrefetch("loading");
    const token = ++prefetchToken;
    const asked = performance.now();
    fetch(nextUrl + "?exclude=" + encodeURIComponent(id), {
      headers: { "HX-Request": "true" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then((response) => (response.ok ? response.text() : Promise.reject(new Error("HTTP " + response.status))))
      .then((html) => {
        if (token !== prefetchToken) return;
        const root = parseRoot(html);
        const nextId = root && root.dataset.assignmentId;
        if (!nextId || nextId === id) return setPrefetch("none");
        prefetchBox.replaceChildren(root);
        htmx.process(root);
        const lease = Number(root.dataset.leaseSeconds || 0);
        prefetchExpires = asked + Math.max(0, lease - 30) * 1000;
        setPrefetch("ready");
      })
      .catch(() => {
        if (token === prefetchToken) setPrefetch("none");
      });
  }

  function takePrefetched(fromId) {
    const next = prefetchBox.querySelector("[data-pair-root][data-assignment-id]");
    if (!next || prefetchFor !== fromId || performance.now() > prefetchExpires) return null;
    prefetchFor = null;
    setPrefetch("idle");
    return next;
  }

  // Put the submitted pair back (refused or lost): the pair shown early is dropped; its
  // lease stays live, so the engine hands it out again next, and its clock starts then.
  function rollback() {
    if (!inflight || !inflight.optimistic) return;
    shownAt.delete(inflight.optimistic.dataset.assignmentId);
    inflight.optimistic.remove();
    prefetchBox.replaceChildren();
    prefetchFor = null;
    setPrefetch("idle");
    slot.replaceChildren(inflight.root);
    if (inflight.kind === "submit") setCount(Math.max(0, Number(counter.textContent) - 1));
    inflight.optimistic = null;
    refresh(inflight.root.querySelector("form[data-judge-form]"));
  }

  function finish(elt) {
    if (!inflight || (elt && inflight.elt !== elt)) return;
    const root = inflight.root;
    root.classList.remove("is-saving");
    const form = root.querySelector("form[data-judge-form]");
    if (form) {
      form.classList.remove("is-saving");
      refresh(form);
    }
    inflight = null;
    delete workspace.dataset.saving;
    const waiting = queued;
    queued = null;
    if (waiting && slot.contains(waiting)) waiting.requestSubmit();
    else startPrefetch();
  }

  // --- htmx: the submit and skip requests --------------------------------------------

  const ours = (elt) => !!elt && !!elt.matches && elt.matches("form[data-judge-form], form[data-skip-form]");
  // htmx sets detail.elt to the element an event fires on (the swap target for
  // beforeSwap); the element that made the request is requestConfig.elt.
  const requester = (detail) => (detail.requestConfig && detail.requestConfig.elt) || detail.elt;

  document.body.addEventListener("htmx:configRequest", (evt) => {
    const elt = evt.detail.elt;
    if (!ours(elt)) return;
    const form = judgeFormOf(elt);
    const params = evt.detail.parameters;
    if (elt === form) {
      const list = problems(form);
      showProblems(form, list);
      if (list.length) return evt.preventDefault();
      const choice = value(form, "choice");
      const started = shownAt.get(form.dataset.assignmentId);
      params.time_spent_ms = String(started === undefined ? 0 : Math.round(performance.now() - started));
      if (!isSide(choice)) delete params.strength;
      const st = editorState(form);
      if (st.open && st.base && (isEdited(form) || editRequired(form))) {
        params.edit_text = editText(form).value;
        params.edit_base = st.base;
      } else {
        delete params.edit_text;
        delete params.edit_base;
      }
    } else {
      const reason = form.querySelector("[data-skip-reason]");
      if (!reason.value.trim()) {
        showError(form, "reason", "Say why you skip this pair.");
        reason.focus();
        return evt.preventDefault();
      }
    }
    if (inflight) {
      // The previous pair is still being saved: this one goes right after.
      queued = elt;
      const status = form.querySelector("[data-status]");
      if (status) status.textContent = "Saving the previous pair; this one follows…";
      evt.preventDefault();
    }
  });

  document.body.addEventListener("htmx:beforeRequest", (evt) => {
    const elt = evt.detail.elt;
    if (!ours(elt)) return;
    const root = elt.closest("[data-pair-root]");
    if (!root || root.parentElement !== slot) return;
    const kind = elt.matches("[data-skip-form]") ? "skip" : "submit";
    inflight = { elt, root, kind, optimistic: null };
    workspace.dataset.saving = "true";
    if (toast.classList.contains("ws-toast-error")) say("");
    const next = takePrefetched(root.dataset.assignmentId);
    if (next) {
      parked.replaceChildren(root);
      slot.replaceChildren(next);
      inflight.optimistic = next;
      activate(next, { countDelta: kind === "submit" ? 1 : 0 });
    } else {
      root.classList.add("is-saving");
      const form = root.querySelector("form[data-judge-form]");
      form.classList.add("is-saving");
      form.querySelector("[data-status]").textContent = "Saving…";
    }
  });

  document.body.addEventListener("htmx:beforeSwap", (evt) => {
    const d = evt.detail;
    if (d.target !== slot) return;
    const elt = requester(d);
    const mine = !!inflight && elt === inflight.elt;
    const status = d.xhr.status;
    const root = parseRoot(d.serverResponse);
    if (mine) setTimeout(() => finish(elt), 0);
    if (!root) {
      // Not our fragment: the session ended (a redirect to the login page) or an error page.
      d.shouldSwap = false;
      if (mine) rollback();
      if (status < 400) window.location.reload();
      else say("Not saved: the server answered " + status + ". Reload the page and try again.", "error");
      return;
    }
    if (status === 422 && mine) {
      d.shouldSwap = false;
      d.isError = false;
      rollback();
      mergeErrors(inflight.root, root);
      say("Not saved yet: see the message on the page.", "error");
      return;
    }
    if (status >= 400) {
      d.shouldSwap = false;
      if (mine) rollback();
      say("Not saved: the server answered " + status + ". Press Enter to try again.", "error");
      return;
    }
    if (mine && inflight.optimistic) {
      parked.replaceChildren();
      if (root.dataset.assignmentId === inflight.optimistic.dataset.assignmentId) {
        // What we already show: keep it (and whatever the annotator has done since).
        d.shouldSwap = false;
        setCount(root.dataset.judgedToday);
        const notice = root.querySelector(".alert-notice");
        if (notice) say(notice.textContent.trim(), "warning");
        return;
      }
      // The server hands out another pair (the early one's lease ran out): it wins.
    }
    if (!toast.hidden && toast.classList.contains("ws-toast-error")) say("");
  });

  document.body.addEventListener("htmx:afterSwap", (evt) => {
    if (evt.detail.target !== slot) return;
    const root = slot.querySelector("[data-pair-root]");
    if (root) activate(root);
  });

  document.body.addEventListener("htmx:afterRequest", (evt) => {
    const elt = requester(evt.detail);
    if (!inflight || elt !== inflight.elt) return;
    const xhr = evt.detail.xhr;
    if (!xhr || xhr.status === 0) {
      rollback();
      say("No connection: nothing was saved. Press Enter to try again.", "error");
    }
    finish(elt);
  });

  // --- Keys --------------------------------------------------------------------------

  function onEscape(evt, target, form) {
    if (typingIn(target)) {
      evt.preventDefault();
      if (target.matches("[data-skip-reason]")) closeSkip(form);
      target.blur();
      return;
    }
    if (!guidelines.hidden) return toggleGuidelines(false);
    const row = form && form.querySelector("[data-skip-row]");
    if (row && !row.hidden) closeSkip(form);
  }

  document.addEventListener("keydown", (evt) => {
    if (evt.defaultPrevented || evt.isComposing || evt.keyCode === 229) return;
    const target = evt.target;
    const form = currentForm();
    if (help.open) {
      if (evt.key === "?") {
        evt.preventDefault();
        help.close();
      }
      return; // Esc closes the dialog natively
    }
    if (evt.key === "Escape") return onEscape(evt, target, form);
    if (evt.key === "Enter" && (evt.ctrlKey || evt.metaKey)) {
      if (!form || evt.repeat) return;
      evt.preventDefault();
      if (target && target.matches && target.matches("[data-skip-reason]")) target.form.requestSubmit();
      else form.requestSubmit();
      return;
    }
    if (typingIn(target) || evt.ctrlKey || evt.metaKey || evt.altKey) return;
    const key = evt.key;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    if (key === "?") {
      evt.preventDefault();
      return openHelp();
    }
    if (lower === "g") {
      evt.preventDefault();
      return toggleGuidelines();
    }
    if (!form) return;
    if (key === "Enter") {
      // A focused control other than an option (a link, Skip, Edit…) does its own thing.
      if (target.closest && target.closest("button, a, summary") && !target.closest("[data-group]")) return;
      evt.preventDefault();
      if (!evt.repeat) form.requestSubmit();
      return;
    }
    if (evt.repeat) return;
    const strengthAsked = isSide(value(form, "choice"));
    const safetyAsked = !!form.querySelector('[data-group="safety"]');
    if (lower === "e" && (evt.shiftKey || !strengthAsked)) {
      evt.preventDefault();
      return openEditor(form, { focus: true });
    }
    if (lower === "s" && (evt.shiftKey || !safetyAsked)) {
      evt.preventDefault();
      return openSkip(form);
    }
    if (lower === "b") {
      const toggle = form.querySelector("[data-base-toggle]");
      if (shown(toggle)) {
        evt.preventDefault();
        setValue(form, "edit_base", other(editorState(form).base || "left"));
      }
      return;
    }
    const button = form.querySelector('[data-set][data-key="' + lower + '"]');
    if (shown(button)) {
      evt.preventDefault();
      setValue(form, button.dataset.set, button.dataset.value);
      button.classList.remove("just-set");
      void button.offsetWidth; // restart the little confirmation animation
      button.classList.add("just-set");
    }
  });

  // --- Clicks and typing -------------------------------------------------------------

  document.addEventListener("click", (evt) => {
    const setter = evt.target.closest("[data-set]");
    if (setter && slot.contains(setter)) {
      const form = setter.closest("form[data-judge-form]");
      if (form && !setter.disabled) setValue(form, setter.dataset.set, setter.dataset.value);
      return;
    }
    const action = evt.target.closest("[data-action]");
    if (!action) return;
    const form = currentForm();
    switch (action.dataset.action) {
      case "guidelines":
        return toggleGuidelines();
      case "help":
        return openHelp();
      case "skip":
        if (!form) return;
        return form.querySelector("[data-skip-row]").hidden ? openSkip(form) : closeSkip(form);
      case "skip-cancel":
        return closeSkip(form);
      case "edit":
        return openEditor(form, { focus: true });
      case "edit-close":
        return discardEdit(form);
      case "edit-reset":
        return resetEdit(form);
    }
  });

  document.addEventListener("input", (evt) => {
    const target = evt.target;
    if (!slot.contains(target)) return;
    const form = target.closest("form[data-judge-form]");
    if (target.matches("[data-edit-text]") && form) {
      const st = editorState(form);
      st.auto = false;
      if (st.base) st.drafts[st.base] = target.value;
      showError(form, "edit_text", "");
      scheduleDiff(form);
      refresh(form);
    } else if (target.matches("[data-skip-reason]")) {
      showError(judgeFormOf(target), "reason", "");
    }
  });

  // --- Start -------------------------------------------------------------------------

  // Where the workspace starts on the page: it fills the viewport from there (app.css).
  function measure() {
    workspace.style.setProperty("--ws-top", Math.round(workspace.getBoundingClientRect().top + window.scrollY) + "px");
  }
  measure();
  window.addEventListener("resize", measure);

  try {
    // Reopened only where it sits beside the pair rather than over it.
    const wide = window.matchMedia("(min-width: 1280px)").matches;
    if (wide && localStorage.getItem("prefdata.guidelines") === "open") toggleGuidelines(true);
  } catch (e) {
    /* no storage: closed */
  }
  const first = slot.querySelector("[data-pair-root]");
  if (first) activate(first);
})();
