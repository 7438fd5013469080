// The dashboard: lists jobs, follows /api/events, and counts down to each estimate.
// Every value from the server is written with textContent, never parsed as HTML.
"use strict";

const EVENT_KINDS = [
  "snapshot", "queued", "started", "progress", "estimate",
  "retrying", "succeeded", "failed", "cancelled",
];
const ACTIVE = new Set(["queued", "running"]);
const STATUS_ICONS = {
  queued: "◷", running: "▶", succeeded: "✓", failed: "✕", cancelled: "⊘",
};
const LIST_LIMIT = 200;
const POLL_INTERVAL_MS = 2000;
const RECONNECT_DELAY_MS = 5000;

const jobs = new Map();
let lastEventId = null;
let source = null;
let pollTimer = null;
let detail = { id: null, source: null };

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Connection state ---------------------------------------------------------------------

function setConnection(state, text) {
  $("connection").dataset.state = state;
  $("connection-text").textContent = text;
}

function connect() {
  if (source) source.close();
  const query = lastEventId === null ? "" : `?last_event_id=${lastEventId}`;
  source = new EventSource(`api/events${query}`);
  source.onopen = () => {
    setConnection("live", "Live");
    stopPolling();
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (for example on a 503): poll, and try the stream again later.
      source = null;
      startPolling();
      setTimeout(connect, RECONNECT_DELAY_MS);
    } else {
      setConnection("reconnecting", "Reconnecting…");
    }
  };
  for (const kind of EVENT_KINDS) {
    source.addEventListener(kind, (message) => onEvent(kind, message));
  }
}

function onEvent(kind, message) {
  if (message.lastEventId) lastEventId = Number(message.lastEventId);
  const job = JSON.parse(message.data);
  upsert(job, { fromStream: true });
}

function startPolling() {
  setConnection("polling", "Polling (live updates unavailable)");
  if (pollTimer === null) pollTimer = setInterval(loadJobs, POLL_INTERVAL_MS);
}

function stopPolling() {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

// Jobs ---------------------------------------------------------------------------------

async function loadJobs() {
  const sentAt = performance.now();
  try {
    const response = await fetch(`api/jobs?limit=${LIST_LIMIT}`, { cache: "no-store" });
    if (!response.ok) return;
    const body = await response.json();
    if (lastEventId === null) lastEventId = body.last_event_id;
    // The list is newest first; inserting oldest first keeps that order on screen.
    for (const job of body.jobs.slice().reverse()) upsert(job, { sentAt });
  } catch (error) {
    setConnection("reconnecting", "Server unreachable, retrying…");
  }
}

// Applies a job's state. A response to a request sent before the latest stream event for
// that job is older than what the stream showed, so it is ignored.
function upsert(job, { fromStream = false, sentAt = null } = {}) {
  let entry = jobs.get(job.id);
  const previous = entry ? entry.job.status : null;
  if (!entry) {
    entry = { job, receivedAt: 0, streamAt: -1, row: createRow(job.id) };
    jobs.set(job.id, entry);
    $("jobs-body").prepend(entry.row.tr);
  } else if (!fromStream && sentAt !== null && entry.streamAt > sentAt) {
    return;
  }
  if (fromStream) entry.streamAt = performance.now();
  entry.job = job;
  // The countdown starts from the server's seconds_to_completion at receipt, so a wrong
  // clock in the browser does not shift it.
  entry.receivedAt = performance.now();
  renderRow(entry);
  if (previous !== null && previous !== job.status) {
    announce(`${job.task} job ${shortId(job.id)} is ${job.status}`);
  }
  if (detail.id === job.id) renderDetailFields(job);
  renderCounts();
}

function createRow(id) {
  const tr = element("tr");
  tr.tabIndex = 0;
  tr.addEventListener("click", (event) => {
    if (event.target.closest("button")) return;
    openDetail(id);
  });
  tr.addEventListener("keydown", (event) => {
    if (event.target.closest("button")) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openDetail(id);
    }
  });
  tr.setAttribute("aria-label", `Job ${shortId(id)}: open details`);

  const cells = {
    id: element("td", "job-id"),
    task: element("td", "task"),
    status: element("td"),
    progress: element("td", "progress"),
    countdown: element("td", "countdown"),
    actions: element("td", "actions"),
  };

  const badge = element("span", "status");
  cells.status.append(badge);
  const bar = element("div", "bar");
  const fill = element("span");
  bar.append(fill);
  const progressText = element("div", "progress-text");
  cells.progress.append(bar, progressText);

  const cancel = element("button", "cancel", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", async () => {
    await cancelJob(id);
    // The button hides itself once the job is cancelled; keep focus on the job's row.
    tr.focus();
  });
  cells.actions.append(cancel);

  tr.append(...Object.values(cells));
  return { tr, cells, badge, bar, fill, progressText, cancel };
}

