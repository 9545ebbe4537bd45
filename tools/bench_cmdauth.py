"""Benchmark: checking one authenticated BLE command (HMAC-SHA256, firmware/cmdauth.py) against
verifying one Ed25519 signature with the firmware's pure-Python code (firmware/ed25519.py).

The design question of protocol v2 (docs/ble-protocol.md, Why HMAC): which primitive the board
runs per command. Runs unchanged under CPython and inside the MicroPython VM:

    node tools/mpvm.mjs --run tools/bench_cmdauth.py [--n N]
    python3 tools/bench_cmdauth.py [--n N]

Prints ms per check for both and their ratio; the last line is `RESULT key=value ...`.
"""

import sys
import time

try:
    ARGS = ARGV[1:]  # noqa: F821  (set by tools/mpvm.mjs; MicroPython's sys has no argv there)
except NameError:
    ARGS = sys.argv[1:]
    if __name__ == "__main__":  # CPython: make `firmware` importable from the repo root
        import os

        _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if _root not in sys.path:
            sys.path.insert(0, _root)

from firmware import cmdauth, ed25519  # noqa: E402

# why: HMAC checks take microseconds, so many are needed for a stable figure; one Ed25519 verify
# takes tens of ms in the VM, so a few suffice
DEFAULT_N = 200
VERIFY_N = 5


def _ms():
    """Return a millisecond clock (MicroPython: ticks_ms; CPython: perf_counter)."""
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()  # type: ignore[attr-defined]
    return time.perf_counter() * 1000.0


def main(args):
    """Run the benchmark with command-line args; returns nothing."""
    n = int(args[args.index("--n") + 1]) if "--n" in args else DEFAULT_N
    key = bytes(range(32))
    dev_id = bytes(range(16))
    nonce = bytes(range(16, 32))
    auth = cmdauth.CommandAuth(key, dev_id)
    command = b"\x01\x00\x00\x00\x28\x00\x00"  # SEND_FROM(40, 0): the longest command
    writes = []
    for i in range(n):
        c = i % 255 + 1
        writes.append(command + bytes([c]) + auth.tag(nonce, c, command)[: cmdauth.TAG_BYTES])
    t0 = _ms()
    for i in range(n):
        if i % 255 == 0:
            auth.new_session(nonce)
        assert auth.check(writes[i]) == cmdauth.AUTH_OK
    hmac_ms = (_ms() - t0) / n

    signer = ed25519.SigningKey(bytes(32))
    sig = signer.sign(command)
    t0 = _ms()
    for _ in range(VERIFY_N):
        assert ed25519.verify(signer.public_key, command, sig)
    verify_ms = (_ms() - t0) / VERIFY_N
    print(f"command check (HMAC-SHA256): {hmac_ms:.3f} ms")
    print(f"Ed25519 verify (firmware):   {verify_ms:.1f} ms")
    print(f"ratio: {verify_ms / hmac_ms if hmac_ms else 0:.0f}x")
    print(f"RESULT hmac_ms={hmac_ms:.4f} ed25519_verify_ms={verify_ms:.2f} n={n}")


if __name__ == "__main__":
    main(ARGS)
