// citygate dashboard: polls the local API and renders devices, alarms, events and a
// history chart (Dygraphs, served locally from Debian's libjs-dygraphs).
"use strict";

const state = { devices: [], alarms: [], chart: null, chartKey: "" };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// With a token configured the page is opened as /?token=…; every call carries it.
const token = new URLSearchParams(location.search).get("token");
const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store", headers: authHeaders });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, "");
  return String(v);
}

function renderDevices() {
  const box = document.getElementById("devices");
  const alarmed = new Set(state.alarms.map(a => (a.device && a.device.id) || String(a.id || "").split("/")[0]));
  const byKind = {};
  for (const d of state.devices) (byKind[d.kind] = byKind[d.kind] || []).push(d);
  box.replaceChildren();
  for (const kind of Object.keys(byKind).sort()) {
    const cards = el("div", { class: "cards" });
    for (const d of byKind[kind]) {
      const vals = el("div", { class: "vals" });
      for (const [f, v] of Object.entries(d.values || {})) {
        vals.append(el("span", { class: v.quality === "good" ? "" : "bad", title: v.quality },
          `${f}=${fmt(v.value)}${v.unit ? " " + v.unit : ""}  `));
      }
      const card = el("div", {
        class: `card ${d.health}${alarmed.has(d.id) ? " alarm" : ""}`, "data-device": d.id,
        onclick: () => selectChart(d.id),
      }, el("div", { class: "id" }, d.id, " ", el("span", { class: "muted" }, d.health)), vals);
      cards.append(card);
    }
    box.append(el("div", { class: "kind" }, el("h3", {}, `${kind} (${byKind[kind].length})`), cards));
  }
}

async function sendCommand(verb, alarmId) {
  const body = { request_id: `ui-${Date.now()}-${Math.floor(Math.random() * 1e6)}`, alarm: alarmId, user: "dashboard" };
  const r = await fetch(`/api/cmd/${verb}`, { method: "POST", headers: { "Content-Type": "application/json", ...authHeaders }, body: JSON.stringify(body) });
  const reply = await r.json().catch(() => ({}));
  if (!r.ok || reply.ok === false) alert(`${verb} failed: ${reply.error || r.status}`);
  refresh();
}

function renderAlarms() {
  const tbody = document.querySelector("#alarms tbody");
  tbody.replaceChildren();
  document.getElementById("alarm-count").textContent = state.alarms.length;
  document.getElementById("no-alarms").style.display = state.alarms.length ? "none" : "";
  for (const a of state.alarms) {
    const id = a.id || (a.alarm && a.alarm.id);
    const sev = a.severity || (a.alarm && a.alarm.severity) || "";
    const st = a.state || (a.alarm && a.alarm.state) || "";
    const problem = a.problem ? `${a.problem.code || ""} ${a.problem.name || ""}` : "";
    const comp = a.component ? (a.component.code || "") : "";
    const since = a.active_since || (a.alarm && a.alarm.active_since) || "";
    const ack = st.includes("unack") ? el("button", { class: "ack", "data-alarm": id, onclick: () => sendCommand("ack", id) }, "Acknowledge") : "";
    tbody.append(el("tr", { "data-alarm": id }, el("td", { class: `sev sev-${sev}` }, sev), el("td", {}, id),
      el("td", {}, st), el("td", {}, problem), el("td", {}, comp), el("td", {}, since), el("td", {}, ack)));
  }
}

function renderEvents(events) {
  const ol = document.getElementById("events");
  ol.replaceChildren();
  for (const e of events.slice(0, 30)) {
    const a = e.alarm || {};
    ol.append(el("li", {}, `${e.ts || ""}  #${e.seq}  ${e.type}  ${a.id || ""}  ${a.severity || ""}`));
  }
}

function fillChartSelectors() {
  const devSel = document.getElementById("chart-device");
  if (devSel.options.length !== state.devices.length) {
    const cur = devSel.value;
    devSel.replaceChildren(...state.devices.map(d => el("option", { value: d.id }, d.id)));
    if (cur) devSel.value = cur;
  }
  const dev = state.devices.find(d => d.id === devSel.value) || state.devices[0];
  const fieldSel = document.getElementById("chart-field");
  const fields = dev ? Object.keys(dev.values || {}) : [];
  if ([...fieldSel.options].map(o => o.value).join() !== fields.join()) {
    const cur = fieldSel.value;
    fieldSel.replaceChildren(...fields.map(f => el("option", { value: f }, f)));
    if (fields.includes(cur)) fieldSel.value = cur;
  }
}

function selectChart(deviceId) {
  document.getElementById("chart-device").value = deviceId;
  fillChartSelectors();
  drawChart();
}

async function drawChart() {
  const device = document.getElementById("chart-device").value;
  const field = document.getElementById("chart-field").value;
  const minutes = document.getElementById("chart-minutes").value;
  const note = document.getElementById("chart-note");
  if (!device || !field) return;
  let h;
  try {
    h = await getJSON(`/api/history?device=${encodeURIComponent(device)}&field=${encodeURIComponent(field)}&minutes=${minutes}`);
  } catch (e) { note.textContent = "no history yet"; return; }
  const data = h.points.map(p => [new Date(p[0]), p[1]]);
  note.textContent = `${device} ${field} (${h.unit || ""}), ${data.length} points`;
  if (typeof Dygraph === "undefined") { note.textContent += " — chart library missing (install libjs-dygraphs)"; return; }
  if (!data.length) return;
  const key = `${device}/${field}`;
  if (state.chart && state.chartKey === key) {
    state.chart.updateOptions({ file: data });
  } else {
    if (state.chart) state.chart.destroy();
    state.chart = new Dygraph(document.getElementById("chart"), data,
      { labels: ["time", `${field}${h.unit ? " (" + h.unit + ")" : ""}`], legend: "always", drawPoints: true, strokeWidth: 1.5 });
    state.chartKey = key;
  }
}

async function refresh() {
  try {
    const [devices, alarms, events] = await Promise.all([getJSON("/api/devices"), getJSON("/api/alarms"), getJSON("/api/events?limit=30")]);
    state.devices = devices; state.alarms = alarms;
    const counts = {};
    for (const d of devices) counts[d.health] = (counts[d.health] || 0) + 1;
    document.getElementById("summary").replaceChildren(
      el("span", {}, `${devices.length} devices`),
      ...Object.entries(counts).map(([k, v]) => el("span", {}, `${v} ${k}`)),
      el("span", {}, `${alarms.length} active alarms`));
    renderAlarms(); renderDevices(); renderEvents(events); fillChartSelectors(); drawChart();
    document.body.dataset.loaded = "1";
  } catch (e) {
    document.getElementById("summary").textContent = "gateway unreachable: " + e.message;
  }
}

document.getElementById("chart-device").addEventListener("change", () => { fillChartSelectors(); drawChart(); });
document.getElementById("chart-field").addEventListener("change", drawChart);
document.getElementById("chart-minutes").addEventListener("change", drawChart);
refresh();
setInterval(refresh, 2000);
