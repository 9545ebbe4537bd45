"""SHA-512 over 16-bit limbs: every value a small int, so hashing allocates next to nothing.

The low-garbage variant of firmware/sha512.py, kept as a measured alternative (issue 12 item 5),
not used by the firmware: on MicroPython every operation on a 64-bit int allocates its result
(~110 KB per 128-byte block with firmware/sha512.py), while here every value stays below 2**30
(MicroPython's small ints on a 32-bit port): ~400 bytes per block, but about 7x the bytecode
operations. tools/bench_sign.py signs with it (swapped into firmware.ed25519) and reports both
variants' garbage and time in the same run. The compression function is generated (eight rounds
unrolled, so the working variables rotate by name instead of being copied); FIPS 180-4 section
6.4.2 with every 64-bit word as four 16-bit limbs, limb 0 the least significant: a rotation or
shift is a permutation of limbs plus a shift across neighbouring limbs, an addition mod 2**64 a
sum per limb with one carry pass.
"""

import struct

from firmware.sha512 import _H0, _K, BLOCK_BYTES, DIGEST_BYTES


def _limbs(words):
    """Return the 16-bit limbs of 64-bit words, four per word, least significant first."""
    out = []
    for x in words:
        out += [x & 0xFFFF, (x >> 16) & 0xFFFF, (x >> 32) & 0xFFFF, (x >> 48) & 0xFFFF]
    return out


_KL = _limbs(_K)
_H0L = tuple(_limbs(_H0))


