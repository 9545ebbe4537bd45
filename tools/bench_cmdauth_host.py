"""Host wrapper for tools/bench_cmdauth.py (`make bench`): runs it in the MicroPython VM (node).

Reports the board's cost of checking one authenticated BLE command (HMAC-SHA256) against the
baseline measured in the same run, one Ed25519 verify with the firmware's own code: the numbers
behind protocol v2's choice of HMAC (docs/ble-protocol.md). Returns non-zero if the VM run fails.
"""

import sys

from tools.bench_sign_host import parse_result, run_script

SCRIPT = "tools/bench_cmdauth.py"
# why: 200 checks give a stable figure for a ~0.1 ms operation; --quick keeps make bench short
QUICK_N = "50"


def main(argv=None):
    """Run the command-auth benchmark in the VM; return its exit status (0 when it ran)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in args:
        args = [a for a in args if a != "--quick"] + ["--n", QUICK_N]
    rc, line = run_script(
        ["node", "tools/mpvm.mjs", "--copy", "tools", "--run", SCRIPT, *args], "VM"
    )
    if line is None:
        return rc or 1
    result = parse_result(line)
    hmac_ms, verify_ms = float(result["hmac_ms"]), float(result["ed25519_verify_ms"])
    print(
        f"MicroPython VM: command check {hmac_ms:.3f} ms = {hmac_ms / verify_ms:.4f} of an "
        f"Ed25519 verify ({verify_ms:.1f} ms; {verify_ms / hmac_ms:.0f}x slower)"
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
