// edgeseal dashboard: act as a participant (docs/dashboard.md, "Act as a participant").
// A key generated in this browser with WebCrypto Ed25519 (private half non-extractable, kept in
// IndexedDB) signs participant transactions in the format of gateway/txformat.py
// (docs/contracts.md): body = canonical JSON (sorted keys, no whitespace, integers only, NFC);
// the key signs "edgeseal/v1/tx\n" || body; payload = n_sigs (1) || signature || body, posted
// base64 to POST /v1/transactions. The result (log index and events, or the error code) is shown
// as the API returns it. Everything from the gateway goes in with textContent, never as HTML.

const TX_DOMAIN = "edgeseal/v1/tx\n";
const TX_VERSION = 1;
const MAX_BODY_BYTES = 16384; // gateway/txformat.py MAX_BODY_BYTES
const DB_NAME = "edgeseal-participant";
const DB_STORE = "keys";
const KEY_ID = "participant";
const NONCE_ID = "nonce";
const POLL_MS = 4000; // contracts and registration change rarely

// Actions per contract type with an args template (gateway/contracts/*.py, docs/contracts.md).
// "tick" advances a contract's clock (owner or operator). Cosigned actions (agri handover) need a
// second signature, which this page cannot collect: use `edgeseal participant` for those.
const ENGINE_ACTIONS = {
  register: { public_key: "<this key>", name: "", roles: [] },
  "set-roles": { public_key: "", roles: [] },
  create: { id: "", type: "", params: {} },
  "bind-device": { contract: "", device: "" },
  "unbind-device": { contract: "", device: "" },
};
const CONTRACT_ACTIONS = {
  agri: {
    "register-lot": { lot: "", product: "", code: "", quantity: 0, origin: "" },
    "attach-device": { lot: "", device: "" },
    "detach-device": { device: "" },
    split: { lot: "", into: [{ lot: "", quantity: 0 }, { lot: "", quantity: 0 }] },
    merge: { lots: ["", ""], into: "" },
    sell: { lot: "" },
    recall: { lot: "", reason: "" },
    tick: {},
  },
  collateral: { drawdown: { amount_minor: 0 }, repay: { amount_minor: 0 }, unfreeze: {}, "release-lien": {}, tick: {} },
  energy: {
    bid: { interval_start_s: 0, energy_wh: 0, price_minor_per_kwh: 0 },
    offer: { interval_start_s: 0, energy_wh: 0, price_minor_per_kwh: 0 },
    "register-meter": { device: "", participant: "" },
    "set-grid-prices": { interval_start_s: 0, imbalance_price_minor_per_kwh: 0, feed_in_price_minor_per_kwh: 0 },
    tick: {},
  },
  fishfarm: {
    apply: {},
    disburse: {},
    resume: {},
    repay: { amount_minor: 0 },
    sale: { amount_minor: 0 },
    "bind-policy": {
      policy: "", premium_minor: 0, payout_minor: 0, do_min_centi_mg_l: 0, temp_max_centi_c: 0,
      max_duration_s: 0, window_s: 0, end_s: 0,
    },
    tick: {},
  },
  parking: {
    "open-wallet": { vehicle: "", limit_minor: 0 },
    "top-up": { vehicle: "", amount_minor: 0 },
    "set-limit": { vehicle: "", limit_minor: 0 },
    "pay-session": { session: "" },
    tick: {},
  },
};

const te = new TextEncoder();
const $ = (id) => document.getElementById(id);
const P = { keys: null, publicHex: "", contracts: [], registered: null };

// ---------------------------------------------------------------- canonical JSON (txformat.py)

/** A body that has no canonical form: code as the gateway would name it (tx-float, ...). */
export class TxFormatError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

// Python sorts keys by code point; JS's default sort compares UTF-16 units (differs above U+FFFF).
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function checkString(s, path) {
  if (!s.isWellFormed()) throw new TxFormatError("tx-malformed", `${path}: lone surrogate`);
  if (s.normalize("NFC") !== s) throw new TxFormatError("tx-not-canonical", `${path}: string is not in NFC`);
}

/** Return the canonical JSON text of value, as gateway/txformat.py canonical_json (json.dumps
 * sort_keys, separators "," ":", ensure_ascii False: JSON.stringify escapes strings the same way);
 * throw TxFormatError for floats, integers beyond +-(2^53-1), non-NFC strings. */
