// In-browser verification of edgeseal evidence: SHA-256/512, Ed25519 (RFC 8032, libsodium
// policy), C2SP signed notes and checkpoints, RFC 9162 inclusion proofs, ledger entries, and the
// canonical form and shape of proof bundles (formats 2, 3 and 4, docs/api.md "Proof bundle"),
// witness cosignatures (C2SP tlog-cosignature, cosignature/v1) against a witness policy (C2SP
// tlog-policy, docs/witness.md), and a format 4 bundle's on-chain anchor (keccak-256, RLP,
// Merkle-Patricia proofs; docs/anchoring.md) as far as it needs no chain node.
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

// ---------------------------------------------------------------- witness cosignatures

// c2sp.org/tlog-cosignature: key id = SHA-256(name || 0x0A || 0x04 || key)[:4]; a signature
// line's bytes after the key id are timestamp (u64 big-endian) || Ed25519 signature; the signed
// message is "cosignature/v1\ntime <timestamp>\n" || the checkpoint text.
const ALG_COSIGNATURE_V1 = 0x04;
const COSIGNATURE_TAIL_BYTES = 8 + 64;

export async function cosignatureKeyId(name, publicKey) {
  return (await sha256(concat(utf8(name), new Uint8Array([0x0a, ALG_COSIGNATURE_V1]), publicKey))).slice(0, 4);
}

// "<name>+<key id hex>+<base64(0x04 || public key)>" -> {name, keyId, publicKey}
export async function parseCosignatureVkey(vkey) {
  const s = vkey.trim();
  const i = s.indexOf("+");
  const j = s.indexOf("+", i + 1);
  if (i < 0 || j < 0) throw new VerifyError("bad-vkey", "a vkey is name+keyid+key");
  const name = s.slice(0, i);
  const raw = unb64(s.slice(j + 1));
  if (!validKeyName(name)) throw new VerifyError("bad-vkey", "invalid key name");
  if (raw.length !== 33 || raw[0] !== ALG_COSIGNATURE_V1) throw new VerifyError("bad-vkey", "not a cosignature/v1 key (type 0x04)");
  const publicKey = raw.slice(1);
  const id = await cosignatureKeyId(name, publicKey);
  if (hex(id) !== s.slice(i + 1, j)) throw new VerifyError("bad-vkey", "key id does not match name and key");
  return { name, keyId: id, publicKey };
}

// The subset of C2SP tlog-policy a verifier needs (gateway/publish/policy.py is the full parser:
// the gateway refuses a malformed policy before serving it): {witnesses: [{name, key}], groups:
// Map name -> {k, members}, quorum}. Throws VerifyError("bad-policy") on what it cannot use.
export async function parsePolicy(text) {
  const witnesses = [];
  const groups = new Map();
  const names = new Set();
  let quorum = null;
  const lines = text.split("\n");
  for (let n = 0; n < lines.length; n++) {
    const f = lines[n].split(/[ \t]+/).filter((x) => x);
    const bad = (why) => new VerifyError("bad-policy", `line ${n + 1}: ${why}`);
    if (!f.length || f[0].startsWith("#") || f[0] === "log") continue;
    if (f[0] === "witness" && (f.length === 3 || f.length === 4)) {
      if (names.has(f[1]) || f[1] === "none") throw bad(`name ${f[1]} defined twice`);
      witnesses.push({ name: f[1], key: await parseCosignatureVkey(f[2]) });
      names.add(f[1]);
    } else if (f[0] === "group" && f.length >= 4) {
      const members = f.slice(3);
      const k = f[2] === "all" ? members.length : f[2] === "any" ? 1 : /^[1-9][0-9]{0,5}$/.test(f[2]) ? Number(f[2]) : 0;
      if (k < 1 || k > members.length) throw bad("k is not in 1..n");
      if (new Set(members).size !== members.length || members.some((m) => !names.has(m))) throw bad("members must be distinct names defined above");
      if (names.has(f[1]) || f[1] === "none") throw bad(`name ${f[1]} defined twice`);
      groups.set(f[1], { k, members });
      names.add(f[1]);
    } else if (f[0] === "quorum" && f.length === 2 && quorum === null) {
      if (f[1] !== "none" && !names.has(f[1])) throw bad(`quorum ${f[1]} is not defined above`);
      quorum = f[1];
    } else {
      throw bad(`cannot use ${f[0]}`);
    }
  }
  if (quorum === null) throw new VerifyError("bad-policy", "the policy has no quorum line");
  return { witnesses, groups, quorum };
}

