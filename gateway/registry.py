"""Device registry: enrolled boards, their keys, owners, contracts and chain heads, derived from the log.

The log is the truth (DESIGN 4): enrolling or revoking a board appends a device-enrollment entry,
and a key rotation is a signed device record in the log. This module keeps a read model of those
entries in a SQLite file of derived state, which `apply()` updates from log entries in index order;
it can always be rebuilt by replaying the log from index 0.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway import wire
from gateway.errors import RegistryConflict, SignatureError, WireError
from gateway.ledger import Ledger
from gateway.ledger.entries import (
    KIND_DEVICE_ENROLLMENT,
    KIND_DEVICE_RECORD,
    decode_enrollment,
    enrollment_entry,
    readable_metadata,
)

# The columns _row_to_device reads, in its order.
_SELECT = (
    "SELECT device_id, first_key, current_key, status, metadata, enrolled_index, "
    "last_seq, last_hash, last_index FROM device "
)

STATUS_ACTIVE = "active"
STATUS_REVOKED = "revoked"
_STATUSES = (STATUS_ACTIVE, STATUS_REVOKED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS device(
    device_id BLOB PRIMARY KEY,
    first_key BLOB NOT NULL,
    current_key BLOB NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    enrolled_index INTEGER NOT NULL,
    last_seq INTEGER,
    last_hash BLOB,
    last_index INTEGER
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Device:
    """One registry row. last_seq/last_hash are the committed chain head (None before the first)."""

    device_id: bytes
    first_key: bytes
    current_key: bytes
    status: str
    metadata: dict[str, Any]
    enrolled_index: int
    last_seq: int | None
    last_hash: bytes | None
    last_index: int | None

    @property
    def active(self) -> bool:
        """Return True unless the device was revoked."""
        return self.status == STATUS_ACTIVE

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-friendly view."""
        return {
            "device_id": self.device_id.hex(),
            "public_key": self.current_key.hex(),
            "first_key": self.first_key.hex(),
            "status": self.status,
            "metadata": self.metadata,
            "enrolled_index": self.enrolled_index,
            "last_seq": self.last_seq,
            "last_index": self.last_index,
        }


