"""Ed25519 beyond signing: verification, generic point arithmetic, the fixed-base table's build.

Split from firmware/ed25519.py (issue 12 item 3) because a board only signs: this code is loaded
on demand (ed25519.verify, the table's build at the first boot, tests and tools) and is not
resident while the board runs. The verification policy is the one firmware/ed25519.py's module
docstring states (libsodium's crypto_sign_verify_detached). Signatures are made there.
"""

from micropython import const

from firmware.ed25519 import (
    _L,
    _P,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    _base_mul,
    _encode,
    _hash_mod_l,
    _inv,
    _table_bytes,
)

_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = 16295367250680780974490674513165176452449235426866156013048779062215315747161  # 2*d mod p
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_MASK255 = (1 << 255) - 1
_HALF = (_P + 1) // 2  # 1/2 mod p: the table holds halved values (firmware/ed25519.py)
# The table's layout, as firmware.ed25519's constants of the same names (a test pins it).
_ENTRY_BYTES = const(96)
_TABLE_BYTES = const(12288)  # 128 entries


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


def _build_table():
    """Return a new packed fixed-base table (12 KB bytearray; layout at _ENTRY_BYTES above)."""
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
    return tb


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
