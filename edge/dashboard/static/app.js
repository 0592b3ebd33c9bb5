// The fleet page: one tile per device, kept live by the server's /events stream (SSE).
// "state" replaces everything (the first message of every connection, and again when this
// page fell behind), "update" carries the totals, the ids removed and, per device that
// changed, a delta: its small fields, the parts that changed and the chart points added
// ("history_add"), merged into what the page has. Device data comes from the network, so
// it is only ever written with textContent, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 300;
const CHART_H = 48;
const CHART_PAD = 4;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 15000;
const STATE_LABELS = {
  online: "online", silent: "silent", offline: "offline", stopped: "stopped", unknown: "no status",
};

const page = {
  devices: new Map(), // id -> device JSON as last received
  tiles: new Map(), // id -> tile element
  fleet: null, // everything but the devices
  clockOffset: 0, // server time - browser time, seconds
  source: null,
  retryMs: RECONNECT_MIN_MS,
};

const $ = (id) => document.getElementById(id);
const field = (tile, name) => tile.querySelector(`[data-f="${name}"]`);

// -- formatting ---------------------------------------------------------------------------
function fmt(value, digits = 1, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `${Number(value).toFixed(digits)}${unit}`;
}
function fmtCount(value) {
  return value === null || value === undefined ? "—" : Number(value).toLocaleString("en-US");
}
function fmtMs(value) {
  if (value === null || value === undefined) return "—";
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(1)} ms`;
}
function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
function fmtTime(ts) {
  if (!ts) return "—";
  return new Date(ts * 1000).toLocaleTimeString("en-GB", { hour12: false });
}
function serverNow() {
  return Date.now() / 1000 + page.clockOffset;
}
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}
function show(element, visible) {
  element.hidden = !visible;
}

// -- sparkline ----------------------------------------------------------------------------
// Points are [ts, value]. The axis starts at zero, so a steady 30 fps is a flat line and a
// drop or a spike stands out; a pause longer than 2.5 median intervals breaks the line, so
// missing telemetry shows as a gap, not as a straight segment.
function drawSpark(svg, points, label) {
  const values = points.filter((p) => p[1] !== null && p[1] !== undefined);
  svg.replaceChildren();
  if (values.length === 0) {
    const empty = document.createElementNS(SVG_NS, "text");
    empty.setAttribute("x", CHART_W / 2);
    empty.setAttribute("y", CHART_H / 2 + 4);
    empty.setAttribute("class", "spark-empty");
    empty.textContent = "waiting for telemetry";
    svg.append(empty);
    setText(label, "");
    return;
  }
  const ys = values.map((p) => p[1]);
  const least = Math.min(...ys);
  const most = Math.max(...ys);
  setText(label, least === most ? fmt(most, 2) : `${fmt(least, 2)} – ${fmt(most, 2)}`);
  const lo = Math.min(0, least);
  const hi = most > lo ? lo + (most - lo) * 1.1 : lo + 1;
  const t0 = values[0][0];
  const t1 = values[values.length - 1][0];
  const span = t1 - t0 || 1;
  const steps = values.slice(1).map((p, i) => p[0] - values[i][0]).sort((a, b) => a - b);
  const typical = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
  const x = (t) => (values.length === 1 ? CHART_W : ((t - t0) / span) * CHART_W);
  const y = (v) => CHART_H - CHART_PAD - ((v - lo) / (hi - lo)) * (CHART_H - 2 * CHART_PAD);
  let line = "";
  let area = "";
  let runStart = null;
  values.forEach((p, i) => {
    const broken = i > 0 && typical > 0 && p[0] - values[i - 1][0] > 2.5 * typical;
    const px = x(p[0]).toFixed(1);
    const py = y(p[1]).toFixed(1);
    if (i === 0 || broken) {
      if (runStart !== null) area += `L${x(values[i - 1][0]).toFixed(1)},${CHART_H}L${runStart},${CHART_H}Z`;
      line += `M${px},${py}`;
      area += `M${px},${CHART_H}L${px},${py}`;
      runStart = px;
    } else {
      line += `L${px},${py}`;
      area += `L${px},${py}`;
    }
  });
  area += `L${x(t1).toFixed(1)},${CHART_H}L${runStart},${CHART_H}Z`;
  const fill = document.createElementNS(SVG_NS, "path");
  fill.setAttribute("d", area);
  fill.setAttribute("class", "spark-area");
  const stroke = document.createElementNS(SVG_NS, "path");
  stroke.setAttribute("d", line);
  stroke.setAttribute("class", "spark-line");
  stroke.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(fill, stroke);
}

// -- tiles --------------------------------------------------------------------------------
function tileFor(id) {
  let tile = page.tiles.get(id);
  if (tile) return tile;
  tile = $("tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.device = id;
  setText(field(tile, "id"), id);
  page.tiles.set(id, tile);
  const ids = [...page.tiles.keys()].sort();
  const next = ids[ids.indexOf(id) + 1];
  $("tiles").insertBefore(tile, next ? page.tiles.get(next) : null);
  return tile;
}

function modelLine(info) {
  if (!info) return "waiting for info";
  const parts = [];
  parts.push(info.model ? `${info.model}${info.version ? ` v${info.version}` : ""}` : "no model");
  if (info.delegate) parts.push(`on ${info.delegate}${info.fell_back ? " (fell back)" : ""}`);
  if (info.backend) parts.push(info.backend);
  if (info.profile) parts.push(`profile ${info.profile}`);
  if (info.sha256) parts.push(`sha ${info.sha256}`);
  return parts.join(" · ");
}

// [what, detail]: "7" and "93 %" for a classification, "2 boxes" and the labels, ...
function eventText(event) {
  const labels = event.labels || [];
  const score = event.scores && event.scores[0];
  const where = event.stream ? `${event.stream}: ` : "";
  if (event.type === "new" || event.type === "update" || event.type === "end") {
    return [`${where}${labels[0] || "object"} ${event.type}`, score ? `best ${(score * 100).toFixed(0)} %` : ""];
  }
  if (event.type === "change") return [`${where}${labels.join(", ") || "nothing"}`, "changed"];
  if (event.anomaly !== null && event.anomaly !== undefined) {
    return [event.anomaly ? "anomaly" : "normal", event.value !== null ? `score ${fmt(event.value, 3)}` : ""];
  }
  if (event.boxes > 0) {
    return [`${event.boxes} box${event.boxes === 1 ? "" : "es"}`, labels.join(", ")];
  }
  if (labels.length > 0) {
    return [labels[0], score !== null && score !== undefined ? `${(score * 100).toFixed(0)} %` : ""];
  }
  if (event.value !== null && event.value !== undefined) return [fmt(event.value, 3), "value"];
  return [event.task || "result", ""];
}

function fillList(list, items, render) {
  const rows = items.map((item) => {
    const li = document.createElement("li");
    for (const [cls, text] of render(item)) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    return li;
  });
  list.replaceChildren(...rows);
}

function seqSummary(device) {
  const kinds = Object.entries(device.seq || {});
  const details = kinds
    .filter(([, t]) => t.gaps || t.duplicates || t.resets)
    .map(([kind, t]) => {
      const bits = [];
      if (t.gaps) bits.push(`${t.gaps} gap${t.gaps === 1 ? "" : "s"} (${t.missing} missing${t.last_gap ? `, last ${t.last_gap[0]} → ${t.last_gap[1]}` : ""})`);
      if (t.duplicates) bits.push(`${t.duplicates} duplicate${t.duplicates === 1 ? "" : "s"} ignored`);
      if (t.resets) bits.push(`${t.resets} counter reset${t.resets === 1 ? "" : "s"}`);
      return `${kind}: ${bits.join(", ")}`;
    });
  return details.join("\n");
}

function renderDevice(device) {
  const tile = tileFor(device.id);
  const t = device.telemetry || {};
  tile.dataset.state = device.state;
  setText(field(tile, "state"), STATE_LABELS[device.state] || device.state);
  const model = field(tile, "model");
  setText(model, modelLine(device.info));
  model.title = model.textContent;

  const gapBadge = field(tile, "gap-badge");
  show(gapBadge, device.gaps > 0);
  setText(gapBadge, `seq gap${device.gaps === 1 ? "" : "s"} ${device.gaps} · ${device.missing} missing`);
  gapBadge.title = seqSummary(device);

  // the statistics a drift event said are high (and no normal since), highest PSI first
  const highs = Object.entries((device.drift && device.drift.high) || {})
    .sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0));
  const driftBadge = field(tile, "drift-badge");
  show(driftBadge, highs.length > 0);
  setText(driftBadge, highs.length ? `drift: ${highs.map(([s]) => s).join(", ")}` : "");
  driftBadge.title = highs.map(([s, psi]) => `${s}: PSI ${fmt(psi, 3)}`).join("\n");

  // degraded or failing: the badge, and the device's reasons in full below the badges
  const health = t.health;
  const unhealthy = !!(health && health.status && health.status !== "ok");
  const healthBadge = field(tile, "health-badge");
  show(healthBadge, unhealthy);
  if (health) {
    setText(healthBadge, health.status || "");
    healthBadge.title = (health.reasons || []).join("\n");
    healthBadge.dataset.level = health.status || "";
  }
  const reasons = field(tile, "reasons");
  const reasonList = unhealthy ? (health.reasons || []).filter((r) => r) : [];
  show(reasons, reasonList.length > 0);
  reasons.dataset.level = unhealthy ? health.status : "";
  if (reasons.textContent !== reasonList.join("")) {
    reasons.replaceChildren(...reasonList.map((reason) => {
      const li = document.createElement("li");
      li.textContent = reason;
      return li;
    }));
  }

  setText(field(tile, "fps"), fmt(t.fps, 1));
  setText(field(tile, "p95"), fmtMs(t.p95_ms));
  setText(field(tile, "processed"), fmtCount(t.processed));
  const dropped = field(tile, "dropped");
  setText(dropped, fmtCount(t.dropped));
  dropped.classList.toggle("warn", (t.dropped || 0) > 0);
  setText(field(tile, "cpu"), fmt(t.cpu_percent, 0, " %"));
  setText(field(tile, "temperature"), fmt(t.temperature_c, 1, " °C"));
  const psis = Object.entries(t.drift || {}).filter(([, v]) => v !== null);
  const worst = psis.sort((a, b) => b[1] - a[1])[0];
  const drift = field(tile, "drift");
  setText(drift, worst ? `${fmt(worst[1], 3)}` : "—");
  drift.title = worst ? `${worst[0]} (of ${psis.length} statistics)` : "no drift statistics yet";
  drift.classList.toggle("warn", highs.length > 0);
  setText(field(tile, "uptime"), fmtDuration(t.uptime_s));

  const invalidBadge = field(tile, "invalid-badge");
  show(invalidBadge, device.invalid > 0);
  setText(invalidBadge, `${device.invalid} invalid payload${device.invalid === 1 ? "" : "s"}`);
  invalidBadge.title = device.last_invalid || "";
  show(field(tile, "flags"), [gapBadge, driftBadge, healthBadge, invalidBadge].some((b) => !b.hidden));

  const history = device.history || [];
  drawSpark(field(tile, "fps-chart"), history.map((p) => [p[0], p[1]]), field(tile, "fps-range"));
  drawSpark(field(tile, "p95-chart"), history.map((p) => [p[0], p[2]]), field(tile, "p95-range"));

  const events = field(tile, "events");
  fillList(events, device.events || [], (e) => {
    const [what, detail] = eventText(e);
    return [
      ["ev-seq", `#${e.seq}`], ["ev-what", what], ["ev-detail", detail],
      ["ev-lat", e.latency_ms !== null ? fmtMs(e.latency_ms) : ""], ["ev-time", fmtTime(e.ts)],
    ];
  });
  if (!(device.events || []).length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "no events yet";
    events.replaceChildren(li);
  }
  // per stream: state, camera / process / skipped fps, drops (telemetry's streams)
  const streams = Object.entries((t && t.streams) || {});
  show(field(tile, "streams-box"), streams.length > 0);
  fillList(field(tile, "streams"), streams, ([name, s]) => [
    ["ev-seq", name], ["ev-what", s.state || "?"],
    ["ev-detail", `camera ${fmt(s.camera_fps, 1)} · process ${fmt(s.process_fps, 1)} · skipped ${fmt(s.skipped_fps, 1)} fps · ${s.dropped ?? 0} dropped`],
    ["ev-lat", s.detection_fps ? `${fmt(s.detection_fps, 1)} det/s` : ""],
    ["ev-time", s.last_error && s.state !== "running" ? s.last_error : ""],
  ]);
  const driftEvents = (device.drift && device.drift.events) || [];
  const driftList = field(tile, "drift-events");
  show(driftList, driftEvents.length > 0);
  fillList(driftList, driftEvents.slice(0, 2), (d) => [
    ["ev-seq", "drift"], ["ev-what", `${d.statistic} ${d.state}`],
    ["ev-detail", `PSI ${fmt(d.psi, 3)}, threshold ${fmt(d.threshold, 2)}`],
    ["ev-lat", ""], ["ev-time", fmtTime(d.ts)],
  ]);

  const extras = [];
  if (device.feedback && device.feedback.count) {
    const last = device.feedback.last;
    extras.push(`${device.feedback.count} feedback${last && last.reason ? ` (last: ${last.reason.replace("_", " ")})` : ""}`);
  }
  if (device.snapshots && device.snapshots.count) extras.push(`${device.snapshots.count} snapshot(s)`);
  const result = (device.results || [])[0];
  if (result) extras.push(`cmd ${result.command}: ${result.ok ? "ok" : `failed${result.error ? ` (${result.error})` : ""}`}`);
  const extrasEl = field(tile, "extras");
  setText(extrasEl, extras.join(" · "));
  extrasEl.title = extrasEl.textContent;

  const seq = field(tile, "seq");
  const telemetrySeq = device.seq && device.seq.telemetry ? device.seq.telemetry.last : null;
  const dups = device.duplicates ? ` · ${device.duplicates} dup` : "";
  setText(seq, `telemetry seq ${telemetrySeq ?? "—"}${dups}`);
  seq.title = seqSummary(device) || "no gaps, no duplicates";
  tick(device, tile);
}

