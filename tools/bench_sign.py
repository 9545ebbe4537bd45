"""Benchmark: firmware Ed25519 signing vs the previous firmware signer and the naive one, in one run.

Runs unchanged under CPython and inside the MicroPython VM:

    node tools/mpvm.mjs --copy tools --run tools/bench_sign.py [--n N] [--msg-bytes M]
    python3 tools/bench_sign.py [--n N] [--msg-bytes M] [--rounds R] [--pairs P] [--sha-kb K]
        [--prf 1 | --prf-only 1]

Prints ms per signature for the three signers (firmware, previous = tools/ed25519_prev.py, naive =
tools/ed25519_naive.py), the ratios, SHA-512 throughput, the heap taken by the fixed-base table
and, in the MicroPython VM, the bytes one signature allocates (gc off, gc.mem_alloc() before and
after: everything the signature leaves for the collector) for the firmware and the previous signer
at three body sizes, with a breakdown by stage; and the low-garbage variants A/B against the
firmware: tools/sha512_limbs.py swapped in, and tools/ed25519_prf.py (HMAC-SHA256 nonce, limb
SHA-512 only for k), each also with Lehmer's inversion; the latter only with `--prf 1` (in the
full run) or `--prf-only 1` (alone: a full VM run with it and a body of 100 bytes or more
passes node's wasm memory limit at --pairs 65).
The last line is a machine-readable `RESULT key=value ...`.
"""

import gc
import sys
import time

try:
    ARGS = ARGV[1:]  # noqa: F821  (set by tools/mpvm.mjs; MicroPython's sys has no argv there)
except NameError:
    ARGS = sys.argv[1:]
    if __name__ == "__main__":  # CPython: make `firmware` and `tools` importable from the repo root
        import os

        _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if _root not in sys.path:
            sys.path.insert(0, _root)

MICROPYTHON = sys.implementation.name == "micropython"

_PERF = None
if MICROPYTHON:
    try:  # the VM (node): performance.now() resolves microseconds, time.ticks_us() only whole ms
        import js

        _PERF = js.performance
    except ImportError:  # a board: ticks_us() is exact there
        pass

if _PERF is not None:

    def _now_us():
        return _PERF.now() * 1000

    def _since_us(t0):
        return _PERF.now() * 1000 - t0

elif MICROPYTHON:

    def _now_us():
        return time.ticks_us()

    def _since_us(t0):
        return time.ticks_diff(time.ticks_us(), t0)

else:

    def _now_us():
        return time.perf_counter_ns() // 1000

    def _since_us(t0):
        return time.perf_counter_ns() // 1000 - t0


def _arg(name, default):
    """Return the integer after --name in ARGS, or default."""
    flag = "--" + name
    for i in range(len(ARGS) - 1):
        if ARGS[i] == flag:
            return int(ARGS[i + 1])
    return default


def _heap_used():
    """Return bytes currently allocated on the heap (MicroPython) or traced (CPython)."""
    gc.collect()
    if MICROPYTHON:
        return gc.mem_alloc()
    import tracemalloc

    return tracemalloc.get_traced_memory()[0]


def _messages(count, size):
    """Return count deterministic pseudo-random messages of size bytes (no os.urandom in the VM)."""
    out = []
    x = 0x2545F491
    for _ in range(count):
        b = bytearray(size)
        for j in range(size):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            b[j] = x >> 16 & 0xFF
        out.append(bytes(b))
    return out


# Record bodies signed by the board (docs/wire-format.md): the 64-byte header alone, a typical
# reading and MAX_BODY_BYTES. why: SHA-512 dominates the garbage and its block count depends on
# the length (RFC 8032 hashes prefix || M and R || A || M): 3, 4 and 5 blocks for these sizes.
ALLOC_BODY_BYTES = (64, 100, 176)


# Signatures per A/B timing pair. why: 5 signatures take ~15-20 ms in the VM, long against the
# clock's resolution and short against the load swings of a shared machine.
AB_BATCH = 5