// tlog-policy: a group witnessed iff at least k of its members did; `none` always holds.
export function quorumHolds(policy, cosigned, name = policy.quorum) {
  if (name === "none") return true;
  const g = policy.groups.get(name);
  if (!g) return cosigned.has(name);
  return g.members.filter((m) => quorumHolds(policy, cosigned, m)).length >= g.k;
}

// The witness check of a bundle's checkpoint note (gateway/bundle.py _checkpoint and
// _witness_check). Format 2: exactly one signature (the gateway's, checked by verifyCheckpoint).
// Format 3: the gateway's first, then one or more cosignature/v1 lines, none twice, none by the
// gateway's name. With a policy every cosignature must be by a policy witness and verify, and the
// quorum must hold. Returns {ok: true | false | null (not checked: no policy), message}.
export async function checkWitnesses(noteText, version, gatewayName, policy) {
  let parsed;
  try {
    parsed = parseNote(noteText);
  } catch (e) {
    return { ok: false, message: e.message };
  }
  const { text, sigs } = parsed;
  const cosigs = sigs.slice(1);
  if (sigs[0]?.name !== gatewayName) return { ok: false, message: "the first signature must be the gateway's" };
  if (version === 2 && cosigs.length) return { ok: false, message: "a format 2 checkpoint carries one signature" };
  if (version === 3 && !cosigs.length) return { ok: false, message: "a format 3 checkpoint carries cosignatures" };
  const seen = new Set();
  for (const c of cosigs) {
    const k = `${c.name}+${hex(c.keyId)}`;
    if (c.signature.length !== COSIGNATURE_TAIL_BYTES || c.name === gatewayName || seen.has(k)) {
      return { ok: false, message: `the line of ${c.name} is not a cosignature, or is there twice` };
    }
    seen.add(k);
  }
  if (!policy) {
    const message = `${cosigs.length} cosignature line(s) not checked: the gateway serves no witness policy`;
    return { ok: null, message };
  }
  const good = new Set();
  for (const c of cosigs) {
    const w = policy.witnesses.find((x) => x.key.name === c.name && equal(x.key.keyId, c.keyId));
    if (!w) return { ok: false, message: `cosignature by ${c.name}, no witness of the policy` };
    const ts = c.signature.slice(0, 8);
    const time = new DataView(ts.buffer, ts.byteOffset, 8).getBigUint64(0);
    const msg = concat(utf8(`cosignature/v1\ntime ${time}\n`), utf8(text));
    const r = await ed25519Verify(w.key.publicKey, msg, c.signature.slice(8));
    if (!r.ok) return { ok: false, message: `the cosignature of ${w.name} does not verify` };
    good.add(w.name);
  }
  const names = policy.witnesses.map((w) => w.name).filter((n) => good.has(n));
  const ok = quorumHolds(policy, good);
  return { ok, message: `${ok ? "quorum holds" : "quorum NOT met"}: cosigned by ${names.join(", ") || "no witness"}` };
}

// ---------------------------------------------------------------- proof bundles (formats 2, 3)

export const BUNDLE_VERSION = 2;
// 3: the checkpoint carries witness cosignatures; 4: the bundle carries an on-chain anchor
export const BUNDLE_VERSIONS = [2, 3, 4];

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
  if (!BUNDLE_VERSIONS.includes(bundle.version)) return `version ${bundle.version} is not ${BUNDLE_VERSIONS.join(" or ")}`;
  if (!hasKeys(bundle.entry, ["base64", "index", "kind"])) return "entry fields must be index, kind, base64";
  if (!hasKeys(bundle.inclusion, ["hashes", "index", "size"])) return "inclusion fields must be index, size, hashes";
  const sm = bundle.signature_material;
  const keys = sm && MATERIAL_KEYS[sm.type];
  if (!keys || !hasKeys(sm, keys)) return "signature_material has other fields than its type's";
  // format 4: the top-level bundle has the section (verifyAnchor says if it is missing); its
  // causes carry version 4 and a null anchor; any other version has none
  if (bundle.anchor !== null && (bundle.version !== 4 || !hasKeys(bundle.anchor, ANCHOR_KEYS))) {
    return `anchor must be null, or in a format 4 bundle have exactly ${ANCHOR_KEYS.join(", ")}`;
  }
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

