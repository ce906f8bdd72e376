// MiniTower console: local times, copy buttons, self-refreshing run lists and the run
// page's live, windowed log. No framework; everything user-supplied goes in as text.
"use strict";

const LINE_HEIGHT = 20; // px; must match .log .line in console.css
const POLL_MS = 2000;

function localizeTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    el.textContent = when.toLocaleString();
    el.title = "UTC: " + el.getAttribute("datetime");
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (err) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

function flash(button, text) {
  const before = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = before; }, 1500);
}

function setupCopyButtons() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      flash(button, (await copyText(source.value)) ? "Copied" : "Copy failed");
    });
  }
}

function setupRunsRefresh() {
  const live = document.getElementById("runs-live");
  if (!live) return;
  let stopped = false;
  async function tick() {
    const table = live.querySelector(".runs-table");
    if (stopped || !table || table.dataset.active !== "true") return;
    try {
      const response = await fetch(live.dataset.refresh, { credentials: "same-origin" });
      if (response.ok) {
        live.innerHTML = await response.text();
        localizeTimes(live);
      }
    } catch (err) { /* the next tick tries again */ }
    setTimeout(tick, POLL_MS);
  }
  setTimeout(tick, POLL_MS);
  window.addEventListener("pagehide", () => { stopped = true; });
}

function setupVersionPicker() {
  const select = document.getElementById("run-version");
  if (!select || !select.dataset.app) return;
  select.addEventListener("change", () => {
    window.location.href = "/apps/" + encodeURIComponent(select.dataset.app) +
      "?version=" + encodeURIComponent(select.value);
  });
}

function setupRunPage() {
  const root = document.getElementById("run");
  if (!root) return;
  const runId = root.dataset.runId;
  const view = document.getElementById("log");
  const spacer = view.querySelector(".log-spacer");
  const windowEl = document.createElement("div");
  windowEl.className = "log-window";
  view.appendChild(windowEl);
  const picker = document.getElementById("log-attempt");
  const follow = document.getElementById("log-follow");
  const count = document.getElementById("log-count");
  const download = document.getElementById("log-download");
  const byAttempt = new Map(); // attempt_no -> [{stream, line}]
  let shown = Number(picker.value);
  let pending = false;

  function lines() { return byAttempt.get(shown) || []; }

  function render() {
    pending = false;
    const all = lines();
    spacer.style.height = all.length * LINE_HEIGHT + "px";
    if (follow.checked) view.scrollTop = view.scrollHeight;
    const first = Math.max(0, Math.floor(view.scrollTop / LINE_HEIGHT) - 20);
    const last = Math.min(all.length, first + Math.ceil(view.clientHeight / LINE_HEIGHT) + 40);
    windowEl.style.transform = "translateY(" + first * LINE_HEIGHT + "px)";
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const row = document.createElement("div");
      row.className = "line " + all[i].stream;
      const number = document.createElement("span");
      number.className = "ln";
      number.textContent = String(i + 1);
      const text = document.createElement("span");
      text.className = "tx";
      text.textContent = all[i].line;
      row.append(number, text);
      if (all[i].stream === "stderr") row.title = "stderr";
      fragment.appendChild(row);
    }
    windowEl.replaceChildren(fragment);
    count.textContent = all.length ? all.length.toLocaleString() + " lines" : "no lines yet";
    download.href = "/runs/" + runId + "/log.txt?attempt=" + shown;
  }

  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(render); }
  }

  view.addEventListener("scroll", () => {
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - LINE_HEIGHT * 2;
    follow.checked = atBottom;
    schedule();
  });
  follow.addEventListener("change", schedule);
  picker.addEventListener("change", () => { shown = Number(picker.value); schedule(); });
  document.getElementById("log-copy").addEventListener("click", async (event) => {
    const text = lines().map((l) => l.line).join("\n");
    flash(event.target, (await copyText(text)) ? "Copied" : "Copy failed");
  });

  function addAttemptOption(number) {
    if ([...picker.options].some((o) => Number(o.value) === number)) return;
    const option = document.createElement("option");
    option.value = String(number);
    option.textContent = String(number);
    picker.appendChild(option);
    if (shown === number - 1 || !byAttempt.has(shown)) { picker.value = String(number); shown = number; }
  }

  function append(line) {
    if (!byAttempt.has(line.attempt_no)) {
      byAttempt.set(line.attempt_no, []);
      addAttemptOption(line.attempt_no);
    }
    byAttempt.get(line.attempt_no).push({ stream: line.stream, line: line.line });
    if (line.attempt_no === shown) schedule();
  }

  // The log so far in large pages, then the live stream from where they end.
  async function load() {
    let position = "0:-1";
    const known = [...picker.options].map((o) => Number(o.value)).sort((a, b) => a - b);
    if (view.dataset.attempts === "true") {
      for (const attempt of known) {
        let after = -1;
        for (let page = 0; page < 1000; page++) {
          const response = await fetch("/runs/" + runId + "/log.json?attempt=" + attempt +
            "&after_seq=" + after, { credentials: "same-origin" });
          if (!response.ok) break;
          const body = await response.json();
          for (const line of body.logs) append(line);
          if (body.logs.length) position = attempt + ":" + body.next_seq;
          else if (position === "0:-1" || Number(position.split(":")[0]) < attempt) position = attempt + ":" + after;
          if (body.logs.length < 10000) break;
          after = body.next_seq;
        }
      }
    }
    const stream = new EventSource(view.dataset.stream + "?after=" + encodeURIComponent(position));
    stream.addEventListener("log", (event) => append(JSON.parse(event.data)));
    stream.addEventListener("end", () => { stream.close(); schedule(); });
  }
  load();
  schedule();

  if (root.dataset.terminal === "true") return;
  const badge = document.getElementById("run-status");
  async function poll() {
    try {
      const response = await fetch("/runs/" + runId + "/state.json", { credentials: "same-origin" });
      if (response.ok) {
        const state = await response.json();
        if (state.run.status !== root.dataset.status) {
          // The server's own list (states.TERMINAL_RUN_STATUSES), not a copy of it here.
          const terminal = root.dataset.terminalStatuses.split(" ").includes(state.run.status);
          if (terminal || state.attempts.length !== picker.options.length) {
            // Timeline, attempts and buttons all change: show the page as it now is.
            window.location.reload();
            return;
          }
          root.dataset.status = state.run.status;
          const span = document.createElement("span");
          span.className = "status status-" + state.run.status;
          span.textContent = state.run.status;
          badge.replaceChildren(span);
        }
      }
    } catch (err) { /* the next poll tries again */ }
    setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  localizeTimes(document);
  setupCopyButtons();
  setupRunsRefresh();
  setupVersionPicker();
  setupRunPage();
});
