"""Pure-Python Ed25519 (RFC 8032 section 5.1, PureEdDSA) for MicroPython and CPython; fast fixed-base signing.

Verification policy (identical to libsodium's crypto_sign_verify_detached, which PyNaCl uses;
the gateway follows the same rules). `verify(public_key, msg, sig)` returns True only if all hold:

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
1..8 * 2**(16 j) * B in ((y+x)/2, (y-x)/2, d*x*y) affine form), built on first use: its 384 field
elements are packed as 32-byte little-endian strings in one 12 KB bytearray and read back with
int.from_bytes (as Python ints they took 26 KB of heap; the conversions cost a few percent of a
signature). One signature costs 64 mixed additions (7 multiplications each) plus 12 doublings
and one inversion (extended Euclid, which beats pow(z, p-2, p) several times over in the VM).
Extended twisted Edwards coordinates (X:Y:Z:T), lazy reduction of sums and of T.

Garbage: every operation on a Python int above 2**30 allocates its result on the heap, so one
signature leaves 490-710 KB for the collector (bodies of 64-176 bytes, measured in the VM by
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
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = 16295367250680780974490674513165176452449235426866156013048779062215315747161  # 2*d mod p
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_MASK255 = (1 << 255) - 1
# Adding 8 to every nibble turns the unsigned radix-16 digits of s (< 2**253) into
# n_i - 8 in [-8, 7]: sum((n_i - 8) * 16**i) == s for the nibbles n_i of s + _EIGHTS.
_EIGHTS = 0x8888888888888888888888888888888888888888888888888888888888888888

# The fixed-base table: entry n = 8*j + m - 1 (m * 2**(16 j) * B) at bytes 96n..96n+95, holding
# (y+x)/2, (y-x)/2 and d*x*y (each mod p, 32 bytes little-endian). Halved against the textbook
# (y+x, y-x, 2dxy) form: every product of the mixed addition then comes out halved, which scales
# X, Y, Z and T alike (the same projective point) and saves computing 2*Z per addition.
_HALF = (_P + 1) // 2  # 1/2 mod p
_ENTRY_BYTES = const(96)
_TABLE_BYTES = const(12288)  # 128 entries
_TABLE = None


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


def _add(p1, p2):
    """Return p1 + p2 (extended coordinates, unified add-2008-hwcd-3); used off the signing hot path."""
    P = _P
    X1, Y1, Z1, T1 = p1
    X2, Y2, Z2, T2 = p2
    a = (Y1 - X1) * (Y2 - X2) % P
    b = (Y1 + X1) * (Y2 + X2) % P
    c = T1 * _D2 % P * T2 % P
    d = Z1 * 2 * Z2 % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p1):
    """Return 2 * p1 (extended coordinates, dbl-2008-hwcd with a = -1)."""
    P = _P
    X, Y, Z = p1[0], p1[1], p1[2]
    a = X * X % P
    b = Y * Y % P
    c = Z * Z % P
    c += c
    h = a + b
    xy = X + Y
    e = h - xy * xy % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _encode(p1):
    """Return the 32-byte RFC 8032 encoding of an extended point."""
    zi = _inv(p1[2])
    x = p1[0] * zi % _P
    y = p1[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(s):
    """Return the extended point encoded by 32 bytes s, or None if s is not a canonical encoding of a curve point."""
    if len(s) != 32:
        return None
    P = _P
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= _MASK255
    if y >= P:
        return None
    yy = y * y % P
    u = yy - 1
    v = _D * yy + 1
    v3 = v * v % P * v % P
    x = u * v3 % P * pow(u * v3 % P * v3 % P * v % P, (P - 5) >> 3, P) % P
    vxx = v * x % P * x % P
    if (vxx - u) % P:
        if (vxx + u) % P:
            return None
        x = x * _SQRT_M1 % P
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _is_small_order(p1):
    """Return True if [8]p1 is the identity (p1 lies in the 8-torsion subgroup)."""
    q = _double(_double(_double(p1)))
    return q[0] % _P == 0


def _mul(s, p1):
    """Return [s]p1 for an extended point p1 and 0 <= s (plain double-and-add; verify path only)."""
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p1)
        p1 = _double(p1)
        s >>= 1
    return q


# ---------------------------------------------------------------------------- fixed base


def _table_bytes():
    """Return the packed fixed-base table (a 12 KB bytearray), building it on first call."""
    global _TABLE
    if _TABLE is None:
        P = _P
        tb = bytearray(_TABLE_BYTES)
        base = (_BX, _BY, 1, _BX * _BY % P)
        for j in range(16):
            pts = [base]
            for _m in range(7):
                pts.append(_add(pts[-1], base))  # pyright: ignore[reportArgumentType]
            # Batch inversion of the 8 Z coordinates (Montgomery's trick): one _inv per row.
            acc = [1] * 8
            run = 1
            for m in range(8):
                acc[m] = run
                run = run * pts[m][2] % P
            run = _inv(run)
            for m in range(7, -1, -1):
                zi = run * acc[m] % P
                run = run * pts[m][2] % P
                x = pts[m][0] * zi % P
                y = pts[m][1] * zi % P
                o = (8 * j + m) * _ENTRY_BYTES
                tb[o : o + 32] = ((y + x) * _HALF % P).to_bytes(32, "little")
                tb[o + 32 : o + 64] = ((y - x) * _HALF % P).to_bytes(32, "little")
                tb[o + 64 : o + 96] = (x * y % P * _D % P).to_bytes(32, "little")
            for _i in range(16):
                base = _double(base)
        _TABLE = tb
    return _TABLE


class _Column:
    """One coordinate of the packed table as a read-only sequence of 128 ints (tests, tools).

    Items are the stored (halved) values times 2 mod p: y+x, y-x and 2*d*x*y.
    """

    def __init__(self, tb, off):
        self._tb = tb
        self._off = off

    def __len__(self):
        return len(self._tb) // _ENTRY_BYTES

    def __getitem__(self, n):
        if not 0 <= n < len(self):
            raise IndexError("table index out of range")
        o = n * _ENTRY_BYTES + self._off
        return 2 * int.from_bytes(self._tb[o : o + 32], "little") % _P


def _table():
    """Return the fixed-base table as (ypx, ymx, t2d): sequences of 128 ints, index 8*j + m - 1
    holding m * 2**(16 j) * B; builds it on first call (12 KB of heap, _table_bytes)."""
    tb = _table_bytes()
    return (_Column(tb, 0), _Column(tb, 32), _Column(tb, 64))


def _base_mul(s):
    """Return [s]B as an extended point (X, Y, Z, T), coordinates reduced mod p; precondition 0 <= s < 2**253.

    Signed radix-16 comb (RFC 8032 section 5.1.6 step 3 computes [r]B; any correct method gives
    the same point): 4 passes of up to 16 mixed additions, 4 doublings between passes. Mixed
    addition: add-2008-hwcd-3 with Z2 = 1 (RFC 8032 section 5.1.4) against the halved table
    entries, 7 multiplications. Garbage per addition (~1.7 KB, measured in the VM): every
    operation on these 255-bit ints allocates 48-96 bytes, a reduction `% P` 96; the ways it is
    kept down are commented at each step.
    """
    mv = memoryview(_table_bytes())
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
                if d > 0:
                    o = (row + d - 1) * _ENTRY_BYTES
                    a = (Y - X) * from_bytes(mv[o + 32 : o + 64], "little") % P
                    b = (Y + X) * from_bytes(mv[o : o + 32], "little") % P
                    c = T * from_bytes(mv[o + 64 : o + 96], "little") % P
                    f = Z - c
                    g = Z + c
                else:
                    o = (row - d - 1) * _ENTRY_BYTES
                    a = (Y - X) * from_bytes(mv[o : o + 32], "little") % P
                    b = (Y + X) * from_bytes(mv[o + 32 : o + 64], "little") % P
                    c = T * from_bytes(mv[o + 64 : o + 96], "little") % P
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

    def __init__(self, seed):
        if len(seed) != SEED_BYTES:
            raise ValueError("seed must be 32 bytes")
        h = SHA512(seed).digest()
        a = int.from_bytes(h[:32], "little")
        a &= (1 << 254) - 8
        a |= 1 << 254
        self._a = a % _L  # [a]B == [a mod L]B and S is computed mod L, so keep the reduced scalar
        self._prefix = h[32:]
        self.public_key = _encode(_base_mul(self._a))

    def sign(self, msg):
        """Return the 64-byte RFC 8032 signature of msg (bytes-like), deterministic."""
        r = _hash_mod_l(self._prefix, msg, b"")
        R = _encode(_base_mul(r))
        k = _hash_mod_l(R, self.public_key, msg)
        S = (r + k * self._a) % _L
        return R + S.to_bytes(32, "little")


def verify(public_key, msg, sig):
    """Return True if sig is a valid signature of msg under public_key per the module's policy."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(sig) != SIGNATURE_BYTES:
        return False
    S = int.from_bytes(sig[32:], "little")
    if S >= _L:
        return False
    A = _decode(public_key)
    if A is None or _is_small_order(A):
        return False
    Rb = bytes(sig[:32])
    R = _decode(Rb)
    if R is None or _is_small_order(R):
        return False
    k = _hash_mod_l(Rb, public_key, msg)
    negA = ((_P - A[0]) % _P, A[1], A[2], (_P - A[3]) % _P)
    check = _add(_base_mul(S), _mul(k, negA))
    return _encode(check) == Rb