// ---------------------------------------------------------------- on-chain anchors (format 4)
//
// gateway/anchor/bundled.py verify_anchor_section and gateway/anchor/evidence.py
// verify_anchor_evidence, in the browser: the anchored checkpoint's signature and consistency to
// the bundle's checkpoint, keccak-256(header RLP) = block hash, the transaction and receipt
// Merkle-Patricia proofs to the header's roots, and the Anchored event's fields. Whether the
// block is canonical and final needs a chain node: reported as not checked, never as passed.

const ANCHOR_KEYS = ["checkpoint", "consistency", "evidence"];
const EVIDENCE_KEYS = [
  "block_hash", "block_number", "chain_id", "contract", "header_rlp", "log_index",
  "receipt_index", "receipt_proof", "tx_hash", "tx_proof", "version",
];
const EVIDENCE_VERSION = 1;
const MAX_PROOF_NODES = 64; // as gateway/anchor/evidence.py
const MAX_FIELD_BYTES = 64 * 1024;
const MAX_CONSISTENCY_HASHES = 128; // as gateway/anchor/bundled.py
const MAX_RLP_DEPTH = 16; // headers, receipts and trie nodes nest 3 deep; a bound for hostile input
const STATE_PREFIX = "edgeseal-state "; // gateway/contracts/engine.py EXTENSION_PREFIX

// Keccak-f[1600] on 25 lanes held as (lo, hi) 32-bit words: lane i is s[2i], s[2i + 1].
const KECCAK_ROTATIONS = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];
const KECCAK_ROUND_CONSTANTS = (() => {
  // FIPS 202 3.2.5: rc(t) from the LFSR x^8 + x^6 + x^5 + x^4 + 1; RC bit 2^j - 1 is rc(j + 7 ir)
  const rc = (t) => {
    let r = 1;
    for (let i = 0; i < t % 255; i++) {
      r <<= 1;
      if (r & 0x100) r ^= 0x171;
    }
    return r & 1;
  };
  const out = [];
  for (let ir = 0; ir < 24; ir++) {
    let lo = 0;
    let hi = 0;
    for (let j = 0; j < 7; j++) {
      const bit = (1 << j) - 1;
      if (rc(j + 7 * ir)) {
        if (bit < 32) lo |= 1 << bit;
        else hi |= 1 << (bit - 32);
      }
    }
    out.push([lo >>> 0, hi >>> 0]);
  }
  return out;
})();

function rot64(lo, hi, n) {
  if (n >= 32) [lo, hi, n] = [hi, lo, n - 32];
  if (n === 0) return [lo, hi];
  return [((lo << n) | (hi >>> (32 - n))) >>> 0, ((hi << n) | (lo >>> (32 - n))) >>> 0];
}

function keccakF(s) {
  const c = new Uint32Array(10);
  const b = new Uint32Array(50);
  for (let round = 0; round < 24; round++) {
    for (let x = 0; x < 10; x++) c[x] = s[x] ^ s[x + 10] ^ s[x + 20] ^ s[x + 30] ^ s[x + 40];
    for (let x = 0; x < 5; x++) {
      const [l, h] = [c[2 * ((x + 1) % 5)], c[2 * ((x + 1) % 5) + 1]];
      const dlo = c[2 * ((x + 4) % 5)] ^ ((l << 1) | (h >>> 31));
      const dhi = c[2 * ((x + 4) % 5) + 1] ^ ((h << 1) | (l >>> 31));
      for (let y = 0; y < 5; y++) {
        s[2 * (x + 5 * y)] ^= dlo;
        s[2 * (x + 5 * y) + 1] ^= dhi;
      }
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        const i = x + 5 * y;
        const j = y + 5 * ((2 * x + 3 * y) % 5); // pi: (x, y) -> (y, 2x + 3y)
        [b[2 * j], b[2 * j + 1]] = rot64(s[2 * i], s[2 * i + 1], KECCAK_ROTATIONS[i]);
      }
    }
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 5; x++) {
        const i = 2 * (x + 5 * y);
        const i1 = 2 * (((x + 1) % 5) + 5 * y);
        const i2 = 2 * (((x + 2) % 5) + 5 * y);
        s[i] = b[i] ^ (~b[i1] & b[i2]);
        s[i + 1] = b[i + 1] ^ (~b[i1 + 1] & b[i2 + 1]);
      }
    }
    s[0] ^= KECCAK_ROUND_CONSTANTS[round][0];
    s[1] ^= KECCAK_ROUND_CONSTANTS[round][1];
  }
}

