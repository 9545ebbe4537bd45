"""Straightforward Ed25519 in the RFC 8032 reference style: the benchmark baseline and a test cross-check only.

Textbook algorithms on purpose: per-bit double-and-add with the unified addition law in
extended coordinates, inversions and square roots through pow(). The only concession to
sensible use is that SigningKey caches the expanded secret, prefix and public key (the RFC's
sample sign() recomputes the public key on every call, which would double the baseline's
cost and flatter the optimised signer). Runs under MicroPython (hashing via firmware.sha512)
and CPython. Never deployed to the board.
"""

from firmware.sha512 import sha512

p = 2**255 - 19
q = 2**252 + 27742317777372353535851937790883648493


def modp_inv(x):
    """Return x**-1 mod p by Fermat's little theorem."""
    return pow(x, p - 2, p)


d = -121665 * modp_inv(121666) % p
modp_sqrt_m1 = pow(2, (p - 1) // 4, p)


def sha512_modq(data):
    """Return SHA-512(data) as a little-endian integer mod q."""
    return int.from_bytes(sha512(data), "little") % q


def point_add(P, Q):
    """Return P + Q in extended coordinates (X, Y, Z, T)."""
    A = (P[1] - P[0]) * (Q[1] - Q[0]) % p
    B = (P[1] + P[0]) * (Q[1] + Q[0]) % p
    C = 2 * P[3] * Q[3] * d % p
    D = 2 * P[2] * Q[2] % p
    E = B - A
    F = D - C
    G = D + C
    H = B + A
    return (E * F, G * H, F * G, E * H)


def point_mul(s, P):
    """Return [s]P by per-bit double-and-add."""
    Q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            Q = point_add(Q, P)
        P = point_add(P, P)
        s >>= 1
    return Q


def point_equal(P, Q):
    """Return True if the extended points P and Q are equal."""
    if (P[0] * Q[2] - Q[0] * P[2]) % p != 0:
        return False
    return (P[1] * Q[2] - Q[1] * P[2]) % p == 0


def recover_x(y, sign):
    """Return x with the given sign bit for y, or None if there is none."""
    if y >= p:
        return None
    x2 = (y * y - 1) * modp_inv(d * y * y + 1)
    if x2 == 0:
        if sign:
            return None
        return 0
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p != 0:
        x = x * modp_sqrt_m1 % p
    if (x * x - x2) % p != 0:
        return None
    if (x & 1) != sign:
        x = p - x
    return x


g_y = 4 * modp_inv(5) % p
g_x = recover_x(g_y, 0)
G = (g_x, g_y, 1, g_x * g_y % p)


def point_compress(P):
    """Return the 32-byte encoding of P."""
    zinv = modp_inv(P[2])
    x = P[0] * zinv % p
    y = P[1] * zinv % p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def point_decompress(s):
    """Return the point encoded by 32 bytes s, or None."""
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % p)


def secret_expand(secret):
    """Return (a, prefix) from a 32-byte seed."""
    if len(secret) != 32:
        raise ValueError("bad size of private key")
    h = sha512(secret)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return (a, h[32:])


def secret_to_public(secret):
    """Return the 32-byte public key of a seed."""
    a, _ = secret_expand(secret)
    return point_compress(point_mul(a, G))


class SigningKey:
    """Naive signer with the expanded secret and public key computed once."""

    def __init__(self, seed):
        self.a, self.prefix = secret_expand(seed)
        self.public_key = point_compress(point_mul(self.a, G))

    def sign(self, msg):
        """Return the 64-byte signature of msg."""
        r = sha512_modq(self.prefix + msg)
        Rs = point_compress(point_mul(r, G))
        h = sha512_modq(Rs + self.public_key + msg)
        s = (r + h * self.a) % q
        return Rs + s.to_bytes(32, "little")


def sign(secret, msg):
    """Return the signature of msg under the seed secret (RFC style, recomputes everything)."""
    return SigningKey(secret).sign(msg)


def verify(public, msg, signature):
    """Return True if signature verifies ([S]B == R + [h]A, cofactorless, S < q)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    A = point_decompress(public)
    if not A:
        return False
    Rs = signature[:32]
    R = point_decompress(Rs)
    if not R:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= q:
        return False
    h = sha512_modq(Rs + public + msg)
    sB = point_mul(s, G)
    hA = point_mul(h, A)
    return point_equal(sB, point_add(R, hA))
