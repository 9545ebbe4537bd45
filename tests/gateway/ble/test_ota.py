"""gateway/ble/ota.py and the OTA encoders of gateway/ble/protocol.py against the board's own parser."""

from __future__ import annotations

import hashlib

import pytest

from firmware import ota
from firmware.ed25519 import SigningKey
from gateway.ble import protocol as p
from gateway.ble.ota import packed_version
from tests.firmware.otarel import FACTORY, app_files, stream
from tests.firmware.simflash import SimFlash


def test_gateway_encoders_drive_the_board_receiver() -> None:
    seed = bytes(range(32))
    fs = SimFlash()
    ota.install_release_key(fs, None, SigningKey(seed).public_key)
    rx = ota.Receiver(fs, None, FACTORY)
    data, head_len, rid = stream(app_files("v2"), 0x000200, seed=seed)
    assert rid == hashlib.sha256(data[6 : head_len - 64]).digest()[:16]
    cmd = p.encode_ota_begin(len(data), head_len, rid)
    assert rx.command(cmd[0], memoryview(cmd)) == (ota.ST_OK, 0)
    off = 0
    while off < len(data):
        cmd = p.encode_ota_data(off, data[off : off + p.OTA_MAX_DATA_BYTES])
        assert len(cmd) + 13 <= 244  # one ATT write at MTU 247 with the auth trailer
        status, off = rx.command(cmd[0], memoryview(cmd))
        assert status == ota.ST_OK
    cmd = p.encode_ota_end()
    assert rx.command(cmd[0], memoryview(cmd)) == (ota.ST_OK, 0x000200)
    assert (p.CMD_OTA_BEGIN, p.CMD_OTA_DATA, p.CMD_OTA_END) == (ota.OP_BEGIN, ota.OP_DATA,
                                                                ota.OP_END)  # fmt: skip
    assert p.STATUS_REJECTED == ota.ST_REJECTED


def test_encoders_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        p.encode_ota_begin(10, 5, b"short")
    with pytest.raises(ValueError):
        p.encode_ota_data(0, b"")
    with pytest.raises(ValueError):
        p.encode_ota_data(0, bytes(p.OTA_MAX_DATA_BYTES + 1))


def test_packed_version_is_infos_three_bytes() -> None:
    assert packed_version((0, 9, 0)) == 0x000900 == ota.pack_version((0, 9, 0))
