// The operator's screen: tiles from server-sent events. Plain JS, no build, no fetches
// from anywhere but this station.
"use strict";
const S = JSON.parse(document.getElementById("strings").textContent);
function t(key, vars) {
  let s = S[key] !== undefined ? S[key] : key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}
const $ = (id) => document.getElementById(id);
const views = new Map();      // slot -> last view (by seq)
const tiles = new Map();      // slot -> tile elements

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function post(path, body) {
  let resp, data = {};
  try {
    resp = await fetch(path, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Fotabench-Action": "1"},
      body: JSON.stringify(body || {})});
    data = await resp.json().catch(() => ({}));
  } catch (e) {
    notice(t("disconnected"), "bad");
    return null;
  }
  if (!resp.ok) {
    const key = "err." + (data.code || "");
    notice(S[key] !== undefined ? t(key, body) : (data.error || resp.statusText), "warn");
    return null;
  }
  return data;
}

let noticeTimer = null;
function notice(text, kind) {
  const n = $("notice");
  n.textContent = text;
  n.className = "banner" + (kind === "bad" ? " banner-bad" : kind === "ok" ? " banner-ok" : "");
  n.hidden = false;
  clearTimeout(noticeTimer);
  // A refusal stays longer than a confirmation: the operator must read it.
  noticeTimer = setTimeout(() => { n.hidden = true; }, kind === "ok" ? 4000 : 12000);
}

function makeTile(slot) {
  const root = el("section", "tile");
  root.id = "tile-" + slot;
  root.dataset.slot = slot;
  const head = el("div", "tile-head");
  const name = el("span", "slot-name", slot);
  const model = el("span", "model sub");
  head.append(name, model);
  const ident = el("div", "ident");
  const mismatch = el("div", "mismatch");
  const status = el("div", "status");
  const state = el("div", "state sub");
  const bar = el("div", "bar"); const fill = el("div"); bar.append(fill);
  const barText = el("div", "bar-text sub");
  const gap = el("div", "gap sub");
  const result = el("div", "result");
  const reason = el("div", "reason");
  const actions = el("div", "tile-actions");
  const start = el("button", "btn btn-go start", t("start"));
  const stop = el("button", "btn btn-stop stop", t("stop"));
  start.type = stop.type = "button";
  start.addEventListener("click", () => {
    start.disabled = true;    // one click, one run (the server refuses a second too)
    post("/api/start", {slot}).then(focusScan);
  });
  stop.addEventListener("click", () => { post("/api/stop", {slot}).then(focusScan); });
  actions.append(start, stop);
  root.append(head, ident, mismatch, status, state, bar, barText, gap, result, reason, actions);
  $("tiles").append(root);
  const parts = {root, model, ident, mismatch, status, state, bar, fill, barText, gap, result, reason,
                 start, stop};
  tiles.set(slot, parts);
  return parts;
}

function renderSlot(v) {
  const old = views.get(v.slot);
  if (old && old.seq > v.seq) return;            // a late, older push
  views.set(v.slot, v);
  const p = tiles.get(v.slot) || makeTile(v.slot);
  const done = !v.running && v.outcome;
  p.root.className = "tile" + (v.running ? " running" : "") + (done ? " " + v.outcome : "");
  p.root.dataset.outcome = done ? v.outcome : "";
  p.root.dataset.running = v.running ? "1" : "";
  p.model.textContent = v.model + (v.virtual ? " · " + t("virtual") : "");
  const id = [];
  if (v.serial && v.serial !== v.imei) id.push(v.serial);
  if (v.imei) id.push("IMEI " + v.imei);
  if (v.version_from) id.push(v.version_from + (v.version_to ? " → " + v.version_to : ""));
  p.ident.textContent = id.join("\n");
  // A scanned IMEI that is not the module's: the label and the slot do not match.
  const wrong = /^[0-9]{15}$/.test(v.serial || "") && v.imei && v.imei !== v.serial;
  p.mismatch.hidden = !wrong;
  p.mismatch.textContent = wrong ? t("imei_mismatch", {scanned: v.serial}) : "";
  if (done) {
    p.status.textContent = "";
  } else if (v.running) {
    p.status.textContent = v.phase ? t("phase." + v.phase) : t("starting");
  } else {
    p.status.textContent = t("idle");
  }
  p.state.textContent = done ? "" : (v.state || "") + (v.attempt > 1 ? "  " + t("attempt", {n: v.attempt}) : "");
  const pct = v.percent === null || v.percent === undefined ? null : v.percent;
  p.bar.hidden = done || pct === null;
  p.fill.style.width = (pct || 0) + "%";
  const bt = [];
  if (pct !== null && !done) bt.push(pct + " %");
  if (v.bytes_served && !done) bt.push(t("served", {kb: (v.bytes_served / 1000).toFixed(1)}));
  p.barText.textContent = bt.join("  ");
  if (v.gap_ms !== null && v.gap_ms !== undefined) {
    p.gap.textContent = t("watchdog_gap", {ms: Math.round(v.gap_ms)});
    p.gap.className = "gap sub" + (v.gap_ms >= 1600 ? " gap-bad" : v.gap_ms >= 1067 ? " gap-warn" : "");
  } else {
    p.gap.textContent = "";
  }
  p.result.textContent = done ? t(v.outcome) : "";
  p.reason.textContent = done && v.outcome !== "pass" ? v.reason : "";
  p.start.disabled = !!v.running;
  p.stop.disabled = !v.running;
}

