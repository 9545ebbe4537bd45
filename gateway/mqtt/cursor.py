"""The MQTT bridge's durable cursor: per destination, the next log index to publish.

Everything below the cursor was acknowledged by the broker (a PUBACK, MQTT 3.1.1 4.3.2) before
the cursor moved past it, so after a crash or a broker outage the bridge resumes at the cursor and
nothing is skipped; what was published but not yet recorded is published again (at least once:
subscribers deduplicate on the log index). Stored as one small JSON file replaced atomically
(write a temporary file, fsync, rename, fsync the directory): a crash leaves the old or the new
cursor, never a torn one.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.errors import StartupRefused
from gateway.files import write_atomically

CURSOR_FILE = "mqtt-cursor.json"
CURSOR_VERSION = 1
# why: the file holds one small integer per broker and prefix; a bound keeps a damaged or hostile
# file from being read whole.
MAX_CURSOR_FILE_BYTES = 1 << 16


class Cursor:
    """The cursor of one destination (broker URL without credentials + topic prefix)."""

    def __init__(self, data_dir: Path, destination: str) -> None:
        """Read the cursor file in data_dir (absent: every destination starts at index 0).

        Raises StartupRefused("bad-mqtt-cursor") if the file exists but is not a cursor file.
        """
        self.path = data_dir / CURSOR_FILE
        self.destination = destination
        self._all = self._load()
        self.next_index = self._all.get(destination, 0)

    def _load(self) -> dict[str, int]:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_CURSOR_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}
        try:
            value = json.loads(data) if len(data) <= MAX_CURSOR_FILE_BYTES else None
        except (ValueError, UnicodeDecodeError):
            value = None
        dests = value.get("destinations") if isinstance(value, dict) else None
        if (
            not isinstance(value, dict)
            or value.get("version") != CURSOR_VERSION
            or not isinstance(dests, dict)
            or not all(type(v) is int and v >= 0 for v in dests.values())
        ):
            raise StartupRefused(
                "bad-mqtt-cursor",
                f"{self.path} is not an MQTT cursor file: delete it to publish the whole log again",
            )
        return dict(dests)

    def advance(self, next_index: int) -> None:
        """Durably record that every entry below next_index was acknowledged (atomic replace).

        Precondition: next_index >= the current cursor. Raises OSError if the disk refuses.
        """
        if next_index <= self.next_index:
            return
        self._all[self.destination] = next_index
        data = json.dumps({"version": CURSOR_VERSION, "destinations": self._all}, sort_keys=True)
        write_atomically(str(self.path), data.encode() + b"\n")
        self.next_index = next_index
