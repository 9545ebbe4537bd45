"""Command authentication of BLE protocol v2, gateway side (docs/ble-protocol.md).

The gateway keeps one master secret (data_dir/link.key, 32 random bytes, mode 0600, made on the
first start like the operator token) and derives every board's link key from it:
link_key = HMAC-SHA256(master, "edgeseal/v2/link" || device_id). So it stores no per-device
secret; provisioning installs the derived key on the board. Each control write is
`command || counter u8 || tag`, tag = HMAC-SHA256(link_key, "edgeseal/v2/cmd" || device_id ||
nonce || counter || command)[0:12], with the nonce the board published in Info for this connection.
This is the gateway's own implementation (hmac + hashlib), independent of firmware/cmdauth.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from pathlib import Path

from gateway.errors import StartupRefused, WireError
from gateway.files import create_exclusive

LINK_KEY_FILE = "link.key"  # in the data directory
MASTER_BYTES = 32
LINK_KEY_BYTES = 32
NONCE_BYTES = 16
TAG_BYTES = 12  # 96 bits: the longest write fits one ATT write at MTU 23 (firmware/cmdauth.py)
COUNTER_BYTES = 1
TRAILER_BYTES = COUNTER_BYTES + TAG_BYTES
LINK_DOMAIN = b"edgeseal/v2/link"
CMD_DOMAIN = b"edgeseal/v2/cmd"
COUNTER_MAX = 0xFF  # at most 255 commands per connection; the link sends fewer than 10


def derive_link_key(master: bytes, device_id: bytes) -> bytes:
    """Return the 32-byte link key of device_id (16 bytes) under master (32 bytes)."""
    if len(master) != MASTER_BYTES or len(device_id) != 16:
        raise ValueError("master must be 32 bytes and device_id 16")
    return hmac.new(master, LINK_DOMAIN + device_id, hashlib.sha256).digest()


def command_tag(
    link_key: bytes, device_id: bytes, nonce: bytes, counter: int, command: bytes
) -> bytes:
    """Return the 12-byte tag of command (its opcode and arguments) at counter (u8) under the
    connection's nonce (16 bytes)."""
    msg = CMD_DOMAIN + device_id + nonce + struct.pack(">B", counter) + command
    return hmac.new(link_key, msg, hashlib.sha256).digest()[:TAG_BYTES]


def seal_command(
    link_key: bytes, device_id: bytes, nonce: bytes, counter: int, command: bytes
) -> bytes:
    """Return the control write carrying command: command || counter u8 || tag."""
    tag = command_tag(link_key, device_id, nonce, counter, command)
    return command + struct.pack(">B", counter) + tag


def open_command(data: bytes) -> tuple[bytes, int, bytes]:
    """Return (command, counter, tag) of a control write without checking the tag (test
    peripherals use it); raise WireError("ble-bad-command") when it is too short."""
    data = bytes(data)
    if len(data) < TRAILER_BYTES + 1:
        raise WireError("ble-bad-command", f"a control write of {len(data)} bytes has no tag")
    n = len(data) - TRAILER_BYTES
    return data[:n], data[n], data[n + COUNTER_BYTES :]


class Sealer:
    """Authenticates the commands of one connection: a strictly increasing counter from 1."""

    def __init__(self, link_key: bytes, device_id: bytes, nonce: bytes) -> None:
        """Precondition: link_key 32 bytes, device_id 16, nonce 16 (from this connection's Info)."""
        self._key = link_key
        self._device_id = device_id
        self._nonce = nonce
        self.counter = 0

    def seal(self, command: bytes) -> bytes:
        """Return the control write of command with the next counter."""
        if self.counter >= COUNTER_MAX:
            raise WireError("ble-counter-exhausted", "255 commands on one connection")
        self.counter += 1
        return seal_command(self._key, self._device_id, self._nonce, self.counter, command)


class LinkKeys:
    """The gateway's link keys: derived on demand from the master secret, cached per device."""

    def __init__(self, master: bytes) -> None:
        """Precondition: master is 32 bytes (load_or_create_master)."""
        if len(master) != MASTER_BYTES:
            raise ValueError("master must be 32 bytes")
        self._master = master
        self._cache: dict[bytes, bytes] = {}

    def for_device(self, device_id: bytes) -> bytes:
        """Return the link key of device_id."""
        key = self._cache.get(device_id)
        if key is None:
            key = self._cache[device_id] = derive_link_key(self._master, device_id)
        return key


def load_or_create_master(path: Path) -> bytes:
    """Return the master secret stored at path, creating it (32 random bytes, mode 0600) on first
    use. Raise StartupRefused("bad-link-key") when the file does not hold exactly 32 bytes: a
    damaged master would silently lock every provisioned board out, so a person decides."""
    master = secrets.token_bytes(MASTER_BYTES)
    try:
        create_exclusive(str(path), master)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) != MASTER_BYTES:
            raise StartupRefused(
                "bad-link-key", f"{path} holds {len(data)} bytes, expected {MASTER_BYTES}"
            ) from None
        return data
    return master


def check_write(
    link_key: bytes, device_id: bytes, nonce: bytes, last_counter: int, data: bytes
) -> tuple[str, bytes, int]:
    """Return (reason, command, counter) of a control write as a board judges it: reason "ok",
    "short" (no room for a command, counter and tag), "bad-tag" or "replay" (counter not above
    last_counter). Used by test peripherals and the vector tests; constant-time tag comparison."""
    data = bytes(data)
    if len(data) < TRAILER_BYTES + 1:
        return "short", b"", 0
    command, counter, tag = open_command(data)
    if not hmac.compare_digest(tag, command_tag(link_key, device_id, nonce, counter, command)):
        return "bad-tag", command, counter
    if counter <= last_counter:
        return "replay", command, counter
    return "ok", command, counter
