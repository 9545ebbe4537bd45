"""Pytest setup shared by the firmware and gateway suites: host shims, the repo root, hil selection."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIMS = os.path.join(ROOT, "tests", "shims")
for path in (SHIMS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_addoption(parser):
    """--port: the serial port of a board for the hardware-in-the-loop tests (make hil)."""
    parser.addoption("--port", default=None, help="board serial port for -m hil tests")


def pytest_collection_modifyitems(config, items):
    """Skip hil-marked tests unless a board port was given."""
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a board: make hil PORT=/dev/ttyUSB0")
    for item in items:
        if "hil" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def board_port(request):
    """Return the serial port given with --port."""
    return request.config.getoption("--port")
