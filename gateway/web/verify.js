// In-browser verification of edgeseal evidence: SHA-256/512, Ed25519 (RFC 8032, libsodium
// policy), C2SP signed notes and checkpoints, RFC 9162 inclusion proofs, ledger entries, and the
// canonical form and shape of proof bundles (format 2, docs/api.md "Proof bundle").
//
// WebCrypto (crypto.subtle) is used when the page has it; it exists only in a secure context
// (https, or http on localhost). A dashboard opened over plain http from another machine (a
// phone on the farm's Wi-Fi) has no crypto.subtle, so every primitive has a pure-JS fallback
// here. `setEngine("js")` forces the fallbacks (the dashboard's ?crypto=js does that).
// No dependencies, no build step.

"use strict";

// ---------------------------------------------------------------- bytes

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

export const utf8 = (s) => te.encode(s);
export const fromUtf8 = (b) => td.decode(b);

export function hex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function unhex(s) {
  if (typeof s !== "string" || s.length % 2 || /[^0-9a-fA-F]/.test(s)) {
    throw new VerifyError("bad-hex", "not a hex string");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

export function b64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

// Canonical standard base64 only (as gateway/ledger/note.py): re-encoding must give the input.
export function unb64(s) {
  let raw;
  try {
    raw = atob(s);
  } catch {
    throw new VerifyError("bad-base64", "not base64");
  }
  const out = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  if (b64(out) !== s) throw new VerifyError("bad-base64", "non-canonical base64");
  return out;
}

export function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export class VerifyError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// ---------------------------------------------------------------- engine choice

let forceJs = false;

export function setEngine(name) {
  forceJs = name === "js";
}

function subtle() {
  if (forceJs) return null;
  return globalThis.crypto && globalThis.crypto.subtle ? globalThis.crypto.subtle : null;
}

let ed25519Native = null; // null = not probed yet; then true/false

async function nativeEd25519() {
  const s = subtle();
  if (!s) return false;
  if (ed25519Native === null) {
    try {
      // the base point's encoding: a valid key every implementation accepts
      const base = unhex("5866666666666666666666666666666666666666666666666666666666666666");
      await s.importKey("raw", base, { name: "Ed25519" }, false, ["verify"]);
      ed25519Native = true;
    } catch {
      ed25519Native = false;
    }
  }
  return ed25519Native;
}

// Which implementation will do each primitive (shown on the page next to the results).
export async function engines() {
  return {
    sha: subtle() ? "WebCrypto" : "JS",
    ed25519: (await nativeEd25519()) ? "WebCrypto" : "JS",
  };
}

// ---------------------------------------------------------------- SHA-2 in JS (FIPS 180-4)

const PRIMES = (() => {
  const out = [];
  for (let n = 2; out.length < 80; n++) if (out.every((p) => n % p)) out.push(n);
  return out;
})();

function iroot(n, k) {
  // floor(n ** (1/k)) for BigInt n >= 1, by Newton's method from above
  let x = 1n << BigInt(Math.ceil(n.toString(2).length / k) + 1);
  for (;;) {
    const y = ((BigInt(k) - 1n) * x + n / x ** BigInt(k - 1)) / BigInt(k);
    if (y >= x) return x;
    x = y;
  }
}

// Round constants and initial values: fractional parts of cube and square roots of primes.
const frac = (p, k, bits) => iroot(BigInt(p) << BigInt(k * bits), k) & ((1n << BigInt(bits)) - 1n);
const K256 = Uint32Array.from(PRIMES.slice(0, 64), (p) => Number(frac(p, 3, 32)));
const H256 = Uint32Array.from(PRIMES.slice(0, 8), (p) => Number(frac(p, 2, 32)));
const K512 = PRIMES.map((p) => frac(p, 3, 64));
const H512 = PRIMES.slice(0, 8).map((p) => frac(p, 2, 64));

function pad(msg, block, lenBytes) {
  const bitLen = BigInt(msg.length) * 8n;
  let n = msg.length + 1 + lenBytes;
  n += (block - (n % block)) % block;
  const out = new Uint8Array(n);
  out.set(msg);
  out[msg.length] = 0x80;
  for (let i = 0; i < lenBytes; i++) out[n - 1 - i] = Number((bitLen >> BigInt(8 * i)) & 0xffn);
  return out;
}

export function sha256js(msg) {
  const m = pad(msg, 64, 8);
  const h = Uint32Array.from(H256);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < m.length; off += 64) {
    for (let i = 0; i < 16; i++) {
      const j = off + i * 4;
      w[i] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 =
        (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) |
        0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    const v = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) h[i] = (h[i] + v[i]) >>> 0;
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    out[i * 4] = h[i] >>> 24;
    out[i * 4 + 1] = (h[i] >>> 16) & 0xff;
    out[i * 4 + 2] = (h[i] >>> 8) & 0xff;
    out[i * 4 + 3] = h[i] & 0xff;
  }
  return out;
}

export function sha512js(msg) {
  const M = (1n << 64n) - 1n;
  const m = pad(msg, 128, 16);
  const h = H512.slice();
  const w = new Array(80);
  const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & M;
  for (let off = 0; off < m.length; off += 128) {
    for (let i = 0; i < 16; i++) {
      let x = 0n;
      for (let j = 0; j < 8; j++) x = (x << 8n) | BigInt(m[off + i * 8 + j]);
      w[i] = x;
    }
    for (let i = 16; i < 80; i++) {
      const s0 = rotr(w[i - 15], 1n) ^ rotr(w[i - 15], 8n) ^ (w[i - 15] >> 7n);
      const s1 = rotr(w[i - 2], 19n) ^ rotr(w[i - 2], 61n) ^ (w[i - 2] >> 6n);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 80; i++) {
      const S1 = rotr(e, 14n) ^ rotr(e, 18n) ^ rotr(e, 41n);
      const ch = (e & f) ^ (~e & M & g);
      const t1 = (hh + S1 + ch + K512[i] + w[i]) & M;
      const S0 = rotr(a, 28n) ^ rotr(a, 34n) ^ rotr(a, 39n);
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) & M;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) & M;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) & M;
    }
    const v = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) h[i] = (h[i] + v[i]) & M;
  }
  const out = new Uint8Array(64);
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 8; j++) out[i * 8 + j] = Number((h[i] >> BigInt(56 - 8 * j)) & 0xffn);
  }
  return out;
}

