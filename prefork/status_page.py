"""The status page (/status asked for as HTML on the admin listener): one static document
whose script reads /status as JSON every second and draws it. Requests/s, latency
(p50, p95, p99 and the mean, from status_history), 4xx and 5xx responses/s, each with
labelled axes and the timeline's events marked on it; the worker table; the timeline.

Served by the master's admin listener (admin.py); nothing here runs in Python per request.
Each chart's <svg> carries data-max and data-points (what it drew), and the totals line
carries the figures /metrics reports, for tests/integration/test_admin.py to compare.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prefork status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; } .muted { color: #777; }
table { border-collapse: collapse; margin-top: .5rem; }
th, td { padding: .2rem .7rem; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; } td.text { text-align: left; }
.charts { display: flex; gap: 1.2rem; flex-wrap: wrap; margin-top: .8rem; }
figure { margin: 0; } figcaption { font-weight: 600; }
.key { font-weight: 400; font-size: 12px; margin-left: .5rem; }
.key i { display: inline-block; width: 12px; height: 3px; margin: 0 3px 3px 8px; }
svg { background: #fcfcfc; border: 1px solid #ddd; }
svg text { font-size: 10px; fill: #555; }
.kind-start { color: #0a6; } .kind-exit { color: #b00; } .kind-retire { color: #c80; }
.kind-reload { color: #36c; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 0; }
</style></head><body>
<h1>prefork <span id="version"></span> <span class="muted" id="summary"></span></h1>
<div id="totals" class="muted">requests <b id="requests-total">0</b>,
 4xx <b id="errors-4xx-total">0</b>, 5xx <b id="errors-5xx-total">0</b>
 (error rate <b id="error-rate">0</b>% of the last minute's responses),
 worker restarts <b id="restarts-total">0</b></div>
<div class="charts">
 <figure><figcaption>Requests <span class="key" id="rps-key"></span></figcaption>
  <svg id="rps" width="460" height="190" data-max="0" data-points="0"></svg></figure>
 <figure><figcaption>Latency <span class="key" id="lat-key"></span></figcaption>
  <svg id="lat" width="460" height="190" data-max="0" data-points="0"></svg></figure>
 <figure><figcaption>Errors <span class="key" id="err-key"></span></figcaption>
  <svg id="err" width="460" height="190" data-max="0" data-points="0"></svg></figure>
</div>
<h2>Workers</h2>
<table><thead><tr><th>worker</th><th>pid</th><th>state</th><th>age s</th><th>requests</th>
<th>busy</th><th>conns</th><th>RSS MiB</th><th>CPU s</th><th>last restart</th></tr></thead>
<tbody id="workers"></tbody></table>
<h2>Timeline <span class="muted key">worker starts, retirements, ends and reloads,
newest first (marked on the charts)</span></h2>
<table><thead><tr><th>time</th><th>event</th><th>what</th></tr></thead>
<tbody id="events"></tbody></table>
<p class="muted">Refreshed every second from <a href="/status">/status</a>
(JSON with Accept: application/json); metrics at <a href="/metrics">/metrics</a>.</p>
<script>
const EVENT_COLOURS = {start: "#0a6", exit: "#b00", retire: "#c80", reload: "#36c"};
const NS = "http://www.w3.org/2000/svg";
function el(parent, name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  parent.appendChild(e); return e;
}
function nice(max) {  // a round top for the y axis, and its step
  const raw = Math.max(max, 1e-9) / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw);
  return [step * Math.ceil(Math.max(max, 1e-9) / step), step];
}
function ago(s) { return s >= 60 ? "-" + (s / 60).toFixed(s % 60 ? 1 : 0) + " min" :
                         s >= 10 ? "-" + s.toFixed(0) + " s" :
                         s >= 0.05 ? "-" + s.toFixed(1) + " s" : "now"; }
function tick(v) { return String(Number(v.toPrecision(3))); }  // 0.25, 1, 300, 12000
// series: [{name, colour, values, dash}], times: wall seconds, unit: the y axis's label
function chart(id, series, times, unit, events, digits) {
  const svg = document.getElementById(id), W = +svg.getAttribute("width"),
        H = +svg.getAttribute("height"), L = 52, R = 10, T = 10, B = 30;
  const all = series.flatMap(s => s.values), max = Math.max(0, ...all);
  svg.dataset.max = max.toFixed(3); svg.dataset.points = String(times.length);
  svg.replaceChildren();
  const [top, step] = nice(max), t0 = times.length ? times[0] : 0,
        t1 = times.length ? times[times.length - 1] : 1, span = Math.max(t1 - t0, 1);
  const x = t => L + (t - t0) / span * (W - L - R), y = v => H - B - v / top * (H - T - B);
  for (let v = 0; v <= top + 1e-9; v += step) {
    el(svg, "line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e4e4e4"});
    el(svg, "text", {x: L - 4, y: y(v) + 3, "text-anchor": "end"}, tick(v));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + span * i / 4;
    el(svg, "text", {x: x(t), y: H - B + 13, "text-anchor": "middle"}, ago(t1 - t));
  }
  el(svg, "text", {x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle"}, "time");
  el(svg, "text", {x: 11, y: (T + H - B) / 2, "text-anchor": "middle",
                   transform: "rotate(-90 11 " + (T + H - B) / 2 + ")"}, unit);
  el(svg, "line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#999"});
  el(svg, "line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#999"});
  for (const e of events) {
    if (e.time < t0 || e.time > t1) continue;
    el(svg, "line", {x1: x(e.time), x2: x(e.time), y1: T, y2: H - B, "class": "event",
                     stroke: EVENT_COLOURS[e.kind], "stroke-dasharray": "3 3"});
  }
  for (const s of series) {
    if (!s.values.length) continue;
    el(svg, "polyline", {fill: "none", stroke: s.colour, "stroke-width": 1.6,
      "stroke-dasharray": s.dash || "", "data-series": s.name,
      points: s.values.map((v, i) => x(times[i]).toFixed(1) + "," + y(v).toFixed(1)).join(" ")});
  }
  document.getElementById(id + "-key").innerHTML = series.map(s =>
    '<i style="background:' + s.colour + '"></i>' + s.name + " " +
    (s.values.length ? s.values[s.values.length - 1].toFixed(digits) : "-")).join("");
}
function cell(tr, v, cls) {
  const td = document.createElement("td"); td.textContent = v;
  if (cls) td.className = cls; tr.appendChild(td);
}
async function refresh() {
  try {
    const s = await (await fetch("/status", {headers: {Accept: "application/json"}})).json();
    document.getElementById("version").textContent = s.version;
    document.getElementById("summary").textContent = "master " + s.pid + ", " + s.target +
      " workers x " + s.threads + " threads, " + s.in_flight + " in flight" +
      (s.draining ? ", DRAINING" : "");
    document.getElementById("requests-total").textContent = s.requests_total;
    document.getElementById("errors-4xx-total").textContent = s.errors_total["4xx"];
    document.getElementById("errors-5xx-total").textContent = s.errors_total["5xx"];
    document.getElementById("restarts-total").textContent =
      Object.values(s.restarts).reduce((a, b) => a + b, 0);
    const h = s.history, col = i => h.map(p => p[i]), times = col(0);
    const minute = h.slice(-60), sum = i => minute.reduce((a, p) => a + p[i], 0);
    document.getElementById("error-rate").textContent =
      (sum(1) ? (sum(6) + sum(7)) / sum(1) * 100 : 0).toFixed(2);
    chart("rps", [{name: "requests/s", colour: "#0a6", values: col(1)}], times,
          "requests/s", s.events, 0);
    chart("lat", [{name: "p50", colour: "#36c", values: col(3)},
                  {name: "p95", colour: "#c80", values: col(4)},
                  {name: "p99", colour: "#b00", values: col(5)},
                  {name: "mean", colour: "#777", values: col(2), dash: "4 3"}], times,
          "latency, ms", s.events, 1);
    chart("err", [{name: "4xx/s", colour: "#c80", values: col(6)},
                  {name: "5xx/s", colour: "#b00", values: col(7)}], times,
          "responses/s", s.events, 1);
    document.getElementById("workers").replaceChildren(...s.workers.map(w => {
      const tr = document.createElement("tr");
      [w.number, w.pid, w.state, w.age_s.toFixed(0), w.requests, w.busy_threads,
       w.connections, (w.rss / 1048576).toFixed(1), w.cpu.toFixed(1),
       w.last_restart_cause || "-"].forEach(v => cell(tr, v));
      return tr; }));
    document.getElementById("events").replaceChildren(...s.events.slice(-20).reverse().map(e => {
      const tr = document.createElement("tr");
      cell(tr, new Date(e.time * 1000).toLocaleTimeString());
      cell(tr, e.kind, "kind-" + e.kind); cell(tr, e.text, "text");
      return tr; }));
  } catch (e) { document.getElementById("summary").textContent = "unreachable: " + e; }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
