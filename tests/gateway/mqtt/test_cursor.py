"""The durable cursor: atomic, per destination, and a damaged file refuses the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import StartupRefused
from gateway.mqtt.cursor import CURSOR_FILE, Cursor
from gateway.node import Node
from tests.gateway.node.helpers import make_settings


def test_cursor_is_durable_and_per_destination(tmp_path: Path) -> None:
    a = Cursor(tmp_path, "mqtt://h:1 p")
    assert a.next_index == 0
    a.advance(5)
    a.advance(3)  # never moves back
    assert Cursor(tmp_path, "mqtt://h:1 p").next_index == 5
    b = Cursor(tmp_path, "mqtt://other:1 p")
    assert b.next_index == 0  # a new broker gets the whole log
    b.advance(2)
    assert Cursor(tmp_path, "mqtt://h:1 p").next_index == 5
    assert not (tmp_path / (CURSOR_FILE + ".tmp")).exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"version":2,"destinations":{}}', b'{"version":1,"destinations":{"a":-1}}',
     b'{"version":1,"destinations":{"a":1.5}}', b"\xff\xfe", b" " * 70_000],
)  # fmt: skip
def test_a_damaged_cursor_file_refuses_the_start_and_is_left_alone(
    tmp_path: Path, content: bytes
) -> None:
    settings = make_settings(tmp_path, mqtt_url="mqtt://127.0.0.1:1")
    settings.data_dir.mkdir(parents=True)
    path = settings.data_dir / CURSOR_FILE
    path.write_bytes(content)
    with pytest.raises(StartupRefused) as err:
        Node(settings)
    assert err.value.code == "bad-mqtt-cursor"
    assert path.read_bytes() == content
    Node(make_settings(tmp_path)).close()  # the ledger was closed again: it opens
