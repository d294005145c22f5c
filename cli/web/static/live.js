// stepledger ui: live pages through server-sent events. Text from the log is only ever set as
// textContent, never as HTML. An EventSource reconnects by itself; each (re)connection starts
// with a snapshot, so nothing is missed while it was away.
"use strict";

function liveState(on) {
  const dot = document.getElementById("live-state");
  if (dot) { dot.className = "live-state " + (on ? "on" : "off"); dot.title = on ? "live" : "reconnecting"; }
}

// `urlOf` gives the stream's address at each (re)connection, so it asks only for what is new.
function listen(urlOf, handlers) {
  let source = null;
  const open = () => {
    source = new EventSource(urlOf());
    source.onopen = () => liveState(true);
    source.onerror = () => { liveState(false); source.close(); setTimeout(open, 1000); };
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
    }
    source.addEventListener("reset", () => { source.close(); setTimeout(open, 200); });
  };
  open();
  window.addEventListener("pagehide", () => source.close());
}

function setState(el, state) {
  el.textContent = state;
  el.className = "state " + state;
}

function cell(row, key) { return row.querySelector('[data-key="' + key + '"]'); }

function byData(root, attr, value) {
  for (const el of root.querySelectorAll("[" + attr + "]")) { if (el.getAttribute(attr) === value) return el; }
  return null;
}

// --- the runs page ---------------------------------------------------------------------------
function runsPage(table) {
  const body = table.tBodies[0];
  const shown = () => [...body.querySelectorAll("tr[data-run]")].map((r) => encodeURIComponent(r.dataset.run));
  listen(() => table.dataset.live + "&shown=" + shown().join(","), {
    runs: (msg) => {
      for (const r of msg.runs) {
        let row = byData(body, "data-run", r.run_id);
        if (!row) {
          if (table.dataset.firstPage !== "yes") continue;
          const empty = body.querySelector("tr.empty");
          if (empty) empty.remove();
          row = body.insertRow(0);
          row.setAttribute("data-run", r.run_id);
          const link = document.createElement("a");
          link.href = "/runs/" + encodeURIComponent(r.run_id);
          link.textContent = r.run_id;
          row.insertCell().appendChild(link);
          for (const key of ["workstream_id", "status", "started", "duration", "steps", "resumes"]) {
            row.insertCell().setAttribute("data-key", key);
          }
          cell(row, "status").appendChild(document.createElement("span"));
        }
        setState(cell(row, "status").firstElementChild, r.status);
        for (const key of ["workstream_id", "started", "duration", "steps", "resumes"]) {
          cell(row, key).textContent = r[key];
        }
      }
    },
  });
}

const STATE_ORDER = ["running", "retrying", "ready", "pending", "failed", "tripped", "blocked", "skipped", "passed"];

function countStates(steps) {  // the legend: how many steps are in each state, as the table now says
  const counts = new Map();
  for (const el of steps.querySelectorAll('[data-key="state"] .state')) {
    counts.set(el.textContent, (counts.get(el.textContent) || 0) + 1);
  }
  const legend = document.getElementById("legend");
  const rank = (s) => (STATE_ORDER.includes(s) ? STATE_ORDER.indexOf(s) : 99);
  legend.replaceChildren();
  for (const state of [...counts.keys()].sort((a, b) => rank(a) - rank(b))) {
    const span = document.createElement("span");
    setState(span, state);
    span.textContent = counts.get(state) + " " + state;
    legend.append(span, " ");
  }
}

// A step's actions, in its row while its state allows any: one <template> on the page, not a form
// per step (a run of thousands of steps would be megabytes of forms). The step's page has them too.
const ACTIONABLE = new Set(["failed", "tripped", "blocked", "skipped"]);

