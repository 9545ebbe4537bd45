"""Pure-Python Ed25519 (RFC 8032 section 5.1, PureEdDSA) for MicroPython and CPython; fast fixed-base signing.

Verification (in firmware/ed25519_extra.py, imported on first use: a board only signs) follows
libsodium's crypto_sign_verify_detached, which PyNaCl uses; the gateway follows the same rules.
`verify(public_key, msg, sig)` returns True only if all hold:

1. `public_key` is exactly 32 bytes and `sig` exactly 64 bytes.
2. S = little-endian integer of sig[32:64] satisfies S < L (L = 2**252 + 2774...8493, the
   group order). Non-canonical S (S >= L, e.g. S + L) is rejected: no malleability.
3. A (the public key) and R (sig[0:32]) are canonical point encodings: the 255-bit y
   coordinate is < p = 2**255 - 19, the point is on the curve (x recovers per RFC 8032
   5.1.3) and "negative zero" (x == 0 with the sign bit set) is rejected.
4. Neither A nor R has small order: a point P with [8]P == identity (the 8 points of the
   8-torsion subgroup, in any encoding) is rejected. Rejecting a small-order A means no
   signature verifies under a weak key, whatever the message.
5. The cofactorless equation holds: with k = SHA-512(R || A || msg) mod L (R and A as the
   bytes received), the canonical encoding of [S]B - [k]A equals the 32 bytes of R. (This is
   [S]B == R + [k]A, not the cofactored [8][S]B == [8]R + [8][k]A.)

Signing is deterministic per RFC 8032 5.1.6, so output is byte-identical to libsodium's.

Speed: [r]B uses a fixed-base table of signed radix-16 multiples (16 sub-tables of
1..8 * 2**(16 j) * B in ((y+x)/2, (y-x)/2, d*x*y) affine form): its 384 field elements are
packed as 32-byte little-endian strings, 12 KB, read back with int.from_bytes. On a board the
table lives in a file on flash (TableFile: written at the first boot, read one 96-byte entry at a
time, so it takes no heap); elsewhere in one bytearray built on first use (_table_bytes). One signature costs 64 mixed additions (7 multiplications each) plus 12 doublings
and one inversion (extended Euclid, which beats pow(z, p-2, p) several times over in the VM).
Extended twisted Edwards coordinates (X:Y:Z:T), lazy reduction of sums and of T.

Garbage: every operation on a Python int above 2**30 allocates its result on the heap, so one
signature leaves 485-705 KB for the collector (bodies of 64-176 bytes, measured in the VM by
tools/bench_sign.py; tests/firmware/test_ed25519_alloc.py holds the budget): SHA-512 ~110 KB per
128-byte block (3-5 blocks), [r]B ~120 KB, the inversion ~27 KB.

Not constant-time: Python integers leak timing through their size and the code skips zero
digits. Acceptable for a sensor board whose attacker sees at most one signature per upload
over BLE; do not reuse this module where remote timing measurement of many signatures is
possible.
"""

from micropython import const

from firmware.sha512 import SHA512

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_P = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED  # 2**255 - 19
_L = 0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED  # 2**252 + 2774...
# Adding 8 to every nibble turns the unsigned radix-16 digits of s (< 2**253) into
# n_i - 8 in [-8, 7]: sum((n_i - 8) * 16**i) == s for the nibbles n_i of s + _EIGHTS.
_EIGHTS = 0x8888888888888888888888888888888888888888888888888888888888888888

# The fixed-base table: entry n = 8*j + m - 1 (m * 2**(16 j) * B) at bytes 96n..96n+95, holding
# (y+x)/2, (y-x)/2 and d*x*y (each mod p, 32 bytes little-endian). Halved against the textbook
# (y+x, y-x, 2dxy) form: every product of the mixed addition then comes out halved, which scales
# X, Y, Z and T alike (the same projective point) and saves computing 2*Z per addition.
# Built by firmware.ed25519_extra._build_table (its constants _ENTRY_BYTES and _TABLE_BYTES repeat
# these two; a test pins that they agree).
_ENTRY_BYTES = const(96)
_TABLE_BYTES = const(12288)  # 128 entries
_TABLE = None
# CRC-32 (firmware.crc32) of the 12,288 table bytes: a TableFile whose file does not match is
# rebuilt (tests/firmware/test_ed25519.py recomputes it from the table).
TABLE_CRC32 = 0x8325C7D8
_CRC_CHUNK_BYTES = const(256)  # read buffer of the CRC check at boot


# ---------------------------------------------------------------------------- field


def _inv(z):
    """Return z**-1 mod p for z not divisible by p (extended Euclid; pow(z, -1, p) is missing on MicroPython).

    Invariant: a == x0 * z and b == x1 * z (mod p). ~27 KB of garbage per inversion (about 150
    steps of a divmod and a multiply-subtract on 255-bit ints). Measured alternatives, both
    rejected for time (issue 12 item 5): pow(z, p - 2, p) allocates only its result but takes ~6x
    as long; Lehmer's variant (Knuth 4.5.2, 30-bit leading parts) takes 15 KB but 1.7x as long.
    """
    a = _P
    b = z % _P
    x0 = 0
    x1 = 1
    while b:
        q, r = divmod(a, b)
        a = b
        b = r
        x0, x1 = x1, x0 - q * x1
    return x0 % _P