export async function sha256(bytes) {
  const s = subtle();
  return s ? new Uint8Array(await s.digest("SHA-256", bytes)) : sha256js(bytes);
}

export async function sha512(bytes) {
  const s = subtle();
  return s ? new Uint8Array(await s.digest("SHA-512", bytes)) : sha512js(bytes);
}

// ---------------------------------------------------------------- Ed25519 (RFC 8032 5.1)

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const mod = (a, m = P) => {
  const r = a % m;
  return r >= 0n ? r : r + m;
};
function powmod(b, e, m = P) {
  let r = 1n;
  b = mod(b, m);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}
const inv = (a) => powmod(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = powmod(2n, (P - 1n) / 4n);
const IDENTITY = [0n, 1n, 1n, 0n];

// Extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z; RFC 8032 5.1.4 addition,
// which is complete on this curve (it doubles too).
function add(p, q) {
  const [X1, Y1, Z1, T1] = p;
  const [X2, Y2, Z2, T2] = q;
  const A = mod((Y1 - X1) * (Y2 - X2));
  const B = mod((Y1 + X1) * (Y2 + X2));
  const C = mod(2n * T1 * T2 * D);
  const DD = mod(2n * Z1 * Z2);
  const E = B - A;
  const F = DD - C;
  const G = DD + C;
  const H = B + A;
  return [mod(E * F), mod(G * H), mod(F * G), mod(E * H)];
}

function mul(s, p) {
  let q = IDENTITY;
  while (s > 0n) {
    if (s & 1n) q = add(q, p);
    p = add(p, p);
    s >>= 1n;
  }
  return q;
}

const leInt = (bytes) => {
  let x = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i]);
  return x;
};