class DeviceRegistry:
    """The read model of enrollments and key rotations; writes go through the ledger."""

    def __init__(self, conn: sqlite3.Connection, ledger: Ledger) -> None:
        """conn: the derived-state database (schema created here); ledger: the writable log."""
        self._conn = conn
        self._ledger = ledger
        conn.executescript(SCHEMA)
        self._cache: dict[bytes, Device] = {}

    # ------------------------------------------------------------------ reading

    def get(self, device_id: bytes) -> Device | None:
        """Return the device with this id, or None if it was never enrolled."""
        dev = self._cache.get(device_id)
        if dev is not None:
            return dev
        row = self._conn.execute(
            _SELECT + "WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        if row is None:
            return None
        dev = _row_to_device(row)
        self._cache[device_id] = dev
        return dev

    def by_prefix(self, prefix: bytes) -> list[Device]:
        """Return the active devices whose id starts with prefix (advertising carries 4 bytes)."""
        rows = self._conn.execute(
            _SELECT + "WHERE substr(device_id, 1, ?) = ? AND status = ?",
            (len(prefix), prefix, STATUS_ACTIVE),
        ).fetchall()
        return [_row_to_device(r) for r in rows]

    def all(self) -> list[Device]:
        """Return every device ever enrolled, ordered by enrollment."""
        rows = self._conn.execute(_SELECT + "ORDER BY enrolled_index").fetchall()
        return [_row_to_device(r) for r in rows]

    # ------------------------------------------------------------------ writing

    def enroll_entry(self, public_key: bytes, metadata: dict[str, Any] | None = None) -> bytes:
        """Return the enrollment entry payload for a new board; raises without changing state.

        Preconditions checked: the key is a valid Ed25519 point that is not of small order
        (SignatureError "bad-public-key"), the device is not enrolled yet (WireError
        "already-enrolled"), metadata is a JSON object without a "status" key.
        """
        wire.check_public_key(public_key)
        device_id = wire.device_id_for(public_key)
        if self.get(device_id) is not None:
            raise RegistryConflict(
                "already-enrolled", f"device {device_id.hex()} is already enrolled"
            )
        meta = dict(metadata or {})
        if "status" in meta:
            raise WireError("bad-enrollment", "metadata must not set status")
        meta["status"] = STATUS_ACTIVE
        return enrollment_entry(device_id, public_key, meta)[1]

    def revoke_entry(self, device_id: bytes, reason: str) -> bytes:
        """Return the entry payload that revokes an enrolled, active device; raises WireError."""
        dev = self.get(device_id)
        if dev is None:
            raise WireError("unknown-device", f"device {device_id.hex()} is not enrolled")
        if not dev.active:
            raise RegistryConflict(
                "already-revoked", f"device {device_id.hex()} is already revoked"
            )
        # metadata stored before its shape was enforced is re-logged as its typed error
        meta = dict(readable_metadata(dev.metadata), status=STATUS_REVOKED, reason=reason)
        return enrollment_entry(device_id, dev.first_key, meta)[1]

    # --------------------------------------------------------------- derivation

    def apply(self, rows: list[tuple[int, int, bytes, wire.Record | None]]) -> None:
        """Update the read model with log entries (index, kind, payload, decoded record or None).

        Preconditions: rows are in index order, were valid when appended, and are applied
        inside the caller's transaction on the derived-state database. Chain heads are
        written once per device per call, so a batch of many records costs one UPDATE each.
        """
        heads: dict[bytes, tuple[int, bytes, int]] = {}
        for index, kind, payload, record in rows:
            if kind == KIND_DEVICE_ENROLLMENT:
                self._flush_heads(heads)
                self._apply_enrollment(index, payload)
            elif kind == KIND_DEVICE_RECORD and record is not None:
                if record.kind == wire.KEY_ROTATION:
                    self._conn.execute(
                        "UPDATE device SET current_key = ? WHERE device_id = ?",
                        (record.value(wire.Ch.NEW_PUBLIC_KEY), record.device_id),
                    )
                heads[record.device_id] = (record.seq, record.record_hash, index)
        self._flush_heads(heads)

    def _flush_heads(self, heads: dict[bytes, tuple[int, bytes, int]]) -> None:
        self._conn.executemany(
            "UPDATE device SET last_seq = ?, last_hash = ?, last_index = ? WHERE device_id = ?",
            [(seq, h, index, dev) for dev, (seq, h, index) in heads.items()],
        )
        for dev in heads:
            self._cache.pop(dev, None)
        heads.clear()

    def _apply_enrollment(self, index: int, payload: bytes) -> None:
        enr = decode_enrollment(payload)
        status = enr.metadata.get("status", STATUS_ACTIVE)
        if status not in _STATUSES:
            raise WireError("bad-enrollment", f"unknown status {status!r}")
        meta = {k: v for k, v in enr.metadata.items() if k != "status"}
        existing = self.get(enr.device_id)
        if existing is None:
            if wire.device_id_for(enr.public_key) != enr.device_id:
                raise SignatureError("wrong-device", "device id is not derived from the key")
            self._conn.execute(
                "INSERT INTO device(device_id, first_key, current_key, status, metadata, "
                "enrolled_index) VALUES (?, ?, ?, ?, ?, ?)",
                (enr.device_id, enr.public_key, enr.public_key, status, _dump(meta), index),
            )
        else:
            self._conn.execute(
                "UPDATE device SET status = ?, metadata = ? WHERE device_id = ?",
                (status, _dump(meta), enr.device_id),
            )
        self._cache.pop(enr.device_id, None)


def _dump(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def _row_to_device(row: tuple) -> Device:
    return Device(
        device_id=bytes(row[0]),
        first_key=bytes(row[1]),
        current_key=bytes(row[2]),
        status=row[3],
        metadata=json.loads(row[4]),
        enrolled_index=row[5],
        last_seq=row[6],
        last_hash=bytes(row[7]) if row[7] is not None else None,
        last_index=row[8],
    )