function renderSummary(s) {
  $("y-tested").textContent = s.tested;
  $("y-passed").textContent = s.passed;
  $("y-yield").textContent = s.tested ? (100 * s.passed / s.tested).toFixed(1) + " %" : "–";
  $("db-error").hidden = !s.db_error;
  $("db-error").textContent = s.db_error ? t("db_error", {error: s.db_error}) : "";
  const body = $("last").tBodies[0];
  body.textContent = "";
  if (!s.last.length) {
    const tr = el("tr"); const td = el("td", "sub", t("no_results")); td.colSpan = 5;
    tr.append(td); body.append(tr);
  }
  for (const r of s.last) {
    const tr = el("tr");
    const time = r.end_utc ? new Date(r.end_utc).toLocaleTimeString(document.documentElement.lang) : "";
    tr.append(el("td", "", time), el("td", "", r.slot), el("td", "", r.imei || ""),
              el("td", "o-" + r.outcome, t(r.outcome)), el("td", "", r.reason || ""));
    body.append(tr);
  }
}

function renderSnapshot(snap) {
  $("station").textContent = snap.title;
  document.title = snap.title;
  $("package").textContent = snap.package ? t("package") + ": " + snap.package : "";
  for (const v of snap.slots) { views.delete(v.slot); renderSlot(v); }
  renderSummary(snap.summary);
}

let source = null;
function connect() {
  source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => {
    $("disconnected").hidden = true;
    document.body.dataset.connected = "1";
    renderSnapshot(JSON.parse(e.data));
  });
  source.addEventListener("slot", (e) => renderSlot(JSON.parse(e.data)));
  source.addEventListener("summary", (e) => renderSummary(JSON.parse(e.data)));
  source.onerror = () => {
    $("disconnected").textContent = t("disconnected");
    $("disconnected").hidden = false;
    document.body.dataset.connected = "";
    if (source.readyState === EventSource.CLOSED) {   // given up (e.g. a 5xx): retry ours
      source.close();
      setTimeout(connect, 2000);
    }
  };
}

function focusScan() { $("scan").focus(); }

function init() {
  $("scan-label").textContent = t("scan_label");
  $("scan").placeholder = t("scan_placeholder");
  $("start-all").textContent = t("start_all");
  $("stop-all").textContent = t("stop_all");
  $("today-h").textContent = t("today");
  $("y-tested-l").textContent = t("tested");
  $("y-passed-l").textContent = t("passed");
  $("y-yield-l").textContent = t("yield");
  $("last-h").textContent = t("last_results");
  const head = $("last").tHead.rows[0];
  for (const k of ["col_time", "col_slot", "col_imei", "col_outcome", "col_reason"]) head.append(el("th", "", t(k)));
  // A barcode scanner types the code and presses Enter: that submits this form.
  $("scan-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const code = $("scan").value.trim();
    $("scan").value = "";
    if (!code) return;
    const r = await post("/api/scan", {code});
    if (r) notice(t("started_in", {code: r.serial, slot: r.slot}), "ok");
    focusScan();
  });
  // A scanner types wherever the focus is: a key pressed outside the field goes to it.
  document.addEventListener("keydown", (e) => {
    if (document.activeElement !== $("scan") && e.key.length === 1 &&
        !e.ctrlKey && !e.altKey && !e.metaKey) focusScan();
  });
  $("start-all").addEventListener("click", () => post("/api/start", {}).then(focusScan));
  $("stop-all").addEventListener("click", () => post("/api/stop", {}).then(focusScan));
  connect();
}
init();
