"""What the anchoring service anchors: a small interface over "the newest checkpoint to anchor".

The service asks a CheckpointSource for the newest checkpoint (LedgerSource: the gateway's own
newest signed checkpoint; a source of the newest checkpoint with witness quorum plugs in the
same way) and for RFC 9162 2.1.4 consistency proofs from an older size to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.anchor.chain import Head
from gateway.anchor.evidence import checkpoint_head
from gateway.ledger.note import parse_checkpoint, parse_note
from gateway.ledger.store import Ledger


@dataclass(frozen=True)
class AnchorTarget:
    """A checkpoint to anchor: its origin, the head the contract keeps, the signed note."""

    origin: str
    head: Head
    note: bytes


class CheckpointSource(Protocol):
    """Where the service finds what to anchor (called from the service's worker thread)."""

    def newest(self) -> AnchorTarget | None:
        """Return the newest checkpoint to anchor, or None if there is none yet."""
        ...

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """Return the RFC 9162 2.1.4 consistency proof from old_size to new_size of this log
        (0 < old_size < new_size <= the newest checkpoint's size)."""
        ...


def target_of_note(note: bytes) -> AnchorTarget:
    """Return the AnchorTarget of a signed checkpoint note (signatures are not checked here:
    the source is the gateway's own log or a checkpoint that already met witness quorum)."""
    checkpoint = parse_checkpoint(parse_note(note)[0])
    return AnchorTarget(checkpoint.origin, checkpoint_head(checkpoint), note)


class LedgerSource:
    """The gateway's own newest signed checkpoint and proofs from its ledger."""

    def __init__(self, ledger: Callable[[], Ledger]) -> None:
        """ledger returns the open Ledger (it is thread-safe: reads take its lock)."""
        self._ledger = ledger

    def newest(self) -> AnchorTarget | None:
        """Return the ledger's newest checkpoint unless it is of the empty tree."""
        target = target_of_note(self._ledger().checkpoint())
        return target if target.head.size > 0 else None

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """Return the ledger's consistency proof (RFC 9162 2.1.4.1) from its stored tiles."""
        return self._ledger().prove_consistency(old_size, new_size)


class NoteSource(LedgerSource):
    """Anchors whatever signed checkpoint note a callable names (e.g. the newest one with
    witness quorum), with proofs from the gateway's ledger."""

    def __init__(
        self, newest_note: Callable[[], bytes | None], ledger: Callable[[], Ledger]
    ) -> None:
        """newest_note returns the note to anchor or None; ledger as for LedgerSource."""
        super().__init__(ledger)
        self._newest_note = newest_note

    def newest(self) -> AnchorTarget | None:
        """Return the named checkpoint unless there is none or it is of the empty tree."""
        note = self._newest_note()
        target = target_of_note(note) if note else None
        return target if target is not None and target.head.size > 0 else None
