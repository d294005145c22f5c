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

// `look`: the colour's class; `shown`: the words (a step waiting for a worker is `running` in the
// log but shows "waiting for a worker (queue gpu)", coloured "waiting").
function setState(el, look, shown) {
  el.textContent = shown === undefined ? look : shown;
  el.className = "state " + look;
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

const STATE_ORDER = ["running", "queued", "waiting", "retrying", "ready", "pending", "failed", "tripped", "blocked",
  "skipped", "passed"];

function countStates(steps) {  // the legend: how many steps show each state, as the table now says
  const counts = new Map();  // the words shown -> [look, how many]
  for (const el of steps.querySelectorAll('[data-key="state"] .state')) {
    const look = el.className.replace(/^state /, "");
    const seen = counts.get(el.textContent) || [look, 0];
    counts.set(el.textContent, [seen[0], seen[1] + 1]);
  }
  const legend = document.getElementById("legend");
  const rank = (s) => (STATE_ORDER.includes(s) ? STATE_ORDER.indexOf(s) : 99);
  const order = [...counts.keys()].sort((a, b) => rank(counts.get(a)[0]) - rank(counts.get(b)[0]) || (a < b ? -1 : 1));
  legend.replaceChildren();
  for (const shown of order) {
    const [look, n] = counts.get(shown);
    const span = document.createElement("span");
    setState(span, look, n + " " + shown);
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
  for (const row of steps.tBodies[0].rows) stepActions(row, cell(row, "state").dataset.state);
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
      setState(document.getElementById("run-status"), msg.status, msg.shown_status);
      document.getElementById("run-duration").textContent = msg.duration;
      for (const s of msg.steps) {
        const row = byData(steps, "data-step", s.step_id);
        if (row) {
          setState(cell(row, "state").firstElementChild, s.look, s.shown);
          cell(row, "state").dataset.state = s.state;
          stepActions(row, s.state);
          cell(row, "attempt").textContent = s.attempt;
          cell(row, "duration").textContent = s.duration;
          cell(row, "last_error").textContent = s.last_error;
        }
        const node = byData(graph, "data-step", s.step_id);
        if (node) { node.className = "node state " + s.look; node.title = s.step_id + ": " + s.shown; }
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
      setState(document.getElementById("step-state"), s.look, s.shown);
      document.getElementById("step-attempt").textContent = s.attempt;
    },
    log: (msg) => {
      if (msg.attempt !== attempt) { attempt = msg.attempt; }
      offset = msg.offset;
      let section = byData(attempts, "data-attempt", String(msg.attempt));
      let pre = section && section.querySelector("pre.log[data-attempt]");
      if (!section) {
        const none = document.getElementById("no-attempt");
        if (none) none.remove();
        section = document.createElement("section");
        section.className = "attempt";
        section.dataset.attempt = msg.attempt;
        const h2 = document.createElement("h2");
        h2.textContent = "Attempt " + msg.attempt;
        section.append(h2);
        attempts.appendChild(section);
      }
      if (!pre) {  // the attempt's section has no log yet (its file was not there when the page was made)
        pre = document.createElement("pre");
        pre.className = "log";
        pre.dataset.attempt = msg.attempt;
        section.append(pre);
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