function stepActions(row, state) {
  const template = document.getElementById("step-actions");
  const place = cell(row, "act");
  if (!template || !place) return;
  if (!ACTIONABLE.has(state)) { place.replaceChildren(); return; }
  if (place.firstElementChild) return;
  const actions = template.content.cloneNode(true);
  const base = template.dataset.base + encodeURIComponent(row.dataset.step) + "/";
  const form = actions.querySelector("form");
  form.action = base + "retry";
  for (const button of form.querySelectorAll("button[data-action]")) button.formAction = base + button.dataset.action;
  place.appendChild(actions);
}

// --- a run's page ----------------------------------------------------------------------------
function runPage(root) {
  const steps = document.getElementById("steps");
  const graph = document.getElementById("graph");
  const events = document.getElementById("events");
  const timeline = document.getElementById("timeline");
  for (const row of steps.tBodies[0].rows) stepActions(row, cell(row, "state").textContent.trim());
  let lastPosition = 0;
  for (const li of events.children) lastPosition = Math.max(lastPosition, Number(li.dataset.position));
  let reloadTimer = null;
  const refreshTimeline = () => {  // at most every 2 s: the timeline is a whole page of its own
    if (reloadTimer || !timeline) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; timeline.src = timeline.src; }, 2000);
  };
  const base = root.dataset.live.split("?")[0];
  listen(() => base + "?after=" + lastPosition, {
    run: (msg) => {
      setState(document.getElementById("run-status"), msg.status);
      document.getElementById("run-duration").textContent = msg.duration;
      for (const s of msg.steps) {
        const row = byData(steps, "data-step", s.step_id);
        if (row) {
          setState(cell(row, "state").firstElementChild, s.state);
          stepActions(row, s.state);
          cell(row, "attempt").textContent = s.attempt;
          cell(row, "duration").textContent = s.duration;
          cell(row, "last_error").textContent = s.last_error;
        }
        const node = byData(graph, "data-step", s.step_id);
        if (node) node.className = "node state " + s.state;
      }
      for (const e of msg.events) {
        if (e.position <= lastPosition) continue;
        lastPosition = e.position;
        const li = document.createElement("li");
        li.dataset.position = e.position;
        const time = document.createElement("time");
        time.textContent = new Date(e.at * 1000).toLocaleTimeString([], { hour12: false });
        li.append(time, " " + e.text);
        events.appendChild(li);
      }
      if (msg.steps.length) { countStates(steps); refreshTimeline(); }
    },
  });
}

// --- a step's page: its log, followed ------------------------------------------------------
function stepPage(root) {
  const attempts = document.getElementById("attempts");
  const params = new URLSearchParams(root.dataset.live.split("?")[1]);
  let attempt = Number(params.get("attempt")), offset = Number(params.get("offset"));
  const base = root.dataset.live.split("?")[0];
  listen(() => base + "?attempt=" + attempt + "&offset=" + offset, {
    state: (s) => {
      if (s.attempt > attempt) { attempt = s.attempt; offset = 0; }
      setState(document.getElementById("step-state"), s.state);
      document.getElementById("step-attempt").textContent = s.attempt;
    },
    log: (msg) => {
      if (msg.attempt !== attempt) { attempt = msg.attempt; }
      offset = msg.offset;
      let pre = byData(attempts, "data-attempt", String(msg.attempt));
      pre = pre && pre.querySelector("pre.log");
      if (!pre) {
        const none = document.getElementById("no-attempt");
        if (none) none.remove();
        const section = document.createElement("section");
        section.className = "attempt";
        section.dataset.attempt = msg.attempt;
        const h2 = document.createElement("h2");
        h2.textContent = "Attempt " + msg.attempt;
        pre = document.createElement("pre");
        pre.className = "log";
        pre.dataset.attempt = msg.attempt;
        section.append(h2, pre);
        attempts.appendChild(section);
      }
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(msg.text);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    },
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const runs = document.getElementById("runs");
  if (runs) runsPage(runs);
  const run = document.getElementById("run");
  if (run) runPage(run);
  const step = document.getElementById("step");
  if (step) stepPage(step);
});