export function canonicalJson(value, path = "$") {
  if (value === null || value === true || value === false) return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new TxFormatError("tx-float", `${path}: floats are not allowed, use scaled integers`);
    if (!Number.isSafeInteger(value)) throw new TxFormatError("tx-int-range", `${path}: integer outside +-(2^53-1)`);
    return String(value);
  }
  if (typeof value === "string") {
    checkString(value, path);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v, i) => canonicalJson(v, `${path}[${i}]`)).join(",")}]`;
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(byCodePoint);
    return `{${keys.map((k) => (checkString(k, path), `${JSON.stringify(k)}:${canonicalJson(value[k], `${path}.${k}`)}`)).join(",")}}`;
  }
  throw new TxFormatError("tx-malformed", `${path}: ${typeof value} is not a JSON type`);
}

/** Return the canonical body bytes of a single-signer transaction (txformat.py tx_body). */
export function txBody(participant, nonce, contract, action, args, timeS) {
  const body = te.encode(
    canonicalJson({ v: TX_VERSION, participant, cosigners: [], nonce, contract, action, args, time_s: timeS }),
  );
  if (body.length > MAX_BODY_BYTES) throw new TxFormatError("tx-malformed", `body exceeds ${MAX_BODY_BYTES} bytes`);
  return body;
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
function b64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// ---------------------------------------------------------------- the key (WebCrypto + IndexedDB)

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(DB_STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function dbOp(mode, fn) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(DB_STORE, mode);
      const req = fn(tx.objectStore(DB_STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}
const dbGet = (id) => dbOp("readonly", (s) => s.get(id));
const dbPut = (id, v) => dbOp("readwrite", (s) => s.put(v, id));

/** Return the stored key pair, or a new one (Ed25519, private half non-extractable) saved to
 * IndexedDB; throw if this browser's WebCrypto lacks Ed25519. */
export async function loadOrCreateKeys() {
  const stored = await dbGet(KEY_ID);
  if (stored && stored.privateKey && stored.publicKey) return stored;
  const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  await dbPut(KEY_ID, keys);
  return keys;
}

/** Return the next nonce: above every nonce this page used, and at least the time in ms (so a
 * key used before from this profile keeps increasing even if the counter was cleared). */
async function nextNonce() {
  const last = (await dbGet(NONCE_ID)) || 0;
  const nonce = Math.max(last + 1, Date.now());
  await dbPut(NONCE_ID, nonce);
  return nonce;
}

/** Return the base64 payload n_sigs || signature || body of body signed with this browser's key. */
export async function signPayload(body) {
  const message = new Uint8Array(te.encode(TX_DOMAIN).length + body.length);
  message.set(te.encode(TX_DOMAIN));
  message.set(body, te.encode(TX_DOMAIN).length);
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, P.keys.privateKey, message));
  const payload = new Uint8Array(1 + sig.length + body.length);
  payload[0] = 1;
  payload.set(sig, 1);
  payload.set(body, 1 + sig.length);
  return b64(payload);
}

// ---------------------------------------------------------------- the page

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${r.status} on ${path}`);
  return r.json();
}

function actionsFor(contractId) {
  if (contractId === "engine") return ENGINE_ACTIONS;
  const c = P.contracts.find((x) => x.id === contractId);
  return (c && CONTRACT_ACTIONS[c.type]) || {};
}

function template(contractId, action) {
  const t = structuredClone(actionsFor(contractId)[action] || {});
  if ("public_key" in t && t.public_key === "<this key>") t.public_key = P.publicHex;
  return JSON.stringify(t, null, 1);
}

function fillActions() {
  const contract = $("p-contract").value;
  const sel = $("p-action");
  const before = sel.value;
  sel.replaceChildren(...Object.keys(actionsFor(contract)).map((a) => h("option", { value: a }, a)));
  if ([...sel.options].some((o) => o.value === before)) sel.value = before;
  $("p-args").value = template(contract, sel.value);
}

function fillContracts() {
  const sel = $("p-contract");
  const before = sel.value || "engine";
  const options = [h("option", { value: "engine" }, "engine (participants, contracts, devices)")];
  for (const c of P.contracts) options.push(h("option", { value: c.id }, `${c.id} (${c.type})`));
  const same = sel.options.length === options.length && [...sel.options].every((o, i) => o.value === options[i].value);
  if (same) return;
  sel.replaceChildren(...options);
  sel.value = [...sel.options].some((o) => o.value === before) ? before : "engine";
  fillActions();
}