function encodePoint(p) {
  const zi = inv(p[2]);
  const x = mod(p[0] * zi);
  let v = mod(p[1] * zi) | ((x & 1n) << 255n);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

// RFC 8032 5.1.3, rejecting non-canonical encodings (y >= p, or x = 0 with the sign bit set).
function decodePoint(bytes) {
  const y = leInt(bytes) & ((1n << 255n) - 1n);
  const sign = BigInt(bytes[31] >> 7);
  if (y >= P) return null;
  const x2 = mod((y * y - 1n) * inv(D * y * y + 1n));
  let x = powmod(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * SQRT_M1);
  if (mod(x * x - x2) !== 0n) return null;
  if (x === 0n && sign) return null;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

const isIdentity = (p) => p[0] === 0n && mod(p[1] - p[2]) === 0n;
const smallOrder = (p) => isIdentity(mul(8n, p));
const BASE = decodePoint(unhex("5866666666666666666666666666666666666666666666666666666666666666"));

// The policy both sides apply (docs/wire-format.md "Signature policy", libsodium's): canonical
// S < L, canonical A and R, A and R not of small order; cofactorless [S]B == R + [k]A.
// Returns null when the policy holds, else {code, message}.
function policy(publicKey, signature) {
  if (publicKey.length !== 32) return { code: "bad-public-key", message: "public key is not 32 bytes" };
  if (signature.length !== 64) return { code: "bad-signature", message: "signature is not 64 bytes" };
  const A = decodePoint(publicKey);
  if (!A) return { code: "bad-public-key", message: "public key is not a canonical curve point" };
  if (smallOrder(A)) return { code: "bad-public-key", message: "public key has small order" };
  if (leInt(signature.subarray(32)) >= L) {
    return { code: "non-canonical-signature", message: "signature scalar S is not below L" };
  }
  const R = decodePoint(signature.subarray(0, 32));
  if (!R || smallOrder(R)) return { code: "bad-signature", message: "R is not a usable point" };
  return null;
}

export async function ed25519VerifyJs(publicKey, message, signature) {
  const A = decodePoint(publicKey);
  const S = leInt(signature.subarray(32));
  const k = mod(leInt(await sha512(concat(signature.subarray(0, 32), publicKey, message))), L);
  const negA = [mod(-A[0]), A[1], A[2], mod(-A[3])];
  const check = add(mul(S, BASE), mul(k, negA)); // [S]B - [k]A must equal R
  return equal(encodePoint(check), signature.subarray(0, 32));
}

// Returns {ok, code, message, engine}; never throws for bad input.
export async function ed25519Verify(publicKey, message, signature) {
  const bad = policy(publicKey, signature);
  const native = await nativeEd25519();
  const engine = native ? "WebCrypto" : "JS";
  if (bad) return { ok: false, engine, ...bad };
  let ok;
  if (native) {
    const key = await subtle().importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    ok = await subtle().verify({ name: "Ed25519" }, key, signature, message);
  } else {
    ok = await ed25519VerifyJs(publicKey, message, signature);
  }
  return ok
    ? { ok: true, engine, code: "ok", message: "signature verifies" }
    : { ok: false, engine, code: "bad-signature", message: "signature does not verify" };
}

// ---------------------------------------------------------------- C2SP signed notes

export const SIG_PREFIX = "\u2014 ";
const MAX_NOTE_SIGNATURES = 100; // as Go's note.Open and gateway/ledger/note.py

const validKeyName = (n) => n.length > 0 && !n.includes("+") && !/\s/.test(n);

export async function keyId(name, publicKey) {
  return (await sha256(concat(utf8(name), new Uint8Array([0x0a, 0x01]), publicKey))).slice(0, 4);
}

// "<name>+<key id hex>+<base64(0x01 || public key)>" -> {name, keyId, publicKey}
export async function parseVkey(vkey) {
  const s = vkey.trim();
  const i = s.indexOf("+");
  const j = s.indexOf("+", i + 1);
  if (i < 0 || j < 0) throw new VerifyError("bad-vkey", "a vkey is name+keyid+key");
  const name = s.slice(0, i);
  const idHex = s.slice(i + 1, j);
  const raw = unb64(s.slice(j + 1));
  if (!validKeyName(name)) throw new VerifyError("bad-vkey", "invalid key name");
  if (raw.length !== 33 || raw[0] !== 0x01) throw new VerifyError("bad-vkey", "not an Ed25519 key");
  const publicKey = raw.slice(1);
  const id = await keyId(name, publicKey);
  if (hex(id) !== idHex) throw new VerifyError("bad-vkey", "key id does not match name and key");
  return { name, keyId: id, publicKey };
}

// c2sp.org/signed-note: text (ends in \n), blank line, signature lines.
export function parseNote(note) {
  for (const ch of note) {
    if (ch < " " && ch !== "\n") throw new VerifyError("bad-note", "control character in note");
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new VerifyError("bad-note", "note has no signature block");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) throw new VerifyError("bad-note", "signature block must end with \\n");
  const sigs = block
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      if (!line.startsWith(SIG_PREFIX)) throw new VerifyError("bad-note", "bad signature line");
      const f = line.slice(SIG_PREFIX.length).split(" ");
      if (f.length !== 2 || !validKeyName(f[0])) throw new VerifyError("bad-note", "bad signature line");
      const raw = unb64(f[1]);
      if (raw.length < 5) throw new VerifyError("bad-note", "signature too short");
      return { name: f[0], keyId: raw.slice(0, 4), signature: raw.slice(4) };
    });
  if (sigs.length > MAX_NOTE_SIGNATURES) throw new VerifyError("bad-note", "too many signatures");
  return { text, sigs };
}

