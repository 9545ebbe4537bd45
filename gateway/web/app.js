// edgeseal dashboard: a plain ES module, no framework, no build step (docs/dashboard.md).
// It polls the gateway's HTTP API (docs/api.md) every 2 s and renders the fleet, the ledger and
// the five use cases; "Verify a bundle" checks a proof bundle in the browser (verify.js).
// Everything the gateway returns is inserted with textContent, never as HTML.

import * as V from "./verify.js";

const params = new URLSearchParams(location.search);
if (params.get("crypto") === "js") V.setEngine("js");
const POLL_MS = Number(params.get("poll_ms")) || 2000;
const FULL_REFRESH_MS = 15000; // re-read everything at least this often, even when the log is idle
const MAX_SERIES = 300; // points kept per sparkline
const MAX_EVENTS = 200; // contract/ingest events kept per list
const RECORD_WINDOW = 5000; // device records are read from the last this many log entries...
const MAX_SAMPLES = 500; // ...keeping this many per device (pond charts)

const S = {
  gw: null,
  lastFull: 0,
  participants: {},
  devices: [],
  contracts: [],
  treeSeries: [], // [{t: ms, v: tree size}]
  checkpoints: [], // [{size, root, seen}]
  scoreSeries: {}, // contract id -> [{t: clock_s, v: score_bp}] seen by this page
  cevents: {}, // contract id -> {list, next}
  ievents: { list: [], next: null },
  records: { next: null, byDevice: {} }, // recent time-synced device records, per device
  entryTime: {}, // log index -> decoded time_s (for "last seen")
  selectedLot: {}, // contract id -> lot id
  rendered: {}, // render key -> JSON of the data last rendered (skip identical re-renders)
  checkpointsBusy: false, // a GET /v1/checkpoints is in flight
};

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, body, path) {
    super(body && body.message ? `${status} ${body.code}: ${body.message}` : `${status} on ${path}`);
    this.status = status;
    this.body = body;
  }
}

async function request(path) {
  const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!r.ok) {
    let body = null;
    try {
      body = await r.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, body, path);
  }
  return r;
}
const getJson = async (path) => (await request(path)).json();
const getText = async (path) => (await request(path)).text();

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function table(caption, headers, rows, opts = {}) {
  if (!rows.length) return h("p", { class: "muted" }, opts.empty || `No ${caption.toLowerCase()}.`);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { "data-testid": opts.testid },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", r.attrs || {}, (r.cells || r).map((c) => h("td", {}, c))))),
      opts.foot ? h("tfoot", {}, h("tr", {}, opts.foot.map((c) => h("th", { scope: "row" }, c)))) : null,
    ),
  );
}

function dl(pairs, cls = "kv") {
  return h("dl", { class: cls }, pairs.filter(Boolean).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}

function badge(text, kind = "info") {
  return h("span", { class: `badge ${kind}` }, text);
}

// Replace the children of #id with nodes, unless `data` equals what was rendered there last.
function render(id, data, build) {
  const key = JSON.stringify(data);
  if (S.rendered[id] === key) return;
  S.rendered[id] = key;
  const el = $(id);
  el.replaceChildren(...[build()].flat());
}

// ---------------------------------------------------------------- formatting

const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const money = (n) => (n === null || n === undefined ? "–" : fmtInt(n));
const short = (s, n = 8) => (typeof s === "string" && s.length > n + 1 ? `${s.slice(0, n)}…` : s ?? "–");

function utc(s) {
  if (s === null || s === undefined) return "–";
  return new Date(Number(s) * 1000).toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, "Z");
}

function dur(s) {
  if (s === null || s === undefined) return "–";
  s = Number(s);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// A participant's name (from the registry) or a shortened key; accounts like "grid" as they are.
function who(pk) {
  if (typeof pk !== "string") return "–";
  const p = S.participants[pk];
  if (p) return h("span", { title: pk }, p.name);
  if (/^[0-9a-f]{64}$/.test(pk)) return h("code", { title: pk }, short(pk, 10));
  if (pk.startsWith("wallet:")) return h("span", { title: pk }, `wallet ${short(pk.slice(7), 8)}`);
  return pk;
}

function deviceLabel(id) {
  const d = S.devices.find((x) => x.device_id === id);
  const name = d && d.metadata && (d.metadata.profile || d.metadata.name);
  return h("code", { title: id }, name ? `${name} · ${short(id, 6)}` : short(id, 10));
}

// A button that loads the bundle of a log index into the verifier.
function proofLink(index) {
  return h(
    "button",
    {
      type: "button",
      class: "idx",
      title: `Verify log entry ${index}`,
      "aria-label": `Verify log entry ${index}`,
      onclick: () => loadBundle(index, true),
    },
    `#${index}`,
  );
}
const proofLinks = (indexes) => (indexes || []).map((i) => [proofLink(i), " "]);

// ---------------------------------------------------------------- sparkline (inline SVG)

function sparkline(points, opts = {}) {
  const W = 320;
  const H = 80;
  const P = 6;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", opts.label || "chart");
  const ns = (tag, a) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(a)) el.setAttribute(k, v);
    svg.append(el);
    return el;
  };
  ns("rect", { x: 0, y: 0, width: W, height: H, class: "spark-bg" });
  if (!points.length) return svg;
  const xs = points.map((p) => p.t);
  const ys = points.map((p) => p.v);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const withT = opts.threshold === undefined ? ys : [...ys, opts.threshold];
  const y0 = opts.min ?? Math.min(...withT);
  const y1 = opts.max ?? Math.max(...withT);
  const sx = (x) => (x1 === x0 ? W / 2 : P + ((x - x0) / (x1 - x0)) * (W - 2 * P));
  const sy = (y) => (y1 === y0 ? H / 2 : H - P - ((y - y0) / (y1 - y0)) * (H - 2 * P));
  if (opts.threshold !== undefined) {
    ns("line", { x1: 0, x2: W, y1: sy(opts.threshold), y2: sy(opts.threshold), class: "spark-threshold" });
  }
  const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p.t).toFixed(1)},${sy(p.v).toFixed(1)}`).join(" ");
  ns("path", { d, class: "spark-line" });
  const last = points[points.length - 1];
  ns("circle", { cx: sx(last.t), cy: sy(last.v), r: 3, class: "spark-dot" });
  return svg;
}

function pushSeries(series, t, v) {
  if (series.length && series[series.length - 1].t === t) series[series.length - 1].v = v;
  else if (!series.length || series[series.length - 1].t < t) series.push({ t, v });
  if (series.length > MAX_SERIES) series.splice(0, series.length - MAX_SERIES);
}

// ---------------------------------------------------------------- polling

function setLive(text, bad = false) {
  const el = $("live");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

async function poll() {
  try {
    const gw = await getJson("/v1/gateway");
    const prev = S.gw;
    S.gw = gw;
    renderSummary(gw);
    pushSeries(S.treeSeries, Date.now(), gw.tree_size);
    const changed =
      !prev ||
      prev.sequenced_size !== gw.sequenced_size ||
      prev.tree_size !== gw.tree_size ||
      prev.state_hash !== gw.state_hash ||
      Date.now() - S.lastFull > FULL_REFRESH_MS;
    if (changed) await refreshAll(prev ? prev.tree_size !== gw.tree_size : true);
    renderLedgerChart();
    // every poll: confirmations grow without new entries; not awaited (a chain node or replica
    // that is slow to answer must not hold the rest of the page)
    if (!S.checkpointsBusy) {
      S.checkpointsBusy = true;
      refreshCheckpoints()
        .catch((e) => console.warn(e))
        .finally(() => (S.checkpointsBusy = false));
    }
    setLive(`Live · updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.ready = "1";
  } catch (e) {
    setLive(`Cannot reach the gateway: ${e.message}`, true);
  } finally {
    setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }
}