# fmt: off
def _compress(h, w, block, off):
    """Run the SHA-512 compression function (FIPS 180-4 section 6.4.2) on block[off:off+128]

    over 16-bit limbs (every value a small int: nothing is allocated but the unpacked block).
    h: 32 limbs (word j's limb i at 4j + i, limb 0 the least significant), updated in place;
    w: a list of 320 ints (the schedule, scratch)."""
    K = _KL
    v = struct.unpack_from(">64H", block, off)
    for j in range(16):
        b = 4 * j
        w[b] = v[b + 3]
        w[b + 1] = v[b + 2]
        w[b + 2] = v[b + 1]
        w[b + 3] = v[b]
    for b in range(64, 320, 4):
        x0 = w[b - 60]
        x1 = w[b - 59]
        x2 = w[b - 58]
        x3 = w[b - 57]
        y0 = w[b - 8]
        y1 = w[b - 7]
        y2 = w[b - 6]
        y3 = w[b - 5]
        u0 = ((y1 >> 3) ^ (y2 << 13) ^ (y3 >> 13) ^ (y0 << 3) ^ (y0 >> 6) ^ (y1 << 10)) & 0xFFFF
        z0 = ((x0 >> 1) ^ ((x1 & 1) << 15) ^ (x0 >> 8) ^ (x1 << 8) ^ (x0 >> 7) ^ (x1 << 9)) & 0xFFFF
        u1 = ((y2 >> 3) ^ (y3 << 13) ^ (y0 >> 13) ^ (y1 << 3) ^ (y1 >> 6) ^ (y2 << 10)) & 0xFFFF
        z1 = ((x1 >> 1) ^ ((x2 & 1) << 15) ^ (x1 >> 8) ^ (x2 << 8) ^ (x1 >> 7) ^ (x2 << 9)) & 0xFFFF
        u2 = ((y3 >> 3) ^ (y0 << 13) ^ (y1 >> 13) ^ (y2 << 3) ^ (y2 >> 6) ^ (y3 << 10)) & 0xFFFF
        z2 = ((x2 >> 1) ^ ((x3 & 1) << 15) ^ (x2 >> 8) ^ (x3 << 8) ^ (x2 >> 7) ^ (x3 << 9)) & 0xFFFF
        u3 = ((y0 >> 3) ^ (y1 << 13) ^ (y2 >> 13) ^ (y3 << 3) ^ (y3 >> 6)) & 0xFFFF
        z3 = ((x3 >> 1) ^ ((x0 & 1) << 15) ^ (x3 >> 8) ^ (x0 << 8) ^ (x3 >> 7)) & 0xFFFF
        u = u0 + z0 + w[b - 28] + w[b - 64]
        w[b] = u & 0xFFFF
        u = u1 + z1 + w[b - 27] + w[b - 63] + (u >> 16)
        w[b + 1] = u & 0xFFFF
        u = u2 + z2 + w[b - 26] + w[b - 62] + (u >> 16)
        w[b + 2] = u & 0xFFFF
        w[b + 3] = (u3 + z3 + w[b - 25] + w[b - 61] + (u >> 16)) & 0xFFFF
    a0 = h[0]
    a1 = h[1]
    a2 = h[2]
    a3 = h[3]
    b0 = h[4]
    b1 = h[5]
    b2 = h[6]
    b3 = h[7]
    c0 = h[8]
    c1 = h[9]
    c2 = h[10]
    c3 = h[11]
    d0 = h[12]
    d1 = h[13]
    d2 = h[14]
    d3 = h[15]
    e0 = h[16]
    e1 = h[17]
    e2 = h[18]
    e3 = h[19]
    f0 = h[20]
    f1 = h[21]
    f2 = h[22]
    f3 = h[23]
    g0 = h[24]
    g1 = h[25]
    g2 = h[26]
    g3 = h[27]
    h0 = h[28]
    h1 = h[29]
    h2 = h[30]
    h3 = h[31]
    for t in range(0, 320, 32):
        t0 = h0 + (((e0 >> 14) ^ (e1 << 2) ^ (e1 >> 2) ^ (e2 << 14) ^ (e2 >> 9) ^ (e3 << 7)) & 0xFFFF) + (g0 ^ (e0 & (f0 ^ g0))) + K[t + 0] + w[t + 0]
        t1 = h1 + (((e1 >> 14) ^ (e2 << 2) ^ (e2 >> 2) ^ (e3 << 14) ^ (e3 >> 9) ^ (e0 << 7)) & 0xFFFF) + (g1 ^ (e1 & (f1 ^ g1))) + K[t + 1] + w[t + 1]
        t2 = h2 + (((e2 >> 14) ^ (e3 << 2) ^ (e3 >> 2) ^ (e0 << 14) ^ (e0 >> 9) ^ (e1 << 7)) & 0xFFFF) + (g2 ^ (e2 & (f2 ^ g2))) + K[t + 2] + w[t + 2]
        t3 = h3 + (((e3 >> 14) ^ (e0 << 2) ^ (e0 >> 2) ^ (e1 << 14) ^ (e1 >> 9) ^ (e2 << 7)) & 0xFFFF) + (g3 ^ (e3 & (f3 ^ g3))) + K[t + 3] + w[t + 3]
        u = d0 + t0
        d0 = u & 0xFFFF
        u = d1 + t1 + (u >> 16)
        d1 = u & 0xFFFF
        u = d2 + t2 + (u >> 16)
        d2 = u & 0xFFFF
        d3 = (d3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((a1 >> 12) ^ (a2 << 4) ^ (a2 >> 2) ^ (a3 << 14) ^ (a2 >> 7) ^ (a3 << 9)) & 0xFFFF) + ((a0 & b0) | (c0 & (a0 | b0)))
        t1 += (((a2 >> 12) ^ (a3 << 4) ^ (a3 >> 2) ^ (a0 << 14) ^ (a3 >> 7) ^ (a0 << 9)) & 0xFFFF) + ((a1 & b1) | (c1 & (a1 | b1)))
        t2 += (((a3 >> 12) ^ (a0 << 4) ^ (a0 >> 2) ^ (a1 << 14) ^ (a0 >> 7) ^ (a1 << 9)) & 0xFFFF) + ((a2 & b2) | (c2 & (a2 | b2)))
        t3 += (((a0 >> 12) ^ (a1 << 4) ^ (a1 >> 2) ^ (a2 << 14) ^ (a1 >> 7) ^ (a2 << 9)) & 0xFFFF) + ((a3 & b3) | (c3 & (a3 | b3)))
        h0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        h1 = u & 0xFFFF
        u = t2 + (u >> 16)
        h2 = u & 0xFFFF
        h3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = g0 + (((d0 >> 14) ^ (d1 << 2) ^ (d1 >> 2) ^ (d2 << 14) ^ (d2 >> 9) ^ (d3 << 7)) & 0xFFFF) + (f0 ^ (d0 & (e0 ^ f0))) + K[t + 4] + w[t + 4]
        t1 = g1 + (((d1 >> 14) ^ (d2 << 2) ^ (d2 >> 2) ^ (d3 << 14) ^ (d3 >> 9) ^ (d0 << 7)) & 0xFFFF) + (f1 ^ (d1 & (e1 ^ f1))) + K[t + 5] + w[t + 5]
        t2 = g2 + (((d2 >> 14) ^ (d3 << 2) ^ (d3 >> 2) ^ (d0 << 14) ^ (d0 >> 9) ^ (d1 << 7)) & 0xFFFF) + (f2 ^ (d2 & (e2 ^ f2))) + K[t + 6] + w[t + 6]
        t3 = g3 + (((d3 >> 14) ^ (d0 << 2) ^ (d0 >> 2) ^ (d1 << 14) ^ (d1 >> 9) ^ (d2 << 7)) & 0xFFFF) + (f3 ^ (d3 & (e3 ^ f3))) + K[t + 7] + w[t + 7]
        u = c0 + t0
        c0 = u & 0xFFFF
        u = c1 + t1 + (u >> 16)
        c1 = u & 0xFFFF
        u = c2 + t2 + (u >> 16)
        c2 = u & 0xFFFF
        c3 = (c3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((h1 >> 12) ^ (h2 << 4) ^ (h2 >> 2) ^ (h3 << 14) ^ (h2 >> 7) ^ (h3 << 9)) & 0xFFFF) + ((h0 & a0) | (b0 & (h0 | a0)))
        t1 += (((h2 >> 12) ^ (h3 << 4) ^ (h3 >> 2) ^ (h0 << 14) ^ (h3 >> 7) ^ (h0 << 9)) & 0xFFFF) + ((h1 & a1) | (b1 & (h1 | a1)))
        t2 += (((h3 >> 12) ^ (h0 << 4) ^ (h0 >> 2) ^ (h1 << 14) ^ (h0 >> 7) ^ (h1 << 9)) & 0xFFFF) + ((h2 & a2) | (b2 & (h2 | a2)))
        t3 += (((h0 >> 12) ^ (h1 << 4) ^ (h1 >> 2) ^ (h2 << 14) ^ (h1 >> 7) ^ (h2 << 9)) & 0xFFFF) + ((h3 & a3) | (b3 & (h3 | a3)))
        g0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        g1 = u & 0xFFFF
        u = t2 + (u >> 16)
        g2 = u & 0xFFFF
        g3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = f0 + (((c0 >> 14) ^ (c1 << 2) ^ (c1 >> 2) ^ (c2 << 14) ^ (c2 >> 9) ^ (c3 << 7)) & 0xFFFF) + (e0 ^ (c0 & (d0 ^ e0))) + K[t + 8] + w[t + 8]
        t1 = f1 + (((c1 >> 14) ^ (c2 << 2) ^ (c2 >> 2) ^ (c3 << 14) ^ (c3 >> 9) ^ (c0 << 7)) & 0xFFFF) + (e1 ^ (c1 & (d1 ^ e1))) + K[t + 9] + w[t + 9]
        t2 = f2 + (((c2 >> 14) ^ (c3 << 2) ^ (c3 >> 2) ^ (c0 << 14) ^ (c0 >> 9) ^ (c1 << 7)) & 0xFFFF) + (e2 ^ (c2 & (d2 ^ e2))) + K[t + 10] + w[t + 10]
        t3 = f3 + (((c3 >> 14) ^ (c0 << 2) ^ (c0 >> 2) ^ (c1 << 14) ^ (c1 >> 9) ^ (c2 << 7)) & 0xFFFF) + (e3 ^ (c3 & (d3 ^ e3))) + K[t + 11] + w[t + 11]
        u = b0 + t0
        b0 = u & 0xFFFF
        u = b1 + t1 + (u >> 16)
        b1 = u & 0xFFFF
        u = b2 + t2 + (u >> 16)
        b2 = u & 0xFFFF
        b3 = (b3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((g1 >> 12) ^ (g2 << 4) ^ (g2 >> 2) ^ (g3 << 14) ^ (g2 >> 7) ^ (g3 << 9)) & 0xFFFF) + ((g0 & h0) | (a0 & (g0 | h0)))
        t1 += (((g2 >> 12) ^ (g3 << 4) ^ (g3 >> 2) ^ (g0 << 14) ^ (g3 >> 7) ^ (g0 << 9)) & 0xFFFF) + ((g1 & h1) | (a1 & (g1 | h1)))
        t2 += (((g3 >> 12) ^ (g0 << 4) ^ (g0 >> 2) ^ (g1 << 14) ^ (g0 >> 7) ^ (g1 << 9)) & 0xFFFF) + ((g2 & h2) | (a2 & (g2 | h2)))
        t3 += (((g0 >> 12) ^ (g1 << 4) ^ (g1 >> 2) ^ (g2 << 14) ^ (g1 >> 7) ^ (g2 << 9)) & 0xFFFF) + ((g3 & h3) | (a3 & (g3 | h3)))
        f0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        f1 = u & 0xFFFF
        u = t2 + (u >> 16)
        f2 = u & 0xFFFF
        f3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = e0 + (((b0 >> 14) ^ (b1 << 2) ^ (b1 >> 2) ^ (b2 << 14) ^ (b2 >> 9) ^ (b3 << 7)) & 0xFFFF) + (d0 ^ (b0 & (c0 ^ d0))) + K[t + 12] + w[t + 12]
        t1 = e1 + (((b1 >> 14) ^ (b2 << 2) ^ (b2 >> 2) ^ (b3 << 14) ^ (b3 >> 9) ^ (b0 << 7)) & 0xFFFF) + (d1 ^ (b1 & (c1 ^ d1))) + K[t + 13] + w[t + 13]
        t2 = e2 + (((b2 >> 14) ^ (b3 << 2) ^ (b3 >> 2) ^ (b0 << 14) ^ (b0 >> 9) ^ (b1 << 7)) & 0xFFFF) + (d2 ^ (b2 & (c2 ^ d2))) + K[t + 14] + w[t + 14]
        t3 = e3 + (((b3 >> 14) ^ (b0 << 2) ^ (b0 >> 2) ^ (b1 << 14) ^ (b1 >> 9) ^ (b2 << 7)) & 0xFFFF) + (d3 ^ (b3 & (c3 ^ d3))) + K[t + 15] + w[t + 15]
        u = a0 + t0
        a0 = u & 0xFFFF
        u = a1 + t1 + (u >> 16)
        a1 = u & 0xFFFF
        u = a2 + t2 + (u >> 16)
        a2 = u & 0xFFFF
        a3 = (a3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((f1 >> 12) ^ (f2 << 4) ^ (f2 >> 2) ^ (f3 << 14) ^ (f2 >> 7) ^ (f3 << 9)) & 0xFFFF) + ((f0 & g0) | (h0 & (f0 | g0)))
        t1 += (((f2 >> 12) ^ (f3 << 4) ^ (f3 >> 2) ^ (f0 << 14) ^ (f3 >> 7) ^ (f0 << 9)) & 0xFFFF) + ((f1 & g1) | (h1 & (f1 | g1)))
        t2 += (((f3 >> 12) ^ (f0 << 4) ^ (f0 >> 2) ^ (f1 << 14) ^ (f0 >> 7) ^ (f1 << 9)) & 0xFFFF) + ((f2 & g2) | (h2 & (f2 | g2)))
        t3 += (((f0 >> 12) ^ (f1 << 4) ^ (f1 >> 2) ^ (f2 << 14) ^ (f1 >> 7) ^ (f2 << 9)) & 0xFFFF) + ((f3 & g3) | (h3 & (f3 | g3)))
        e0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        e1 = u & 0xFFFF
        u = t2 + (u >> 16)
        e2 = u & 0xFFFF
        e3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = d0 + (((a0 >> 14) ^ (a1 << 2) ^ (a1 >> 2) ^ (a2 << 14) ^ (a2 >> 9) ^ (a3 << 7)) & 0xFFFF) + (c0 ^ (a0 & (b0 ^ c0))) + K[t + 16] + w[t + 16]
        t1 = d1 + (((a1 >> 14) ^ (a2 << 2) ^ (a2 >> 2) ^ (a3 << 14) ^ (a3 >> 9) ^ (a0 << 7)) & 0xFFFF) + (c1 ^ (a1 & (b1 ^ c1))) + K[t + 17] + w[t + 17]
        t2 = d2 + (((a2 >> 14) ^ (a3 << 2) ^ (a3 >> 2) ^ (a0 << 14) ^ (a0 >> 9) ^ (a1 << 7)) & 0xFFFF) + (c2 ^ (a2 & (b2 ^ c2))) + K[t + 18] + w[t + 18]
        t3 = d3 + (((a3 >> 14) ^ (a0 << 2) ^ (a0 >> 2) ^ (a1 << 14) ^ (a1 >> 9) ^ (a2 << 7)) & 0xFFFF) + (c3 ^ (a3 & (b3 ^ c3))) + K[t + 19] + w[t + 19]
        u = h0 + t0
        h0 = u & 0xFFFF
        u = h1 + t1 + (u >> 16)
        h1 = u & 0xFFFF
        u = h2 + t2 + (u >> 16)
        h2 = u & 0xFFFF
        h3 = (h3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((e1 >> 12) ^ (e2 << 4) ^ (e2 >> 2) ^ (e3 << 14) ^ (e2 >> 7) ^ (e3 << 9)) & 0xFFFF) + ((e0 & f0) | (g0 & (e0 | f0)))
        t1 += (((e2 >> 12) ^ (e3 << 4) ^ (e3 >> 2) ^ (e0 << 14) ^ (e3 >> 7) ^ (e0 << 9)) & 0xFFFF) + ((e1 & f1) | (g1 & (e1 | f1)))
        t2 += (((e3 >> 12) ^ (e0 << 4) ^ (e0 >> 2) ^ (e1 << 14) ^ (e0 >> 7) ^ (e1 << 9)) & 0xFFFF) + ((e2 & f2) | (g2 & (e2 | f2)))
        t3 += (((e0 >> 12) ^ (e1 << 4) ^ (e1 >> 2) ^ (e2 << 14) ^ (e1 >> 7) ^ (e2 << 9)) & 0xFFFF) + ((e3 & f3) | (g3 & (e3 | f3)))
        d0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        d1 = u & 0xFFFF
        u = t2 + (u >> 16)
        d2 = u & 0xFFFF
        d3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = c0 + (((h0 >> 14) ^ (h1 << 2) ^ (h1 >> 2) ^ (h2 << 14) ^ (h2 >> 9) ^ (h3 << 7)) & 0xFFFF) + (b0 ^ (h0 & (a0 ^ b0))) + K[t + 20] + w[t + 20]
        t1 = c1 + (((h1 >> 14) ^ (h2 << 2) ^ (h2 >> 2) ^ (h3 << 14) ^ (h3 >> 9) ^ (h0 << 7)) & 0xFFFF) + (b1 ^ (h1 & (a1 ^ b1))) + K[t + 21] + w[t + 21]
        t2 = c2 + (((h2 >> 14) ^ (h3 << 2) ^ (h3 >> 2) ^ (h0 << 14) ^ (h0 >> 9) ^ (h1 << 7)) & 0xFFFF) + (b2 ^ (h2 & (a2 ^ b2))) + K[t + 22] + w[t + 22]
        t3 = c3 + (((h3 >> 14) ^ (h0 << 2) ^ (h0 >> 2) ^ (h1 << 14) ^ (h1 >> 9) ^ (h2 << 7)) & 0xFFFF) + (b3 ^ (h3 & (a3 ^ b3))) + K[t + 23] + w[t + 23]
        u = g0 + t0
        g0 = u & 0xFFFF
        u = g1 + t1 + (u >> 16)
        g1 = u & 0xFFFF
        u = g2 + t2 + (u >> 16)
        g2 = u & 0xFFFF
        g3 = (g3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((d1 >> 12) ^ (d2 << 4) ^ (d2 >> 2) ^ (d3 << 14) ^ (d2 >> 7) ^ (d3 << 9)) & 0xFFFF) + ((d0 & e0) | (f0 & (d0 | e0)))
        t1 += (((d2 >> 12) ^ (d3 << 4) ^ (d3 >> 2) ^ (d0 << 14) ^ (d3 >> 7) ^ (d0 << 9)) & 0xFFFF) + ((d1 & e1) | (f1 & (d1 | e1)))
        t2 += (((d3 >> 12) ^ (d0 << 4) ^ (d0 >> 2) ^ (d1 << 14) ^ (d0 >> 7) ^ (d1 << 9)) & 0xFFFF) + ((d2 & e2) | (f2 & (d2 | e2)))
        t3 += (((d0 >> 12) ^ (d1 << 4) ^ (d1 >> 2) ^ (d2 << 14) ^ (d1 >> 7) ^ (d2 << 9)) & 0xFFFF) + ((d3 & e3) | (f3 & (d3 | e3)))
        c0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        c1 = u & 0xFFFF
        u = t2 + (u >> 16)
        c2 = u & 0xFFFF
        c3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = b0 + (((g0 >> 14) ^ (g1 << 2) ^ (g1 >> 2) ^ (g2 << 14) ^ (g2 >> 9) ^ (g3 << 7)) & 0xFFFF) + (a0 ^ (g0 & (h0 ^ a0))) + K[t + 24] + w[t + 24]
        t1 = b1 + (((g1 >> 14) ^ (g2 << 2) ^ (g2 >> 2) ^ (g3 << 14) ^ (g3 >> 9) ^ (g0 << 7)) & 0xFFFF) + (a1 ^ (g1 & (h1 ^ a1))) + K[t + 25] + w[t + 25]
        t2 = b2 + (((g2 >> 14) ^ (g3 << 2) ^ (g3 >> 2) ^ (g0 << 14) ^ (g0 >> 9) ^ (g1 << 7)) & 0xFFFF) + (a2 ^ (g2 & (h2 ^ a2))) + K[t + 26] + w[t + 26]
        t3 = b3 + (((g3 >> 14) ^ (g0 << 2) ^ (g0 >> 2) ^ (g1 << 14) ^ (g1 >> 9) ^ (g2 << 7)) & 0xFFFF) + (a3 ^ (g3 & (h3 ^ a3))) + K[t + 27] + w[t + 27]
        u = f0 + t0
        f0 = u & 0xFFFF
        u = f1 + t1 + (u >> 16)
        f1 = u & 0xFFFF
        u = f2 + t2 + (u >> 16)
        f2 = u & 0xFFFF
        f3 = (f3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((c1 >> 12) ^ (c2 << 4) ^ (c2 >> 2) ^ (c3 << 14) ^ (c2 >> 7) ^ (c3 << 9)) & 0xFFFF) + ((c0 & d0) | (e0 & (c0 | d0)))
        t1 += (((c2 >> 12) ^ (c3 << 4) ^ (c3 >> 2) ^ (c0 << 14) ^ (c3 >> 7) ^ (c0 << 9)) & 0xFFFF) + ((c1 & d1) | (e1 & (c1 | d1)))
        t2 += (((c3 >> 12) ^ (c0 << 4) ^ (c0 >> 2) ^ (c1 << 14) ^ (c0 >> 7) ^ (c1 << 9)) & 0xFFFF) + ((c2 & d2) | (e2 & (c2 | d2)))
        t3 += (((c0 >> 12) ^ (c1 << 4) ^ (c1 >> 2) ^ (c2 << 14) ^ (c1 >> 7) ^ (c2 << 9)) & 0xFFFF) + ((c3 & d3) | (e3 & (c3 | d3)))
        b0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        b1 = u & 0xFFFF
        u = t2 + (u >> 16)
        b2 = u & 0xFFFF
        b3 = (t3 + (u >> 16)) & 0xFFFF
        t0 = a0 + (((f0 >> 14) ^ (f1 << 2) ^ (f1 >> 2) ^ (f2 << 14) ^ (f2 >> 9) ^ (f3 << 7)) & 0xFFFF) + (h0 ^ (f0 & (g0 ^ h0))) + K[t + 28] + w[t + 28]
        t1 = a1 + (((f1 >> 14) ^ (f2 << 2) ^ (f2 >> 2) ^ (f3 << 14) ^ (f3 >> 9) ^ (f0 << 7)) & 0xFFFF) + (h1 ^ (f1 & (g1 ^ h1))) + K[t + 29] + w[t + 29]
        t2 = a2 + (((f2 >> 14) ^ (f3 << 2) ^ (f3 >> 2) ^ (f0 << 14) ^ (f0 >> 9) ^ (f1 << 7)) & 0xFFFF) + (h2 ^ (f2 & (g2 ^ h2))) + K[t + 30] + w[t + 30]
        t3 = a3 + (((f3 >> 14) ^ (f0 << 2) ^ (f0 >> 2) ^ (f1 << 14) ^ (f1 >> 9) ^ (f2 << 7)) & 0xFFFF) + (h3 ^ (f3 & (g3 ^ h3))) + K[t + 31] + w[t + 31]
        u = e0 + t0
        e0 = u & 0xFFFF
        u = e1 + t1 + (u >> 16)
        e1 = u & 0xFFFF
        u = e2 + t2 + (u >> 16)
        e2 = u & 0xFFFF
        e3 = (e3 + t3 + (u >> 16)) & 0xFFFF
        t0 += (((b1 >> 12) ^ (b2 << 4) ^ (b2 >> 2) ^ (b3 << 14) ^ (b2 >> 7) ^ (b3 << 9)) & 0xFFFF) + ((b0 & c0) | (d0 & (b0 | c0)))
        t1 += (((b2 >> 12) ^ (b3 << 4) ^ (b3 >> 2) ^ (b0 << 14) ^ (b3 >> 7) ^ (b0 << 9)) & 0xFFFF) + ((b1 & c1) | (d1 & (b1 | c1)))
        t2 += (((b3 >> 12) ^ (b0 << 4) ^ (b0 >> 2) ^ (b1 << 14) ^ (b0 >> 7) ^ (b1 << 9)) & 0xFFFF) + ((b2 & c2) | (d2 & (b2 | c2)))
        t3 += (((b0 >> 12) ^ (b1 << 4) ^ (b1 >> 2) ^ (b2 << 14) ^ (b1 >> 7) ^ (b2 << 9)) & 0xFFFF) + ((b3 & c3) | (d3 & (b3 | c3)))
        a0 = t0 & 0xFFFF
        u = t1 + (t0 >> 16)
        a1 = u & 0xFFFF
        u = t2 + (u >> 16)
        a2 = u & 0xFFFF
        a3 = (t3 + (u >> 16)) & 0xFFFF
    u = h[0] + a0
    h[0] = u & 0xFFFF
    u = h[1] + a1 + (u >> 16)
    h[1] = u & 0xFFFF
    u = h[2] + a2 + (u >> 16)
    h[2] = u & 0xFFFF
    h[3] = (h[3] + a3 + (u >> 16)) & 0xFFFF
    u = h[4] + b0
    h[4] = u & 0xFFFF
    u = h[5] + b1 + (u >> 16)
    h[5] = u & 0xFFFF
    u = h[6] + b2 + (u >> 16)
    h[6] = u & 0xFFFF
    h[7] = (h[7] + b3 + (u >> 16)) & 0xFFFF
    u = h[8] + c0
    h[8] = u & 0xFFFF
    u = h[9] + c1 + (u >> 16)
    h[9] = u & 0xFFFF
    u = h[10] + c2 + (u >> 16)
    h[10] = u & 0xFFFF
    h[11] = (h[11] + c3 + (u >> 16)) & 0xFFFF
    u = h[12] + d0
    h[12] = u & 0xFFFF
    u = h[13] + d1 + (u >> 16)
    h[13] = u & 0xFFFF
    u = h[14] + d2 + (u >> 16)
    h[14] = u & 0xFFFF
    h[15] = (h[15] + d3 + (u >> 16)) & 0xFFFF
    u = h[16] + e0
    h[16] = u & 0xFFFF
    u = h[17] + e1 + (u >> 16)
    h[17] = u & 0xFFFF
    u = h[18] + e2 + (u >> 16)
    h[18] = u & 0xFFFF
    h[19] = (h[19] + e3 + (u >> 16)) & 0xFFFF
    u = h[20] + f0
    h[20] = u & 0xFFFF
    u = h[21] + f1 + (u >> 16)
    h[21] = u & 0xFFFF
    u = h[22] + f2 + (u >> 16)
    h[22] = u & 0xFFFF
    h[23] = (h[23] + f3 + (u >> 16)) & 0xFFFF
    u = h[24] + g0
    h[24] = u & 0xFFFF
    u = h[25] + g1 + (u >> 16)
    h[25] = u & 0xFFFF
    u = h[26] + g2 + (u >> 16)
    h[26] = u & 0xFFFF
    h[27] = (h[27] + g3 + (u >> 16)) & 0xFFFF
    u = h[28] + h0
    h[28] = u & 0xFFFF
    u = h[29] + h1 + (u >> 16)
    h[29] = u & 0xFFFF
    u = h[30] + h2 + (u >> 16)
    h[30] = u & 0xFFFF
    h[31] = (h[31] + h3 + (u >> 16)) & 0xFFFF
# fmt: on


class SHA512:
    """Incremental SHA-512 with the interface of firmware.sha512.SHA512 (update, digest)."""

    digest_size = DIGEST_BYTES
    block_size = BLOCK_BYTES

    def __init__(self, data=None):
        self._h = list(_H0L)
        self._w = [0] * 320
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
            _compress(self._h, self._w, buf, 0)
        while n - pos >= BLOCK_BYTES:
            _compress(self._h, self._w, data, pos)
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
        struct.pack_into(">QQ", block, BLOCK_BYTES - 16, bits >> 64, bits & 0xFFFFFFFFFFFFFFFF)
        _compress(h, self._w, block, 0)
        out = bytearray(DIGEST_BYTES)
        for j in range(8):
            struct.pack_into(">4H", out, 8 * j, h[4 * j + 3], h[4 * j + 2], h[4 * j + 1], h[4 * j])
        return bytes(out)
