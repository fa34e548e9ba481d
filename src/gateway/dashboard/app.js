// swarmbridge live dashboard: reads /dashboard/snapshot and the event stream
// /dashboard/events; actions call /api with an operator token kept in
// localStorage. No library, no network beyond this server.
"use strict";

const STATES = ["open", "claimed", "done", "failed", "cancelled"];
const TOKEN_KEY = "swarmbridge.token";
const FEED_MAX = 200;
const CARDS_MAX = 100;

const state = {
  tasks: new Map(), // id -> task
  agents: [],
  stats: {},
  throughput: [],
  platforms: null,
  status: null,
  commands: [],
  insights: null,
  alerts: [],
  lastSeq: 0,
  live: false,
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function token() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}

function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString();
}

// ---- snapshot ------------------------------------------------------------

let refreshTimer = null;
let refreshing = false;
let refreshAgain = false;

async function refresh() {
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  try {
    const res = await fetch("/dashboard/snapshot", { headers: authHeaders(), cache: "no-store" });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      showSummary("snapshot: " + ((body.error && body.error.message) || res.status) +
        (res.status === 401 ? " (enter a token below)" : ""));
      return;
    }
    const snap = await res.json();
    state.status = snap.status;
    state.platforms = snap.platforms;
    state.searchIndex = snap.search_index || null;
    state.commands = snap.commands || [];
    state.agents = snap.agents || [];
    state.stats = snap.stats || {};
    state.throughput = (snap.throughput && snap.throughput.done) || [];
    state.tasks = new Map((snap.tasks || []).map((t) => [t.id, t]));
    state.insights = snap.insights || null;
    state.alerts = snap.alerts || [];
    if (state.lastSeq === 0) {
      for (const ev of snap.events || []) addFeed(ev);
    }
    $("#version").textContent = snap.status ? snap.status.version : "";
    renderAll();
  } catch (e) {
    showSummary("cannot reach the server");
  } finally {
    refreshing = false;
    if (refreshAgain) { refreshAgain = false; refreshSoon(); }
  }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 400);
}

function showSummary(text) {
  $("#summary").textContent = text;
}

// ---- rendering -------------------------------------------------------------

function renderAll() {
  renderSummary();
  renderPlatforms();
  renderAgents();
  renderBoard();
  renderChart();
  renderStats();
  renderInsights();
  renderActions();
}

function renderSummary() {
  const s = state.status;
  if (!s) return;
  const counts = STATES.map((st) => `${s.tasks[st] || 0} ${st}`).join(" · ");
  showSummary(`${s.agents_online} agents online · ${counts} · up ${fmtMs(s.uptime_s * 1000)}`);
}

function chip(label, value, cls) {
  return el("li", {}, el("span", { class: "pill " + cls }, label + ": " + value));
}

function searchIndexChip(ix) {
  if (!ix || !ix.running) return chip("Search index", "off (text search only)", "off");
  const text = `${ix.indexed} indexed · ${ix.backlog} backlog · ${ix.items_per_second.toFixed(1)}/s` +
    (ix.errors_total > 0 ? ` · ${ix.errors_total} errors` : "") +
    (ix.last_error ? ` (${ix.last_error})` : "");
  return chip("Search index", text, ix.last_error ? "warn" : "on");
}

function renderPlatforms() {
  const p = state.platforms;
  const ul = $("#platforms");
  if (!p) return;
  ul.replaceChildren(
    chip("WebSocket agents", p.ws_connections + " conn", p.ws_connections > 0 ? "on" : "warn"),
    chip("Discord", p.discord, p.discord === "off" ? "off" : "on"),
    chip("Twitch", p.twitch + (p.twitch_error ? " (" + p.twitch_error + ")" : ""),
      p.twitch === "off" ? "off" : p.twitch_error ? "warn" : "on"),
    chip("Reasoning", p.reasoning + (p.reasoning === "off" ? "" : " (" + p.reasoning_model + ")"),
      p.reasoning === "up" ? "on" : p.reasoning === "degraded" ? "warn" : "off"),
    chip("Event streams", p.event_streams, "on"),
    searchIndexChip(state.searchIndex),
  );
  for (const c of state.commands) {
    if (c.served + c.refused === 0) continue;
    ul.append(el("li", { class: "muted" }, `${c.platform}: ${c.served} served, ${c.refused} refused`));
  }
}

