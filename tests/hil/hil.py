"""Host side of `make hil`: deploy the firmware and the board-side checks (tests/hil/board) as
.mpy, run them on the board over USB, and format the numbers as a table for an issue."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from gateway.boardctl.deploy import deploy, mpy_cross
from gateway.boardctl.link import BoardLink

ROOT = Path(__file__).resolve().parents[2]
BOARD_SCRIPT = ROOT / "tests" / "hil" / "board" / "hil_board.py"
BOARD_MODULE = "hil_board.mpy"  # at the root: the next deploy removes it (stale root code)
DEFAULT_PROFILE = ROOT / "boards" / "esp32-devkitc.json"
# why: a board boots the firmware (key, ~0.5 s table, journal mount) and signs ~25 records
RUN_TIMEOUT_S = 600
REPORT = ROOT / "build" / "hil-report.md"


def compile_board_script() -> bytes:
    """Return tests/hil/board/hil_board.py compiled by mpy-cross -s (no host path inside)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / BOARD_MODULE
        subprocess.run(
            [mpy_cross(), "-s", "hil_board.py", "-o", str(out), str(BOARD_SCRIPT)],
            check=True, capture_output=True,
        )  # fmt: skip
        return out.read_bytes()


def run_board_side(port: str, profile: Path = DEFAULT_PROFILE) -> dict[str, Any]:
    """Deploy the firmware and the checks to the board on port, run them; return the result
    dict the board printed (passed, failed, heap and time numbers) plus "board" (MicroPython)."""
    with BoardLink(port) as link:
        deploy(link, profile)
        link.write_file(BOARD_MODULE, compile_board_script())
        machine = link.exec("import sys\nprint(sys.implementation._machine)").strip()
        out = link.exec("import hil_board\nhil_board.main()\n", RUN_TIMEOUT_S)
        link.remove(BOARD_MODULE)
    line = next((ln for ln in out.splitlines() if ln.startswith("HIL-RESULT ")), None)
    if line is None:
        raise AssertionError("the board printed no HIL-RESULT line:\n" + out[-2000:])
    res = json.loads(line[len("HIL-RESULT ") :])
    res["board"] = machine
    return res


def format_report(res: dict[str, Any], radio: dict[str, Any] | None = None) -> str:
    """Return the result as a Markdown table a person can paste into an issue."""

    def kb(n: Any) -> str:
        return "-" if n is None else f"{n} bytes ({n / 1024:.1f} KB)"

    rows = [
        ("board", res.get("board")),
        ("device id", res.get("device_id")),
        ("checks passed", ", ".join(res.get("passed", []))),
        ("checks failed", "; ".join(res.get("failed", [])) or "none"),
        ("boot (build_board)", f"{res.get('boot_ms')} ms"),
        ("sign time (Ed25519, mean of 3)", f"{res.get('sign_ms')} ms"),
        ("free heap at start", kb(res.get("heap_at_start"))),
        ("free heap after boot", kb(res.get("heap_after_boot"))),
        ("free heap at steady state (20 samples + heartbeats)", kb(res.get("heap_steady"))),
    ]
    if radio is None:
        rows.append(("notification throughput / RTT", "not measured (no radio run)"))
    else:
        rows.append(
            (
                "notification throughput",
                f"{radio['throughput_bps']:.0f} B/s "
                f"({radio['records']} records, {radio['bytes']} bytes, MTU {radio['mtu']})",
            )
        )
        rows.append(("command round trip (ACK -> STATUS)", f"{radio['rtt_ms']:.1f} ms (median)"))
    lines = ["| edgeseal HIL | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