function renderRow(entry) {
  const { job, row } = entry;
  row.cells.id.textContent = shortId(job.id);
  row.cells.id.title = job.id;
  row.cells.task.textContent = job.task;
  row.badge.dataset.status = job.status;
  row.badge.textContent = `${STATUS_ICONS[job.status] || "•"} ${job.status}`;
  const percent = Math.round((job.progress || 0) * 100);
  row.bar.dataset.status = job.status;
  row.bar.setAttribute("role", "progressbar");
  row.bar.setAttribute("aria-valuenow", String(percent));
  row.bar.setAttribute("aria-valuemin", "0");
  row.bar.setAttribute("aria-valuemax", "100");
  row.fill.style.width = `${percent}%`;
  row.progressText.textContent = job.progress_message
    ? `${percent}% · ${job.progress_message}`
    : `${percent}%`;
  row.cancel.hidden = !ACTIVE.has(job.status) || job.cancel_requested;
  row.tr.classList.toggle("selected", detail.id === job.id);
  renderCountdown(entry);
}

function renderCountdown(entry) {
  const { job, row } = entry;
  if (!ACTIVE.has(job.status)) {
    row.cells.countdown.textContent = job.status === "succeeded" ? "done" : "—";
    return;
  }
  const elapsedS = (performance.now() - entry.receivedAt) / 1000;
  const leftS = Math.max(0, (job.seconds_to_completion || 0) - elapsedS);
  row.cells.countdown.textContent = leftS < 0.5 ? "finishing…" : formatDuration(leftS);
}