function renderAgents() {
  const ul = $("#agents");
  if (state.agents.length === 0) {
    ul.replaceChildren(el("li", { class: "muted" }, "no agents registered"));
    return;
  }
  const rows = [...state.agents]
    .sort((a, b) => (b.online - a.online) || a.name.localeCompare(b.name))
    .map((a) => {
      const t = a.current_task !== null ? state.tasks.get(a.current_task) : null;
      const work = a.current_task !== null
        ? `working on #${a.current_task}${t ? " " + t.title : ""}`
        : "idle";
      return el("li", { "data-agent": a.name },
        el("span", { class: "dot" + (a.online ? " online" : ""), title: a.online ? "online" : "offline" }),
        el("strong", {}, a.name),
        el("span", { class: "muted" }, a.role),
        el("span", {}, work));
    });
  ul.replaceChildren(...rows);
}

function taskCard(t) {
  const final = t.state === "done" || t.state === "failed" || t.state === "cancelled";
  const meta = [`#${t.id}`, `p${t.priority}`];
  if (t.assignee) meta.push(t.assignee);
  if (t.percent !== null && t.percent !== undefined && t.state === "claimed") meta.push(t.percent + "%");
  const card = el("div", { class: "task", "data-id": t.id, "data-state": t.state },
    el("div", { class: "title" }, t.title),
    el("div", { class: "meta" }, meta.join(" · ")));
  if (t.progress && t.state === "claimed") card.append(el("div", { class: "meta" }, t.progress));
  if (!final && token()) {
    card.append(el("button", { type: "button", class: "cancel", "data-id": t.id,
      onclick: () => cancelTask(t.id) }, "Cancel"));
  }
  return card;
}

function renderBoard() {
  const byState = Object.fromEntries(STATES.map((s) => [s, []]));
  for (const t of state.tasks.values()) (byState[t.state] || []).push(t);
  for (const st of STATES) {
    const list = byState[st].sort((a, b) =>
      st === "open" ? (b.priority - a.priority) || (a.id - b.id) : b.id - a.id);
    const col = $("#col-" + st);
    const total = state.status ? state.status.tasks[st] : list.length;
    col.querySelector(".count").textContent = `(${Math.max(total || 0, list.length)})`;
    col.querySelector(".cards").replaceChildren(...list.slice(0, CARDS_MAX).map(taskCard));
  }
}