// Go's note.Open with a verifier list, as gateway/ledger/note.py open_note: a signature by a key
// not among `verifiers` ({name, keyId, publicKey}, e.g. from parseVkey) goes to `unknown`
// (identical lines kept once); of several lines by one known key only the first is verified
// and decides, the rest are ignored; a signature naming a key two verifiers share is refused
// ("duplicate-verifier"); a known key's failing signature is refused ("bad-signature"); no
// known signer is "unknown-key". Returns {text, verified, unknown, lines, engine}; throws
// VerifyError.
export async function openNote(noteText, verifiers) {
  const { text, sigs } = parseNote(noteText);
  const keyOf = (name, id) => `${name}+${hex(id)}`;
  const known = new Map();
  for (const v of verifiers) known.set(keyOf(v.name, v.keyId), [...(known.get(keyOf(v.name, v.keyId)) || []), v]);
  const verified = [];
  const unknown = [];
  const seen = new Set();
  let engine;
  for (const s of sigs) {
    const k = keyOf(s.name, s.keyId);
    const matches = known.get(k);
    if (!matches) {
      if (!unknown.some((u) => keyOf(u.name, u.keyId) === k && equal(u.signature, s.signature))) unknown.push(s);
      continue;
    }
    if (matches.length > 1) throw new VerifyError("duplicate-verifier", `ambiguous key ${k}: two verifiers`);
    if (seen.has(k)) continue;
    seen.add(k);
    const r = await ed25519Verify(matches[0].publicKey, utf8(text), s.signature);
    if (!r.ok) throw new VerifyError("bad-signature", `signature by ${k} does not verify: ${r.message}`);
    engine = r.engine;
    verified.push(s);
  }
  if (!verified.length) throw new VerifyError("unknown-key", "note is not signed by a known key");
  return { text, verified, unknown, lines: sigs.length, engine };
}

export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new VerifyError("bad-checkpoint", "must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => !l)) {
    throw new VerifyError("bad-checkpoint", "needs >= 3 non-empty lines");
  }
  const [origin, sizeText, rootText] = lines;
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new VerifyError("bad-checkpoint", "bad tree size");
  const root = unb64(rootText);
  if (root.length !== 32) throw new VerifyError("bad-checkpoint", "root is not 32 bytes");
  return { origin, size: BigInt(sizeText), root, extensions: lines.slice(3) };
}