async function refreshAll(newCheckpoint) {
  S.lastFull = Date.now();
  const [parts, devs, cons] = await Promise.all([
    getJson("/v1/participants"),
    getJson("/v1/devices"),
    getJson("/v1/contracts"),
  ]);
  S.participants = parts.participants || {};
  S.devices = devs.devices || [];
  S.contracts = cons.contracts || [];
  const jobs = [refreshEvents(), refreshEntries(), refreshLastSeen(), refreshRecords()];
  if (newCheckpoint || !S.checkpoints.length) jobs.push(refreshCheckpoint());
  for (const c of S.contracts) jobs.push(refreshContract(c));
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === "rejected") console.warn(r.reason);
  renderFleet();
  renderUseCases();
}

// Read a cursor-paged list to its end (bounded), keeping the newest MAX_EVENTS items.
async function follow(store, url, key) {
  for (let page = 0; page < 20; page++) {
    const sep = url.includes("?") ? "&" : "?";
    const cursor = store.next === null || store.next === undefined ? "" : `&since=${store.next}`;
    const res = await getJson(`${url}${sep}limit=1000${cursor}`);
    const items = res[key] || [];
    store.list.push(...items);
    if (store.list.length > MAX_EVENTS) store.list.splice(0, store.list.length - MAX_EVENTS);
    const moved = res.next !== undefined && res.next !== null && res.next !== store.next;
    if (moved) store.next = res.next;
    if (!items.length || !moved || items.length < 1000) break;
  }
}

const refreshEvents = () => follow(S.ievents, "/v1/events", "events");

async function refreshEntries() {
  const size = S.gw.sequenced_size;
  const since = Math.max(0, size - 12);
  const res = await getJson(`/v1/entries?since=${since}&limit=12`);
  S.entries = res.entries || [];
}

// Recent device records (cursor-paged: each poll reads only what is new), for the pond charts.
async function refreshRecords() {
  const r = S.records;
  const size = S.gw.sequenced_size;
  if (r.next === null) r.next = Math.max(0, size - RECORD_WINDOW);
  for (let page = 0; page < 5 && r.next < size; page++) {
    const res = await getJson(`/v1/entries?since=${r.next}&limit=1000&kind=device-record`);
    for (const e of res.entries || []) {
      const d = e.decoded;
      if (!d || d.error || !d.time_synced) continue;
      const list = (r.byDevice[d.device_id] ||= []);
      list.push({ t: d.time_s, index: e.index, values: d.values || [] });
      if (list.length > MAX_SAMPLES) list.shift();
    }
    if (!(res.next > r.next)) break;
    r.next = res.next;
  }
}

