"""The SHA-512 before issue 12 item 5, kept verbatim as the bench baseline (tools/ed25519_prev.py).

Never deployed to the board. Original docstring: pure-Python SHA-512 (FIPS 180-4) for MicroPython
and CPython: the ESP32's hashlib has no sha512."""

import struct

# CPython only: when True (and hashlib has sha512) `sha512()` delegates to hashlib.
# Off by default so the host exercises the same code path as the board.
USE_HASHLIB = False

DIGEST_BYTES = 64
BLOCK_BYTES = 128

# fmt: off
# Initial hash value H(0), FIPS 180-4 section 5.3.5.
_H0 = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)

# Round constants K0..K79, FIPS 180-4 section 4.2.3.
_K = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)
# fmt: on

_M64 = 0xFFFFFFFFFFFFFFFF
# For x < 2**64, y = x * _DUP equals x | (x << 64), so rotr64(x, n) == (y >> n) & _M64.
_DUP = 0x10000000000000001

# Why 64-bit Python ints: MicroPython small ints are 31-bit, so every 64-bit word is a heap
# bignum. Measured in the MicroPython VM, a bignum op on a 64-bit value costs about the same
# as a small-int op (the bytecode dispatch dominates), so splitting words into 32-bit halves
# (still bignums above 2**30) or 16-bit limbs (no allocation, but 4x the ops plus carries) is
# slower. What pays off is fewer ops: rotations through one multiply, masking only where a
# value feeds a bitwise function (additions are mod 2**64, so high garbage bits are harmless
# until the next mask), and Maj reusing the previous round's a ^ b.


def _compress(h, w, block, off):
    """Run the SHA-512 compression function on block[off:off+128]; updates the 8-word list h.

    w is a preallocated list of 80 ints used as the message schedule (scratch).
    """
    M = _M64
    D = _DUP
    K = _K
    w[0:16] = struct.unpack_from(">16Q", block, off)
    for t in range(16, 80):
        x = w[t - 15]
        y = x * D
        s0 = (y >> 1) ^ (y >> 8) ^ (x >> 7)
        x = w[t - 2]
        y = x * D
        s1 = (y >> 19) ^ (y >> 61) ^ (x >> 6)
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & M
    a, b, c, d, e, f, g, hh = h
    bc = b ^ c
    for t in range(80):
        y = e * D
        t1 = hh + ((y >> 14) ^ (y >> 18) ^ (y >> 41)) + (g ^ (e & (f ^ g))) + K[t] + w[t]
        y = a * D
        ab = a ^ b
        t2 = ((y >> 28) ^ (y >> 34) ^ (y >> 39)) + (b ^ (ab & bc))
        bc = ab
        hh = g
        g = f
        f = e
        e = (d + t1) & M
        d = c
        c = b
        b = a
        a = (t1 + t2) & M
    h[0] = (h[0] + a) & M
    h[1] = (h[1] + b) & M
    h[2] = (h[2] + c) & M
    h[3] = (h[3] + d) & M
    h[4] = (h[4] + e) & M
    h[5] = (h[5] + f) & M
    h[6] = (h[6] + g) & M
    h[7] = (h[7] + hh) & M


class SHA512:
    """Incremental SHA-512: update(data) any number of times, then digest() (64 bytes)."""

    digest_size = DIGEST_BYTES
    block_size = BLOCK_BYTES

    def __init__(self, data=None):
        self._h = list(_H0)
        self._w = [0] * 80
        self._buf = bytearray(BLOCK_BYTES)  # pending bytes of an incomplete block
        self._used = 0  # number of pending bytes in _buf
        self._total = 0  # message length so far, in bytes
        if data is not None:
            self.update(data)

    def update(self, data):
        """Absorb data (bytes, bytearray or memoryview); returns None."""
        n = len(data)
        if not n:
            return
        self._total += n
        buf = self._buf
        used = self._used
        pos = 0
        if used:
            take = BLOCK_BYTES - used
            if take > n:
                take = n
            buf[used : used + take] = data[:take]
            used += take
            pos = take
            if used < BLOCK_BYTES:
                self._used = used
                return
            _compress(self._h, self._w, buf, 0)
        h = self._h
        w = self._w
        while n - pos >= BLOCK_BYTES:
            _compress(h, w, data, pos)
            pos += BLOCK_BYTES
        rest = n - pos
        if rest:
            buf[0:rest] = data[pos:]
        self._used = rest

    def digest(self):
        """Return the 64-byte digest of everything absorbed so far (the state is not changed)."""
        h = list(self._h)
        used = self._used
        block = bytearray(BLOCK_BYTES)
        block[0:used] = self._buf[0:used]
        block[used] = 0x80
        if used >= BLOCK_BYTES - 16:
            _compress(h, self._w, block, 0)
            for i in range(BLOCK_BYTES):
                block[i] = 0
        bits = self._total * 8
        struct.pack_into(">QQ", block, BLOCK_BYTES - 16, bits >> 64, bits & _M64)
        _compress(h, self._w, block, 0)
        return struct.pack(">8Q", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])

    def hexdigest(self):
        """Return the digest as 128 lowercase hex characters."""
        return "".join("%02x" % x for x in self.digest())  # noqa: UP031 (verbatim copy)

    def copy(self):
        """Return an independent SHA512 object with the same state."""
        other = SHA512()
        other._h[:] = self._h
        other._buf[:] = self._buf
        other._used = self._used
        other._total = self._total
        return other


def sha512(data=b""):
    """Return the 64-byte SHA-512 digest of data (pure Python unless USE_HASHLIB is set)."""
    if USE_HASHLIB:
        import hashlib

        return hashlib.sha512(data).digest()  # pyright: ignore[reportAttributeAccessIssue]
    return SHA512(data).digest()
