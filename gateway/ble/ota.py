"""The gateway's side of the signed OTA update: push a release to boards that run an older version.

docs/ota.md. After an upload, BleLink.collect hands the open Connection to `OtaPusher.push` when
the board's Info reports a version below the release's: OTA_BEGIN (the board answers the offset
to send from, so a push cut by a disconnect resumes), OTA_DATA chunks sized to the MTU, OTA_END
(the board switches and resets). The gateway is only a carrier: the board checks the signature,
the versions and every hash itself, so nothing here needs to be trusted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.ble import protocol as p
from gateway.release import Release

if TYPE_CHECKING:
    from gateway.ble.link import Connection

logger = logging.getLogger(__name__)

# OTA_DATA overhead in one ATT write: opcode + offset u32 + counter u8 + 12-byte tag
_DATA_OVERHEAD_BYTES = 18
ATT_WRITE_HEADER_BYTES = 3  # a write request carries MTU - 3 bytes
# Commands kept back on a connection for OTA_END after the data: the counter is a u8 (255)
_RESERVED_COMMANDS = 2
# why 3: a file that fails its hash again and again is not a torn write; stop instead of looping
MAX_RESENDS = 3
# why 100: below this MTU a 100 KB release needs thousands of writes; such a link is not worth it
MIN_OTA_MTU = 100


@dataclass
class OtaStats:
    """Counters for logs and tests."""

    pushes: int = 0  # connections that sent OTA_BEGIN
    chunks: int = 0  # OTA_DATA writes answered ok
    bytes_sent: int = 0
    installed: int = 0  # OTA_END answered ok
    resends: int = 0  # a board asked for an offset again (hash mismatch, torn write)
    rejected: dict[bytes, int] = field(default_factory=dict)  # device id -> board's reason


def packed_version(firmware: tuple[int, int, int]) -> int:
    """Return the u24 version of Info's (major, minor, patch)."""
    return firmware[0] << 16 | firmware[1] << 8 | firmware[2]


class OtaPusher:
    """Pushes one signed release (gateway/release.py `load`) to every board that needs it."""

    def __init__(self, release: Release) -> None:
        self.release = release
        self.stream = release.stream()
        self.head_len = len(release.head())
        self.stats = OtaStats()
        self.unfinished: set[bytes] = set()  # boards with a push in progress: connect them anyway

    def due(self, info: p.Info) -> bool:
        """Return True when the board of info runs an older version and has not refused this
        release (a refusal is permanent: another key, a floor above it, a min_version)."""
        if info.device_id in self.stats.rejected:
            return False
        if packed_version(info.firmware) >= self.release.version:
            self.unfinished.discard(info.device_id)
            return False
        return True

    async def push(self, conn: Connection) -> str:
        """Send the release over conn from the offset the board names; return "installed"
        (the board switched and resets), "partial" (out of commands on this connection: the
        next one resumes), "busy" (the board confirms a trial version first) or "rejected"
        (the board refused the release: reason in stats.rejected). Raises LinkError on a
        timeout or disconnect (the next connection resumes)."""
        device_id = conn.device_id
        mtu = conn.mtu
        if mtu < MIN_OTA_MTU:
            return "partial"
        per = min(p.OTA_MAX_DATA_BYTES, mtu - ATT_WRITE_HEADER_BYTES - _DATA_OVERHEAD_BYTES)
        total = len(self.stream)
        self.stats.pushes += 1
        self.unfinished.add(device_id)
        st = await conn.request(
            p.encode_ota_begin(total, self.head_len, self.release.release_id), p.CMD_OTA_BEGIN
        )
        if st.status == p.STATUS_BUSY:
            return "busy"
        if st.status != p.STATUS_OK:
            return self._refused(device_id, st)
        off = st.arg
        resends = 0
        while off < total:
            if conn.commands_left() <= _RESERVED_COMMANDS:
                return "partial"
            chunk = self.stream[off : off + per]
            st = await conn.request(p.encode_ota_data(off, chunk), p.CMD_OTA_DATA)
            if st.status == p.STATUS_OK and st.arg == off + len(chunk):
                self.stats.chunks += 1
                self.stats.bytes_sent += len(chunk)
                off = st.arg
                continue
            if st.status in (p.STATUS_OK, p.STATUS_BAD_ARGUMENT) and st.arg <= total:
                resends += 1
                self.stats.resends += 1
                if resends > MAX_RESENDS:
                    return self._refused(device_id, st)
                off = st.arg
                continue
            return self._refused(device_id, st)
        st = await conn.request(p.encode_ota_end(), p.CMD_OTA_END)
        if st.status != p.STATUS_OK:
            return self._refused(device_id, st)
        self.stats.installed += 1
        self.unfinished.discard(device_id)
        logger.info("%s: release %06x installed, the board restarts", device_id.hex(), st.arg)
        return "installed"

    def _refused(self, device_id: bytes, st: p.Status) -> str:
        """Record a permanent refusal of this release by device_id; return "rejected"."""
        self.stats.rejected[device_id] = st.arg if st.status == p.STATUS_REJECTED else -st.status
        self.unfinished.discard(device_id)
        logger.warning("%s refused release %06x: status %d, arg %d", device_id.hex(),
                       self.release.version, st.status, st.arg)  # fmt: skip
        return "rejected"