function showRegistration(participants) {
  const me = participants[P.publicHex];
  const el = $("p-registered");
  el.dataset.registered = me ? "1" : "0";
  if (me) {
    el.textContent = `Registered as ${me.name} (${me.roles.join(", ")}), at log index ${me.registered_at}.`;
  } else if (Object.keys(participants).length === 0) {
    el.textContent =
      "Not registered. No participant exists yet: this key may register itself as the first " +
      "operator (contract engine, action register, with the role operator).";
  } else {
    el.textContent =
      "Not registered. A registered operator must register this public key with a signed " +
      "register transaction (contract engine, action register); the gateway's operator token " +
      "cannot do it. Send them the key above.";
  }
}

async function refresh() {
  try {
    const [contracts, parts] = await Promise.all([getJson("/v1/contracts"), getJson("/v1/participants")]);
    P.contracts = contracts.contracts || [];
    fillContracts();
    showRegistration(parts.participants || {});
  } catch {
    /* the main view reports an unreachable gateway */
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

function showResult(ok, lines, code = null) {
  const out = $("p-result");
  const box = h("div", { "data-outcome": ok ? "accepted" : "rejected", "data-code": code });
  box.append(h("p", {}, h("span", { class: `badge ${ok ? "ok" : "bad"}` }, ok ? "ACCEPTED" : "REJECTED"), " ", lines[0]));
  if (lines.length > 1) box.append(h("ul", {}, lines.slice(1).map((l) => h("li", {}, l))));
  out.replaceChildren(box);
}

async function onSubmit(ev) {
  ev.preventDefault();
  const btn = $("p-submit");
  btn.disabled = true;
  try {
    const contract = $("p-contract").value;
    const action = $("p-action").value;
    let args;
    try {
      args = JSON.parse($("p-args").value || "{}");
    } catch (e) {
      throw new TxFormatError("bad-json", `args are not JSON: ${e.message}`);
    }
    if (args === null || typeof args !== "object" || Array.isArray(args)) throw new TxFormatError("tx-malformed", "args must be a JSON object");
    const timeS = Math.floor(Date.now() / 1000); // the gateway allows 300 s of skew
    const body = txBody(P.publicHex, await nextNonce(), contract, action, args, timeS);
    const payload = await signPayload(body);
    const r = await fetch("/v1/transactions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ payload }),
    });
    let res = null;
    try {
      res = await r.json();
    } catch {
      /* not JSON */
    }
    if (r.status === 201 && res) {
      const events = (res.events || []).map((e) => `event ${e.index}: ${e.type} ${JSON.stringify(e.data)}`);
      showResult(true, [`transaction at log index ${res.index} (tx ${res.tx_hash.slice(0, 16)}…)`, ...events]);
      $("p-result").firstChild.dataset.index = String(res.index);
      $("p-result").firstChild.dataset.txHash = res.tx_hash;
    } else {
      const code = res && res.code ? res.code : `http-${r.status}`;
      showResult(false, [`${r.status} ${code}: ${(res && res.message) || "no detail"}`], code);
    }
  } catch (e) {
    showResult(false, [`not sent: ${e.message}`], e.code || "error");
  } finally {
    btn.disabled = false;
  }
}

async function start() {
  const status = $("p-key");
  try {
    P.keys = await loadOrCreateKeys();
    P.publicHex = hex(new Uint8Array(await crypto.subtle.exportKey("raw", P.keys.publicKey)));
  } catch (e) {
    status.textContent = `This browser cannot hold an Ed25519 key (WebCrypto Ed25519: ${e.message}); use \`edgeseal participant\` instead.`;
    $("p-form").hidden = true;
    return;
  }
  status.textContent = P.publicHex;
  status.dataset.publicKey = P.publicHex;
  $("p-form").hidden = false;
  $("p-contract").addEventListener("change", fillActions);
  $("p-action").addEventListener("change", () => ($("p-args").value = template($("p-contract").value, $("p-action").value)));
  $("p-form").addEventListener("submit", onSubmit);
  fillContracts();
  await refresh();
  document.getElementById("participant").dataset.ready = "1";
}

start();