# ---------------------------------------------------------------------------- points
# Extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z on -x^2 + y^2 = 1 + d x^2 y^2.


def _encode(p1):
    """Return the 32-byte RFC 8032 encoding of an extended point."""
    zi = _inv(p1[2])
    x = p1[0] * zi % _P
    y = p1[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


# ---------------------------------------------------------------------------- fixed base


def _table_bytes():
    """Return the packed fixed-base table (a 12 KB bytearray), building it on first call."""
    global _TABLE
    if _TABLE is None:
        from firmware.ed25519_extra import _build_table

        _TABLE = _build_table()
    return _TABLE


def _build_table_once():
    """Return a new table built by firmware.ed25519_extra, which is unloaded again afterwards
    unless it was loaded before (a board builds the table once, at its first boot)."""
    import sys

    name = "firmware.ed25519_extra"
    loaded = name in sys.modules
    from firmware.ed25519_extra import _build_table

    tb = _build_table()
    if not loaded:
        sys.modules.pop(name, None)
        import firmware

        if hasattr(firmware, "ed25519_extra"):  # the package keeps a reference to a submodule
            delattr(firmware, "ed25519_extra")
    return tb


class TableFile:
    """The fixed-base table kept in a file on flash instead of the heap (issue 12 item 3).

    A signature reads its (at most 64) entries one at a time with seek + readinto into one 96-byte
    buffer: the 12 KB table never sits in RAM, at a few file reads per signature. The file is
    checked at construction (size and TABLE_CRC32) and, when missing or damaged, built (the 12 KB
    in RAM once: the first boot, or after a power cut while writing it), written to path + ".tmp",
    renamed over path and read back. If writing fails (OSError: a full or failing flash) or the
    file still does not check, the table stays in RAM (`in_ram` is then True): the board signs
    as before this class existed, with 12 KB more heap, and tries the file again at the next boot.
    Holds the file open (fs.open(path, "rb")) for the board's life.
    """

    def __init__(self, fs, path):
        self._buf = bytearray(_ENTRY_BYTES)
        self._f = None
        self._tb = None
        self.built = False  # True when this construction (re)wrote the file
        self._f = self._open_checked(fs, path)
        if self._f is not None:
            return
        tb = _TABLE
        if tb is None:
            tb = _build_table_once()
        self.built = True
        tmp = path + ".tmp"
        try:
            f = fs.open(tmp, "wb")
            try:
                f.write(tb)
                f.flush()
            finally:
                f.close()
            fs.rename(tmp, path)
        except OSError:
            self._tb = tb
            return
        self._f = self._open_checked(fs, path)
        if self._f is None:
            self._tb = tb

    @property
    def in_ram(self):
        """True when the file could not be written correctly and the table is held in RAM."""
        return self._tb is not None

    @staticmethod
    def _open_checked(fs, path):
        """Return path opened for reading when it holds exactly the table, else None."""
        from firmware.crc32 import crc32

        try:
            if fs.size(path) != _TABLE_BYTES:
                return None
            f = fs.open(path, "rb")
        except OSError:
            return None
        buf = bytearray(_CRC_CHUNK_BYTES)
        mv = memoryview(buf)
        crc = 0
        total = 0
        try:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                crc = crc32(mv[:n], crc)
                total += n
        except OSError:
            total = -1
        if total == _TABLE_BYTES and crc == TABLE_CRC32:
            return f
        f.close()
        return None

    def entry(self, n):
        """Return entry n (0 <= n < 128) as a 96-byte buffer, valid until the next call."""
        f = self._f
        if f is None:  # the table is in RAM (in_ram), or closed
            tb = self._tb
            if tb is None:
                raise OSError("signer table closed")
            o = n * _ENTRY_BYTES
            self._buf[:] = memoryview(tb)[o : o + _ENTRY_BYTES]
            return self._buf
        f.seek(n * _ENTRY_BYTES)
        if f.readinto(self._buf) != _ENTRY_BYTES:
            raise OSError("signer table file truncated")
        return self._buf

    def close(self):
        """Close the file; returns nothing."""
        if self._f is not None:
            self._f.close()
            self._f = None


def _base_mul(s, table=None):
    """Return [s]B as an extended point (X, Y, Z, T), coordinates reduced mod p; precondition 0 <= s < 2**253.

    table: a TableFile to read the entries from, or None for the table in RAM (_table_bytes).

    Signed radix-16 comb (RFC 8032 section 5.1.6 step 3 computes [r]B; any correct method gives
    the same point): 4 passes of up to 16 mixed additions, 4 doublings between passes. Mixed
    addition: add-2008-hwcd-3 with Z2 = 1 (RFC 8032 section 5.1.4) against the halved table
    entries, 7 multiplications. Garbage per addition (~1.7 KB, measured in the VM): every
    operation on these 255-bit ints allocates 48-96 bytes, a reduction `% P` 96; the ways it is
    kept down are commented at each step.
    """
    if table is None:
        tb = memoryview(_table_bytes())
        buf = bytearray(_ENTRY_BYTES)
        entry = None
    else:
        tb = None
        buf = table.entry(0)
        entry = table.entry
    # Views of the entry's three 32-byte fields, made once: a slice per use allocates a
    # memoryview each time (3 per addition; 1.7 KB per signature, issue 12 item 5).
    view = memoryview(buf)
    fu = view[0:32]
    fv = view[32:64]
    fw = view[64:96]
    from_bytes = int.from_bytes
    P = _P
    nib = (s + _EIGHTS).to_bytes(32, "little")
    X = 0
    Y = 1
    Z = 1
    T = 0
    # T is kept unreduced (|T| < 4 p**2, a product of two sums of reduced values): it only ever
    # feeds the next addition's T * dxy % P, which reduces anyway; one `% P` less per addition.
    # s = sum over k = 3..0 of 16**k * sum over j of e[4j + k] * 16**(4j); Horner in k.
    for k in (3, 2, 1, 0):
        if k != 3:
            e = h = 0  # always reassigned below (4 doublings); keeps the type checker sure
            for _i in range(4):  # dbl-2008-hwcd, a = -1 (RFC 8032 section 5.1.4)
                a = X * X % P
                b = Y * Y % P
                c = Z * Z % P
                c += c
                h = a + b
                xy = X + Y
                e = h - xy * xy % P
                g = a - b
                f = c + g
                X = e * f % P
                Y = g * h % P
                Z = f * g % P
            T = e * h
        shift = (k & 1) << 2
        row = 0
        for i in range(k >> 1, 32, 2):
            d = ((nib[i] >> shift) & 15) - 8
            if d:
                # Entry (u, v, w) = ((y+x)/2, (y-x)/2, dxy) of |d| * 16**(4j + k) * B. For -P (x
                # negated) u and v swap and w changes sign; instead of negating w (one more
                # allocation) the two uses of c swap: F = Z + c, G = Z - c.
                n = row + d - 1 if d > 0 else row - d - 1
                if tb is not None:
                    o = n * _ENTRY_BYTES
                    buf[:] = tb[o : o + _ENTRY_BYTES]  # one memoryview instead of three
                elif entry is not None:
                    entry(n)  # reads into buf
                c = T * from_bytes(fw, "little") % P
                if d > 0:
                    a = (Y - X) * from_bytes(fv, "little") % P
                    b = (Y + X) * from_bytes(fu, "little") % P
                    f = Z - c
                    g = Z + c
                else:
                    a = (Y - X) * from_bytes(fu, "little") % P
                    b = (Y + X) * from_bytes(fv, "little") % P
                    f = Z + c
                    g = Z - c
                e = b - a
                h = b + a
                X = e * f % P
                Y = g * h % P
                Z = f * g % P
                T = e * h
            row += 8
    return (X, Y, Z, T % P)


# ---------------------------------------------------------------------------- API


def _hash_mod_l(a, b, c):
    """Return SHA-512(a || b || c) as a little-endian integer mod L."""
    h = SHA512(a)
    h.update(b)
    h.update(c)
    return int.from_bytes(h.digest(), "little") % _L


def generate_seed(urandom):
    """Return a fresh 32-byte seed from urandom(n) -> bytes (pass os.urandom on the board)."""
    seed = bytes(urandom(SEED_BYTES))
    if len(seed) != SEED_BYTES:
        raise ValueError("urandom returned the wrong length")
    return seed


class SigningKey:
    """An Ed25519 private key from a 32-byte seed; caches the expanded scalar, prefix and public key."""

    def __init__(self, seed, table=None):
        """seed: 32 bytes; table: a TableFile (the fixed-base table on flash) or None (in RAM)."""
        if len(seed) != SEED_BYTES:
            raise ValueError("seed must be 32 bytes")
        h = SHA512(seed).digest()
        a = int.from_bytes(h[:32], "little")
        a &= (1 << 254) - 8
        a |= 1 << 254
        self._a = a % _L  # [a]B == [a mod L]B and S is computed mod L, so keep the reduced scalar
        self._prefix = h[32:]
        self._table = table
        self.public_key = _encode(_base_mul(self._a, table))

    def sign(self, msg):
        """Return the 64-byte RFC 8032 signature of msg (bytes-like), deterministic."""
        r = _hash_mod_l(self._prefix, msg, b"")
        R = _encode(_base_mul(r, self._table))
        k = _hash_mod_l(R, self.public_key, msg)
        S = (r + k * self._a) % _L
        return R + S.to_bytes(32, "little")


def verify(public_key, msg, sig):
    """Return True if sig is a valid signature of msg under public_key per the module's policy
    (firmware.ed25519_extra.verify, imported on first use: the board itself never verifies)."""
    from firmware.ed25519_extra import verify as verify_impl

    return verify_impl(public_key, msg, sig)
