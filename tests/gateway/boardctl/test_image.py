"""gateway/boardctl/image.py: the image's chip from its header, the chip/offset rules, the pinned
sha256, and the esptool command line. No esptool-protocol stand-in (docs/boards.md, The
stand-in): flash() itself is tested only up to "no bootloader answers"."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import tty
from pathlib import Path

import pytest

from gateway.boardctl.errors import BAD_IMAGE, NO_BOOTLOADER, NO_PORT, WRONG_CHIP, BoardError
from gateway.boardctl.image import check_chip, chip_table, esptool_argv, flash, read_image
from gateway.cli import main

CHIP_IDS = {"esp32": 0, "esp32c3": 5, "esp32s3": 9}  # ESP-IDF esp_chip_id_t


def _image(tmp_path: Path, chip_id: int, magic: int = 0xE9, name: str = "mp.bin") -> Path:
    """Write a file that starts like a MicroPython release image for chip_id; return its path."""
    header = bytes([magic, 3, 2, 0x20]) + struct.pack("<I", 0x400805F0)  # common header
    ext = bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes(10)  # extended header
    path = tmp_path / name
    path.write_bytes(header + ext + b"\xff" * 1000)
    return path


def test_the_chip_table_is_esptools() -> None:
    table = chip_table()
    assert {n: c.image_chip_id for n, c in table.items()} == CHIP_IDS
    assert {n: c.offset for n, c in table.items()} == {"esp32": 0x1000, "esp32c3": 0, "esp32s3": 0}


@pytest.mark.parametrize("chip", sorted(CHIP_IDS))
def test_an_image_is_written_at_its_chips_offset(tmp_path: Path, chip: str) -> None:
    path = _image(tmp_path, CHIP_IDS[chip])
    image = read_image(path)
    assert image.chip.name == chip
    assert image.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    esptool_name = {"esp32": "ESP32", "esp32c3": "ESP32-C3", "esp32s3": "ESP32-S3"}[chip]
    offset = check_chip(image, esptool_name, profile_chip=chip)
    assert offset == (0x1000 if chip == "esp32" else 0)
    argv = esptool_argv("/dev/ttyUSB0", image)
    assert argv[:5] == ["esptool", "--chip", chip, "--port", "/dev/ttyUSB0"]
    assert argv[-3:] == ["write-flash", hex(offset), str(path)]


def test_an_image_for_another_chip_is_refused(tmp_path: Path) -> None:
    image = read_image(_image(tmp_path, CHIP_IDS["esp32c3"]))
    with pytest.raises(BoardError) as err:
        check_chip(image, "ESP32")
    assert err.value.code == WRONG_CHIP and "esp32c3 image" in err.value.message
    with pytest.raises(BoardError) as err:
        check_chip(image, "ESP32-C3", profile_chip="esp32s3")
    assert err.value.code == WRONG_CHIP and "profile" in err.value.message


def test_files_that_are_not_images_are_refused(tmp_path: Path) -> None:
    for path in (
        _image(tmp_path, 0, magic=0x7F, name="elf.bin"),  # not an ESP image
        _image(tmp_path, 2, name="s2.bin"),  # an ESP32-S2 image: not a chip edgeseal supports
        tmp_path / "missing.bin",
    ):
        with pytest.raises(BoardError) as err:
            read_image(path)
        assert err.value.code == BAD_IMAGE
    good = _image(tmp_path, 0)
    with pytest.raises(BoardError) as err:
        read_image(good, pinned_sha256="00" * 32)
    assert err.value.code == BAD_IMAGE and "pins" in err.value.message
    assert read_image(good, hashlib.sha256(good.read_bytes()).hexdigest().upper()).chip.name


def test_flash_without_a_bootloader_on_the_port(tmp_path: Path) -> None:
    image = read_image(_image(tmp_path, 0))
    with pytest.raises(BoardError) as err:
        flash("/dev/ttyUSB-not-here", image)
    assert err.value.code == NO_PORT
    master, slave = os.openpty()  # a port where nothing answers esptool's SYNC
    tty.setraw(slave)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                os.read(master, 4096)
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    try:
        with pytest.raises(BoardError) as err:
            flash(os.ttyname(slave), image, connect_attempts=1)
        assert err.value.code == NO_BOOTLOADER and "hold BOOT" in err.value.message
    finally:
        stop.set()
        os.close(slave)
        os.close(master)


def test_the_cli_prints_the_code_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = _image(tmp_path, 0, magic=0)
    assert main(["board", "flash", "--port", "/dev/ttyUSB0", "--image", str(bad)]) == 1
    assert "edgeseal board flash: bad-image:" in capsys.readouterr().err
    assert main(["board", "info", "--port", "/dev/ttyUSB-not-here"]) == 1
    assert "edgeseal board info: no-port:" in capsys.readouterr().err
