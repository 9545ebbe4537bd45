"""The gateway's durable memory of its newest signed checkpoint, kept outside the ledger database.

A ledger that loses its WAL, is emptied, deleted or restored from an old copy looks like a
healthy shorter log from the inside. This file is how the gateway notices (DESIGN 8: a gateway
that finds its own history shorter than what it signed refuses to run). `data_dir/checkpoint`
holds one signed checkpoint note (C2SP tlog-checkpoint); it is written atomically (temp file,
fsync, rename, fsync of the directory) and only after the ledger commit that holds that
checkpoint, so a crash leaves it at most one checkpoint behind the ledger, never ahead.

`TrustedCheckpoint.check(ledger)` runs when the ledger opens, before anything is integrated or
signed: the ledger must extend the file's checkpoint (RFC 9162 2.1.4: a consistency proof from
the stored tiles, verified against the file's root). `accept(note, ledger)` advances the file;
the ledger calls it after each integration, and a witness's cosigned checkpoint of this log can
be fed through it the same way (it takes any signed note that verifies with the log key).
With `accept_loss` (the operator's explicit override, `edgeseal serve --accept-loss`) a ledger
that does not extend the file is taken as it is: the old file is kept beside it as evidence
(`checkpoint.lost-<unix time>`) and `loss` says what was lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Protocol

from gateway.errors import ProofError, StartupRefused
from gateway.files import write_atomically
from gateway.ledger import merkle
from gateway.ledger.note import Checkpoint, NoteVerifier, verify_checkpoint

log = logging.getLogger("edgeseal.ledger")

# why: like the key and token files: only the service user may replace what the gateway trusts.
CHECKPOINT_FILE_MODE = 0o600
# why: a checkpoint note is a few hundred bytes (one signature per witness); anything far larger
# is not a checkpoint, and reading it whole must stay cheap.
MAX_CHECKPOINT_FILE_BYTES = 64 * 1024
RECOVERY_DOC = "docs/operations.md, section Recovery"


def _size_of(path: str) -> str:
    """Return "N bytes" or "missing" for a file (used in refusal messages)."""
    try:
        return f"{os.path.getsize(path)} bytes"
    except OSError:
        return "missing"


def _check_extends(ledger: _LedgerView, cp: Checkpoint) -> None:
    """Return None if the ledger's integrated tree extends checkpoint cp; raise ProofError.

    Precondition: cp.size <= ledger.tree_size. A consistency proof built from the stored tiles
    (RFC 9162 2.1.4.1) verified against cp's root (2.1.4.2); the empty tree needs no proof, only
    cp.root == MTH({}) (RFC 9162 2.1.1), which merkle.verify_extends checks.
    """
    size = ledger.tree_size
    proof = ledger.prove_consistency(cp.size, size) if cp.size else []
    merkle.verify_extends(cp.size, size, proof, cp.root, ledger.root(size))


class TrustedCheckpoint:
    """The checkpoint file of one ledger (module doc). Not thread-safe: the ledger's lock holds."""

    def __init__(self, path: str, ledger_path: str, *, accept_loss: bool = False) -> None:
        """path: the checkpoint file; ledger_path: the ledger it guards (named in messages)."""
        self.path = path
        self.ledger_path = ledger_path
        self.accept_loss = accept_loss
        self.loss: str | None = None  # set when accept_loss took a ledger that lost history
        self._size = -1  # size of the checkpoint in the file (-1: not read yet)

    def exists(self) -> bool:
        """Return True if the checkpoint file exists (it may still be invalid)."""
        return os.path.exists(self.path)

    def read(self, verifier: NoteVerifier) -> tuple[Checkpoint, bytes] | None:
        """Return (checkpoint, note) from the file, or None if there is no file.

        Raises StartupRefused("bad-checkpoint-file") if it is unreadable, too large or does not
        verify with the log key (c2sp.org/signed-note; other signatures, e.g. witnesses', may
        be present and are ignored here).
        """
        try:
            with open(self.path, "rb") as f:
                note = f.read(MAX_CHECKPOINT_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._refusal("bad-checkpoint-file", f"cannot read it: {exc}") from exc
        try:
            if len(note) > MAX_CHECKPOINT_FILE_BYTES:
                raise ProofError("too-large", f"over {MAX_CHECKPOINT_FILE_BYTES} bytes")
            return verify_checkpoint(note, verifier), note
        except ProofError as exc:
            raise self._refusal("bad-checkpoint-file", f"it does not verify: {exc}") from exc

    def refuse_missing_ledger(self, what: str) -> None:
        """Raise StartupRefused("ledger-missing") because the checkpoint file exists but the
        ledger is `what` (missing, empty, holds no log), unless accept_loss: then record the loss,
        keep the old file as evidence and return None (a new log will be created)."""
        self._lost_or_refuse("ledger-missing", f"{self.ledger_path} is {what}")

    def check(self, ledger: _LedgerView) -> None:
        """Return None if `ledger` extends the file's checkpoint; write the ledger's latest
        checkpoint to the file if it is missing or behind.

        Precondition: called at open, before the ledger integrates or signs anything. Raises
        StartupRefused "ledger-behind-checkpoint" (a smaller tree than the file's) or
        "ledger-fork" (a different root at the file's size: RFC 9162 2.1.4 consistency proof
        from the stored tiles fails), unless accept_loss (then `loss` is set, the old file kept
        as evidence and replaced by the ledger's latest checkpoint).
        """
        found = self.read(ledger.verifier)
        if found is None:  # first start of this version (an upgrade), or a new log
            self._write(ledger.checkpoint(), ledger.tree_size)
            return
        cp, _ = found
        size = ledger.tree_size
        if size < cp.size:
            self._lost_or_refuse(
                "ledger-behind-checkpoint",
                f"{self.ledger_path} holds a tree of {size} entries but this gateway signed "
                f"a checkpoint of {cp.size} entries",
            )
        else:
            try:
                _check_extends(ledger, cp)
                self._size = cp.size
                if size > cp.size:  # a crash between the ledger commit and the file write
                    self._write(ledger.checkpoint(), size)
                return
            except ProofError as exc:
                self._lost_or_refuse(
                    "ledger-fork",
                    f"{self.ledger_path} (tree size {size}) does not extend the checkpoint of "
                    f"size {cp.size} this gateway signed ({exc})",
                )
        self._write(ledger.checkpoint(), ledger.tree_size)

    def accept(self, note: bytes, ledger: _LedgerView) -> bool:
        """Store `note` if it is a checkpoint of this log, consistent with the ledger and not
        older than the file's; return True if it was stored, False if it was older.

        Precondition: the ledger commit that holds the checkpoint is done (the file must never
        be ahead of the ledger). Raises ProofError if the note does not verify with the log key
        or its root is not the ledger's root at its size (RFC 9162 2.1.1).
        """
        cp = verify_checkpoint(note, ledger.verifier)
        if cp.size > ledger.tree_size or ledger.root(cp.size) != cp.root:
            raise ProofError("root-mismatch", f"checkpoint of size {cp.size} is not this ledger's")
        if cp.size < self._size:
            return False
        self._write(note, cp.size)
        return True

    # ------------------------------------------------------------------ internals

    def _write(self, note: bytes, size: int) -> None:
        write_atomically(self.path, note, CHECKPOINT_FILE_MODE)
        self._size = size

    def _lost_or_refuse(self, code: str, why: str) -> None:
        """Raise the refusal, or with accept_loss log it at error level and keep the evidence."""
        if not self.accept_loss:
            raise self._refusal(code, why)
        evidence = f"{self.path}.lost-{int(time.time())}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, evidence)
        self.loss = f"{code}: {why}; the old checkpoint is kept in {evidence}"
        self._size = -1
        log.error("ACCEPTING LOST HISTORY (--accept-loss): %s", self.loss)

    def _refusal(self, code: str, why: str) -> StartupRefused:
        return StartupRefused(
            code,
            f"{why}. Files: {self.ledger_path} ({_size_of(self.ledger_path)}), "
            f"{self.ledger_path}-wal ({_size_of(self.ledger_path + '-wal')}), "
            f"{self.path} ({_size_of(self.path)}). Acknowledged entries may be lost: restore "
            f"the newest backup of the ledger, or start with --accept-loss to continue from "
            f"what is left ({RECOVERY_DOC})",
        )


class _LedgerView(Protocol):
    """What TrustedCheckpoint reads of a ledger (gateway.ledger.store.Ledger has it all)."""

    @property
    def verifier(self) -> NoteVerifier:
        """Return the log's verifier key."""
        ...

    @property
    def tree_size(self) -> int:
        """Return the number of integrated leaves."""
        ...

    def checkpoint(self) -> bytes:
        """Return the ledger's latest signed checkpoint note."""
        ...

    def root(self, size: int | None = None) -> bytes:
        """Return the root hash at size (RFC 9162 2.1.1)."""
        ...

    def prove_consistency(self, size1: int, size2: int) -> list[bytes]:
        """Return the consistency proof from size1 to size2 (RFC 9162 2.1.4.1)."""
        ...
