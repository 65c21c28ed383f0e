// omshub dashboard: polls /api/overview, keeps the plots' series in memory, no page reloads.
"use strict";

const REFRESH_MS = 2000;
const MAX_POINTS = 1800;
const FIELDS = ["ts", "events_per_s", "done_per_s", "lag", "lag_s", "pending", "retry", "failed", "dlq"];
const series = Object.fromEntries(FIELDS.map((f) => [f, []]));
const trends = new Map(); // "group|topic|partition" -> recent lag values
let charts = null;
let lastTs = 0;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmtNum(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function cell(row, value, cls, field) {
  const td = el("td", cls ? { class: cls } : {}, value);
  if (field) td.dataset.field = field;
  row.appendChild(td);
  return td;
}

function fill(tableId, rows, build) {
  const body = document.querySelector(`#${tableId} tbody`);
  const fresh = document.createDocumentFragment();
  for (const r of rows) fresh.appendChild(build(r));
  body.replaceChildren(fresh);
}

function stateCell(row, state) {
  const td = el("td", {});
  td.dataset.field = "state";
  td.appendChild(el("span", { class: `state state-${state}` }, state));
  row.appendChild(td);
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "90");
  svg.setAttribute("height", "18");
  svg.setAttribute("class", "spark");
  if (values.length > 1) {
    const max = Math.max(1, ...values);
    const pts = values.map((v, i) => `${(i / (values.length - 1)) * 88 + 1},${17 - (v / max) * 16}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#58a6ff");
    line.setAttribute("stroke-width", "1.5");
    svg.appendChild(line);
  }
  return svg;
}

function renderConnectors(connectors) {
  fill("connectors", connectors, (c) => {
    const tr = el("tr");
    tr.dataset.connector = c.name;
    cell(tr, c.name);
    stateCell(tr, c.state);
    cell(tr, c.detail + (c.target === "PAUSED" && c.state !== "PAUSED" ? " (pausing)" : ""));
    cell(tr, c.binlog_file ? `${c.binlog_file}:${c.binlog_pos}` : "–", null, "position");
    cell(tr, c.committed_file ? `${c.committed_file}:${c.committed_pos}` : "–");
    cell(tr, fmtNum(c.ms_behind_source), "num", "behind");
    cell(tr, fmtNum(c.events_per_s, 1), "num", "events_per_s");
    cell(tr, fmtNum(c.events_total), "num");
    cell(tr, fmtNum(c.errors_total), c.errors_total ? "num bad" : "num");
    cell(tr, c.last_error || "", "wrap", "last_error");
    return tr;
  });
}

function renderLag(lag) {
  fill("lag", lag, (r) => {
    const key = `${r.group}|${r.topic}|${r.partition}`;
    const trend = trends.get(key) || [];
    const tr = el("tr");
    tr.dataset.group = r.group;
    tr.dataset.topic = r.topic;
    tr.dataset.partition = r.partition;
    cell(tr, r.group);
    cell(tr, r.topic);
    cell(tr, r.partition, "num");
    cell(tr, r.committed === null ? "none" : fmtNum(r.committed), "num");
    cell(tr, fmtNum(r.end), "num");
    cell(tr, fmtNum(r.lag), r.lag ? "num hot" : "num", "lag");
    cell(tr, r.lag_s ? r.lag_s.toFixed(1) : "0", r.lag_s > 10 ? "num bad" : "num", "lag_s");
    const td = el("td");
    td.appendChild(sparkline(trend));
    tr.appendChild(td);
    return tr;
  });
}

function renderBacklog(pushes) {
  const byType = new Map();
  for (const b of pushes.backlog || []) {
    if (!byType.has(b.push_type)) byType.set(b.push_type, {});
    byType.get(b.push_type)[b.status] = b.count;
  }
  const oldest = pushes.oldest_pending_s || {};
  for (const t of Object.keys(oldest)) if (!byType.has(t)) byType.set(t, {});
  const rows = [...byType.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  fill("backlog", rows, ([type, counts]) => {
    const tr = el("tr");
    tr.dataset.type = type;
    cell(tr, type);
    for (const s of ["PENDING", "RETRY", "FAILED", "CANCELLED"]) {
      const n = counts[s] || 0;
      cell(tr, fmtNum(n), n && s !== "CANCELLED" ? (s === "FAILED" ? "num bad" : "num hot") : "num", s);
    }
    cell(tr, fmtAge(oldest[type]), "num", "oldest");
    return tr;
  });
}

function renderSupervisor(components) {
  fill("supervised", components, (c) => {
    const tr = el("tr");
    tr.dataset.component = c.name;
    cell(tr, c.name);
    stateCell(tr, c.state);
    cell(tr, fmtNum(c.restarts), c.restarts ? "num hot" : "num", "restarts");
    const detail = [c.last_error || "", ...(c.log_tail || [])].filter(Boolean).join("\n");
    cell(tr, detail, c.state === "crashloop" ? "bad" : "", "last_error");
    return tr;
  });
}

function renderWorkers(workers) {
  fill("workers", workers, (w) => {
    const tr = el("tr");
    tr.dataset.worker = w.name;
    cell(tr, w.name);
    stateCell(tr, w.state);
    cell(tr, w.pid, "num");
    cell(tr, w.alive ? w.assigned.length : 0, "num", "partitions");
    cell(tr, fmtNum(w.done_total), "num");
    cell(tr, fmtNum(w.done_per_s, 1), "num");
    return tr;
  });
  const types = [];
  for (const w of workers) {
    if (!w.alive) continue;
    for (const [type, f] of Object.entries(w.types || {})) types.push({ worker: w.name, type, f });
  }
  types.sort((a, b) => a.type.localeCompare(b.type) || a.worker.localeCompare(b.worker));
  fill("types", types, ({ worker, type, f }) => {
    const tr = el("tr");
    const lat = f.latency_ms || {};
    cell(tr, type);
    cell(tr, f.worker ? `${worker} (${f.worker})` : worker);
    cell(tr, fmtNum(f.done), "num");
    cell(tr, fmtNum(f.retry), "num");
    cell(tr, fmtNum(f.failed), f.failed ? "num bad" : "num");
    cell(tr, fmtNum(lat.p50, 1), "num");
    cell(tr, fmtNum(lat.p99, 1), "num");
    return tr;
  });
}

function renderDlq(dlq) {
  document.getElementById("dlq-topic").textContent = dlq.topic ? `(${dlq.topic})` : "";
  fill("dlq", dlq.recent || [], (d) => {
    const tr = el("tr");
    cell(tr, d.failed_at_ms ? new Date(d.failed_at_ms).toISOString().replace("T", " ").slice(0, 19) : "–");
    cell(tr, d.push_id, "num");
    cell(tr, d.order_no);
    cell(tr, d.push_type);
    cell(tr, d.attempts, "num");
    cell(tr, d.error, "wrap");
    return tr;
  });
}

function renderSummary(s) {
  const c = s.connectors[0];
  const set = (id, text, cls) => {
    const node = document.getElementById(id);
    node.textContent = text;
    node.className = `value ${cls || ""}`;
  };
  set("sum-connector", c ? c.state : "none", c ? `state-${c.state}` : "");
  set("sum-behind", c && c.ms_behind_source !== null ? `${fmtNum(c.ms_behind_source)} ms` : "–");
  const lag = (s.lag || []).reduce((a, r) => a + r.lag, 0);
  const lagS = Math.max(0, ...(s.lag || []).map((r) => r.lag_s));
  set("sum-lag", `${fmtNum(lag)} (${lagS.toFixed(1)} s)`, lag ? "hot" : "");
  const totals = s.pushes.totals || {};
  set("sum-pending", fmtNum(totals.PENDING || 0), totals.PENDING ? "hot" : "");
  const ages = Object.values(s.pushes.oldest_pending_s || {});
  set("sum-oldest", ages.length ? fmtAge(Math.max(...ages)) : "–");
  set("sum-dlq", fmtNum(s.dlq ? s.dlq.count : null), s.dlq && s.dlq.count ? "bad" : "");
  set("sum-done", fmtNum(s.workers.reduce((a, w) => a + w.done_per_s, 0), 1));
  document.getElementById("updated").textContent = `sampled ${new Date(s.ts * 1000).toLocaleTimeString()}`;
  document.getElementById("errors").textContent = (s.errors || []).join(" · ");
}

function makeChart(id, labels, keys) {
  const host = document.getElementById(id);
  const width = Math.max(320, host.clientWidth || 400);
  const colors = ["#58a6ff", "#3fb950", "#d29922", "#f85149"];
  const opts = {
    width,
    height: 200,
    scales: { x: { time: true } },
    axes: [
      { stroke: "#8a96a3", grid: { stroke: "#2a3440" } },
      { stroke: "#8a96a3", grid: { stroke: "#2a3440" } },
    ],
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i], width: 1.5 }))],
  };
  const data = [series.ts, ...keys.map((k) => series[k])];
  return { chart: new uPlot(opts, data, host), keys };
}

function redraw() {
  if (!charts) return;
  for (const { chart, keys } of charts) chart.setData([series.ts, ...keys.map((k) => series[k])]);
}

function append(row) {
  if (row[0] <= lastTs) return;
  lastTs = row[0];
  FIELDS.forEach((f, i) => {
    series[f].push(row[i] === undefined ? null : row[i]);
    if (series[f].length > MAX_POINTS) series[f].shift();
  });
}

function rowOf(s) {
  const totals = s.pushes.totals || {};
  const lag = s.lag || [];
  return [
    s.ts,
    s.connectors.reduce((a, c) => a + (c.events_per_s || 0), 0),
    s.workers.reduce((a, w) => a + w.done_per_s, 0),
    lag.reduce((a, r) => a + r.lag, 0),
    Math.max(0, ...lag.map((r) => r.lag_s)),
    totals.PENDING ?? null,
    totals.RETRY ?? null,
    totals.FAILED ?? null,
    s.dlq ? s.dlq.count : null,
  ];
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function tick() {
  try {
    const s = await getJson("/api/overview");
    for (const r of s.lag || []) {
      const key = `${r.group}|${r.topic}|${r.partition}`;
      const t = trends.get(key) || [];
      if (s.ts > lastTs) t.push(r.lag);
      if (t.length > 30) t.shift();
      trends.set(key, t);
    }
    append(rowOf(s));
    renderSummary(s);
    renderConnectors(s.connectors);
    renderLag(s.lag || []);
    renderBacklog(s.pushes);
    renderWorkers(s.workers);
    renderSupervisor(s.supervisor || []);
    renderDlq(s.dlq || {});
    redraw();
    document.body.dataset.sampled = String(s.ts);
  } catch (err) {
    document.getElementById("errors").textContent = `dashboard: ${err.message}`;
  } finally {
    setTimeout(tick, REFRESH_MS);
  }
}

async function start() {
  try {
    const h = await getJson("/api/history");
    for (const row of h.samples) append(row);
  } catch (err) {
    document.getElementById("errors").textContent = `history: ${err.message}`;
  }
  charts = [
    makeChart("plot-throughput", ["binlog events/s", "pushes done/s"], ["events_per_s", "done_per_s"]),
    makeChart("plot-lag", ["lag (messages)", "oldest unconsumed (s)"], ["lag", "lag_s"]),
    makeChart("plot-backlog", ["PENDING", "RETRY", "FAILED", "DLQ"], ["pending", "retry", "failed", "dlq"]),
  ];
  tick();
}

start();
