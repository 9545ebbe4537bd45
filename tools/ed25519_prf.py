"""Ed25519 signer with an HMAC-SHA256 nonce and a limb SHA-512 for k: a measured low-garbage alternative, not adopted.

Issue 12 item 5 (docs/firmware-runtime.md, "Signer: garbage per signature"): the firmware signer
hashes twice with its 64-bit SHA-512, ~110 KB of garbage per 128-byte block. This variant keeps
everything of firmware.ed25519 (key expansion, the public key, [r]B, the encoding of R, S) and
changes only the two hashes of RFC 8032 section 5.1.6:

- step 2, the nonce: r = int(T0 || T1, little-endian) mod L with Ti = HMAC-SHA256(prefix, i || M)
  (RFC 2104; i one byte, 0 or 1; prefix the secret upper half of SHA-512(seed), as in RFC 8032),
  on the port's native hashlib.sha256, which allocates little. 64 bytes of output, so r mod L is
  within 2**-259 of uniform. The HMAC pads are made once per key (as firmware/cmdauth.py does;
  MicroPython's sha256 objects cannot be copied, so each HMAC hashes its 64-byte pad again).
- step 4: k = SHA-512(R || A || M) mod L with tools/sha512_limbs.py (every value a small int).
  Any SHA-512 gives the same k; a verifier needs exactly this k.
- optionally (lehmer=True) R's inversion by Lehmer's extended Euclid (inv_lehmer) instead of
  firmware.ed25519._inv: less garbage, more time.

The signatures are valid Ed25519 signatures (every verifier, e.g. libsodium/PyNaCl and
firmware.ed25519.verify, accepts them: verification never sees how r was chosen) and
deterministic, but not RFC 8032's byte for byte (r differs), so RFC 8032's test vectors do not
apply to them. tools/bench_sign.py measures it A/B against the firmware signer (`--prf 1` or
`--prf-only 1`); tests/firmware/test_ed25519_prf.py checks it. Not constant-time, like
firmware.ed25519. Measured (VM): 145-146 KB per signature with lehmer=True (153-160 KB without)
at 1.02-1.24x the firmware's sign time depending on the body length, so not adopted
(docs/firmware-runtime.md, "Signer: garbage per signature").
"""

import hashlib

from firmware import ed25519

try:
    from tools import sha512_limbs
except (
    ImportError
):  # run as a script from tools/ (the VM with --copy tools puts tools/ on the path)
    import sha512_limbs

_L = ed25519._L
_P = ed25519._P
_HMAC_BLOCK_BYTES = 64  # SHA-256's block: HMAC pads its key to it (RFC 2104 section 2)
_IPAD = 0x36
_OPAD = 0x5C
# The two one-byte labels of the nonce's two HMACs: 2 x 32 bytes give the 64 bytes RFC 8032
# reduces mod L (fewer would bias r, and a biased nonce leaks the key over many signatures).
_LABELS = (b"\x00", b"\x01")


def _pad(key, byte):
    """Return the 64-byte HMAC pad of key (<= 64 bytes) XORed with byte (RFC 2104 section 2)."""
    out = bytearray(_HMAC_BLOCK_BYTES)
    for i in range(_HMAC_BLOCK_BYTES):
        out[i] = (key[i] if i < len(key) else 0) ^ byte
    return bytes(out)


def inv_lehmer(z, P):
    """Return z**-1 mod P by Lehmer's extended Euclid (Knuth 4.5.2 algorithm L, 30-bit leading
    parts); precondition: z not divisible by P < 2**255. The measured alternative to
    firmware.ed25519._inv (issue 12 item 5): ~9 KB less garbage per inversion, ~1.75x its time.

    Invariant as there: a == x0 * z and b == x1 * z (mod P). The inner loop runs on small ints
    (the leading parts and the cofactors A..D), one multi-precision update per ~15 bits."""
    a = P
    b = z % P
    x0 = 0
    x1 = 1
    s = 225  # a >> s < 2**30 always (a only shrinks); kept at >= 22 bits while s > 0
    while b:
        while s and not (a >> s) >> 22:
            s = s - 8 if s > 8 else 0
        ah = a >> s
        bh = b >> s
        A = 1
        B = 0
        C = 0
        D = 1
        while bh + C and bh + D:
            q = (ah + A) // (bh + C)
            if q != (ah + B) // (bh + D):
                break
            A, C = C, A - q * C
            B, D = D, B - q * D
            ah, bh = bh, ah - q * bh
        if B:
            a, b = A * a + B * b, C * a + D * b
            x0, x1 = A * x0 + B * x1, C * x0 + D * x1
        else:  # no quotient was certain: one full-precision step
            q, r = divmod(a, b)
            a = b
            b = r
            x0, x1 = x1, x0 - q * x1
    return x0 % P


def _encode_lehmer(p1):
    """Return the 32-byte RFC 8032 encoding of an extended point, inverting Z with inv_lehmer."""
    zi = inv_lehmer(p1[2], _P)
    x = p1[0] * zi % _P
    y = p1[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


class SigningKey(ed25519.SigningKey):
    """An Ed25519 key (the same public key as firmware.ed25519.SigningKey for the seed) whose
    sign() derives r with HMAC-SHA256 and hashes k with the limb SHA-512 (see the module)."""

    def __init__(self, seed, table=None, lehmer=False):
        """seed: 32 bytes; table: a firmware.ed25519.TableFile or None (in RAM); lehmer: invert
        R's Z with inv_lehmer instead of firmware.ed25519._inv."""
        super().__init__(seed, table)
        self._ipad = _pad(self._prefix, _IPAD)
        self._opad = _pad(self._prefix, _OPAD)
        self._encode = _encode_lehmer if lehmer else ed25519._encode

    def nonce(self, msg):
        """Return r = int(HMAC-SHA256(prefix, 0 || msg) || HMAC-SHA256(prefix, 1 || msg)) mod L
        (64 bytes read little-endian, as RFC 8032 5.1.6 step 2 reads its SHA-512 digest)."""
        sha256 = hashlib.sha256
        out = b""
        for label in _LABELS:
            h = sha256(self._ipad)
            h.update(label)
            h.update(msg)
            inner = h.digest()
            h = sha256(self._opad)
            h.update(inner)
            out += h.digest()
        return int.from_bytes(out, "little") % _L

    def sign(self, msg):
        """Return the 64-byte Ed25519 signature R || S of msg (bytes-like); deterministic, valid
        under RFC 8032 5.1.7, but with this module's nonce (not RFC 8032's bytes)."""
        r = self.nonce(msg)
        R = self._encode(ed25519._base_mul(r, self._table))
        h = sha512_limbs.SHA512(R)
        h.update(self.public_key)
        h.update(msg)
        k = int.from_bytes(h.digest(), "little") % _L
        S = (r + k * self._a) % _L
        return R + S.to_bytes(32, "little")
