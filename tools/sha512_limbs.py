"""SHA-512 over 22/21/21-bit limbs: every value a small int, so hashing allocates next to nothing.

The low-garbage variant of firmware/sha512.py, kept as a measured alternative (issue 12 item 5),
not used by the firmware: on MicroPython every operation on a 64-bit int allocates its result
(~110 KB per 128-byte block with firmware/sha512.py), while here every value stays below 2**30
(MicroPython's small ints on a 32-bit port): ~600 bytes per block, at ~2.0x the time (several
times the bytecode operations, each cheaper since nothing is allocated). tools/bench_sign.py
signs with it (swapped into firmware.ed25519) and reports both variants' garbage and time in the
same run; tests/firmware/test_sha512.py checks its digests against firmware/sha512.py.

FIPS 180-4 section 6.4.2 with every 64-bit word as three limbs: bits 0-21, 22-42 and 43-63,
limb 0 the least significant. The compression function is generated code (eight
rounds unrolled, so the working variables rotate by name instead of being copied):

- A rotation or shift, limb by limb, is the XOR of pieces ((x_j >> lo) & mask) << dst cut from
  the input limbs it spans; a piece shifted left is masked first, so nothing reaches 2**30.
  Pieces with the same shifts and mask from different limbs are XORed before shifting once.
- Sigma1(e) = ROTR14(e ^ ROTR4(e) ^ ROTR27(e)) and Sigma0(a) = ROTR28(a ^ ROTR6(a) ^ ROTR11(a)):
  the outer rotation only feeds an addition, so it is not done bitwise but by adding each limb of
  the inner value, shifted, into the limb of T1 (or T2) where it lands (a carry is then the right
  carry; the part past bit 63 is added again at limb 0); a limb that would pass 2**29 is split.
- Additions mod 2**64 are sums per limb with one carry pass when a word must be exact again (new
  e and a every round, each schedule word); the top limb's mask drops the carry out of bit 63.

Measured in the VM against the 16-bit-limb version this replaces (2.52-2.58x the 64-bit SHA-512
per block): 2.03-2.09x, and 5.9 KB of .mpy instead of 7.1 KB.
"""

import struct

from firmware.sha512 import _H0, _K, BLOCK_BYTES, DIGEST_BYTES


def _limbs(words):
    """Return the limbs of 64-bit words, three per word, least significant first."""
    out = []
    for x in words:
        out += [x & 0x3FFFFF, (x >> 22) & 0x1FFFFF, x >> 43]
    return out


_KL = _limbs(_K)
_H0L = tuple(_limbs(_H0))
# The message schedule, scratch shared by every SHA512 object: _compress fills it anew each call
# and never yields, so hashes interleaved between coroutines are fine (threads are not). A list
# per object would be 976 bytes of garbage per hash, 2 KB per signature (two hashes).
_W = [0] * 240


