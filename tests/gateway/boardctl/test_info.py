"""gateway/boardctl/info.py: what `edgeseal board info` reports, and that it never makes a key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.boardctl.info import info
from gateway.boardctl.link import BoardLink
from gateway.cli import main
from tools.boardvm.standin import StandIn


def test_info_on_a_blank_board(blank_board: StandIn) -> None:
    with BoardLink(blank_board.port) as link:
        found = info(link)
    assert found.identity is None and found.files == []
    text = "\n".join(found.lines())
    assert "firmware:     not deployed" in text and "MicroPython:  1.29.0" in text
    assert found.status["mem_free"] > 0


def test_info_on_a_deployed_board_makes_no_key(
    deployed_board: StandIn, capsys: pytest.CaptureFixture
) -> None:
    assert main(["board", "info", "--port", deployed_board.port]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^firmware:\s+\d+\.\d+\.\d+$", out, re.M), out
    assert "device id:    no key yet" in out and "link key:     not installed" in out
    assert "firmware/app.mpy" in out and "board.json" in out
    assert not Path(str(deployed_board.flash_dir) + ".nvs.json").exists()
