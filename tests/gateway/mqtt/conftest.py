"""Fixtures of the MQTT bridge tests: a real Mosquitto broker per test (tests/gateway/mqtt/broker.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.mqtt.broker import MOSQUITTO, Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Yield a running mosquitto on a free loopback port; kill it by pid afterwards."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto)")
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.kill()