def _alloc_bytes(fn, *args):
    """Return the bytes fn(*args) allocates on the MicroPython heap, collection off (None on CPython).

    The VM's collector frees nothing while a script runs, so the difference of gc.mem_alloc() is
    exactly what fn allocated and did not free itself (C-level temporaries freed inside one
    operation, like a division's quotient, do not count, as on the board).
    """
    if not MICROPYTHON:
        return None
    gc.disable()
    try:
        before = gc.mem_alloc()
        fn(*args)
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def _alloc_report(ed25519, prev, seed):
    """Print allocated bytes per signature (firmware vs previous) and a breakdown; return (dict, ok).

    The dict maps RESULT keys to values; ok is False when a body size exceeds the test's budget.
    """
    from firmware.sha512 import SHA512
    from tests.firmware.test_ed25519_alloc import SIGN_ALLOC_BUDGET_BYTES

    key = ed25519.SigningKey(seed)
    old = prev.SigningKey(seed)
    out = {"alloc_budget_b": SIGN_ALLOC_BUDGET_BYTES}
    ok = True
    for size in ALLOC_BODY_BYTES:
        msg = _messages(1, size)[0]
        # Also the warm-up: both tables exist before anything is measured.
        assert key.sign(msg) == old.sign(msg)
        new_b = _alloc_bytes(key.sign, msg)
        old_b = _alloc_bytes(old.sign, msg)
        verdict = "ok" if new_b <= SIGN_ALLOC_BUDGET_BYTES else "OVER BUDGET"
        ok = ok and new_b <= SIGN_ALLOC_BUDGET_BYTES
        print(
            f"allocated per signature, {size:3d}-byte body: firmware {new_b:7d} B,"
            f" previous {old_b:7d} B, ratio {new_b / old_b:.3f}"
            f" (budget {SIGN_ALLOC_BUDGET_BYTES} B: {verdict})"
        )
        out[f"alloc_b_{size}"] = new_b
        out[f"prev_alloc_b_{size}"] = old_b
        out[f"alloc_ratio_{size}"] = f"{new_b / old_b:.3f}"
    # Typical inputs: a scalar from a hash (about 1 in 16 signed digits is 0, as in signing; a
    # structured scalar skips additions) and a block of message-like bytes (zero words are small
    # ints in MicroPython and would allocate less).
    r = ed25519._hash_mod_l(seed, b"breakdown", b"")
    point = ed25519._base_mul(r)
    data = _messages(1, 128)[0]
    block = SHA512()
    parts = (
        ("SHA-512, one 128-byte block", _alloc_bytes(block.update, data)),
        ("[r]B (comb, 4 passes)", _alloc_bytes(ed25519._base_mul, r)),
        ("encode R (one inversion)", _alloc_bytes(ed25519._encode, point)),
    )
    print("  firmware breakdown: " + ", ".join(f"{name} {b} B" for name, b in parts))
    out["sha512_block_alloc_b"] = parts[0][1]
    out["base_mul_alloc_b"] = parts[1][1]
    out["encode_alloc_b"] = parts[2][1]
    return out, ok


