"""A real gateway Ledger to anchor, and an AnchorService over it, for the service tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from gateway.anchor.chain import AnchorChain
from gateway.anchor.outbox import Outbox
from gateway.anchor.service import AnchorPolicy, AnchorService
from gateway.anchor.source import LedgerSource
from gateway.contracts.engine import EXTENSION_PREFIX
from gateway.ledger import KIND_PARTICIPANT_TX, Ledger, NoteSigner

STEP_TIMEOUT_S = 30.0  # why: generous for a loaded 2-core machine; a round takes milliseconds


def state_line(size: int, _root: bytes) -> list[str]:
    """Return a stand-in contract state hash line for the first `size` entries."""
    return [f"{EXTENSION_PREFIX} {hashlib.sha256(b'state %d' % size).hexdigest()}"]


def open_ledger(path: Path, origin: str) -> Ledger:
    """Return a writable ledger at path (created with a fresh key named origin)."""
    return Ledger.open(str(path), NoteSigner.generate(origin), extension_lines=state_line)


def grow(ledger: Ledger, entries: int) -> int:
    """Append `entries` entries, integrate; return the new tree size."""
    base = ledger.sequenced_size
    ledger.append([(KIND_PARTICIPANT_TX, b"tx %d" % (base + i)) for i in range(entries)])
    ledger.integrate()
    return ledger.tree_size


def service(chain: AnchorChain, ledger: Ledger, data: Path, policy: AnchorPolicy) -> AnchorService:
    """Return an AnchorService over ledger with its outbox in data/anchor.db, fast timings."""
    outbox = Outbox(data / "anchor.db", 31337, chain.address)
    return AnchorService(
        chain, outbox, LedgerSource(lambda: ledger), policy, poll_s=0.05, backoff_base_s=0.05,
        backoff_max_s=0.5,
    )  # fmt: skip


def step_until(
    svc: AnchorService, pred: Callable[[], object], what: str, timeout_s: float = STEP_TIMEOUT_S
) -> None:
    """Run svc.step() until pred() is true; raise AssertionError naming `what` after timeout_s
    (anvil mines a transaction as it arrives, but a loaded machine may take a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        svc.step()
        if pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s} s")
        time.sleep(0.02)