// The parts that move with the clock: "last seen 3 s ago", the silent and offline marks.
function tick(device, tile) {
  const now = serverNow();
  const heard = device.heard_at;
  setText(field(tile, "seen"), heard ? `last seen ${fmtDuration(now - heard)} ago` : "not heard since the dashboard started");
  const mark = field(tile, "mark");
  let text = "";
  if (device.state === "offline") {
    text = device.status_at
      ? `Offline since ${fmtTime(device.status_at)}: its connection was lost (the broker sent its last will).`
      : "Offline before the dashboard started: its connection was lost (last will).";
  } else if (device.state === "stopped") {
    text = device.status_at
      ? `Stopped cleanly at ${fmtTime(device.status_at)}.`
      : "Stopped cleanly before the dashboard started.";
  } else if (device.state === "silent") {
    const since = Math.max(heard || 0, (page.fleet && page.fleet.broker.since) || 0);
    text = `Silent: nothing received for ${fmtDuration(now - since)} (limit ${fmtDuration(device.silent_after_s)}).`;
  }
  show(mark, text !== "");
  setText(mark, text);
}

// -- fleet header -------------------------------------------------------------------------
function renderFleet() {
  const fleet = page.fleet;
  const totals = fleet.totals;
  const broker = fleet.broker;
  setText($("subscription"), `${fleet.base_topic}/+/#`);
  setText($("empty-topic"), `${fleet.base_topic}/+/#`);
  const parts = [`${totals.devices} device${totals.devices === 1 ? "" : "s"}`, `${totals.online} online`];
  if (totals.silent) parts.push(`${totals.silent} silent`);
  if (totals.offline) parts.push(`${totals.offline} offline`);
  if (totals.stopped) parts.push(`${totals.stopped} stopped`);
  setText($("summary"), parts.join(" · "));
  const brokerPill = $("broker");
  brokerPill.dataset.ok = String(broker.connected);
  setText(brokerPill, `broker ${broker.address || ""} ${broker.connected ? "connected" : broker.detail}`.replace(/\s+/g, " "));
  const banner = $("banner");
  show(banner, !broker.connected);
  setText(banner, broker.connected ? "" : `MQTT: ${broker.detail}. The tiles show the last known state.`);
  show($("empty"), totals.devices === 0);
  const foot = [`${fmtCount(totals.messages)} messages`];
  foot.push(`${fmtCount(totals.duplicates)} duplicates ignored`);
  foot.push(`${fmtCount(totals.invalid)} invalid payloads`);
  foot.push(`${fmtCount(totals.ignored)} other topics ignored`);
  if (totals.long_ids) foot.push(`${fmtCount(totals.long_ids)} with too long a device id dropped`);
  if (totals.oversized) foot.push(`${fmtCount(totals.oversized)} oversized payloads dropped`);
  if (totals.evicted) foot.push(`${fmtCount(totals.evicted)} devices evicted (table full)`);
  if (totals.refused) foot.push(`${fmtCount(totals.refused)} from new devices refused (table full)`);
  const footEl = $("foot");
  setText(footEl, foot.join(" · "));
  footEl.title = totals.last_invalid ? `last invalid: ${totals.last_invalid.topic}: ${totals.last_invalid.reason}` : "";
}