// Ethereum's keccak-256: the Keccak submission's padding (0x01 ... 0x80), not SHA3-256's.
export function keccak256(msg) {
  const rate = 136;
  const s = new Uint32Array(50);
  const padded = new Uint8Array((Math.floor(msg.length / rate) + 1) * rate);
  padded.set(msg);
  padded[msg.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  for (let off = 0; off < padded.length; off += rate) {
    for (let k = 0; k < rate; k += 4) {
      s[k >> 2] ^= padded[off + k] | (padded[off + k + 1] << 8) | (padded[off + k + 2] << 16) | (padded[off + k + 3] << 24);
    }
    keccakF(s);
  }
  const out = new Uint8Array(32);
  for (let k = 0; k < 32; k++) out[k] = (s[k >> 2] >>> (8 * (k & 3))) & 0xff;
  return out;
}

// Strict RLP (Yellow Paper appendix B, as pyrlp decodes): one item, nothing after it, every
// length in its shortest form. Returns Uint8Array (a string) or an array (a list).
export function rlpDecode(bytes) {
  const [item, end] = rlpItem(bytes, 0, 0);
  if (end !== bytes.length) throw new VerifyError("bad-rlp", "bytes after the RLP item");
  return item;
}

function rlpItem(b, pos, depth) {
  if (depth > MAX_RLP_DEPTH) throw new VerifyError("bad-rlp", "RLP nested too deep");
  if (pos >= b.length) throw new VerifyError("bad-rlp", "RLP is truncated");
  const p = b[pos];
  if (p < 0x80) return [b.subarray(pos, pos + 1), pos + 1];
  const isList = p >= 0xc0;
  const short = p - (isList ? 0xc0 : 0x80);
  let len = short;
  let start = pos + 1;
  if (short > 55) {
    const n = short - 55;
    if (n > 4 || start + n > b.length) throw new VerifyError("bad-rlp", "RLP length is truncated or too long");
    if (b[start] === 0) throw new VerifyError("bad-rlp", "RLP length has a leading zero");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i];
    if (len <= 55) throw new VerifyError("bad-rlp", "RLP length not in its short form");
    start += n;
  }
  const end = start + len;
  if (end > b.length) throw new VerifyError("bad-rlp", "RLP is truncated");
  if (!isList) {
    if (len === 1 && b[start] < 0x80) throw new VerifyError("bad-rlp", "a single byte below 0x80 is its own RLP");
    return [b.subarray(start, end), end];
  }
  const items = [];
  let q = start;
  while (q < end) {
    const [item, next] = rlpItem(b, q, depth + 1);
    items.push(item);
    q = next;
  }
  if (q !== end) throw new VerifyError("bad-rlp", "an RLP list item runs past its list");
  return [items, end];
}

// RLP of a non-negative integer (a trie key: RLP(transaction index)).
export function rlpInt(n) {
  if (n === 0) return new Uint8Array([0x80]);
  const be = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) be.unshift(v % 256);
  return be.length === 1 && be[0] < 0x80 ? new Uint8Array(be) : new Uint8Array([0x80 + be.length, ...be]);
}

const isBytes = (x) => x instanceof Uint8Array;
const bigOf = (bytes) => bytes.reduce((a, x) => (a << 8n) | BigInt(x), 0n);

function nibbles(bytes) {
  const out = [];
  for (const x of bytes) out.push(x >> 4, x & 15);
  return out;
}