function renderChart() {
  const svg = $("#chart");
  const data = state.throughput;
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 140, top = 10, bottom = 20, left = 28;
  const max = Math.max(1, ...data);
  const n = Math.max(1, data.length);
  const bw = (W - left) / n;
  const parts = [];
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  parts.push(mk("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom }));
  parts.push(mk("text", { x: 0, y: top + 8 }, String(max)));
  parts.push(mk("text", { x: 0, y: H - bottom }, "0"));
  data.forEach((v, i) => {
    const h = ((H - top - bottom) * v) / max;
    const r = mk("rect", { class: "bar", x: left + i * bw + 1, y: H - bottom - h,
      width: Math.max(1, bw - 2), height: h });
    r.append(mk("title", {}, `${n - i - 1} min ago: ${v} done`));
    parts.push(r);
  });
  parts.push(mk("text", { x: left, y: H - 5 }, `-${n} min`));
  parts.push(mk("text", { x: W - 24, y: H - 5 }, "now"));
  svg.replaceChildren(...parts);
}

function renderStats() {
  const tbody = $("#stats tbody");
  const rows = Object.values(state.stats).sort((a, b) => a.agent.localeCompare(b.agent)).map((s) =>
    el("tr", { "data-agent": s.agent },
      el("td", {}, s.agent), el("td", {}, s.claims), el("td", {}, s.completions),
      el("td", {}, s.failures), el("td", {}, s.expiries), el("td", {}, s.releases),
      el("td", {}, fmtMs(s.claim_to_done.mean_ms)), el("td", {}, fmtMs(s.claim_to_done.p50_ms)),
      el("td", {}, fmtMs(s.claim_to_done.p95_ms))));
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no claims yet")));
  tbody.replaceChildren(...rows);
}

const INSIGHT_ROWS = 5;

function pct(r) {
  return r === null || r === undefined ? "–" : Math.round(r * 100) + "%";
}

function renderInsights() {
  const alerts = $("#alerts");
  alerts.replaceChildren(...(state.alerts.length === 0
    ? [el("li", { class: "muted" }, "no active alerts")]
    : state.alerts.map((a) => el("li", { class: "alert", "data-rule": a.rule, "data-subject": a.subject },
      el("span", { class: "pill warn" }, a.rule), a.message))));
  const i = state.insights;
  if (!i) return;
  const h = i.swarm.hour;
  $("#insights-summary").textContent =
    `last hour: ${h.completions} done, success ${pct(h.success_rate)}, wait p95 ${fmtMs(i.wait_hour.p95_ms)} · trend ${i.trend.success}`;
  const queues = i.queues.slice(0, INSIGHT_ROWS).map((q) =>
    el("tr", { "data-queue": q.queue },
      el("td", {}, q.queue), el("td", {}, q.backlog),
      el("td", {}, q.oldest_open_age_s === null ? "–" : fmtMs(q.oldest_open_age_s * 1000)),
      el("td", {}, fmtMs(q.wait_hour.p95_ms)), el("td", {}, fmtMs(q.wait_day.p95_ms)),
      el("td", {}, q.capable_online)));
  if (queues.length === 0) queues.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no queues yet")));
  $("#slow-queues tbody").replaceChildren(...queues);
  const agents = i.agents.slice(0, INSIGHT_ROWS).map((a) =>
    el("tr", { "data-agent": a.agent },
      el("td", {}, a.agent), el("td", {}, pct(a.day.success_rate)), el("td", {}, a.day.claims),
      el("td", {}, a.day.failures), el("td", {}, a.day.expiries), el("td", {}, a.day.retries),
      el("td", {}, fmtMs(a.day.duration.p95_ms))));
  if (agents.length === 0) agents.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no claims yet")));
  $("#unreliable-agents tbody").replaceChildren(...agents);
}

function renderActions() {
  const has = token() !== "";
  $("#token-state").textContent = has ? "token set: actions enabled" : "no token: read-only";
  for (const f of ["#create-form", "#broadcast-form"]) {
    const form = $(f);
    form.setAttribute("aria-disabled", String(!has));
    for (const c of form.querySelectorAll("input, button")) c.disabled = !has;
  }
}

// ---- live events -----------------------------------------------------------

function describe(frame) {
  const d = frame.data || {};
  if (d.task) return `#${d.task.id} ${d.task.title} → ${d.task.state}${d.task.assignee ? " (" + d.task.assignee + ")" : ""}`;
  if (frame.kind === "broadcast") return `${d.from}: ${d.text}${d.topic ? " [" + d.topic + "]" : ""}`;
  if (frame.kind === "message") return `${d.from} → ${d.to || "?"}`;
  if (d.poll) return d.poll.question || "";
  if (d.alert) return `${d.alert.rule}: ${d.alert.message}`;
  return "";
}

function addFeed(frame) {
  if (frame.seq <= state.lastSeq) return;
  state.lastSeq = frame.seq;
  const li = el("li", { "data-kind": frame.kind, "data-seq": frame.seq },
    el("span", { class: "muted" }, fmtTime(frame.at) + " "),
    el("span", { class: "kind" }, frame.kind),
    describe(frame));
  const feed = $("#feed");
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

// Puts a task's new version on the board, keeping the counts in step.
function applyTask(t) {
  const prev = state.tasks.get(t.id);
  if (prev && prev.updated_at > t.updated_at) return; // an older version
  if (state.status) {
    const counts = state.status.tasks;
    if (prev) counts[prev.state] = Math.max(0, (counts[prev.state] || 0) - 1);
    counts[t.state] = (counts[t.state] || 0) + 1;
  }
  state.tasks.set(t.id, t);
  renderSummary();
  renderBoard();
  renderAgents();
}

function onEvent(frame) {
  addFeed(frame);
  const d = frame.data || {};
  if (d.task) {
    applyTask(d.task);
    const card = document.querySelector(`.task[data-id="${d.task.id}"]`);
    if (card) card.classList.add("fresh");
  }
  refreshSoon();
}

function handleBlock(block) {
  let data = "";
  let kind = "message";
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) data += line.slice(5).trimStart();
    else if (line.startsWith("event:")) kind = line.slice(6).trim();
  }
  if (!data) return;
  if (kind === "lagged") { refreshSoon(); return; }
  try { onEvent(JSON.parse(data)); } catch (_) { /* not an event frame */ }
}

function setLive(on) {
  state.live = on;
  const s = $("#conn-status");
  s.textContent = on ? "live" : "reconnecting…";
  s.className = "pill " + (on ? "on" : "off");
}

async function streamEvents() {
  for (;;) {
    try {
      const res = await fetch("/dashboard/events", { headers: authHeaders(), cache: "no-store" });
      if (res.ok && res.body) {
        setLive(true);
        refresh(); // cover anything between the snapshot and the stream
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            handleBlock(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      }
    } catch (_) { /* retried below */ }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---- actions -----------------------------------------------------------------

async function api(method, path, body) {
  const opts = { method, headers: { ...authHeaders() } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((json.error && json.error.message) || ("HTTP " + res.status));
  return json;
}

function result(text, isError) {
  const p = $("#action-result");
  p.textContent = text;
  p.className = isError ? "error" : "muted";
}

async function cancelTask(id) {
  try {
    const r = await api("POST", `/api/tasks/${id}/cancel`, { reason: "cancelled from the dashboard" });
    applyTask(r.task);
    result(`task #${id} cancelled`);
  } catch (e) { result(`cancel #${id}: ${e.message}`, true); }
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("#token").value.trim();
  try { if (t) localStorage.setItem(TOKEN_KEY, t); } catch (_) { /* private mode */ }
  $("#token").value = "";
  renderActions(); renderBoard(); refresh();
  result(t ? "token saved in this browser" : "no token entered", !t);
});

$("#forget-token").addEventListener("click", () => {
  try { localStorage.removeItem(TOKEN_KEY); } catch (_) { /* ignore */ }
  renderActions(); renderBoard();
  result("token forgotten");
});

$("#create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const title = $("#new-title").value.trim();
  if (!title) return result("a task needs a title", true);
  const requires = $("#new-requires").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const r = await api("POST", "/api/tasks", {
      title, priority: parseInt($("#new-priority").value || "0", 10) || 0, requires,
    });
    applyTask(r.task);
    $("#new-title").value = "";
    result(`task #${r.task.id} created`);
  } catch (e) { result("create: " + e.message, true); }
});

$("#broadcast-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("#bc-text").value.trim();
  if (!text) return result("nothing to broadcast", true);
  const topic = $("#bc-topic").value.trim() || null;
  try {
    await api("POST", "/api/broadcast", { text, topic });
    $("#bc-text").value = "";
    result("broadcast sent");
  } catch (e) { result("broadcast: " + e.message, true); }
});

renderActions();
refresh();
streamEvents();
setInterval(refresh, 5000); // presence and uptime change without events