function removeDevice(id) {
  const tile = page.tiles.get(id);
  if (tile) tile.remove();
  page.tiles.delete(id);
  page.devices.delete(id);
}

// a device's delta onto what the page has: the chart gets the new points, the last
// history_size kept; every other field given replaces the page's
function merge(known, delta, historySize) {
  const { history_add: added, ...fields } = delta;
  const device = { ...(known || {}), ...fields };
  if (added) device.history = ((known && known.history) || []).concat(added).slice(-historySize);
  return device;
}

function apply(message, full) {
  page.clockOffset = message.now - Date.now() / 1000;
  const { devices, removed, ...fleet } = message;
  page.fleet = fleet;
  if (full) {
    for (const id of [...page.tiles.keys()]) if (!(id in devices)) removeDevice(id);
  }
  for (const id of removed || []) removeDevice(id);
  for (const [id, delta] of Object.entries(devices)) {
    const device = full ? delta : merge(page.devices.get(id), delta, message.history_size);
    page.devices.set(id, device);
    renderDevice(device);
  }
  renderFleet();
}

// -- the live stream ----------------------------------------------------------------------
function setLive(ok, text) {
  const pill = $("live");
  pill.dataset.ok = String(ok);
  setText(pill, text);
}

function connect() {
  const source = new EventSource("events");
  page.source = source;
  source.addEventListener("state", (e) => {
    page.retryMs = RECONNECT_MIN_MS;
    setLive(true, "live");
    show($("banner"), false);
    apply(JSON.parse(e.data), true);
  });
  source.addEventListener("update", (e) => apply(JSON.parse(e.data), false));
  source.addEventListener("error", () => {
    setLive(false, "reconnecting");
    const banner = $("banner");
    show(banner, true);
    setText(banner, "The dashboard server is not answering; reconnecting. The tiles show the last known state.");
    if (source.readyState === EventSource.CLOSED) {
      // the browser gave up (an HTTP error while the server restarted): start again
      source.close();
      setTimeout(connect, page.retryMs);
      page.retryMs = Math.min(page.retryMs * 2, RECONNECT_MAX_MS);
    }
  });
}

setInterval(() => {
  for (const [id, device] of page.devices) tick(device, page.tiles.get(id));
}, 1000);
connect();
