"""The board side of `make hil` against the stand-in board (tools/boardvm), in every test run:
the checks deploy as .mpy, run on the stand-in's esp32/machine/bluetooth and report numbers.
The radio part needs a board (tests/hil/test_board.py, EDGESEAL_HIL_RADIO=1)."""

from __future__ import annotations

from pathlib import Path

from tests.hil.hil import format_report, run_board_side
from tools.boardvm.standin import StandIn


def test_the_hil_board_side_runs_on_the_stand_in(tmp_path: Path) -> None:
    with StandIn(tmp_path / "flash") as board:
        res = run_board_side(board.port)
    assert res["failed"] == [], res["failed"]
    assert res["passed"] == ["machine", "nvs", "ble", "boot", "sign", "steady"]
    assert res["sign_ms"] >= 0 and res["heap_after_boot"] > 0 and res["heap_steady"] > 0
    assert not (tmp_path / "flash" / "hil_board.mpy").exists()  # removed after the run
    report = format_report(res)
    assert "| sign time (Ed25519, mean of 3) |" in report and "not measured" in report
