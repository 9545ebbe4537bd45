"""A board stand-in for gateway tests: real firmware record builder and signer, an in-memory journal."""

from __future__ import annotations

import hashlib

from firmware import ed25519, wire


class SimBoard:
    """Produces chained, signed records exactly as the firmware does, and keeps them until acked."""

    def __init__(self, name: str, sign_every: int = 1) -> None:
        self.seed = hashlib.sha256(b"simboard " + name.encode()).digest()
        self.key = ed25519.SigningKey(self.seed)
        self.public_key = self.key.public_key
        self.device_id = wire.device_id(self.public_key)
        self.builder = wire.RecordBuilder(self.device_id)
        self.head = wire.genesis_hash(self.device_id)
        self.seq = 0
        self.boot = 1
        self.time_s = 1795000000
        self.sign_every = sign_every
        self.journal: list[tuple[int, bytes]] = []  # (seq, record), oldest first, unacked
        self.held: int | None = None  # newest seq held after a loss (lose_journal)
        self.produced: list[tuple[int, bytes]] = []

    def _finish(self, body: bytes, signed: bool) -> bytes:
        self.head = hashlib.sha256(body).digest()
        raw = wire.sign(body, self.key) if signed else body
        self.journal.append((self.seq, raw))
        self.produced.append((self.seq, raw))
        self.seq += 1
        self.time_s += 60
        return raw

    def reading(self, temp_c01: int = 2500, signed: bool | None = None) -> bytes:
        """Return a new temperature reading (signed per sign_every unless told)."""
        if signed is None:
            signed = self.seq % self.sign_every == self.sign_every - 1
        self.builder.begin(
            wire.KIND_READING, self.seq, self.boot, self.time_s, self.head, wire.TIME_SYNCED
        )
        self.builder.add(wire.CH_TEMPERATURE, 0, temp_c01)
        return self._finish(self.builder.finish(), signed)

    def heartbeat(self) -> bytes:
        """Return a new signed heartbeat (the upload closer)."""
        self.builder.begin(
            wire.KIND_HEARTBEAT, self.seq, self.boot, self.time_s, self.head, wire.TIME_SYNCED
        )
        self.builder.add(wire.CH_JOURNAL_DEPTH, 0, len(self.journal))
        return self._finish(self.builder.finish(), True)

    def rotate_key(self, new_seed: bytes) -> bytes:
        """Return a key-rotation record signed by the current key, then switch keys."""
        new_key = ed25519.SigningKey(new_seed)
        self.builder.begin(
            wire.KIND_KEY_ROTATION, self.seq, self.boot, self.time_s, self.head, wire.TIME_SYNCED
        )
        self.builder.add(wire.CH_NEW_PUBLIC_KEY, 0, new_key.public_key)
        raw = self._finish(self.builder.finish(), True)
        self.key = new_key
        return raw

    def reboot(self, skip: int = 16) -> None:
        """Simulate a reboot: the rest of the reserved seq block is skipped."""
        self.boot += 1
        self.seq += skip

    def upload(self, from_seq: int | None) -> list[bytes]:
        """Return the journal's records with seq >= from_seq, closing with a signed heartbeat
        if the newest record is unsigned (docs/ble-protocol.md SEND_FROM)."""
        if self.journal and len(self.journal[-1][1]) == wire.parse(self.journal[-1][1])[8]:
            self.heartbeat()
        start = 0 if from_seq is None else from_seq
        return [raw for seq, raw in self.journal if seq >= start]

    def ack(self, seq: int | None) -> None:
        """Drop every journal record with seq <= seq."""
        if seq is not None:
            self.journal = [(s, r) for s, r in self.journal if s > seq]

    # ---- faults and chain segments (docs/wire-format.md, Chain segments) ------------------------
    def lose_journal(self, keep: int = 0, head_known: bool = False) -> None:
        """Lose every journal record after the first `keep` (unacked ones included); the seq
        high-water survives (NVS). head_known: the board still reads its chain head (it lost only
        records after it), else it knows no head."""
        self.journal = self.journal[:keep]
        if self.journal:
            seq, raw = self.journal[-1]
            self.head = hashlib.sha256(raw[: wire.parse(raw)[8]]).digest()
            self.held = seq
        elif head_known:
            self.held = self.produced[-1][0] if self.produced else None
        else:
            self.head, self.held = wire.genesis_hash(self.device_id), None
        self.boot += 1
        self.seq += 16  # the rest of the reserved seq block is skipped at the reboot

    def segment(self, reason: int, held: int | None = None, signer=None) -> bytes:
        """Return a signed chain_segment naming `reason` and the newest seq the board holds
        (`held`, or the one lose_journal() left), chained onto the board's head."""
        held = self.held if held is None else held
        self.builder.begin(
            wire.KIND_CHAIN_SEGMENT, self.seq, self.boot, self.time_s, self.head, wire.TIME_SYNCED
        )
        self.builder.add(wire.CH_BREAK_REASON, 0, reason)
        if held is not None:
            self.builder.add(wire.CH_HELD_SEQ, 0, held)
        key, self.key = self.key, signer or self.key
        try:
            return self._finish(self.builder.finish(), True)
        finally:
            self.key = key