// The value stored under `key` in the Merkle-Patricia trie of `root`, given the proof's nodes
// (raw RLP; Yellow Paper appendix D, as py-trie HexaryTrie.get_from_proof): empty if the proof
// shows the key absent. Throws VerifyError("bad-proof") for a node the proof lacks or a
// malformed node.
export function trieGet(root, key, proofNodes) {
  const db = new Map(proofNodes.map((raw) => [hex(keccak256(raw)), raw]));
  const resolve = (ref) => {
    if (Array.isArray(ref)) return ref; // a node under 32 bytes sits in its parent
    if (!isBytes(ref) || (ref.length !== 0 && ref.length !== 32)) throw new VerifyError("bad-proof", "bad node reference");
    if (!ref.length) return null;
    const raw = db.get(hex(ref));
    if (!raw) throw new VerifyError("bad-proof", `the proof lacks node ${hex(ref).slice(0, 16)}...`);
    return rlpDecode(raw);
  };
  const path = nibbles(key);
  let i = 0;
  let node = resolve(root);
  for (let step = 0; node !== null && step <= 2 * path.length + 1; step++) {
    if (!Array.isArray(node)) throw new VerifyError("bad-proof", "a trie node is not a list");
    if (node.length === 17) {
      if (i === path.length) return node[16];
      node = resolve(node[path[i++]]);
    } else if (node.length === 2) {
      const [enc, rest] = node;
      if (!isBytes(enc) || !enc.length || enc[0] >> 4 > 3) throw new VerifyError("bad-proof", "bad hex-prefix path");
      const odd = enc[0] & 0x10;
      if (!odd && enc[0] & 0x0f) throw new VerifyError("bad-proof", "bad hex-prefix path");
      const seg = nibbles(enc).slice(odd ? 1 : 2);
      const matches = seg.every((n, k) => path[i + k] === n);
      if (enc[0] & 0x20) return matches && i + seg.length === path.length ? rest : new Uint8Array(0); // leaf
      if (!matches || !seg.length) return new Uint8Array(0);
      i += seg.length;
      node = resolve(rest);
    } else {
      throw new VerifyError("bad-proof", `a trie node of ${node.length} items`);
    }
  }
  if (node === null) return new Uint8Array(0);
  throw new VerifyError("bad-proof", "the proof is deeper than its key");
}

