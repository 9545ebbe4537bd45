"""`edgeseal board flash`: a downloaded MicroPython image written with esptool, after checking it
is an ESP image built for the chip that is attached, at that chip's bootloader offset, verified.

The chip an image is for is in its first image header (ESP-IDF "Firmware Image Format": magic
0xE9 at byte 0; the extended header's chip_id, u16 little-endian, at byte 12). A MicroPython
release .bin is a merged image that starts with the bootloader, written at 0x1000 on the ESP32
and 0x0 on the C3 and S3 (esptool's BOOTLOADER_FLASH_OFFSET of each target).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from gateway.boardctl.errors import BAD_IMAGE, NO_BOOTLOADER, WRONG_CHIP, BoardError
from gateway.boardctl.link import check_port

IMAGE_MAGIC = 0xE9
CHIP_ID_OFFSET = 12
HEADER_BYTES = 24  # common header (8) + extended header (16)
# The chips edgeseal boards use (firmware/board.py accepts these in a profile's "chip").
SUPPORTED_CHIPS = ("esp32", "esp32c3", "esp32s3")
PROFILE_SHA256_KEY = "micropython_sha256"  # optional pin of the image in a board profile


@dataclass(frozen=True)
class ChipInfo:
    """What flashing needs to know of one chip: esptool's name, image chip id, bootloader offset."""

    name: str
    image_chip_id: int
    offset: int


def chip_table() -> dict[str, ChipInfo]:
    """Return {chip name: ChipInfo} for SUPPORTED_CHIPS, from esptool's own target classes."""
    from esptool.targets import CHIP_DEFS

    out = {}
    for name in SUPPORTED_CHIPS:
        rom = CHIP_DEFS[name]
        out[name] = ChipInfo(name, int(rom.IMAGE_CHIP_ID), int(rom.BOOTLOADER_FLASH_OFFSET))
    return out


@dataclass(frozen=True)
class Image:
    """A MicroPython image file: its bytes' SHA-256 and the chip its header names."""

    path: Path
    sha256: str
    chip: ChipInfo


def read_image(path: Path, pinned_sha256: str | None = None) -> Image:
    """Return the Image at path; raise BoardError(BAD_IMAGE) when it is not an ESP image of a
    supported chip or its SHA-256 differs from pinned_sha256 (hex), when one is given."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BoardError(BAD_IMAGE, f"cannot read {path}: {exc}") from None
    if len(data) < HEADER_BYTES or data[0] != IMAGE_MAGIC:
        raise BoardError(BAD_IMAGE, f"{path} is not an ESP firmware image (no 0xE9 header)")
    (chip_id,) = struct.unpack_from("<H", data, CHIP_ID_OFFSET)
    chip = next((c for c in chip_table().values() if c.image_chip_id == chip_id), None)
    if chip is None:
        raise BoardError(BAD_IMAGE, f"{path} is for chip id {chip_id}, not {SUPPORTED_CHIPS}")
    digest = hashlib.sha256(data).hexdigest()
    if pinned_sha256 is not None and digest != pinned_sha256.lower():
        raise BoardError(BAD_IMAGE, f"{path} has sha256 {digest}, the profile pins {pinned_sha256}")
    return Image(path, digest, chip)


def check_chip(image: Image, attached: str, profile_chip: str | None = None) -> int:
    """Return the flash offset of image on the attached chip (esptool's name, e.g. "ESP32-C3" or
    "esp32c3"); raise BoardError(WRONG_CHIP) when image or profile is for another chip."""
    name = attached.lower().replace("-", "")
    if name != image.chip.name:
        raise BoardError(
            WRONG_CHIP, f"{image.path} is a {image.chip.name} image, the board is an {name}"
        )
    if profile_chip is not None and profile_chip != name:
        raise BoardError(
            WRONG_CHIP, f"the profile is for an {profile_chip}, the board is an {name}"
        )
    return image.chip.offset


def esptool_argv(port: str, image: Image) -> list[str]:
    """Return the esptool command line equivalent to flash() (what a person can run by hand)."""
    return [
        "esptool", "--chip", image.chip.name, "--port", port, "--baud", str(FLASH_BAUD),
        "write-flash", hex(image.chip.offset), str(image.path),
    ]  # fmt: skip


FLASH_BAUD = 460800  # what MicroPython's download page uses for esptool write-flash
CONNECT_ATTEMPTS = 7  # esptool's default: each tries every reset strategy


def flash(
    port: str,
    image: Image,
    profile_chip: str | None = None,
    connect_attempts: int = CONNECT_ATTEMPTS,
) -> str:
    """Write image to the board on port with esptool and verify it; return the attached chip's
    name. Detects the chip first (refusing an image for another one: check_chip), writes at the
    chip's offset, verifies the written region, then hard-resets the board into MicroPython.
    esptool prints its own progress bars."""
    from esptool.cmds import attach_flash, detect_chip, reset_chip, run_stub, verify_flash
    from esptool.cmds import write_flash as esptool_write_flash
    from esptool.util import FatalError
    from serial import SerialException

    check_port(port)
    try:
        esp = detect_chip(port, baud=FLASH_BAUD, connect_attempts=connect_attempts)
    except (FatalError, SerialException, OSError) as exc:
        raise BoardError(
            NO_BOOTLOADER,
            f"no ESP32 bootloader answered on {port} ({exc}): hold BOOT, press and release "
            "EN/RESET, release BOOT, and try again",
        ) from None
    try:
        offset = check_chip(image, esp.CHIP_NAME, profile_chip)
        esp = run_stub(esp)
        attach_flash(esp)
        esptool_write_flash(esp, [(offset, str(image.path))])
        verify_flash(esp, [(offset, str(image.path))])
        reset_chip(esp, "hard-reset")
        return esp.CHIP_NAME
    finally:
        esp._port.close()
