"""`make hil PORT=...`: the port of a real board, or PORT=stand-in for the stand-in board of
tools/boardvm (everything that needs no radio)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.boardvm.standin import StandIn

STAND_IN = "stand-in"


@pytest.fixture
def hil_port(board_port: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the serial port of the board under test (a fresh stand-in for PORT=stand-in)."""
    if board_port != STAND_IN:
        yield board_port
        return
    with StandIn(tmp_path_factory.mktemp("hil") / "flash") as board:
        yield board.port
