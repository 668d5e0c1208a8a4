// Ember dashboard: reads the API with the key the user typed, every 2 s.
"use strict";

const keyName = "ember.key";
const colors = ["#e8590c", "#1971c2", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#e03131", "#5c940d"];
let key = sessionStorage.getItem(keyName) || "";
let selected = decodeURIComponent((location.hash.match(/binding=([^&]+)/) || [])[1] || "");
let timer = null;

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function api(path, opts = {}) {
  const sent = key; // a sign-out while the request runs makes its answer stale
  const res = await fetch(path, {
    ...opts,
    headers: { "Authorization": "Bearer " + sent, ...(opts.body ? { "Content-Type": "application/json" } : {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (sent !== key) throw Object.assign(new Error("signed out"), { stale: true });
  if (res.status === 401) throw Object.assign(new Error("the API key was refused"), { unauthorized: true });
  if (!res.ok) throw new Error((body && body.message) || res.status + " " + res.statusText);
  return body;
}

function seconds(s) {
  if (!s) return "0s";
  if (s < 1) return Math.round(s * 1000) + "ms";
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + Math.round(s % 60) + "s";
  return Math.floor(s / 3600) + "h" + Math.round((s % 3600) / 60) + "m";
}
const drain = (s) => (s < 0 ? "never" : seconds(s));
const badge = (st) => el("span", { class: "badge " + st }, st);
const num = (v) => el("td", { class: "num" }, v);

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function showLogin(message) {
  clearInterval(timer);
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#key").value = "";
  $("#who").textContent = "";
  $("#updated").textContent = "";
  $("#login-error").textContent = message || "";
  $("#key").focus();
}

async function open() {
  clearInterval(timer);
  try {
    const who = await api("/v1/whoami");
    $("#who").textContent = who.admin ? "administrator" : "tenant " + who.tenant;
  } catch (e) {
    if (e.stale) return;
    sessionStorage.removeItem(keyName);
    key = "";
    showLogin(e.message);
    return;
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  await refresh();
  timer = setInterval(refresh, 2000);
}

async function refresh() {
  try {
    const st = await api("/v1/status");
    renderBindings(st.bindings || []);
    renderPool(st.occupancy || []);
    fill($("#agents tbody"), (st.agents || []).map((a) => el("tr", {}, el("td", {}, a.id), el("td", {}, new Date(a.started).toLocaleString()))));
    renderUsage(st.usage || []);
    const b = (st.bindings || []).find((x) => x.id === selected);
    if (b) await renderDetail(b);
    else $("#detail").hidden = true;
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("#error").textContent = "";
  } catch (e) {
    if (e.stale) return; // a request of the previous key
    if (e.unauthorized) return showLogin(e.message);
    $("#error").textContent = e.message;
  }
}

function renderBindings(bs) {
  $("#no-bindings").hidden = bs.length > 0;
  fill($("#bindings tbody"), bs.map((b) => {
    const l = b.lag, a = b.activity || {};
    const tr = el("tr", { "data-binding": b.id, class: b.id === selected ? "selected" : "", on: { click: () => select(b.id) } },
      el("td", {}, b.id),
      el("td", {}, b.topic + " → " + b.function),
      el("td", { class: "status" }, l ? badge(l.status) : b.lag_error || "-"),
      el("td", { class: "num lag" }, l ? l.records : "-"),
      el("td", { class: "num seconds" }, l ? seconds(l.seconds) : "-"),
      num(l ? drain(l.drain_seconds) : "-"),
      num(l ? l.consume_rate.toFixed(1) : "-"),
      num(a.invocations || 0),
      num((a.function_errors || 0) + (a.platform_errors || 0)),
      num(a.dead_lettered || 0));
    if (l && l.status !== "OK") tr.title = l.reason;
    return tr;
  }));
}

function select(id) {
  selected = id;
  location.hash = "binding=" + encodeURIComponent(id);
  $("#redrive-result").textContent = "";
  refresh();
}

async function renderDetail(b) {
  $("#detail").hidden = false;
  $("#detail-id").textContent = b.id;
  const id = encodeURIComponent(b.id);
  const [h, dl] = await Promise.all([api("/v1/bindings/" + id + "/lag?since=1h"), api("/v1/bindings/" + id + "/dlq?limit=10")]);
  const l = h.lag;
  $("#detail-status").replaceWith(Object.assign(badge(l.status), { id: "detail-status" }));
  $("#detail-reason").textContent = l.reason + " · " + l.records + " records and " + seconds(l.seconds) +
    " behind · drains in " + drain(l.drain_seconds) + " · " + l.consume_rate.toFixed(1) + " consumed/s, " + l.produce_rate.toFixed(1) + " produced/s";
  fill($("#partitions tbody"), l.partitions.map((p) => el("tr", {},
    num(p.partition), el("td", {}, badge(p.status)), num(p.end), num(p.committed), num(p.lag), num(seconds(p.seconds)),
    num(p.consume_rate.toFixed(1)), num(drain(p.drain_seconds)))));
  lagChart(h.history || []);
  latencyChart((b.activity && b.activity.event_to_start) || []);
  renderDLQ(b.id, dl.dead_letters || []);
}

function lagChart(history) {
  const W = 600, H = 180, P = 30;
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  let t0 = Infinity, t1 = -Infinity, top = 0;
  for (const ph of history) for (const p of ph.points) { t0 = Math.min(t0, p.t); t1 = Math.max(t1, p.t); top = Math.max(top, p.lag); }
  top = Math.max(top, 1);
  if (t1 <= t0) t1 = t0 + 1;
  box.append(svg("line", { x1: P, y1: H - P, x2: W - 5, y2: H - P, stroke: "#ccc" }));
  const ymax = svg("text", { x: 2, y: 12 }); ymax.textContent = top;
  const y0 = svg("text", { x: 2, y: H - P }); y0.textContent = "0";
  const span = svg("text", { x: W - 120, y: H - 8 }); span.textContent = seconds((t1 - t0) / 1000) + " shown";
  box.append(ymax, y0, span);
  const legend = [];
  history.forEach((ph, i) => {
    const c = colors[i % colors.length];
    const pts = ph.points.map((p) => [P + (p.t - t0) / (t1 - t0) * (W - P - 5), (H - P) - p.lag / top * (H - P - 15)]);
    box.append(svg("polyline", { points: pts.map((x) => x.join(",")).join(" "), fill: "none", stroke: c, "stroke-width": 1.5, "data-partition": ph.partition }));
    legend.push(el("span", {}, el("i", {}), "partition " + ph.partition));
    legend[legend.length - 1].firstChild.style.background = c;
  });
  $("#lag-chart").replaceChildren(box);
  $("#lag-legend").replaceChildren(...legend);
}

function latencyChart(buckets) {
  const W = 300, H = 180, P = 20;
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  const top = Math.max(1, ...buckets.map((b) => b.count));
  const bw = (W - 10) / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    const h = b.count / top * (H - P - 15);
    box.append(svg("rect", { x: 5 + i * bw + 1, y: H - P - h, width: bw - 2, height: h, fill: "#e8590c" }));
    const t = svg("text", { x: 5 + i * bw + 1, y: H - 6 });
    t.textContent = b.le_ms ? (b.le_ms >= 1000 ? b.le_ms / 1000 + "s" : b.le_ms) : ">";
    box.append(t);
  });
  $("#latency-chart").replaceChildren(box);
}

function renderDLQ(id, dls) {
  $("#no-dlq").hidden = dls.length > 0;
  fill($("#dlq tbody"), dls.map((d) => {
    let value = "";
    try { value = new TextDecoder().decode(Uint8Array.from(atob(d.value || ""), (c) => c.charCodeAt(0))); } catch (e) { value = "(binary)"; }
    if (value.length > 60) value = value.slice(0, 57) + "...";
    const btn = el("button", { class: "redrive", on: { click: (ev) => { ev.stopPropagation(); redrive(id, d, btn); } } }, "Redrive");
    return el("tr", { "data-offset": d.offset },
      el("td", {}, new Date(d.at).toLocaleString()),
      el("td", {}, d.topic + "/" + d.source_partition + "@" + d.source_offset),
      num(d.attempts), el("td", {}, d.reason), el("td", {}, el("code", {}, value)), el("td", {}, btn));
  }));
}

async function redrive(id, d, btn) {
  btn.disabled = true;
  const from = new Date(d.at), to = new Date(from.getTime() + 1);
  $("#redrive-result").textContent = "redriving...";
  try {
    const r = await api("/v1/bindings/" + encodeURIComponent(id) + "/redrive", { method: "POST", body: JSON.stringify({ from: from.toISOString(), to: to.toISOString() }) });
    $("#redrive-result").textContent = `redrive: ${r.scanned} read, ${r.redriven} handled, ${r.dead_lettered} failed again`;
  } catch (e) {
    $("#redrive-result").textContent = "redrive failed: " + e.message;
  } finally {
    btn.disabled = false;
  }
}

function renderPool(occ) {
  const top = Math.max(1, ...occ.map((o) => o.warm + o.active + o.busy));
  fill($("#pool tbody"), occ.map((o) => {
    const bar = el("span", { class: "bar" });
    bar.style.width = Math.round((o.warm + o.active + o.busy) / top * 120) + "px";
    return el("tr", {}, el("td", {}, o.class), num(o.warm), num(o.active), num(o.busy), num(o.waiting || 0), el("td", {}, bar));
  }));
}

function renderUsage(us) {
  fill($("#usage tbody"), us.map((u) => el("tr", {},
    el("td", {}, u.tenant + "/" + u.function), num(u.invocations), num(u.errors),
    num((u.cpu_ms / 1000).toFixed(2) + " s"), num(u.max_memory_used_mb + " MB"), num(u.gb_seconds.toFixed(4)))));
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    key = $("#key").value.trim();
    sessionStorage.setItem(keyName, key);
    open();
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(keyName);
    key = "";
    showLogin("");
  });
  if (key) open(); else showLogin("");
});