// Verify a signed checkpoint note with the log's vkey (openNote with that one verifier).
// Returns {ok, code, message, checkpoint, lines (signature lines in the note), engine}.
export async function verifyCheckpoint(noteText, vkey) {
  try {
    const v = await parseVkey(vkey);
    const opened = await openNote(noteText, [v]);
    const checkpoint = parseCheckpoint(opened.text);
    if (checkpoint.origin !== v.name) {
      return { ok: false, code: "bad-checkpoint", message: "origin is not the key name" };
    }
    const message = `signed by ${v.name}, tree size ${checkpoint.size}`;
    return { ok: true, engine: opened.engine, code: "ok", message, checkpoint, lines: opened.lines };
  } catch (e) {
    const message = e.code === "unknown-key" ? "not signed by the gateway key" : e.message;
    return { ok: false, code: e.code || "error", message };
  }
}

// ---------------------------------------------------------------- RFC 9162 Merkle proofs

export const leafHash = (entry) => sha256(concat(new Uint8Array([0]), entry));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

// RFC 9162 2.1.3.2, as gateway/ledger/merkle.py root_from_inclusion_proof. BigInt sizes.
export async function rootFromInclusion(leaf, index, size, proof) {
  index = BigInt(index);
  size = BigInt(size);
  if (index < 0n || index >= size) throw new VerifyError("bad-range", `index ${index} not in size ${size}`);
  if (proof.some((p) => p.length !== 32)) throw new VerifyError("bad-proof", "proof hash is not 32 bytes");
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new VerifyError("bad-proof", "proof longer than the tree is deep");
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (fn && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerifyError("bad-proof", "proof shorter than the tree is deep");
  return r;
}

export async function verifyInclusion(entry, index, size, proof, root) {
  try {
    const got = await rootFromInclusion(await leafHash(entry), index, size, proof);
    return equal(got, root)
      ? { ok: true, code: "ok", message: `entry ${index} is in the tree of size ${size}` }
      : { ok: false, code: "root-mismatch", message: "the proof does not lead to the checkpoint root" };
  } catch (e) {
    return { ok: false, code: e.code || "error", message: e.message };
  }
}

// ---------------------------------------------------------------- ledger entries

export const KIND_NAMES = { 1: "device record", 2: "participant transaction", 3: "contract event", 4: "device enrollment" };

// docs/wire-format.md: payload width per value type (i32 unless listed)
const VALUE_WIDTH = { 11: 16, 25: 32 };
const MAX_VALUE_TYPE = 27; // 26 break_reason, 27 held_seq: chain_segment only

// Split a device record into body and optional signature (docs/wire-format.md, Layout).
export function splitRecord(rec) {
  if (rec.length < 64) throw new VerifyError("truncated", "record shorter than its header");
  if (rec[0] !== 1) throw new VerifyError("bad-version", "record version is not 1");
  let o = 64;
  for (let i = 0; i < rec[63]; i++) {
    if (o + 2 > rec.length) throw new VerifyError("truncated", "values truncated");
    const t = rec[o];
    if (t < 1 || t > MAX_VALUE_TYPE) throw new VerifyError("unknown-channel", `value type ${t}`);
    o += 2 + (VALUE_WIDTH[t] || 4);
  }
  if (o > rec.length) throw new VerifyError("truncated", "values truncated");
  const rest = rec.length - o;
  if (rest !== 0 && rest !== 64) throw new VerifyError("bad-signature-length", `${rest} bytes after the body`);
  return {
    body: rec.subarray(0, o),
    signature: rest ? rec.subarray(o) : null,
    deviceId: rec.subarray(3, 19),
    seq: new DataView(rec.buffer, rec.byteOffset).getUint32(19),
  };
}

// Participant transaction payload: n_sigs || n x 64-byte signature || canonical JSON body.
export function splitTx(payload) {
  const n = payload[0];
  if (!n || n > 4 || payload.length < 1 + 64 * n) throw new VerifyError("tx-malformed", "bad signature count");
  const sigs = [];
  for (let i = 0; i < n; i++) sigs.push(payload.subarray(1 + 64 * i, 65 + 64 * i));
  const body = payload.subarray(1 + 64 * n);
  let obj;
  try {
    obj = JSON.parse(fromUtf8(body));
  } catch {
    throw new VerifyError("tx-malformed", "body is not UTF-8 JSON");
  }
  const signers = [obj.participant, ...(obj.cosigners || [])];
  if (signers.length !== n) throw new VerifyError("tx-signature-count", "signatures != signers");
  return { sigs, body, obj, signers };
}

const TX_DOMAIN = utf8("edgeseal/v1/tx\n");

// The entry's own signature(s). `devicePublicKey` (bytes or null) is needed for device records.
// Returns a list of check results {name, ok, code, message, engine?}.
export async function verifyEntrySignatures(entry, devicePublicKey) {
  const kind = entry[0];
  const payload = entry.subarray(1);
  try {
    if (kind === 2) {
      const tx = splitTx(payload);
      const out = [];
      for (let i = 0; i < tx.sigs.length; i++) {
        const who = i === 0 ? "sender" : `cosigner ${i}`;
        const r = await ed25519Verify(unhex(tx.signers[i]), concat(TX_DOMAIN, tx.body), tx.sigs[i]);
        out.push({ name: `transaction signature (${who} ${tx.signers[i].slice(0, 12)}…)`, ...r });
      }
      return out;
    }
    if (kind === 1) {
      const rec = splitRecord(payload);
      const name = `device signature (device ${hex(rec.deviceId)}, seq ${rec.seq})`;
      if (!devicePublicKey) {
        return [{ name, ok: false, code: "no-device-key", message: "the bundle names no device key" }];
      }
      // the caller checks which key this is (first key or rotated: docs/api.md, bundle format)
      if (!rec.signature) {
        return [{ name, ok: null, code: "unsigned", message: "record carries no signature of its own" }];
      }
      return [{ name, ...(await ed25519Verify(devicePublicKey, rec.body, rec.signature)) }];
    }
    if (kind === 4) {
      const id = payload.subarray(1, 17);
      const pk = payload.subarray(17, 49);
      const ok = payload.length >= 49 && equal((await sha256(pk)).slice(0, 16), id);
      return [
        {
          name: "enrollment: device id = SHA-256(public key)[0:16]",
          ok,
          code: ok ? "ok" : "bad-enrollment",
          message: ok ? "device id is self-certifying" : "device id does not match the key",
        },
      ];
    }
    if (kind === 3) {
      return [
        {
          name: "contract event",
          ok: null,
          code: "no-signature",
          message: "an event is the gateway's output: the checkpoint signature covers it",
        },
      ];
    }
    return [{ name: "entry kind", ok: false, code: "bad-kind", message: `unknown entry kind ${kind}` }];
  } catch (e) {
    return [{ name: "entry signature", ok: false, code: e.code || "error", message: e.message }];
  }
}

// ---------------------------------------------------------------- proof bundles (format 2)

export const BUNDLE_VERSION = 2;

// Python's str order (code points); JS's default sort compares UTF-16 code units, which differs
// for characters above U+FFFF against U+E000..U+FFFF.
export function compareCodePoints(a, b) {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done === y.done ? 0 : x.done ? -1 : 1;
    const d = x.value.codePointAt(0) - y.value.codePointAt(0);
    if (d) return d;
  }
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

// The canonical JSON of a value, as gateway/bundle.py encode_bundle writes it: sorted keys, no
// whitespace, integers only, strings as JSON.stringify escapes them (the same escapes as
// Python's json.dumps with ensure_ascii=False). Throws VerifyError for a value with no
// canonical form (a fraction, a lone surrogate, a non-JSON type).
export function canonicalJson(value) {
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw new VerifyError("not-canonical", "a string holds a lone surrogate");
    return JSON.stringify(value);
  }
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || Object.is(value, -0)) throw new VerifyError("not-integer", `the number ${value} is not an integer`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(compareCodePoints);
    return `{${keys.map((k) => `${canonicalJson(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  throw new VerifyError("not-canonical", `a ${typeof value} is not JSON`);
}

const INTEGER_LITERAL = /^-?(0|[1-9][0-9]*)$/;

// Parse bundle text strictly, as gateway/bundle.py verify_bundle_bytes: the text must be exactly
// the canonical JSON of its value (so duplicate keys, which JSON.parse silently merges, and any
// whitespace, escape or key order of another serialisation are refused), and numbers must be
// integers (kept exact as BigInt past 2^53 where the browser passes the source text to the
// reviver). Returns the value; throws VerifyError ("bad-json", "not-integer", "not-canonical").
export function parseCanonical(text) {
  let value;
  try {
    value = JSON.parse(text, (key, v, context) => {
      if (typeof v !== "number" || !context || typeof context.source !== "string") return v;
      if (!INTEGER_LITERAL.test(context.source)) throw new VerifyError("not-integer", `the number ${context.source.slice(0, 32)} is not an integer`);
      return Number.isSafeInteger(v) ? v : BigInt(context.source);
    });
  } catch (e) {
    if (e instanceof VerifyError) throw e;
    throw new VerifyError("bad-json", `not JSON: ${e.message}`);
  }
  if (canonicalJson(value) !== text) {
    throw new VerifyError("not-canonical", "not the canonical form (sorted keys, no whitespace, no duplicate keys, one serialisation)");
  }
  return value;
}

const BUNDLE_KEYS = ["anchor", "checkpoint", "decoded", "entry", "inclusion", "signature_material", "version"];
const MATERIAL_KEYS = {
  "device-record": ["device_id", "public_key", "rotations", "signature", "successors", "type"],
  "participant-tx": ["signatures", "signers", "tx_hash", "type"],
  "device-enrollment": ["device_id", "public_key", "type"],
  "contract-event": ["causes", "type"],
};

// True if o is a plain JSON object whose keys are exactly `keys` (sorted).
export function hasKeys(o, keys) {
  if (!o || typeof o !== "object" || Array.isArray(o)) return false;
  return canonicalJson(Object.keys(o).sort()) === canonicalJson(keys);
}

// Check every object of a bundle has exactly its fields (docs/api.md, Proof bundle): no field
// the verifier does not check. Returns null if so, else what is wrong.
export function bundleShapeProblem(bundle) {
  if (!hasKeys(bundle, BUNDLE_KEYS)) return `bundle fields must be ${BUNDLE_KEYS.join(", ")}`;
  if (bundle.version !== BUNDLE_VERSION) return `version ${bundle.version} is not ${BUNDLE_VERSION}`;
  if (!hasKeys(bundle.entry, ["base64", "index", "kind"])) return "entry fields must be index, kind, base64";
  if (!hasKeys(bundle.inclusion, ["hashes", "index", "size"])) return "inclusion fields must be index, size, hashes";
  const sm = bundle.signature_material;
  const keys = sm && MATERIAL_KEYS[sm.type];
  if (!keys || !hasKeys(sm, keys)) return "signature_material has other fields than its type's";
  if (bundle.anchor !== null) return "anchor must be null (anchors are not checked yet)";
  return null;
}

const RECORD_KINDS = { 1: "reading", 2: "heartbeat", 3: "event", 4: "key_rotation", 5: "chain_segment" };

// The fields of a device record's decoded view (gateway/wire.py Record.to_json) that the header
// fixes, plus how many values it has; the values' names, units and scales need the channel
// registry, which the browser does not carry. `rec` is splitRecord(record bytes).
export async function recordHeaderView(rec) {
  const b = rec.body;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    version: b[0],
    kind: RECORD_KINDS[b[1]],
    time_synced: Boolean(b[2] & 1),
    device_id: hex(rec.deviceId),
    seq: dv.getUint32(19),
    boot: dv.getUint32(23),
    time_s: dv.getUint32(27),
    prev_hash: hex(b.subarray(31, 63)),
    record_hash: hex(await sha256(b)),
    signature: rec.signature ? hex(rec.signature) : null,
    n_values: b[63],
  };
}