# fmt: off
def _compress(st, w, block, off):
    """Run the SHA-512 compression function (FIPS 180-4 section 6.4.2) on block[off:off+128]

    over 22/21/21-bit limbs (every value a small int: nothing is allocated but the unpacked
    block). st: 24 limbs (word j's limb i at 3j + i), updated in place; w: a list of 240 ints (the
    schedule, scratch). Returns None."""
    K = _KL
    v = struct.unpack_from(">64H", block, off)
    for j in range(16):
        q = 4 * j
        x0 = v[q + 3]
        x1 = v[q + 2]
        x2 = v[q + 1]
        x3 = v[q]
        w[3 * j + 0] = x0 | ((x1 & 0x3f) << 16)
        w[3 * j + 1] = (x1 >> 6) | ((x2 & 0x7ff) << 10)
        w[3 * j + 2] = (x2 >> 11) | (x3 << 5)
    for j in range(48, 240, 3):
        x0 = w[j - 45]
        x1 = w[j - 44]
        x2 = w[j - 43]
        y0 = w[j - 6]
        y1 = w[j - 5]
        y2 = w[j - 4]
        u0 = (y0 >> 19) ^ (((y0 ^ y1) & 0x7ffff) << 3) ^ (y2 >> 18) ^ (y0 >> 6) ^ ((y1 & 0x3f) << 16)
        z0 = (x0 >> 1) ^ ((x1 & 0x1) << 21) ^ (x0 >> 8) ^ ((x1 & 0xff) << 14) ^ (x0 >> 7) ^ ((x1 & 0x7f) << 15)
        u1 = (y1 >> 19) ^ ((y2 & 0x7ffff) << 2) ^ (y0 >> 19) ^ ((y1 & 0x3ffff) << 3) ^ (y1 >> 6) ^ ((y2 & 0x3f) << 15)
        z1 = (x1 >> 1) ^ ((x2 & 0x1) << 20) ^ (x1 >> 8) ^ ((x2 & 0xff) << 13) ^ (x1 >> 7) ^ ((x2 & 0x7f) << 14)
        u2 = (y2 >> 19) ^ ((y0 & 0x7ffff) << 2) ^ (y1 >> 18) ^ ((y2 & 0x3ffff) << 3) ^ (y2 >> 6)
        z2 = (x2 >> 1) ^ ((x0 & 0x1) << 20) ^ (x2 >> 8) ^ ((x0 & 0xff) << 13) ^ (x2 >> 7)
        u = u0 + z0 + w[j - 21] + w[j - 48]
        w[j] = u & 0x3fffff
        u = u1 + z1 + w[j - 20] + w[j - 47] + (u >> 22)
        w[j + 1] = u & 0x1fffff
        w[j + 2] = (u2 + z2 + w[j - 19] + w[j - 46] + (u >> 21)) & 0x1fffff
    a0 = st[0]
    a1 = st[1]
    a2 = st[2]
    b0 = st[3]
    b1 = st[4]
    b2 = st[5]
    c0 = st[6]
    c1 = st[7]
    c2 = st[8]
    d0 = st[9]
    d1 = st[10]
    d2 = st[11]
    e0 = st[12]
    e1 = st[13]
    e2 = st[14]
    f0 = st[15]
    f1 = st[16]
    f2 = st[17]
    g0 = st[18]
    g1 = st[19]
    g2 = st[20]
    h0 = st[21]
    h1 = st[22]
    h2 = st[23]
    y0 = b0 ^ c0
    y1 = b1 ^ c1
    y2 = b2 ^ c2
    for t in range(0, 240, 24):  # eight rounds per pass; the names rotate instead of the values
        v0 = e0 ^ (e0 >> 4) ^ ((e1 & 0xf) << 18) ^ (e1 >> 5) ^ ((e2 & 0x3f) << 16)
        v1 = e1 ^ (e1 >> 4) ^ ((e2 & 0xf) << 17) ^ (e2 >> 6) ^ ((e0 & 0x3f) << 15)
        v2 = e2 ^ (e2 >> 4) ^ ((e0 & 0xf) << 17) ^ (e0 >> 6) ^ ((e1 & 0x1f) << 16)
        t0 = h0 + (g0 ^ (e0 & (f0 ^ g0))) + K[t] + w[t] + (v0 >> 14) + (v1 << 8)
        t1 = h1 + (g1 ^ (e1 & (f1 ^ g1))) + K[t + 1] + w[t + 1] + (v2 << 7)
        t2 = h2 + (g2 ^ (e2 & (f2 ^ g2))) + K[t + 2] + w[t + 2] + (v0 << 7)
        u = d0 + t0
        d0 = u & 0x3fffff
        u = d1 + t1 + (u >> 22)
        d1 = u & 0x1fffff
        d2 = (d2 + t2 + (u >> 21)) & 0x1fffff
        v0 = a0 ^ (a0 >> 6) ^ ((a1 & 0x3f) << 16) ^ (a0 >> 11) ^ ((a1 & 0x7ff) << 11)
        v1 = a1 ^ (a1 >> 6) ^ ((a2 & 0x3f) << 15) ^ (a1 >> 11) ^ ((a2 & 0x7ff) << 10)
        v2 = a2 ^ (a2 >> 6) ^ ((a0 & 0x3f) << 15) ^ (a2 >> 11) ^ ((a0 & 0x7ff) << 10)
        x0 = a0 ^ b0
        x1 = a1 ^ b1
        x2 = a2 ^ b2
        t0 += (b0 ^ (x0 & y0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (b1 ^ (x1 & y1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (b2 ^ (x2 & y2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        h0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        h1 = u & 0x1fffff
        h2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = d0 ^ (d0 >> 4) ^ ((d1 & 0xf) << 18) ^ (d1 >> 5) ^ ((d2 & 0x3f) << 16)
        v1 = d1 ^ (d1 >> 4) ^ ((d2 & 0xf) << 17) ^ (d2 >> 6) ^ ((d0 & 0x3f) << 15)
        v2 = d2 ^ (d2 >> 4) ^ ((d0 & 0xf) << 17) ^ (d0 >> 6) ^ ((d1 & 0x1f) << 16)
        t0 = g0 + (f0 ^ (d0 & (e0 ^ f0))) + K[t + 3] + w[t + 3] + (v0 >> 14) + (v1 << 8)
        t1 = g1 + (f1 ^ (d1 & (e1 ^ f1))) + K[t + 4] + w[t + 4] + (v2 << 7)
        t2 = g2 + (f2 ^ (d2 & (e2 ^ f2))) + K[t + 5] + w[t + 5] + (v0 << 7)
        u = c0 + t0
        c0 = u & 0x3fffff
        u = c1 + t1 + (u >> 22)
        c1 = u & 0x1fffff
        c2 = (c2 + t2 + (u >> 21)) & 0x1fffff
        v0 = h0 ^ (h0 >> 6) ^ ((h1 & 0x3f) << 16) ^ (h0 >> 11) ^ ((h1 & 0x7ff) << 11)
        v1 = h1 ^ (h1 >> 6) ^ ((h2 & 0x3f) << 15) ^ (h1 >> 11) ^ ((h2 & 0x7ff) << 10)
        v2 = h2 ^ (h2 >> 6) ^ ((h0 & 0x3f) << 15) ^ (h2 >> 11) ^ ((h0 & 0x7ff) << 10)
        y0 = h0 ^ a0
        y1 = h1 ^ a1
        y2 = h2 ^ a2
        t0 += (a0 ^ (y0 & x0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (a1 ^ (y1 & x1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (a2 ^ (y2 & x2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        g0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        g1 = u & 0x1fffff
        g2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = c0 ^ (c0 >> 4) ^ ((c1 & 0xf) << 18) ^ (c1 >> 5) ^ ((c2 & 0x3f) << 16)
        v1 = c1 ^ (c1 >> 4) ^ ((c2 & 0xf) << 17) ^ (c2 >> 6) ^ ((c0 & 0x3f) << 15)
        v2 = c2 ^ (c2 >> 4) ^ ((c0 & 0xf) << 17) ^ (c0 >> 6) ^ ((c1 & 0x1f) << 16)
        t0 = f0 + (e0 ^ (c0 & (d0 ^ e0))) + K[t + 6] + w[t + 6] + (v0 >> 14) + (v1 << 8)
        t1 = f1 + (e1 ^ (c1 & (d1 ^ e1))) + K[t + 7] + w[t + 7] + (v2 << 7)
        t2 = f2 + (e2 ^ (c2 & (d2 ^ e2))) + K[t + 8] + w[t + 8] + (v0 << 7)
        u = b0 + t0
        b0 = u & 0x3fffff
        u = b1 + t1 + (u >> 22)
        b1 = u & 0x1fffff
        b2 = (b2 + t2 + (u >> 21)) & 0x1fffff
        v0 = g0 ^ (g0 >> 6) ^ ((g1 & 0x3f) << 16) ^ (g0 >> 11) ^ ((g1 & 0x7ff) << 11)
        v1 = g1 ^ (g1 >> 6) ^ ((g2 & 0x3f) << 15) ^ (g1 >> 11) ^ ((g2 & 0x7ff) << 10)
        v2 = g2 ^ (g2 >> 6) ^ ((g0 & 0x3f) << 15) ^ (g2 >> 11) ^ ((g0 & 0x7ff) << 10)
        x0 = g0 ^ h0
        x1 = g1 ^ h1
        x2 = g2 ^ h2
        t0 += (h0 ^ (x0 & y0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (h1 ^ (x1 & y1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (h2 ^ (x2 & y2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        f0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        f1 = u & 0x1fffff
        f2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = b0 ^ (b0 >> 4) ^ ((b1 & 0xf) << 18) ^ (b1 >> 5) ^ ((b2 & 0x3f) << 16)
        v1 = b1 ^ (b1 >> 4) ^ ((b2 & 0xf) << 17) ^ (b2 >> 6) ^ ((b0 & 0x3f) << 15)
        v2 = b2 ^ (b2 >> 4) ^ ((b0 & 0xf) << 17) ^ (b0 >> 6) ^ ((b1 & 0x1f) << 16)
        t0 = e0 + (d0 ^ (b0 & (c0 ^ d0))) + K[t + 9] + w[t + 9] + (v0 >> 14) + (v1 << 8)
        t1 = e1 + (d1 ^ (b1 & (c1 ^ d1))) + K[t + 10] + w[t + 10] + (v2 << 7)
        t2 = e2 + (d2 ^ (b2 & (c2 ^ d2))) + K[t + 11] + w[t + 11] + (v0 << 7)
        u = a0 + t0
        a0 = u & 0x3fffff
        u = a1 + t1 + (u >> 22)
        a1 = u & 0x1fffff
        a2 = (a2 + t2 + (u >> 21)) & 0x1fffff
        v0 = f0 ^ (f0 >> 6) ^ ((f1 & 0x3f) << 16) ^ (f0 >> 11) ^ ((f1 & 0x7ff) << 11)
        v1 = f1 ^ (f1 >> 6) ^ ((f2 & 0x3f) << 15) ^ (f1 >> 11) ^ ((f2 & 0x7ff) << 10)
        v2 = f2 ^ (f2 >> 6) ^ ((f0 & 0x3f) << 15) ^ (f2 >> 11) ^ ((f0 & 0x7ff) << 10)
        y0 = f0 ^ g0
        y1 = f1 ^ g1
        y2 = f2 ^ g2
        t0 += (g0 ^ (y0 & x0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (g1 ^ (y1 & x1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (g2 ^ (y2 & x2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        e0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        e1 = u & 0x1fffff
        e2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = a0 ^ (a0 >> 4) ^ ((a1 & 0xf) << 18) ^ (a1 >> 5) ^ ((a2 & 0x3f) << 16)
        v1 = a1 ^ (a1 >> 4) ^ ((a2 & 0xf) << 17) ^ (a2 >> 6) ^ ((a0 & 0x3f) << 15)
        v2 = a2 ^ (a2 >> 4) ^ ((a0 & 0xf) << 17) ^ (a0 >> 6) ^ ((a1 & 0x1f) << 16)
        t0 = d0 + (c0 ^ (a0 & (b0 ^ c0))) + K[t + 12] + w[t + 12] + (v0 >> 14) + (v1 << 8)
        t1 = d1 + (c1 ^ (a1 & (b1 ^ c1))) + K[t + 13] + w[t + 13] + (v2 << 7)
        t2 = d2 + (c2 ^ (a2 & (b2 ^ c2))) + K[t + 14] + w[t + 14] + (v0 << 7)
        u = h0 + t0
        h0 = u & 0x3fffff
        u = h1 + t1 + (u >> 22)
        h1 = u & 0x1fffff
        h2 = (h2 + t2 + (u >> 21)) & 0x1fffff
        v0 = e0 ^ (e0 >> 6) ^ ((e1 & 0x3f) << 16) ^ (e0 >> 11) ^ ((e1 & 0x7ff) << 11)
        v1 = e1 ^ (e1 >> 6) ^ ((e2 & 0x3f) << 15) ^ (e1 >> 11) ^ ((e2 & 0x7ff) << 10)
        v2 = e2 ^ (e2 >> 6) ^ ((e0 & 0x3f) << 15) ^ (e2 >> 11) ^ ((e0 & 0x7ff) << 10)
        x0 = e0 ^ f0
        x1 = e1 ^ f1
        x2 = e2 ^ f2
        t0 += (f0 ^ (x0 & y0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (f1 ^ (x1 & y1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (f2 ^ (x2 & y2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        d0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        d1 = u & 0x1fffff
        d2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = h0 ^ (h0 >> 4) ^ ((h1 & 0xf) << 18) ^ (h1 >> 5) ^ ((h2 & 0x3f) << 16)
        v1 = h1 ^ (h1 >> 4) ^ ((h2 & 0xf) << 17) ^ (h2 >> 6) ^ ((h0 & 0x3f) << 15)
        v2 = h2 ^ (h2 >> 4) ^ ((h0 & 0xf) << 17) ^ (h0 >> 6) ^ ((h1 & 0x1f) << 16)
        t0 = c0 + (b0 ^ (h0 & (a0 ^ b0))) + K[t + 15] + w[t + 15] + (v0 >> 14) + (v1 << 8)
        t1 = c1 + (b1 ^ (h1 & (a1 ^ b1))) + K[t + 16] + w[t + 16] + (v2 << 7)
        t2 = c2 + (b2 ^ (h2 & (a2 ^ b2))) + K[t + 17] + w[t + 17] + (v0 << 7)
        u = g0 + t0
        g0 = u & 0x3fffff
        u = g1 + t1 + (u >> 22)
        g1 = u & 0x1fffff
        g2 = (g2 + t2 + (u >> 21)) & 0x1fffff
        v0 = d0 ^ (d0 >> 6) ^ ((d1 & 0x3f) << 16) ^ (d0 >> 11) ^ ((d1 & 0x7ff) << 11)
        v1 = d1 ^ (d1 >> 6) ^ ((d2 & 0x3f) << 15) ^ (d1 >> 11) ^ ((d2 & 0x7ff) << 10)
        v2 = d2 ^ (d2 >> 6) ^ ((d0 & 0x3f) << 15) ^ (d2 >> 11) ^ ((d0 & 0x7ff) << 10)
        y0 = d0 ^ e0
        y1 = d1 ^ e1
        y2 = d2 ^ e2
        t0 += (e0 ^ (y0 & x0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (e1 ^ (y1 & x1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (e2 ^ (y2 & x2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        c0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        c1 = u & 0x1fffff
        c2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = g0 ^ (g0 >> 4) ^ ((g1 & 0xf) << 18) ^ (g1 >> 5) ^ ((g2 & 0x3f) << 16)
        v1 = g1 ^ (g1 >> 4) ^ ((g2 & 0xf) << 17) ^ (g2 >> 6) ^ ((g0 & 0x3f) << 15)
        v2 = g2 ^ (g2 >> 4) ^ ((g0 & 0xf) << 17) ^ (g0 >> 6) ^ ((g1 & 0x1f) << 16)
        t0 = b0 + (a0 ^ (g0 & (h0 ^ a0))) + K[t + 18] + w[t + 18] + (v0 >> 14) + (v1 << 8)
        t1 = b1 + (a1 ^ (g1 & (h1 ^ a1))) + K[t + 19] + w[t + 19] + (v2 << 7)
        t2 = b2 + (a2 ^ (g2 & (h2 ^ a2))) + K[t + 20] + w[t + 20] + (v0 << 7)
        u = f0 + t0
        f0 = u & 0x3fffff
        u = f1 + t1 + (u >> 22)
        f1 = u & 0x1fffff
        f2 = (f2 + t2 + (u >> 21)) & 0x1fffff
        v0 = c0 ^ (c0 >> 6) ^ ((c1 & 0x3f) << 16) ^ (c0 >> 11) ^ ((c1 & 0x7ff) << 11)
        v1 = c1 ^ (c1 >> 6) ^ ((c2 & 0x3f) << 15) ^ (c1 >> 11) ^ ((c2 & 0x7ff) << 10)
        v2 = c2 ^ (c2 >> 6) ^ ((c0 & 0x3f) << 15) ^ (c2 >> 11) ^ ((c0 & 0x7ff) << 10)
        x0 = c0 ^ d0
        x1 = c1 ^ d1
        x2 = c2 ^ d2
        t0 += (d0 ^ (x0 & y0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (d1 ^ (x1 & y1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (d2 ^ (x2 & y2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        b0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        b1 = u & 0x1fffff
        b2 = (t2 + (u >> 21)) & 0x1fffff
        v0 = f0 ^ (f0 >> 4) ^ ((f1 & 0xf) << 18) ^ (f1 >> 5) ^ ((f2 & 0x3f) << 16)
        v1 = f1 ^ (f1 >> 4) ^ ((f2 & 0xf) << 17) ^ (f2 >> 6) ^ ((f0 & 0x3f) << 15)
        v2 = f2 ^ (f2 >> 4) ^ ((f0 & 0xf) << 17) ^ (f0 >> 6) ^ ((f1 & 0x1f) << 16)
        t0 = a0 + (h0 ^ (f0 & (g0 ^ h0))) + K[t + 21] + w[t + 21] + (v0 >> 14) + (v1 << 8)
        t1 = a1 + (h1 ^ (f1 & (g1 ^ h1))) + K[t + 22] + w[t + 22] + (v2 << 7)
        t2 = a2 + (h2 ^ (f2 & (g2 ^ h2))) + K[t + 23] + w[t + 23] + (v0 << 7)
        u = e0 + t0
        e0 = u & 0x3fffff
        u = e1 + t1 + (u >> 22)
        e1 = u & 0x1fffff
        e2 = (e2 + t2 + (u >> 21)) & 0x1fffff
        v0 = b0 ^ (b0 >> 6) ^ ((b1 & 0x3f) << 16) ^ (b0 >> 11) ^ ((b1 & 0x7ff) << 11)
        v1 = b1 ^ (b1 >> 6) ^ ((b2 & 0x3f) << 15) ^ (b1 >> 11) ^ ((b2 & 0x7ff) << 10)
        v2 = b2 ^ (b2 >> 6) ^ ((b0 & 0x3f) << 15) ^ (b2 >> 11) ^ ((b0 & 0x7ff) << 10)
        y0 = b0 ^ c0
        y1 = b1 ^ c1
        y2 = b2 ^ c2
        t0 += (c0 ^ (y0 & x0)) + (v1 >> 6) + ((v2 & 0x7f) << 15)
        t1 += (c1 ^ (y1 & x1)) + ((v0 & 0x7f) << 14) + (v2 >> 7)
        t2 += (c2 ^ (y2 & x2)) + (v0 >> 7) + ((v1 & 0x3f) << 15)
        a0 = t0 & 0x3fffff
        u = t1 + (t0 >> 22)
        a1 = u & 0x1fffff
        a2 = (t2 + (u >> 21)) & 0x1fffff
    u = st[0] + a0
    st[0] = u & 0x3fffff
    u = st[1] + a1 + (u >> 22)
    st[1] = u & 0x1fffff
    st[2] = (st[2] + a2 + (u >> 21)) & 0x1fffff
    u = st[3] + b0
    st[3] = u & 0x3fffff
    u = st[4] + b1 + (u >> 22)
    st[4] = u & 0x1fffff
    st[5] = (st[5] + b2 + (u >> 21)) & 0x1fffff
    u = st[6] + c0
    st[6] = u & 0x3fffff
    u = st[7] + c1 + (u >> 22)
    st[7] = u & 0x1fffff
    st[8] = (st[8] + c2 + (u >> 21)) & 0x1fffff
    u = st[9] + d0
    st[9] = u & 0x3fffff
    u = st[10] + d1 + (u >> 22)
    st[10] = u & 0x1fffff
    st[11] = (st[11] + d2 + (u >> 21)) & 0x1fffff
    u = st[12] + e0
    st[12] = u & 0x3fffff
    u = st[13] + e1 + (u >> 22)
    st[13] = u & 0x1fffff
    st[14] = (st[14] + e2 + (u >> 21)) & 0x1fffff
    u = st[15] + f0
    st[15] = u & 0x3fffff
    u = st[16] + f1 + (u >> 22)
    st[16] = u & 0x1fffff
    st[17] = (st[17] + f2 + (u >> 21)) & 0x1fffff
    u = st[18] + g0
    st[18] = u & 0x3fffff
    u = st[19] + g1 + (u >> 22)
    st[19] = u & 0x1fffff
    st[20] = (st[20] + g2 + (u >> 21)) & 0x1fffff
    u = st[21] + h0
    st[21] = u & 0x3fffff
    u = st[22] + h1 + (u >> 22)
    st[22] = u & 0x1fffff
    st[23] = (st[23] + h2 + (u >> 21)) & 0x1fffff


# fmt: on


class SHA512:
    """Incremental SHA-512 with the interface of firmware.sha512.SHA512 (update, digest)."""

    digest_size = DIGEST_BYTES
    block_size = BLOCK_BYTES

    def __init__(self, data=None):
        self._h = list(_H0L)
        self._buf = bytearray(BLOCK_BYTES)
        self._used = 0
        self._total = 0
        if data is not None:
            self.update(data)

    def update(self, data):
        """Absorb data (bytes-like); returns None."""
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
            _compress(self._h, _W, buf, 0)
        while n - pos >= BLOCK_BYTES:
            _compress(self._h, _W, data, pos)
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
            _compress(h, _W, block, 0)
            for i in range(BLOCK_BYTES):
                block[i] = 0
        bits = self._total * 8
        struct.pack_into(">QQ", block, BLOCK_BYTES - 16, bits >> 64, bits & 0xFFFFFFFFFFFFFFFF)
        _compress(h, _W, block, 0)
        out = bytearray(DIGEST_BYTES)
        for j in range(8):
            lo = h[3 * j]
            mid = h[3 * j + 1]
            hi = h[3 * j + 2]
            struct.pack_into(
                ">4H",
                out,
                8 * j,
                hi >> 5,
                (mid >> 10) | ((hi & 0x1F) << 11),
                (lo >> 16) | ((mid & 0x3FF) << 6),
                lo & 0xFFFF,
            )
        return bytes(out)
