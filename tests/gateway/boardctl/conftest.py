"""Fixtures: a stand-in board (tools/boardvm) on a pty, blank or with the firmware deployed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.boardctl.deploy import compile_firmware, deploy
from gateway.boardctl.link import BoardLink
from tools.boardvm.standin import StandIn

ROOT = Path(__file__).resolve().parents[3]
PROFILE = ROOT / "boards" / "esp32-devkitc.json"


@pytest.fixture
def blank_board(tmp_path: Path) -> Iterator[StandIn]:
    """A stand-in board with an empty filesystem and empty NVS."""
    with StandIn(tmp_path / "flash") as board:
        yield board


@pytest.fixture(scope="module")
def compiled_firmware() -> dict[str, bytes]:
    """The firmware compiled once per module (what deployed_flash holds)."""
    return compile_firmware()


@pytest.fixture(scope="module")
def deployed_flash(
    tmp_path_factory: pytest.TempPathFactory, compiled_firmware: dict[str, bytes]
) -> Path:
    """A flash directory holding one deploy of the firmware (made once per module: ~10 s)."""
    flash = tmp_path_factory.mktemp("deployed") / "flash"
    with StandIn(flash) as board, BoardLink(board.port) as link:
        deploy(link, PROFILE, files=compiled_firmware)
    return flash


@pytest.fixture
def deployed_board(deployed_flash: Path, tmp_path: Path) -> Iterator[StandIn]:
    """A stand-in board with its own copy of the deployed firmware (no key, no link key yet)."""
    flash = tmp_path / "flash"
    shutil.copytree(deployed_flash, flash)
    with StandIn(flash) as board:
        yield board