def _variant(ed25519, key, msgs, pairs, lehmer):
    """Return (median time ratio, [(body bytes, bytes allocated per signature)] or None) of key
    signing with tools/sha512_limbs.SHA512 (and, if lehmer, tools/ed25519_prf.inv_lehmer)
    swapped into ed25519, A/B against the firmware as it is; the allocation is measured for each
    of ALLOC_BODY_BYTES (MicroPython only, else None)."""
    try:
        from tools import ed25519_prf, sha512_limbs
    except ImportError:
        import ed25519_prf
        import sha512_limbs
    own_sha = ed25519.SHA512
    own_inv = ed25519._inv
    P = ed25519._P

    def inv(z):
        return ed25519_prf.inv_lehmer(z, P)

    def use(variant):
        ed25519.SHA512 = sha512_limbs.SHA512 if variant else own_sha
        ed25519._inv = inv if variant and lehmer else own_inv

    msg = _messages(1, 100)[0]
    want = key.sign(msg)
    ratios = []
    try:
        use(True)
        assert key.sign(msg) == want, "the low-garbage variant signs differently"
        alloc = None
        if MICROPYTHON:
            alloc = [
                (size, _alloc_bytes(key.sign, _messages(1, size)[0])) for size in ALLOC_BODY_BYTES
            ]
        for i in range(pairs):
            for variant in (i % 2 == 0, i % 2 == 1):
                use(variant)
                us = _time_signs(key, msgs)[0]
                if variant:
                    v_us = us
                else:
                    o_us = us
            if o_us > 0:
                ratios.append(v_us / o_us)
    finally:
        use(False)
    ratios.sort()
    return (ratios[len(ratios) // 2] if ratios else 0.0), alloc


def _prf_variant(ed25519, fast, seed, msgs, pairs, lehmer):
    """Return (A/B time ratios sorted, [(body bytes, bytes allocated per signature)] or None) of
    tools/ed25519_prf.SigningKey(seed, lehmer=lehmer) against fast, the firmware's key of seed.

    The variant's nonce differs from RFC 8032's, so its signatures are checked with the
    firmware's verify instead of compared byte for byte. Timing as in _variant: pairs of
    _time_signs over msgs, the order alternating per pair, one ratio per pair. Allocation for
    each of ALLOC_BODY_BYTES (MicroPython only, else None).
    """
    try:
        from tools import ed25519_prf
    except ImportError:
        import ed25519_prf

    key = ed25519_prf.SigningKey(seed, lehmer=lehmer)
    assert key.public_key == fast.public_key
    for m in msgs:
        assert ed25519.verify(key.public_key, m, key.sign(m)), "a PRF-nonce signature fails"
    alloc = None
    if MICROPYTHON:
        alloc = []
        for size in ALLOC_BODY_BYTES:
            msg = _messages(1, size)[0]
            key.sign(msg)  # warm-up: nothing made once per key or module counts
            alloc.append((size, _alloc_bytes(key.sign, msg)))
    return _ab_ratios(key, fast, msgs, pairs), alloc


def _prf_only(ed25519, fast, seed, msgs, pairs, msg_bytes):
    """Measure only the tools/ed25519_prf.py variants (--prf-only 1) against fast, the firmware's
    key of seed, on msgs; print their lines and a RESULT line (prf_only=1); return 0."""
    fw_alloc = []
    if MICROPYTHON:
        for size in ALLOC_BODY_BYTES:
            msg = _messages(1, size)[0]
            fast.sign(msg)
            fw_alloc.append((size, _alloc_bytes(fast.sign, msg)))
        print(
            "firmware, allocated per signature: "
            + ", ".join(f"{b} B ({size}-byte body)" for size, b in fw_alloc)
        )
    kv = f"RESULT impl={sys.implementation.name} prf_only=1 msg_bytes={msg_bytes} pairs={pairs}"
    kv += "".join(f" alloc_b_{size}={b}" for size, b in fw_alloc)
    for lehmer in (False, True):
        ratios, alloc_v = _prf_variant(ed25519, fast, seed, msgs, pairs, lehmer)
        line, more = _prf_report(lehmer, ratios, alloc_v, msg_bytes)
        print(line)
        kv += more
    print(kv)
    return 0


def _prf_report(lehmer, ratios, alloc, msg_bytes):
    """Return (report line, RESULT key=value text with a leading space) of a _prf_variant result:
    time_ratio_prf[_lehmer] with its quartiles _q1 and _q3, prf[_lehmer]_alloc_b_<body bytes>."""
    tag = "prf_lehmer" if lehmer else "prf"
    name = "HMAC-SHA256 nonce + limb SHA-512 for k (tools/ed25519_prf.py)"
    if lehmer:
        name = "the same + Lehmer inversion"
    q1, med, q3 = _quartiles(ratios) if ratios else (0.0, 0.0, 0.0)
    line = _variant_line(name, med, len(ratios), alloc)
    line += f"; quartiles of the ratios {q1:.3f}-{q3:.3f} ({msg_bytes}-byte body)"
    kv = f" time_ratio_{tag}={med:.3f} time_ratio_{tag}_q1={q1:.3f} time_ratio_{tag}_q3={q3:.3f}"
    kv += "".join(f" {tag}_alloc_b_{size}={b}" for size, b in (alloc or ()))
    return line, kv


def _quartiles(sorted_values):
    """Return (lower quartile, median, upper quartile) of a non-empty sorted list (nearest rank)."""
    n = len(sorted_values)
    return sorted_values[n // 4], sorted_values[n // 2], sorted_values[(3 * n) // 4]


def _variant_line(name, ratio, pairs, alloc):
    """Return the report line of a variant measured by _variant."""
    line = f"{name}: {ratio:.3f} x the sign time (median of {pairs} A/B ratios)"
    if alloc is not None:
        line += ", allocated per signature: " + ", ".join(
            f"{b} B ({size}-byte body)" for size, b in alloc
        )
    return line


def _file_table_key(ed25519, seed):
    """Return (a SigningKey reading the table from a file, the file's path); the file is written
    in the current directory (the VM's in-memory filesystem, or the host's) and removed after."""
    from firmware.fs import VfsFS

    path = "bench_sign_ed25519.tbl"
    _remove(path)
    return ed25519.SigningKey(seed, ed25519.TableFile(VfsFS(), path)), path


def _remove(path):
    """Remove the file at path if it exists; returns nothing."""
    import os

    try:
        os.remove(path)
    except OSError:  # not there (MicroPython has no contextlib.suppress)
        return


def _ab_ratios(a, b, msgs, pairs):
    """Return the sorted time ratios (a's time / b's) of `pairs` short A/B rounds over msgs,
    the order alternating: on a loaded machine adjacent rounds drift together, so each pair's
    ratio holds where the absolute times do not."""
    ratios = []
    for i in range(pairs):
        if i % 2:
            b_us = _time_signs(b, msgs)[0]
            a_us = _time_signs(a, msgs)[0]
        else:
            a_us = _time_signs(a, msgs)[0]
            b_us = _time_signs(b, msgs)[0]
        if b_us > 0:
            ratios.append(a_us / b_us)
    ratios.sort()
    return ratios


def _time_signs(key, msgs):
    """Return (microseconds per signature, signatures) for key.sign over msgs."""
    sigs = []
    t0 = _now_us()
    for m in msgs:
        sigs.append(key.sign(m))
    return _since_us(t0) / len(msgs), sigs


def main():
    """Run the benchmark; return 0, or 1 when (in the VM) a signature exceeds the allocation budget."""
    n = _arg("n", 20)
    rounds = _arg("rounds", 5)
    ab_pairs = _arg("pairs", 40)
    msg_bytes = _arg("msg-bytes", 64)
    sha_kb = _arg("sha-kb", 16)
    # tools/ed25519_prf.py against the firmware: --prf 1 adds it to the full run, --prf-only 1
    # measures only it. why not by default: the VM's collector frees nothing in --run mode, and
    # with it a full run at --pairs 65 and a 100-byte body passes node's 2 GB wasm memory limit
    # (~0.6 MB of garbage per firmware signature; without it the run peaks at ~1.7 GB).
    prf_only = _arg("prf-only", 0)
    with_prf = _arg("prf", 0)

    if not MICROPYTHON:
        import tracemalloc

        tracemalloc.start()
    from firmware import ed25519, sha512

    try:
        from tools import ed25519_naive, ed25519_prev
    except ImportError:
        import ed25519_naive
        import ed25519_prev

    print("Ed25519 sign benchmark on", sys.implementation.name, sys.version.split()[0])

    before = _heap_used()
    t0 = _now_us()
    table = ed25519._table_bytes()
    build_us = _since_us(t0)
    churn_bytes = _heap_used() - before  # VM: gc.collect() reclaims nothing in --run mode
    table_bytes = len(table)  # one packed bytearray: its length is what it holds in RAM
    if not MICROPYTHON:
        import tracemalloc

        tracemalloc.stop()

    seed = bytes(range(32))
    msgs = _messages(n, msg_bytes)
    fast = ed25519.SigningKey(seed)
    if prf_only:
        fast.sign(msgs[0])  # warm-up
        return _prf_only(ed25519, fast, seed, msgs[:AB_BATCH], ab_pairs, msg_bytes)
    prev = ed25519_prev.SigningKey(seed)
    naive = ed25519_naive.SigningKey(seed)
    assert fast.public_key == naive.public_key == prev.public_key

    fast.sign(msgs[0])  # warm-up
    prev.sign(msgs[0])
    naive.sign(msgs[0])
    # Alternate the signers over several rounds and keep each one's best round: other
    # load on the machine (and GC pauses) only ever add time. The firmware and the previous
    # signer run back to back in alternating order, and their ratio is taken per round (the
    # median of the rounds is reported): both halves of a round see the same machine load.
    fast_us = prev_us = naive_us = None
    round_ratios = []
    for rnd in range(rounds):
        if rnd % 2:
            p_us, prev_sigs = _time_signs(prev, msgs)
            f_us, fast_sigs = _time_signs(fast, msgs)
        else:
            f_us, fast_sigs = _time_signs(fast, msgs)
            p_us, prev_sigs = _time_signs(prev, msgs)
        n_us, naive_sigs = _time_signs(naive, msgs)
        assert fast_sigs == naive_sigs == prev_sigs, "the three signers' signatures differ"
        print(
            f"round {rnd + 1}: naive {n_us / 1000:.3f} ms, previous {p_us / 1000:.3f} ms,"
            f" optimised {f_us / 1000:.3f} ms"
        )
        round_ratios.append(f_us / p_us)
        fast_us = f_us if fast_us is None else min(fast_us, f_us)
        prev_us = p_us if prev_us is None else min(prev_us, p_us)
        naive_us = n_us if naive_us is None else min(naive_us, n_us)
    # The ratio to the previous signer from many short A/B pairs (a few signatures each, order
    # alternating): on a loaded machine the rounds above drift by 2x, adjacent pairs much less.
    pair_msgs = msgs[:AB_BATCH]
    round_ratios += _ab_ratios(fast, prev, pair_msgs, ab_pairs)
    round_ratios.sort()
    time_ratio_prev = round_ratios[len(round_ratios) // 2]

    # The board keeps the table on flash (ed25519.TableFile, runtime.TABLE_PATH): the same
    # signer reading its entries from a file, A/B against the table in RAM.
    file_key, table_path = _file_table_key(ed25519, seed)
    try:
        assert file_key.sign(msgs[0]) == fast.sign(msgs[0])
        file_ratios = _ab_ratios(file_key, fast, pair_msgs, ab_pairs)
    finally:
        file_key._table.close()
        _remove(table_path)
    time_ratio_file = file_ratios[len(file_ratios) // 2] if file_ratios else 0.0

    # The low-garbage variants (issue 12 item 5): the same signer over tools/sha512_limbs.py, whose
    # SHA-512 keeps every value a small int, alone and with Lehmer's inversion; A/B against the
    # firmware as it is.
    limbs_ratio, limbs_alloc = _variant(ed25519, fast, pair_msgs, ab_pairs, False)
    lowgc_ratio, lowgc_alloc = _variant(ed25519, fast, pair_msgs, ab_pairs, True)
    # tools/ed25519_prf.py: the nonce from HMAC-SHA256 on the native hashlib, only k = SHA-512(R ||
    # A || M) over the limb SHA-512, without and with Lehmer's inversion; A/B against the firmware.
    prf_ratios = prfl_ratios = prf_alloc = prfl_alloc = None
    if with_prf:
        prf_ratios, prf_alloc = _prf_variant(ed25519, fast, seed, pair_msgs, ab_pairs, False)
        prfl_ratios, prfl_alloc = _prf_variant(ed25519, fast, seed, pair_msgs, ab_pairs, True)

    t0 = _now_us()
    for i in range(n):
        assert ed25519.verify(fast.public_key, msgs[i], fast_sigs[i])
    verify_us = _since_us(t0) / n

    data = _messages(1, 1024)[0] * sha_kb
    sha_us = None
    for _ in range(3):  # best of 3, like the signers
        t0 = _now_us()
        sha512.sha512(data)
        us = _since_us(t0)
        sha_us = us if sha_us is None else min(sha_us, us)
    sha_kb_s = sha_kb * 1e6 / sha_us
    sha_block_us = sha_us / (sha_kb * 1024 / 128)

    ratio = naive_us / fast_us
    impl = sys.implementation.name
    print(f"messages: {n} x {msg_bytes} bytes, best of {rounds} rounds")
    print(f"naive     sign: {naive_us / 1000:8.3f} ms/signature")
    print(f"previous  sign: {prev_us / 1000:8.3f} ms/signature (tools/ed25519_prev.py)")
    print(f"optimised sign: {fast_us / 1000:8.3f} ms/signature")
    print(f"speedup       : {ratio:8.2f} x over naive")
    print(
        f"time / previous: {time_ratio_prev:7.3f} (median of {len(round_ratios)} A/B ratios;"
        " below 1: faster than the previous signer)"
    )
    print(
        f"table on flash  : {time_ratio_file:7.3f} x the time with the table in RAM (median of"
        f" {len(file_ratios)} A/B ratios; what a board does: 12 KB less heap)"
    )
    print(
        _variant_line(
            "limb SHA-512 (tools/sha512_limbs.py, 22/21/21-bit limbs)",
            limbs_ratio,
            ab_pairs,
            limbs_alloc,
        )
    )
    print(_variant_line("limb SHA-512 + Lehmer inversion", lowgc_ratio, ab_pairs, lowgc_alloc))
    prf_kv = ""
    for lehmer, ratios, alloc_v in (
        (False, prf_ratios, prf_alloc),
        (True, prfl_ratios, prfl_alloc),
    ):
        if ratios is not None:  # --prf 1
            line, kv = _prf_report(lehmer, ratios, alloc_v, msg_bytes)
            print(line)
            prf_kv += kv
    print(f"optimised verify: {verify_us / 1000:6.3f} ms/signature (policy checks included)")
    print(f"sha512 (pure) : {sha_kb_s:8.1f} KB/s, {sha_block_us:.1f} us per 128-byte block")
    print(f"fixed-base table: {table_bytes} bytes live, built in {build_us / 1000:.1f} ms")
    alloc = {}
    ok = True
    if MICROPYTHON:
        print(f"table build allocated {churn_bytes} bytes in total (short-lived garbage)")
        alloc, ok = _alloc_report(ed25519, ed25519_prev, seed)
    extra = "".join(f" {k}={v}" for k, v in alloc.items())
    limbs_kv = "".join(f" limbs_sha_alloc_b_{size}={b}" for size, b in (limbs_alloc or ()))
    limbs_kv += f" time_ratio_lowgc={lowgc_ratio:.3f}"
    limbs_kv += "".join(f" lowgc_alloc_b_{size}={b}" for size, b in (lowgc_alloc or ()))
    limbs_kv += prf_kv
    print(
        f"RESULT impl={impl} naive_ms={naive_us / 1000:.3f} prev_ms={prev_us / 1000:.3f}"
        f" fast_ms={fast_us / 1000:.3f} ratio={ratio:.2f} time_ratio_prev={time_ratio_prev:.3f}"
        f" time_ratio_table_file={time_ratio_file:.3f} time_ratio_limbs_sha={limbs_ratio:.3f}"
        f"{limbs_kv} verify_ms={verify_us / 1000:.3f} sha512_kb_s={sha_kb_s:.1f}"
        f" table_bytes={table_bytes} table_build_ms={build_us / 1000:.1f} n={n}"
        f" msg_bytes={msg_bytes}{extra}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if main():
        raise SystemExit(1)  # the VM runner reports an uncaught SystemExit as a failure