function formatDuration(seconds) {
  const total = Math.ceil(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  if (hours > 0) return `${hours}:${pad(minutes)}:${pad(secs)}`;
  if (minutes > 0) return `${minutes}:${pad(secs)}`;
  return `${secs} s`;
}

function pad(number) {
  return String(number).padStart(2, "0");
}

function shortId(id) {
  return id.slice(0, 8);
}

function renderCounts() {
  const counts = {};
  for (const { job } of jobs.values()) counts[job.status] = (counts[job.status] || 0) + 1;
  const parts = Object.entries(counts).map(([status, count]) => `${count} ${status}`);
  $("counts").textContent = parts.join(" · ");
  $("empty").hidden = jobs.size > 0;
}

function tick() {
  for (const entry of jobs.values()) renderCountdown(entry);
}

function announce(text) {
  $("announcer").textContent = text;
}

async function cancelJob(id) {
  const sentAt = performance.now();
  const response = await fetch(`api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  const body = await response.json();
  if (response.ok) upsert(body, { sentAt });
  else announce(body.message);
}

// Submission ---------------------------------------------------------------------------

const tasks = new Map();

async function loadTasks() {
  const response = await fetch("api/tasks");
  const body = await response.json();
  const select = $("task");
  for (const task of body.tasks) {
    tasks.set(task.name, task);
    const option = element("option", null, task.name);
    option.value = task.name;
    select.append(option);
  }
  if (tasks.has("sleep")) select.value = "sleep";
  describeTask(false);
}

function describeTask(fillParams) {
  const task = tasks.get($("task").value);
  if (!task) return;
  $("task-description").textContent = task.description;
  if (fillParams) $("params").value = JSON.stringify(exampleParams(task.params_schema));
}

function exampleParams(schema) {
  const example = {};
  for (const name of schema.required || []) {
    const property = (schema.properties || {})[name] || {};
    if ("default" in property) example[name] = property.default;
    else if (property.type === "integer") example[name] = Math.max(property.minimum || 0, 1000000);
    else if (property.type === "number") example[name] = 3;
    else if (property.type === "boolean") example[name] = false;
    else example[name] = "";
  }
  return example;
}

async function submitJob(event) {
  event.preventDefault();
  const error = $("submit-error");
  error.textContent = "";
  let params;
  try {
    params = JSON.parse($("params").value || "{}");
  } catch (parseError) {
    error.textContent = `Params are not valid JSON: ${parseError.message}`;
    return;
  }
  const body = {
    task: $("task").value,
    params,
    priority: Number($("priority").value || 0),
    delay: Number($("delay").value || 0),
  };
  $("submit-button").disabled = true;
  const sentAt = performance.now();
  try {
    const response = await fetch("api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const job = await response.json();
    if (response.ok) {
      upsert(job, { sentAt });
      announce(`Submitted ${job.task} job ${shortId(job.id)}`);
    } else {
      error.textContent = job.message;
    }
  } catch (networkError) {
    error.textContent = "The server did not answer; try again in a moment.";
  } finally {
    $("submit-button").disabled = false;
  }
}

// Detail view --------------------------------------------------------------------------

function openDetail(id) {
  closeDetail();
  detail.id = id;
  const entry = jobs.get(id);
  for (const other of jobs.values()) other.row.tr.classList.toggle("selected", other === entry);
  $("detail").hidden = false;
  $("detail-title").textContent = `Job ${id}`;
  $("detail-timeline").replaceChildren();
  if (entry) renderDetailFields(entry.job);
  // last_event_id=0 replays the job's whole history, then follows it until it ends.
  detail.source = new EventSource(`api/jobs/${encodeURIComponent(id)}/events?last_event_id=0`);
  detail.source.onerror = () => {
    if (detail.source && detail.source.readyState === EventSource.CLOSED && !timelineHasEntries()) {
      $("detail-timeline").append(element("li", null, "The timeline is unavailable right now."));
    }
  };
  for (const kind of EVENT_KINDS) {
    detail.source.addEventListener(kind, (message) => {
      addTimelineEntry(kind, JSON.parse(message.data));
    });
  }
  $("detail").scrollIntoView({ behavior: "smooth", block: "start" });
}

function closeDetail() {
  const previous = detail.id ? jobs.get(detail.id) : null;
  if (previous && $("detail").contains(document.activeElement)) previous.row.tr.focus();
  if (detail.source) detail.source.close();
  detail = { id: null, source: null };
  $("detail").hidden = true;
  for (const entry of jobs.values()) entry.row.tr.classList.remove("selected");
}

function renderDetailFields(job) {
  const fields = [
    ["Task", job.task],
    ["Status", `${STATUS_ICONS[job.status] || ""} ${job.status}`],
    ["Reason", job.status_reason || "—"],
    ["Params", JSON.stringify(job.params)],
    ["Priority", String(job.priority)],
    ["Attempt", `${job.attempt} of ${job.max_attempts}`],
    ["Interruptions", String(job.interruptions)],
    ["Created", job.created_at],
    ["Started", job.started_at || "—"],
    ["Finished", job.finished_at || "—"],
    ["Estimated completion", job.estimated_time_completion || "—"],
  ];
  const list = $("detail-fields");
  list.replaceChildren();
  for (const [name, value] of fields) list.append(element("dt", null, name), element("dd", null, value));
  $("detail-error").textContent = job.error ? `${job.error.type}: ${job.error.message}` : "No error";
  if (job.status === "succeeded") loadResult(job.id);
  else $("detail-result").textContent = ACTIVE.has(job.status) ? "Not available yet" : "No result";
}

async function loadResult(id) {
  const response = await fetch(`api/jobs/${encodeURIComponent(id)}/result`);
  const body = await response.json();
  if (detail.id === id) $("detail-result").textContent = JSON.stringify(body.result, null, 2);
}

function timelineHasEntries() {
  return $("detail-timeline").children.length > 0;
}

// The moment each kind of event happened, from the job's own timestamps where it has one.
const EVENT_TIMES = {
  queued: "scheduled_at", started: "started_at", succeeded: "finished_at",
  failed: "finished_at", cancelled: "finished_at",
};

function addTimelineEntry(kind, job) {
  const item = element("li");
  const field = EVENT_TIMES[kind];
  const moment = field && job[field] ? new Date(job[field]) : new Date();
  const time = element("time", null, moment.toLocaleTimeString());
  time.dateTime = moment.toISOString();
  let text = kind;
  if (kind === "progress") text += ` ${Math.round(job.progress * 100)}%`;
  if (job.status_reason) text += ` (${job.status_reason})`;
  item.append(time, document.createTextNode(text));
  $("detail-timeline").append(item);
}

// Start --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  $("submit-form").addEventListener("submit", submitJob);
  $("task").addEventListener("change", () => describeTask(true));
  $("detail-close").addEventListener("click", closeDetail);
  setInterval(tick, 1000);
  await Promise.all([loadTasks(), loadJobs()]);
  connect();
});