// RFC 9162 2.1.4.2, as gateway/ledger/merkle.py verify_consistency: true if `proof` shows the
// tree (size1, root1) is a prefix of (size2, root2); BigInt sizes, 1 <= size1 <= size2.
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  if (size1 < 1n || size1 > size2) throw new VerifyError("bad-range", `no consistency from ${size1} to ${size2}`);
  if (proof.some((p) => p.length !== 32)) throw new VerifyError("bad-proof", "proof hash is not 32 bytes");
  if (size1 === size2) return !proof.length && equal(root1, root2);
  if (!proof.length) return false;
  const path = (size1 & (size1 - 1n)) === 0n ? [root1, ...proof] : proof;
  let fn = size1 - 1n;
  let sn = size2 - 1n;
  while (fn & 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (!(fn & 1n) && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(fr, root1) && equal(sr, root2);
}

// EIP-55: the mixed-case spelling of a 20-byte address.
export function checksumAddress(bytes) {
  const lower = hex(bytes);
  const h = hex(keccak256(utf8(lower)));
  let out = "0x";
  for (let i = 0; i < 40; i++) out += parseInt(h[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i];
  return out;
}

// Lower-case 0x-hex of whole bytes (of `size` bytes if given), as the evidence is built.
function hexField(value, what, size) {
  if (typeof value !== "string" || value.length > 2 + 2 * MAX_FIELD_BYTES || !/^0x([0-9a-f]{2})*$/.test(value)) {
    throw new VerifyError("bad-anchor", `${what} is not lower-case 0x-hex of whole bytes`);
  }
  const out = unhex(value.slice(2));
  if (size !== undefined && out.length !== size) throw new VerifyError("bad-anchor", `${what} is not ${size} bytes`);
  return out;
}

function intField(value, what) {
  if (!Number.isSafeInteger(value) || value < 0) throw new VerifyError("bad-anchor", `${what} is not a non-negative integer`);
  return value;
}

function proofField(value, what) {
  if (!Array.isArray(value) || value.length > MAX_PROOF_NODES) throw new VerifyError("bad-anchor", `${what} is not a list of nodes`);
  return value.map((n) => {
    const raw = hexField(n, what);
    rlpDecode(raw);
    return raw;
  });
}

// The head a checkpoint anchors: size, root and the "edgeseal-state <hex>" extension's hash
// (zero if none), as gateway/anchor/evidence.py checkpoint_head.
function checkpointHead(cp) {
  let state = new Uint8Array(32);
  const line = cp.extensions.find((l) => l.startsWith(STATE_PREFIX));
  const value = line ? line.slice(STATE_PREFIX.length) : "";
  if (/^[0-9a-fA-F]{64}$/.test(value)) state = unhex(value);
  return { size: cp.size, root: cp.root, state };
}

// The checks of a bundle's anchor section that need no chain, in order, each
// {name, ok: true | false | null (not checked), message}; it stops at the first failure. `cp` is
// the bundle's verified checkpoint (verifyCheckpoint(...).checkpoint), `index` its entry's index.
// A bundle of format 2 or 3 gives one check, "anchor", null: none carried.
export async function verifyAnchor(bundle, vkey, cp, index) {
  const checks = [];
  const add = (name, ok, message) => checks.push({ name, ok, message });
  if (bundle.anchor === null) {
    if (bundle.version === 4) add("anchor", false, "a format 4 bundle carries an anchor section");
    else add("anchor", null, "the bundle carries no on-chain anchor (format 2 or 3)");
    return checks;
  }
  const section = bundle.anchor;
  const step = async (name, fn) => {
    try {
      const message = await fn();
      add(name, true, message);
      return true;
    } catch (e) {
      add(name, false, e.message);
      return false;
    }
  };
  let anchored;
  const ok1 = await step("anchor-checkpoint", async () => {
    if (!hasKeys(section, ANCHOR_KEYS) || typeof section.checkpoint !== "string") throw new VerifyError("bad-anchor", "not an anchor section");
    if (parseNote(section.checkpoint).sigs.length !== 1) throw new VerifyError("bad-anchor", "the anchored checkpoint carries one signature, the log's");
    const r = await verifyCheckpoint(section.checkpoint, vkey);
    if (!r.ok) throw new VerifyError("bad-anchor", r.message);
    anchored = r.checkpoint;
    if (anchored.size <= BigInt(index)) throw new VerifyError("bad-anchor", `size ${anchored.size} does not hold entry ${index}`);
    return `size ${anchored.size} signed by the gateway, holds entry ${index}`;
  });
  if (!ok1) return checks;
  const ok2 = await step("anchor-consistency", async () => {
    const hashes = section.consistency;
    if (!Array.isArray(hashes) || hashes.length > MAX_CONSISTENCY_HASHES) throw new VerifyError("bad-anchor", "consistency is not a list of hashes");
    const proof = hashes.map(unb64);
    if (!(await verifyConsistency(anchored.size, cp.size, proof, anchored.root, cp.root))) {
      throw new VerifyError("bad-anchor", `the proof does not show size ${cp.size} extends size ${anchored.size}`);
    }
    return `the bundle's checkpoint (size ${cp.size}) extends it (RFC 9162)`;
  });
  if (!ok2) return checks;
  const ev = section.evidence;
  let f;
  const ok3 = await step("anchor-format", async () => {
    if (!hasKeys(ev, EVIDENCE_KEYS) || ev.version !== EVIDENCE_VERSION) throw new VerifyError("bad-anchor", `not anchor evidence version ${EVIDENCE_VERSION} with exactly its fields`);
    const contract = hexField(ev.contract.toLowerCase(), "contract", 20);
    if (ev.contract !== checksumAddress(contract)) throw new VerifyError("bad-anchor", "contract is not in its EIP-55 spelling");
    f = {
      chainId: intField(ev.chain_id, "chain_id"),
      contract,
      txHash: hexField(ev.tx_hash, "tx_hash", 32),
      number: intField(ev.block_number, "block_number"),
      blockHash: hexField(ev.block_hash, "block_hash", 32),
      header: hexField(ev.header_rlp, "header_rlp"),
      index: intField(ev.receipt_index, "receipt_index"),
      logIndex: intField(ev.log_index, "log_index"),
      receiptProof: proofField(ev.receipt_proof, "receipt_proof"),
      txProof: proofField(ev.tx_proof, "tx_proof"),
    };
    return `chain ${f.chainId}, contract ${ev.contract}, block ${f.number}`;
  });
  if (!ok3) return checks;
  let roots;
  const ok4 = await step("anchor-header", async () => {
    if (!equal(keccak256(f.header), f.blockHash)) throw new VerifyError("bad-anchor", "keccak-256(header_rlp) is not block_hash");
    const fields = rlpDecode(f.header);
    const [txRoot, receiptsRoot, number] = [fields[4], fields[5], fields[8]];
    if (![txRoot, receiptsRoot].every((r) => isBytes(r) && r.length === 32) || !isBytes(number) || bigOf(number) !== BigInt(f.number)) {
      throw new VerifyError("bad-anchor", `the header is not that of block ${f.number}`);
    }
    roots = { txRoot, receiptsRoot };
    return "keccak-256(header_rlp) = block_hash";
  });
  if (!ok4) return checks;
  const key = rlpInt(f.index);
  const ok5 = await step("anchor-transaction", async () => {
    const raw = trieGet(roots.txRoot, key, f.txProof);
    if (!isBytes(raw) || !raw.length) throw new VerifyError("bad-anchor", `no transaction ${f.index} under transactionsRoot`);
    if (!equal(keccak256(raw), f.txHash)) throw new VerifyError("bad-anchor", "the proven transaction is not tx_hash");
    let chain;
    let to;
    if (raw[0] >= 0x80) {
      const t = rlpDecode(raw); // legacy: [nonce, gasPrice, gas, to, value, data, v, r, s]
      const v = bigOf(t[6]);
      [to, chain] = [t[3], v >= 35n ? (v - 35n) / 2n : null];
    } else {
      const t = rlpDecode(raw.subarray(1)); // EIP-2718: [chainId, nonce, ...]
      [to, chain] = [raw[0] === 1 ? t[4] : t[5], bigOf(t[0])];
    }
    if (chain !== BigInt(f.chainId) || !isBytes(to) || !equal(to, f.contract)) {
      throw new VerifyError("bad-anchor", `the transaction is for chain ${chain}, to 0x${isBytes(to) ? hex(to) : "?"}`);
    }
    return `transaction ${f.index} of the block, on chain ${f.chainId} to the contract`;
  });
  if (!ok5) return checks;
  let receipt;
  const ok6 = await step("anchor-receipt-proof", async () => {
    const value = trieGet(roots.receiptsRoot, key, f.receiptProof);
    if (!isBytes(value) || !value.length) throw new VerifyError("bad-anchor", `no receipt ${f.index} under receiptsRoot`);
    receipt = rlpDecode(value[0] < 0x80 ? value.subarray(1) : value); // typed receipt: skip the type
    return `receipt ${f.index} is under the header's receiptsRoot (Merkle-Patricia proof)`;
  });
  if (!ok6) return checks;
  const ok7 = await step("anchor-receipt-status", async () => {
    if (!Array.isArray(receipt) || receipt.length !== 4 || !isBytes(receipt[0]) || !equal(receipt[0], new Uint8Array([1]))) {
      throw new VerifyError("bad-anchor", "the transaction failed");
    }
    return "the transaction succeeded";
  });
  if (!ok7) return checks;
  const ok8 = await step("anchor-log", async () => {
    const log = Array.isArray(receipt[3]) ? receipt[3][f.logIndex] : undefined;
    if (!Array.isArray(log) || log.length !== 3) throw new VerifyError("bad-anchor", `the receipt has no log ${f.logIndex}`);
    const [address, topics, data] = log;
    if (!isBytes(address) || !equal(address, f.contract)) throw new VerifyError("bad-anchor", "the log is not from the contract");
    const topic = keccak256(utf8("Anchored(bytes32,uint64,bytes32,bytes32)"));
    if (!Array.isArray(topics) || topics.length !== 2 || !topics.every(isBytes) || !equal(topics[0], topic) || !isBytes(data) || data.length !== 96) {
      throw new VerifyError("bad-anchor", "the log is not an Anchored event");
    }
    if (!equal(topics[1], await sha256(utf8(anchored.origin)))) throw new VerifyError("bad-anchor", "the anchored origin is not the checkpoint's");
    const want = checkpointHead(anchored);
    const size = bigOf(data.subarray(0, 32));
    if (size !== want.size || !equal(data.subarray(32, 64), want.root) || !equal(data.subarray(64), want.state)) {
      throw new VerifyError("bad-anchor", `anchored size ${size}: not the anchored checkpoint's size, root and state hash`);
    }
    return `the Anchored event holds size ${size}, its root and state hash`;
  });
  if (!ok8) return checks;
  add("anchor-canonical", null, "not checked in the browser: that the block is canonical and final needs a chain node (edgeseal verify-bundle --rpc URL)");
  return checks;
}