// [{t, v}] of one value type (raw integers) from the recent records of the given devices.
function samples(devices, type) {
  const out = [];
  for (const id of devices || []) {
    for (const rec of S.records.byDevice[id] || []) {
      const val = rec.values.find((x) => x.type === type && x.channel === 0 && Number.isInteger(x.raw));
      if (val) out.push({ t: rec.t, v: val.raw, index: rec.index });
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

async function refreshLastSeen() {
  const wanted = S.devices.map((d) => d.last_index).filter((i) => Number.isInteger(i) && !(i in S.entryTime));
  await Promise.all(
    wanted.map(async (i) => {
      try {
        const e = await getJson(`/v1/entries/${i}`);
        S.entryTime[i] = e.decoded && Number.isInteger(e.decoded.time_s) ? e.decoded : null;
      } catch {
        S.entryTime[i] = null;
      }
    }),
  );
}

async function refreshCheckpoint() {
  const text = await getText("/v1/checkpoint");
  $("checkpoint").textContent = text;
  const lines = text.split("\n");
  const size = Number(lines[1]);
  if (!S.checkpoints.length || S.checkpoints[S.checkpoints.length - 1].size !== size) {
    S.checkpoints.push({ size, root: lines[2], seen: new Date() });
    if (S.checkpoints.length > 50) S.checkpoints.shift();
  }
  const rows = S.checkpoints
    .slice(-8)
    .reverse()
    .map((c) => [fmtInt(c.size), h("code", { title: c.root }, short(c.root, 16)), c.seen.toLocaleTimeString()]);
  render("checkpoint-list", rows.map((r) => [r[0], r[1].title, r[2]]), () =>
    table("Checkpoints seen by this page", ["Tree size", "Root (base64)", "Seen at"], rows),
  );
}

// ---------------------------------------------------------------- checkpoints panel

// GET /v1/checkpoints: per checkpoint its cosignatures, anchor and replica agreement.
async function refreshCheckpoints() {
  const v = await getJson("/v1/checkpoints?limit=10");
  render("checkpoints-setup", [v.witnesses, v.quorum_required, v.anchoring, v.replicas], () => checkpointSetup(v));
  render("checkpoints-body", v.checkpoints, () =>
    table(
      "Recent checkpoints, newest first",
      ["Tree size", "Root (base64)", "Cosignatures", "Anchor", "Replicas"],
      v.checkpoints.map((c) => ({
        attrs: { "data-size": c.size },
        cells: [fmtInt(c.size), h("code", { title: c.root }, short(c.root, 12)), cosignCell(c), anchorCell(c.anchor, v.anchoring), replicaCell(c.replicas)],
      })),
      { testid: "checkpoints", empty: "No checkpoint yet." },
    ),
  );
}

function checkpointSetup(v) {
  const a = v.anchoring;
  return dl([
    ["Witness policy", v.witnesses ? `${v.quorum_required ?? "?"} of ${v.witnesses.join(", ")}` : "none (checkpoints are not witnessed)"],
    [
      "Anchoring",
      a
        ? [
            `chain ${a.chain_id}, contract `,
            h("code", { title: a.contract }, short(a.contract, 12)),
            ` · latest block ${fmtInt(a.latest_block)}, final block ${fmtInt(a.final_block)} (${a.finality})`,
            a.chain_error ? [" ", badge("chain node not answering", "bad")] : null,
            a.status && a.status.last_error && !a.status.node_up ? [" ", badge(a.status.last_error, "warn")] : null,
          ]
        : "off (no anchor_rpc_url)",
    ],
    [
      "Replicas",
      v.replicas.length
        ? v.replicas.map((r) => [
            h("a", { href: `${r.url}/v1/replica`, rel: "noopener" }, r.url),
            " ",
            r.error ? badge("unreachable", "bad") : r.matches ? badge(`verified up to ${fmtInt(r.size)}`, "ok") : badge(r.alarms ? "ALARM" : "does not match", "bad"),
            " ",
          ])
        : "none configured (replica_urls)",
    ],
  ]);
}

const COSIGN = { valid: ["✓", "ok"], invalid: ["✗ invalid", "bad"], missing: ["–", "muted"] };

function cosignCell(c) {
  if (!c.cosignatures) return h("span", { class: "muted" }, "not witnessed");
  return [
    c.quorum ? h("span", { title: `cosigned/required: ${c.quorum.summary}` }, badge(c.quorum.ok ? "quorum ✓" : "quorum short", c.quorum.ok ? "ok" : "warn")) : null,
    " ",
    c.cosignatures.map((s) => {
      const [mark, kind] = COSIGN[s.status] || ["?", "muted"];
      return [badge(`${s.witness} ${mark}`, kind), " "];
    }),
  ];
}

function anchorCell(a, anchoring) {
  if (!a) return h("span", { class: "muted" }, anchoring ? "not anchored" : "–");
  const kind = a.final ? "ok" : a.state === "included" ? "info" : a.state === "superseded" ? "bad" : "warn";
  return [
    badge(a.final ? "final" : a.state, kind),
    a.block_number !== null ? ` block ${fmtInt(a.block_number)}` : "",
    a.confirmations !== null ? `, ${fmtInt(a.confirmations)} conf.` : "",
    a.tx_hash ? [" · tx ", h("code", { title: a.tx_hash }, short(a.tx_hash, 10))] : "",
    a.error ? [" ", h("span", { class: "small" }, a.error)] : "",
  ];
}

const REPLICA = { agrees: ["agrees", "ok"], behind: ["not yet synced", "muted"], disagrees: ["DISAGREES", "bad"], alarm: ["ALARM", "bad"], unreachable: ["unreachable", "warn"] };

function replicaCell(list) {
  if (!list || !list.length) return h("span", { class: "muted" }, "–");
  return list.map((r) => {
    const [text, kind] = REPLICA[r.status] || [r.status, "muted"];
    return [h("span", { title: r.url }, badge(text, kind)), " "];
  });
}

async function refreshContract(c) {
  const id = encodeURIComponent(c.id);
  const store = (S.cevents[c.id] ||= { list: [], next: null });
  const jobs = [follow(store, `/v1/contract-events?contract=${id}`, "events")];
  const view = {
    agri: [`/v1/contracts/${id}/lots`],
    fishfarm: [`/v1/contracts/${id}/pond`],
    collateral: [`/v1/contracts/${id}/collateral`],
    energy: [`/v1/contracts/${id}/intervals`],
    parking: [`/v1/contracts/${id}/sessions`],
  }[c.type];
  if (!view) return;
  // the full instance (params and data) too: thresholds and money positions come from there
  const got = await Promise.all([getJson(`/v1/contracts/${id}`), ...view.map(getJson), ...jobs]);
  c.params = got[0].params || {};
  c.data = got[0].data || {};
  c.view = got[1];
  if (c.type === "agri") await refreshTrace(c);
  if (c.type === "fishfarm" && Number.isInteger(c.view.clock_s)) {
    pushSeries((S.scoreSeries[c.id] ||= []), c.view.clock_s, c.view.score_bp);
  }
}

async function refreshTrace(c) {
  const lots = (c.view && c.view.lots) || {};
  const ids = Object.keys(lots).sort();
  let lot = S.selectedLot[c.id];
  if (!lot || !lots[lot]) {
    // default: a lot with both history and descendants/ancestors, breached first
    lot =
      ids.find((i) => lots[i].breach && (lots[i].children || []).length) ||
      ids.find((i) => (lots[i].children || []).length) ||
      ids[0];
    S.selectedLot[c.id] = lot;
  }
  c.trace = lot
    ? await getJson(`/v1/contracts/${encodeURIComponent(c.id)}/lots/${encodeURIComponent(lot)}/trace`)
    : null;
}

// ---------------------------------------------------------------- header, fleet, ledger

function renderSummary(gw) {
  $("origin").textContent = gw.origin;
  $("sum-tree").textContent = fmtInt(gw.tree_size);
  $("sum-seq").textContent = fmtInt(gw.sequenced_size);
  $("sum-pending").textContent = fmtInt(gw.pending);
  const ble = gw.ble || {};
  $("sum-ble").textContent = ble.mode ? `${ble.mode} · ${ble.status}` : "–";
  $("sum-ble").title = ble.detail || "";
  $("vkey-show").textContent = gw.vkey;
  const vk = $("vkey");
  if (!vk.value && !vk.dataset.touched) vk.value = gw.vkey;
}

function renderFleet() {
  const bound = {};
  for (const c of S.contracts) for (const d of c.devices || []) (bound[d] ||= []).push(c.id);
  const alarmsBy = {};
  for (const e of S.ievents.list) if (e.alarm && e.device_id) alarmsBy[e.device_id] = (alarmsBy[e.device_id] || 0) + 1;
  $("sum-devices").textContent = fmtInt(S.devices.length);
  const alarms = S.ievents.list.filter((e) => e.alarm).length;
  $("sum-alarms").textContent = fmtInt(alarms);
  $("sum-alarms").classList.toggle("bad", alarms > 0);

  const rows = S.devices.map((d) => {
    const seen = S.entryTime[d.last_index];
    const status = d.status === "active" ? badge("active", "ok") : badge(d.status, "bad");
    return {
      attrs: { "data-device": d.device_id },
      cells: [
        deviceLabel(d.device_id),
        status,
        d.last_seq === null || d.last_seq === undefined ? "–" : fmtInt(d.last_seq),
        seen ? utc(seen.time_s) : "–",
        Number.isInteger(d.last_index) ? proofLink(d.last_index) : "–",
        (bound[d.device_id] || []).join(", ") || "–",
        alarmsBy[d.device_id] ? badge(`${alarmsBy[d.device_id]} alarm(s)`, "bad") : badge("none", "ok"),
      ],
    };
  });
  const key = [S.devices, bound, alarmsBy, S.devices.map((d) => S.entryTime[d.last_index]), S.gw.pending];
  render("fleet-body", key, () => [
    table("Devices", ["Device", "Status", "Last seq", "Last seen (device time)", "Last entry", "Contracts", "Alarms"], rows, {
      testid: "devices",
      empty: "No devices enrolled yet.",
    }),
    h(
      "p",
      { class: "small" },
      `Gateway: ${fmtInt(S.gw.pending)} entries stored but not yet in a checkpoint (provable within ~1 s).`,
    ),
  ]);
  const evs = S.ievents.list.slice(-15).reverse();
  render("events-body", evs, () =>
    table(
      "Latest ingest events",
      ["Time", "Kind", "Device", "Seq", "Detail"],
      evs.map((e) => [
        new Date(e.time_ms).toISOString().replace("T", " ").slice(0, 19),
        e.alarm ? badge(e.kind, "bad") : badge(e.kind, "info"),
        e.device_id ? deviceLabel(e.device_id) : "–",
        e.seq ?? "–",
        e.detail,
      ]),
      { empty: "No ingest events: every upload verified cleanly." },
    ),
  );
  const ents = (S.entries || []).slice().reverse();
  render("entries-body", ents.map((e) => [e.index, e.integrated]), () =>
    table(
      "Latest log entries",
      ["Index", "Kind", "Summary", "In a checkpoint", "Verify"],
      ents.map((e) => [
        fmtInt(e.index),
        e.kind,
        entrySummary(e),
        e.integrated ? badge("yes", "ok") : badge("pending", "warn"),
        e.integrated ? proofLink(e.index) : "–",
      ]),
      { testid: "entries" },
    ),
  );
}

function entrySummary(e) {
  const d = e.decoded || {};
  if (d.error) return `undecodable: ${d.error.code || ""}`;
  if (e.kind === "device-record") return h("span", {}, deviceLabel(d.device_id), ` ${d.kind} seq ${d.seq}`);
  if (e.kind === "participant-tx") {
    const b = d.body || {};
    return h("span", {}, who(b.participant), ` → ${b.contract}/${b.action}`);
  }
  if (e.kind === "contract-event") return `${d.contract}: ${d.type} (causes ${(d.causes || []).join(", ")})`;
  if (e.kind === "device-enrollment") return h("span", {}, "enrolled ", deviceLabel(d.device_id));
  return "";
}

function renderLedgerChart() {
  const pts = S.treeSeries.map((p) => ({ t: p.t, v: p.v }));
  render("ledger-chart", pts.length ? [pts[0], pts[pts.length - 1], pts.length] : [], () => [
    sparkline(pts, { label: `Tree size over time, now ${S.gw ? S.gw.tree_size : 0} entries`, min: 0 }),
    h("p", { class: "small" }, `Tree size since this page opened: ${pts.length ? fmtInt(pts[0].v) : "–"} → ${S.gw ? fmtInt(S.gw.tree_size) : "–"}; state ${short(S.gw && S.gw.state_hash, 16)}`),
  ]);
}

// ---------------------------------------------------------------- use cases

function renderUseCases() {
  const byType = (t) => S.contracts.filter((c) => c.type === t && c.view);
  renderSection("agri-body", byType("agri"), agriView, "No tracing contract yet.");
  renderSection("fishfarm-body", byType("fishfarm"), pondView, "No fish-farm contract yet.");
  renderSection("collateral-body", byType("collateral"), collateralView, "No collateral contract yet.");
  renderSection("energy-body", byType("energy"), energyView, "No energy market yet.");
  renderSection("parking-body", byType("parking"), parkingView, "No car park yet.");
}

function renderSection(id, contracts, view, empty) {
  const key = contracts.map((c) => [c.id, c.clock_s, c.view, c.data, c.trace, (S.cevents[c.id] || {}).next, S.scoreSeries[c.id], S.records.next]);
  render(id, [key, Object.keys(S.participants).length, S.devices.length], () =>
    contracts.length ? contracts.map((c) => h("article", { class: "contract", "data-contract": c.id }, contractHeader(c), view(c))) : h("p", { class: "muted" }, empty),
  );
}

function contractHeader(c) {
  return [
    h("h3", {}, `Contract ${c.id}`),
    dl(
      [
        ["Owner", who(c.owner)],
        ["Contract clock", utc(c.clock_s)],
        ["Devices", (c.devices || []).length ? (c.devices || []).map((d) => [deviceLabel(d), " "]) : "none"],
        ["Created at", proofLink(c.created_at)],
      ],
      "kv inline",
    ),
  ];
}

const eventsOf = (c, ...types) => ((S.cevents[c.id] || {}).list || []).filter((e) => !types.length || types.includes(e.type));

function eventTable(c, caption, types, describe, opts = {}) {
  const evs = eventsOf(c, ...types).slice(-20).reverse();
  return table(
    caption,
    ["Event", "What", "Evidence"],
    evs.map((e) => [h("span", {}, badge(e.type, opts.kind ? opts.kind(e) : "info"), " ", proofLink(e.index)), describe(e), proofLinks(e.causes)]),
    { empty: opts.empty || `No ${caption.toLowerCase()}.` },
  );
}

function transferText(t) {
  if (!t) return "";
  return h("span", {}, who(t.from), " → ", who(t.to), `: ${money(t.amount_minor)}`);
}

// -- agri

function lotBadges(x) {
  return [
    badge(x.status, x.status === "active" ? "ok" : x.status === "sold" ? "info" : "muted"),
    x.breach || x.breached ? [" ", badge("BREACHED", "bad")] : null,
    x.recall || x.recalled ? [" ", badge("RECALLED", "bad")] : null,
  ];
}

function agriView(c) {
  const lots = c.view.lots || {};
  const ids = Object.keys(lots).sort();
  const sel = S.selectedLot[c.id];
  const rows = ids.map((id) => {
    const l = lots[id];
    return {
      attrs: { "data-lot": id, class: id === sel ? "selected" : null },
      cells: [
        h(
          "button",
          {
            type: "button",
            class: "link",
            "aria-pressed": id === sel ? "true" : "false",
            "aria-label": `Show the trace tree of lot ${id}`,
            onclick: async () => {
              S.selectedLot[c.id] = id;
              const cur = S.contracts.find((x) => x.id === c.id) || c;
              await refreshTrace(cur);
              renderUseCases();
            },
          },
          id,
        ),
        lotBadges(l),
        l.product,
        fmtInt(l.quantity),
        who(l.custodian),
        h("code", {}, l.code),
        (l.devices || []).map((d) => [deviceLabel(d), " "]),
      ],
    };
  });
  return [
    table("Lots", ["Lot", "Status", "Product", "Quantity", "Custodian", "Code", "Loggers"], rows, { testid: "lots" }),
    h(
      "div",
      { class: "trace", "data-testid": "trace" },
      c.trace
        ? [
            h("h4", {}, `Trace of lot ${c.trace.lot}`),
            h(
              "div",
              { class: "grid2" },
              h("div", {}, h("h5", {}, "Where it came from"), h("ul", { class: "tree" }, traceNode(c.trace, "from"))),
              h("div", {}, h("h5", {}, "What it became"), h("ul", { class: "tree" }, traceNode(c.trace, "into"))),
            ),
          ]
        : h("p", { class: "muted" }, "No lots yet."),
    ),
    eventTable(c, "Breaches and recalls", ["breach", "recall"], (e) =>
      `${e.type === "breach" ? "temperature excursion" : `recall: ${e.data.reason || ""}`} — lots ${(e.data.lots || [e.data.lot]).join(", ")}`,
      { kind: () => "bad", empty: "No breaches or recalls." },
    ),
  ];
}

function traceNode(n, dir) {
  const kids = n[dir] || [];
  return h(
    "li",
    { "data-lot": n.lot },
    h(
      "div",
      { class: `node${n.breached || n.recalled ? " alert" : ""}` },
      h("strong", {}, n.lot),
      ` ${n.product} · ${fmtInt(n.quantity)} · `,
      who(n.custodian),
      " ",
      lotBadges(n),
      h("span", { class: "evidence" }, " evidence: ", proofLinks(n.evidence)),
    ),
    kids.length ? h("ul", {}, kids.map((k) => traceNode(k, dir))) : null,
  );
}

// -- fish farm

// The pond's risk score after each signed sample, recomputed here from the records of its
// boards with the contract's rules (gateway/contracts/fishfarm.py: safe/unsafe/gap time between
// samples, excursions, score_bp). Used only if the result equals the contract's own stats, so a
// partial record window or a rule change can never draw a wrong history.
function pondHistory(c) {
  const p = c.params || {};
  const recs = [];
  for (const id of c.devices || []) for (const r of S.records.byDevice[id] || []) recs.push(r);
  recs.sort((a, b) => a.index - b.index);
  const st = { first_s: null, last_s: null, last_safe: true, safe_s: 0, unsafe_s: 0, gap_s: 0, samples: 0, excursions: 0 };
  let inExcursion = false;
  const series = [];
  const score = (clock) => {
    const span = clock - st.first_s;
    if (st.first_s === null || span <= 0) return 0;
    const raw = Math.floor((st.safe_s * 10000) / span) - (p.excursion_penalty_bp || 0) * st.excursions;
    return Math.max(0, Math.min(10000, raw));
  };
  for (const r of recs) {
    const val = (type) => {
      const x = r.values.find((v) => v.type === type && v.channel === 0 && Number.isInteger(v.raw));
      return x ? x.raw : null;
    };
    const dox = val("dissolved_oxygen");
    const temp = val("temperature");
    const ph = val("ph");
    if (dox === null && temp === null && ph === null) continue;
    if (st.last_s !== null && r.t < st.last_s) continue;
    const safe =
      (dox === null || dox >= p.do_min_centi_mg_l) &&
      (temp === null || temp <= p.temp_max_centi_c) &&
      (ph === null || (p.ph_min_milli <= ph && ph <= p.ph_max_milli));
    if (st.last_s === null) st.first_s = r.t;
    else {
      const dt = r.t - st.last_s;
      if (dt > p.max_gap_s) st.gap_s += dt;
      else if (st.last_safe) st.safe_s += dt;
      else st.unsafe_s += dt;
    }
    st.last_s = r.t;
    st.last_safe = safe;
    st.samples += 1;
    if (safe) inExcursion = false;
    else if (!inExcursion) {
      inExcursion = true;
      st.excursions += 1;
    }
    series.push({ t: r.t, v: score(r.t) });
  }
  const api = c.view.stats || {};
  const keys = ["first_s", "last_s", "safe_s", "unsafe_s", "gap_s", "samples", "excursions"];
  const matches = st.samples > 0 && keys.every((k) => st[k] === api[k]);
  if (matches && Number.isInteger(c.view.clock_s)) pushSeries(series, c.view.clock_s, c.view.score_bp);
  return { matches, series };
}

function pondView(c) {
  const v = c.view;
  const st = v.stats || {};
  const loan = v.loan || {};
  const pct = (bp) => `${(bp / 100).toFixed(2)} %`;
  // a score history served by the gateway wins ([clock_s, score_bp] or {clock_s, score_bp});
  // else the one recomputed here from the signed samples; else what this page has polled
  const served = Array.isArray(v.score_history)
    ? v.score_history.map((p) => (Array.isArray(p) ? { t: p[0], v: p[1] } : { t: p.clock_s, v: p.score_bp }))
    : null;
  const hist = served ? { matches: false, series: [] } : pondHistory(c);
  const series = served || (hist.matches ? hist.series : S.scoreSeries[c.id] || []);
  const params = c.params || {};
  const policies = Object.entries(v.policies || {});
  return [
    h(
      "div",
      { class: "grid2" },
      h(
        "div",
        {},
        h("p", { class: "big", "data-testid": "score" }, pct(v.score_bp || 0)),
        h("p", { class: "small" }, "Risk score: safe time / observed time, minus a penalty per excursion."),
        sparkline(series, { label: `Pond risk score over time, now ${pct(v.score_bp || 0)}`, min: 0, max: 10000, threshold: params.min_score_bp }),
        h(
          "p",
          { class: "small", "data-testid": "score-source" },
          served
            ? `Score over time as served by the gateway (${series.length} points).`
            : hist.matches
            ? `Score after each of ${series.length - 1} signed samples, recomputed in this browser from the records; it matches the contract's stats ✓. Dashed: covenant minimum ${pct(params.min_score_bp || 0)}.`
            : `Score by contract clock as polled by this page (${series.length} point${series.length === 1 ? "" : "s"}): the recent records do not cover the pond's whole history.`,
        ),
      ),
      dl([
        ["Samples", fmtInt(st.samples)],
        ["Observed", `${utc(st.first_s)} → ${utc(st.last_s)}`],
        ["Safe / unsafe / gap time", `${dur(st.safe_s)} / ${dur(st.unsafe_s)} / ${dur(st.gap_s)}`],
        ["Excursions", `${fmtInt(st.excursions)} (longest ${dur(st.longest_excursion_s)})`],
        ["Data gap", st.gap_flagged ? badge("gap flagged", "bad") : badge("fresh", "ok")],
      ]),
    ),
    waterQuality(c, policies),
    h("h4", {}, "Loan"),
    dl(
      [
        ["Status", badge(loan.status || "none", loan.status === "repaid" ? "ok" : "info")],
        ["Tranches", loan.paused ? [badge("PAUSED", "bad"), " causes ", proofLinks(loan.pause_causes)] : badge("open", "ok")],
        ["Disbursed", money(loan.disbursed_minor)],
        ["Repaid", money(loan.repaid_minor)],
        ["Next tranche", fmtInt(loan.next_tranche)],
      ],
      "kv inline",
    ),
    table(
      "Insurance policies",
      ["Policy", "Insurer", "Premium", "Payout", "Trigger", "Claims paid", "Bound"],
      policies.map(([id, p]) => [
        id,
        who(p.insurer),
        money(p.premium_minor),
        money(p.payout_minor),
        `DO < ${(p.do_min_centi_mg_l / 100).toFixed(2)} mg/L or T > ${(p.temp_max_centi_c / 100).toFixed(2)} °C for > ${dur(p.max_duration_s)}`,
        fmtInt((p.claimed_windows || []).length),
        proofLink(p.bound_at),
      ]),
      { empty: "No policies bound." },
    ),
    eventTable(c, "Claims and covenant events", ["claim-paid", "covenant-breach", "data-gap", "tranche-disbursed", "tranches-resumed"], (e) =>
      e.type === "claim-paid" ? h("span", {}, `policy ${e.data.policy}, `, transferText(e.data.transfer)) : e.data.reason || (e.data.transfer ? transferText(e.data.transfer) : utc(e.data.at_s)),
      { kind: (e) => (["claim-paid", "covenant-breach", "data-gap"].includes(e.type) ? "bad" : "info") },
    ),
    positionsTable(v.positions),
  ];
}

function waterQuality(c, policies) {
  const doMin = policies.length ? Math.max(...policies.map(([, p]) => p.do_min_centi_mg_l)) : undefined;
  const tMax = policies.length ? Math.min(...policies.map(([, p]) => p.temp_max_centi_c)) : undefined;
  const chart = (title, type, unit, threshold, thresholdText) => {
    const pts = samples(c.devices, type);
    const last = pts[pts.length - 1];
    return h(
      "figure",
      { class: "chart", "data-testid": `chart-${type}` },
      h("figcaption", {}, `${title}: ${last ? `${(last.v / 100).toFixed(2)} ${unit}` : "no samples"}`),
      sparkline(pts, { label: `${title} over time, ${pts.length} signed samples`, threshold }),
      h(
        "p",
        { class: "small" },
        pts.length ? `${pts.length} signed samples, ${utc(pts[0].t)} → ${utc(last.t)}` : "No recent samples.",
        threshold !== undefined ? ` · dashed: ${thresholdText}` : "",
      ),
    );
  };
  return h(
    "div",
    { class: "grid2" },
    chart("Dissolved oxygen", "dissolved_oxygen", "mg/L", doMin, doMin === undefined ? "" : `policy trigger below ${(doMin / 100).toFixed(2)} mg/L`),
    chart("Water temperature", "temperature", "°C", tMax, tMax === undefined ? "" : `policy trigger above ${(tMax / 100).toFixed(2)} °C`),
  );
}

function positionsTable(pos) {
  const rows = Object.entries(pos || {}).sort();
  const total = rows.reduce((a, [, v]) => a + v, 0);
  return table("Money positions (minor units)", ["Account", "Net position"], rows.map(([k, v]) => [who(k), money(v)]), {
    empty: "No money moved yet.",
    foot: ["Sum", total === 0 ? "0 ✓ zero-sum" : `${money(total)} ✗ not zero`],
  });
}

// -- collateral

function collateralView(c) {
  const v = c.view;
  return [
    dl(
      [
        ["Lien", v.lien === "active" ? badge("active", "info") : badge(`released`, "ok")],
        ["Drawdown", v.frozen ? badge("FROZEN", "bad") : badge("open", "ok")],
        ["Drawn", money(v.drawn_minor)],
        ["Repaid", money(v.repaid_minor)],
        ["Released at", v.released_at === null || v.released_at === undefined ? "–" : proofLink(v.released_at)],
      ],
      "kv inline",
    ),
    table(
      "Alarms",
      ["Reason", "Device", "At (device time)", "Evidence"],
      (v.alarms || []).map((a) => [badge(a.reason, "bad"), deviceLabel(a.device), utc(a.at_s), proofLinks(a.causes)]),
      { testid: "collateral-alarms", empty: "No alarms." },
    ),
    table(
      "Collateral devices",
      ["Device", "Last heartbeat", "Last entry", "Heartbeat gap"],
      Object.entries(v.devices || {}).map(([id, d]) => [
        deviceLabel(id),
        utc(d.last_s),
        Number.isInteger(d.last_index) ? proofLink(d.last_index) : "–",
        d.gap_flagged ? badge("gap", "bad") : badge("ok", "ok"),
      ]),
    ),
    eventTable(c, "Lien events", ["drawdown", "repayment", "drawdown-frozen", "drawdown-unfrozen", "lien-released"], (e) =>
      e.data.transfer ? transferText(e.data.transfer) : e.data.reason || (e.data.lender ? h("span", {}, "by lender ", who(e.data.lender)) : ""),
    ),
    positionsTable(v.positions),
  ];
}

// -- energy

function energyView(c) {
  const v = c.view;
  const ivs = Object.entries(v.intervals || {}).sort((a, b) => Number(a[0]) - Number(b[0]));
  // settlement and receipt events come from the contract's event stream (the same events as
  // /v1/contracts/{id}/settlements and /receipts), followed by cursor so the newest are kept
  const settles = eventsOf(c, "settled");
  const lastSettle = settles[settles.length - 1];
  return [
    table(
      "Trading intervals",
      ["Interval start", "Status", "Orders", "Clearing price (minor/kWh)", "Matched", "Net"],
      ivs.map(([start, iv]) => [
        utc(start),
        badge(iv.status, iv.status === "settled" ? "ok" : iv.status === "cleared" ? "info" : "muted"),
        fmtInt((iv.orders || []).length),
        iv.price_minor_per_kwh === undefined || iv.price_minor_per_kwh === null ? "–" : money(iv.price_minor_per_kwh),
        iv.trades ? `${fmtInt(iv.trades.reduce((a, t) => a + t.energy_wh, 0))} Wh in ${iv.trades.length} trade(s)` : "–",
        iv.net_minor ? Object.entries(iv.net_minor).map(([k, n]) => [who(k), ` ${money(n)}; `]) : "–",
      ]),
      { testid: "intervals" },
    ),
    ivs.length ? orderBook(ivs[ivs.length - 1]) : null,
    lastSettle ? settlementTable(lastSettle) : h("p", { class: "muted" }, "No interval settled yet."),
    positionsTable(v.positions),
  ];
}

function orderBook([start, iv]) {
  // bids by falling price, then offers by rising price: the two sides of the auction
  const rank = (o) => (o.side === "bid" ? -o.price_minor_per_kwh : 1e15 + o.price_minor_per_kwh);
  const orders = (iv.orders || []).slice().sort((a, b) => rank(a) - rank(b) || a.index - b.index);
  return h(
    "div",
    { class: "grid2" },
    table(
      `Orders for ${utc(start)}`,
      ["Side", "Participant", "Energy (Wh)", "Limit price (minor/kWh)", "Order"],
      orders.map((o) => [badge(o.side, o.side === "bid" ? "info" : "warn"), who(o.participant), fmtInt(o.energy_wh), money(o.price_minor_per_kwh), proofLink(o.index)]),
      { empty: "No orders." },
    ),
    table(
      `Matched trades at ${iv.price_minor_per_kwh === undefined || iv.price_minor_per_kwh === null ? "–" : money(iv.price_minor_per_kwh)} minor/kWh`,
      ["Seller", "Buyer", "Energy (Wh)"],
      (iv.trades || []).map((t) => [who(t.seller), who(t.buyer), fmtInt(t.energy_wh)]),
      { empty: iv.status === "open" ? "Not cleared yet (clears at gate closure)." : "No trades matched." },
    ),
  );
}

function settlementTable(e) {
  const d = e.data;
  const accounts = Object.keys(d.net_minor || {}).sort((a, b) => (a === "grid") - (b === "grid") || a.localeCompare(b));
  const total = accounts.reduce((a, k) => a + d.net_minor[k], 0);
  return h(
    "div",
    { "data-testid": "settlement" },
    table(
      `Settlement of the interval starting ${utc(d.interval_start_s)} (price ${money(d.price_minor_per_kwh)} minor/kWh)`,
      ["Account", "Metered import (Wh)", "Metered export (Wh)", "Net (minor units)"],
      accounts.map((k) => {
        const m = (d.metered || {})[k];
        return [who(k), m ? fmtInt(m.import_wh) : "–", m ? fmtInt(m.export_wh) : "–", money(d.net_minor[k])];
      }),
      { foot: ["Sum over participants and grid", "", "", total === 0 ? "0 ✓ zero-sum" : `${money(total)} ✗ not zero`] },
    ),
    h("p", { class: "small" }, "Transfers: ", (d.transfers || []).map((t) => [transferText(t), "; "]), " evidence: ", proofLink(e.index), " causes ", proofLinks(e.causes)),
  );
}

// -- parking

function parkingView(c) {
  const v = c.view;
  const sessions = Object.entries(v.sessions || {}).sort((a, b) => a[1].start_index - b[1].start_index);
  const receipts = eventsOf(c, "charged", "unpaid").slice(-20).reverse();
  const positions = v.positions || (c.data && c.data.positions) || {};
  const statusKind = { open: "info", charged: "ok", free: "ok", unpaid: "bad" };
  return [
    dl([["Anomalies", v.anomalies ? badge(String(v.anomalies), "bad") : badge("0", "ok")], ["Occupied bays", fmtInt(Object.values(v.bays || {}).filter(Boolean).length)]], "kv inline"),
    table(
      "Sessions",
      ["Session", "Bay", "Vehicle (commitment)", "Start", "End", "Fee (minor)", "Status", "Evidence"],
      sessions.map(([sid, s]) => [
        sid,
        deviceLabel(s.bay),
        h("code", { title: s.vehicle }, short(s.vehicle, 8)),
        utc(s.start_s),
        utc(s.end_s),
        money(s.fee_minor),
        badge(s.status, statusKind[s.status] || "info"),
        proofLinks([...new Set([s.start_index, s.end_index, s.charged_at].filter((x) => x !== null && x !== undefined))]),
      ]),
      { testid: "sessions" },
    ),
    table(
      "Receipts",
      ["Receipt", "Session", "Fee (minor)", "Payment"],
      receipts.map((e) => [
        h("span", {}, badge(e.type, e.type === "charged" ? "ok" : "bad"), " ", proofLink(e.index)),
        e.data.session,
        money(e.data.fee_minor),
        e.type === "charged" ? transferText(e.data.transfer) : `not paid: ${e.data.reason}`,
      ]),
      { empty: "No receipts yet." },
    ),
    eventTable(c, "Anomalies and unpaid sessions", ["anomaly", "unpaid"], (e) => `${e.data.reason}${e.data.session ? ` (session ${e.data.session})` : ""}`, { kind: () => "bad", empty: "No anomalies." }),
    table(
      "Wallets",
      ["Vehicle (commitment)", "Limit", "Balance"],
      Object.entries(v.wallets || {}).map(([veh, w]) => [h("code", { title: veh }, short(veh, 8)), money(w.limit_minor), money(positions[`wallet:${veh}`] || 0)]),
      { empty: "No wallets." },
    ),
    positionsTable(positions),
  ];
}

// ---------------------------------------------------------------- verify a bundle

async function loadBundle(index, scroll) {
  const out = $("verify-result");
  $("bundle-index").value = index;
  if (scroll) $("verify").scrollIntoView({ behavior: "instant", block: "start" });
  try {
    // the exact bytes the API serves: a bundle has one canonical form, checked on Verify
    $("bundle-text").value = await getText(`/v1/bundle/${index}`);
    out.replaceChildren(h("p", { class: "muted" }, `Bundle of entry ${index} loaded: press Verify.`));
  } catch (e) {
    out.replaceChildren(h("p", { class: "verdict bad" }, `Could not fetch the bundle of entry ${index}: ${e.message}`));
  }
}

// The witness policy the gateway serves (GET /v1/witness-policy, parsed once), or null if it
// has none: cosignatures are then reported as not checked, never as verified.
let policyPromise = null;
function witnessPolicy() {
  // /v1/gateway says whether there is one (a 404 would log a console error in the browser)
  policyPromise ??= getJson("/v1/gateway").then((g) =>
    g.witnesses ? getText("/v1/witness-policy").then(V.parsePolicy) : null,
  );
  return policyPromise;
}

// Every check: {name, ok: true | false | null (information), message}; causes nest.
async function verifyBundle(bundle, vkey, depth = 0, checkpointNote = null) {
  const checks = [];
  const add = (name, ok, message, extra = {}) => checks.push({ name, ok, message, ...extra });
  const shape = V.bundleShapeProblem(bundle);
  if (shape) {
    add("bundle format", false, `not a version ${V.BUNDLE_VERSIONS.join(" or ")} proof bundle: ${shape}`);
    return checks;
  }
  let entry;
  try {
    entry = V.unb64(bundle.entry.base64);
    add("bundle format", true, `version ${bundle.version}, entry ${bundle.entry.index} (${entry.length} bytes), no unchecked field`);
  } catch (e) {
    add("bundle format", false, `entry bytes: ${e.message}`);
    return checks;
  }
  // 1. the checkpoint, signed by the gateway key first; format 3: the witnesses' cosignatures
  const cp = await V.verifyCheckpoint(bundle.checkpoint, vkey);
  const policy = depth === 0 ? await witnessPolicy() : null;
  const gatewayName = vkey.trim().split("+")[0];
  const w = await V.checkWitnesses(bundle.checkpoint, bundle.version, gatewayName, policy);
  if (depth === 0 || bundle.checkpoint !== checkpointNote) {
    add("checkpoint signature (Ed25519, gateway key)", cp.ok, cp.message, { engine: cp.engine });
  }
  if (w.ok === false || (depth === 0 && (bundle.version === 3 || policy))) {
    add("witness quorum (cosignature/v1, the gateway's witness policy)", w.ok, w.message);
  }
  // 2. the inclusion proof against the checkpoint root
  const inc = bundle.inclusion;
  if (!cp.checkpoint) {
    add("inclusion proof (RFC 9162)", false, "no verified checkpoint to check it against");
  } else if (typeof inc.size !== "number" || BigInt(inc.size) !== cp.checkpoint.size || inc.index !== bundle.entry.index) {
    add("inclusion proof (RFC 9162)", false, `the proof is for index ${inc.index} in size ${inc.size}, the checkpoint has size ${cp.checkpoint.size}`);
  } else {
    let hashes;
    try {
      hashes = (Array.isArray(inc.hashes) ? inc.hashes : [null]).map(V.unb64);
    } catch (e) {
      hashes = null;
      add("inclusion proof (RFC 9162)", false, e.message);
    }
    if (hashes) {
      const r = await V.verifyInclusion(entry, inc.index, inc.size, hashes, cp.checkpoint.root);
      add("inclusion proof (RFC 9162) against the checkpoint root", r.ok, `${r.message} (${hashes.length} hashes)`);
    }
  }
  // 3. the decoded view and the signature material describe these bytes
  const kindName = { 1: "device-record", 2: "participant-tx", 3: "contract-event", 4: "device-enrollment" }[entry[0]];
  const sm = bundle.signature_material;
  add("entry kind", kindName === bundle.entry.kind && sm.type === kindName, kindName ? `${V.KIND_NAMES[entry[0]]}` : `unknown kind byte ${entry[0]}`);
  for (const c of await entrySignatureChecks(entry, sm, bundle.decoded, vkey, bundle.checkpoint, depth, bundle.entry.index)) checks.push(c);
  if (depth === 0) {
    if (bundle.anchor == null) {
      add("on-chain anchor", null, "not anchored on a chain yet (the signed checkpoint is the evidence)");
    } else {
      // docs/anchoring.md: everything but "is the block canonical and final" (that needs the chain)
      const anchorChecks = cp.checkpoint
        ? await V.verifyAnchor(bundle, vkey, cp.checkpoint, bundle.entry.index)
        : [{ name: "anchor", ok: false, message: "no verified checkpoint" }];
      for (const c of anchorChecks) add(c.name, c.ok, c.message);
    }
  }
  return checks;
}

// The same canonical JSON (so 6 and 6.0, 1 and true differ); false if either has none.
function same(a, b) {
  try {
    return V.canonicalJson(a) === V.canonicalJson(b);
  } catch {
    return false;
  }
}

async function recordChecks(payload, sm, decoded, add) {
  const rec = V.splitRecord(payload);
  const idHex = V.hex(rec.deviceId);
  const { n_values: nValues, ...header } = await V.recordHeaderView(rec);
  const want = { ...header, values: decoded && Array.isArray(decoded.values) && decoded.values.length === nValues ? decoded.values : null };
  add(
    "decoded view matches the bytes",
    same(decoded, want) && sm.device_id === idHex && sm.signature === header.signature,
    `device ${short(idHex, 12)}, seq ${rec.seq}, ${header.signature ? "signed" : "unsigned"}`,
  );
  let key = V.unhex(sm.public_key || "");
  const idOk = key.length === 32 && V.hex(key) === sm.public_key && V.hex((await V.sha256(key)).slice(0, 16)) === idHex;
  add("device key: device id = SHA-256(first key)[0:16]", idOk, idOk ? "the key is the device's first key" : "the key does not belong to this device");
  let lastSeq = -1;
  for (const [i, r64] of (Array.isArray(sm.rotations) ? sm.rotations : [null]).entries()) {
    const rot = V.splitRecord(V.unb64(r64));
    const rotOk = rot.body[1] === 4 && V.equal(rot.deviceId, rec.deviceId) && lastSeq < rot.seq && rot.seq < rec.seq && rot.signature;
    const res = rotOk ? await V.ed25519Verify(key, rot.body, rot.signature) : { ok: false, message: "not an earlier signed key rotation of this device, in order" };
    add(`key rotation ${i + 1} (seq ${rot.seq}) signed by the previous key`, res.ok, res.message, { engine: res.engine });
    key = rot.body.subarray(rot.body.length - 32); // its one value: new_public_key (32 bytes)
    lastSeq = rot.seq;
  }
  const successors = Array.isArray(sm.successors) ? sm.successors : [null];
  if (rec.signature) {
    const res = await V.ed25519Verify(key, rec.body, rec.signature);
    add("device signature (Ed25519 over the record body)", res.ok, res.message, { engine: res.engine });
    if (successors.length) add("successors", false, "a signed record needs no successors");
    return;
  }
  // an unsigned record is authenticated by the hash chain up to the first signed successor
  let prev = await V.sha256(rec.body);
  let seq = rec.seq;
  let closed = false;
  for (const [i, s64] of successors.entries()) {
    if (closed) {
      add(`successor ${i + 1}`, false, "successors must end at the first signed record");
      break;
    }
    const s = V.splitRecord(V.unb64(s64));
    const link = V.equal(s.deviceId, rec.deviceId) && s.seq > seq && V.equal(s.body.subarray(31, 63), prev);
    add(`successor ${i + 1} (seq ${s.seq}) links by prev_hash`, link, link ? "hash chain intact" : "chain broken");
    if (!link) break;
    if (s.signature) {
      const res = await V.ed25519Verify(key, s.body, s.signature);
      add(`successor seq ${s.seq} signature closes the chain`, res.ok, res.message, { engine: res.engine });
      if (!res.ok) break;
      closed = true;
    }
    prev = await V.sha256(s.body);
    seq = s.seq;
  }
  if (!closed) add("unsigned record authenticated", false, "no signed successor closes the chain");
}

async function eventChecks(payload, sm, decoded, vkey, note, depth, index, add) {
  let ev;
  try {
    ev = V.parseCanonical(V.fromUtf8(payload));
  } catch {
    ev = null;
  }
  add("decoded view matches the bytes", !!ev && same(decoded, ev), ev ? `${ev.contract}: ${ev.type}` : "event is not canonical JSON");
  add("contract event", null, "an event is the gateway's output: its checkpoint signature covers it; replay (edgeseal audit) shows the contracts compute it");
  const named = ev && Array.isArray(ev.causes) ? ev.causes : [];
  const valid = named.every((c) => Number.isSafeInteger(c) && c >= 0 && c < index) && new Set(named).size === named.length;
  const want = named.slice(0, 64);
  const causes = Array.isArray(sm.causes) ? sm.causes : [];
  const got = causes.map((b) => (b && b.entry ? b.entry.index : null));
  add("the bundle proves exactly the causes the event names, in its order", valid && same(got, want), `causes ${want.join(", ") || "none"}`);
  if (depth > 0) {
    add("cause", false, "an event's cause cannot be an event");
    return;
  }
  for (const cb of causes) {
    const sub = cb && cb.checkpoint === note ? await verifyBundle(cb, vkey, depth + 1, note) : [{ name: "checkpoint", ok: false, message: "a cause must be proven against the same checkpoint" }];
    const ok = !sub.some((x) => x.ok === false);
    add(`cause: entry ${cb && cb.entry ? cb.entry.index : "?"}${cb && cb.entry ? ` (${cb.entry.kind})` : ""}`, ok, ok ? "proven: inclusion and signatures" : "does not verify", { sub });
  }
}

async function entrySignatureChecks(entry, sm, decoded, vkey, note, depth, index) {
  const out = [];
  const add = (name, ok, message, extra = {}) => out.push({ name, ok, message, ...extra });
  const payload = entry.subarray(1);
  try {
    if (entry[0] === 1) {
      await recordChecks(payload, sm, decoded, add);
    } else if (entry[0] === 2) {
      const tx = V.splitTx(payload);
      const txHash = V.hex(await V.sha256(tx.body));
      const material = { signers: tx.signers, signatures: tx.sigs.map(V.hex), tx_hash: txHash };
      const ok = same(sm, { type: "participant-tx", ...material }) && same(decoded, { ...material, body: tx.obj });
      add("decoded view matches the bytes", ok, `tx ${short(txHash, 12)}: ${tx.obj.contract}/${tx.obj.action}`);
      for (const c of await V.verifyEntrySignatures(entry, null)) add(c.name, c.ok, c.message, { engine: c.engine });
    } else if (entry[0] === 3) {
      await eventChecks(payload, sm, decoded, vkey, note, depth, index, add);
    } else if (entry[0] === 4) {
      for (const c of await V.verifyEntrySignatures(entry, null)) add(c.name, c.ok, c.message);
      const material = { device_id: V.hex(payload.subarray(1, 17)), public_key: V.hex(payload.subarray(17, 49)) };
      const rest = payload.subarray(49);
      const metadata = rest.length ? JSON.parse(V.fromUtf8(rest)) : {};
      const ok = same(sm, { type: "device-enrollment", ...material }) && same(decoded, { ...material, metadata });
      add("decoded view matches the bytes", ok, `device ${short(material.device_id, 12)}`);
    } else {
      add("entry", false, `unknown entry kind ${entry[0]}`);
    }
  } catch (e) {
    add("entry", false, `${e.code || "error"}: ${e.message}`);
  }
  return out;
}

function checkList(checks) {
  return h(
    "ol",
    { class: "checks" },
    checks.map((c) =>
      h(
        "li",
        { class: c.ok === true ? "pass" : c.ok === false ? "fail" : "info", "data-ok": String(c.ok) },
        h("span", { class: "mark", "aria-hidden": "true" }, c.ok === true ? "✓" : c.ok === false ? "✗" : "i"),
        h("span", { class: "visually-hidden" }, c.ok === true ? "passed: " : c.ok === false ? "failed: " : "note: "),
        h("strong", {}, c.name),
        " — ",
        c.message,
        c.engine ? h("span", { class: "small" }, ` [${c.engine}]`) : null,
        c.sub ? checkList(c.sub) : null,
      ),
    ),
  );
}

async function onVerify(ev) {
  ev.preventDefault();
  const out = $("verify-result");
  const text = $("bundle-text").value; // not trimmed: the canonical form has no whitespace
  const vkey = $("vkey").value.trim();
  out.replaceChildren(h("p", { class: "muted" }, "Verifying…"));
  let bundle;
  const canonical = { name: "canonical form (sorted keys, no whitespace, no duplicate keys, integers)", ok: true, message: "the text is the bundle's one serialisation" };
  try {
    bundle = V.parseCanonical(text);
  } catch (e) {
    try {
      bundle = JSON.parse(text);
    } catch (e2) {
      out.replaceChildren(h("p", { class: "verdict bad", "data-verdict": "fail" }, `✗ Not valid JSON: ${e2.message}`));
      return;
    }
    Object.assign(canonical, { ok: false, message: `${e.code || "error"}: ${e.message}; the checks below are for information` });
  }
  const t0 = performance.now();
  let checks;
  try {
    checks = [canonical, ...(await verifyBundle(bundle, vkey))];
  } catch (e) {
    checks = [canonical, { name: "bundle", ok: false, message: `${e.code || "error"}: ${e.message}` }];
  }
  const failed = (function count(cs) {
    return cs.reduce((a, c) => a + (c.ok === false ? 1 : 0) + (c.sub ? count(c.sub) : 0), 0);
  })(checks);
  const ms = Math.round(performance.now() - t0);
  out.replaceChildren(
    h(
      "p",
      { class: `verdict ${failed ? "bad" : "good"}`, "data-verdict": failed ? "fail" : "pass" },
      failed ? `✗ Bundle does NOT verify: ${failed} check(s) failed.` : `✓ Bundle verifies: every check passed (${ms} ms).`,
    ),
    checkList(checks),
  );
}

async function onFile(ev) {
  const f = ev.target.files && ev.target.files[0];
  if (!f) return;
  $("bundle-text").value = await f.text();
  $("verify-result").replaceChildren(h("p", { class: "muted" }, `${f.name} loaded: press Verify.`));
}

async function showEngines() {
  const e = await V.engines();
  $("engines").textContent = `SHA-2 via ${e.sha}, Ed25519 via ${e.ed25519}`;
}

// ---------------------------------------------------------------- start

$("verify-form").addEventListener("submit", onVerify);
$("fetch-bundle").addEventListener("click", () => loadBundle(Number($("bundle-index").value), false));
$("bundle-file").addEventListener("change", onFile);
$("vkey").addEventListener("input", (e) => (e.target.dataset.touched = "1"));
showEngines();
poll();

// for tests and the curious: window.edgeseal.verify.sha512js(...)
window.edgeseal = { verify: V, state: S };
