"""Child process for test_crash: appends forever, printing "ACK <last index>" after each durable append.

Usage: python -m tests.gateway.ledger.crash_child DB SKEY MODE [CHECKPOINT_FILE]
MODE "run": append until killed from outside. "kill-in-integrate" / "kill-in-append": SIGKILL
itself at the start of the COMMIT of its 3rd integration / 5th append, inside the transaction.
With CHECKPOINT_FILE the ledger keeps its newest checkpoint there (gateway.ledger.trusted).
"""

import os
import signal
import sys

from gateway.ledger.entries import KIND_PARTICIPANT_TX
from gateway.ledger.note import NoteSigner
from gateway.ledger.store import Ledger
from gateway.ledger.trusted import TrustedCheckpoint

BATCH_ENTRIES = 37  # appended per commit
MAX_BATCH_ENTRIES = 300  # integration every ~8 appends
LIMIT_ENTRIES = 2_000_000  # stop on our own if nobody kills us


def payload(index: int) -> bytes:
    """Return the deterministic payload of entry `index` (the parent recomputes it)."""
    return b"crash-test entry %d " % index + bytes([index % 256]) * (index % 13)


def main() -> None:
    path, skey, mode = sys.argv[1:4]
    trusted = TrustedCheckpoint(sys.argv[4], path) if len(sys.argv) > 4 else None
    ledger = Ledger.open(
        path, NoteSigner.from_skey(skey), max_batch_entries=MAX_BATCH_ENTRIES, trusted=trusted
    )
    counts = {"tile": 0, "entry": 0}
    in_tx = {"tile": False, "entry": False}

    def trace(sql: str) -> None:
        if sql.startswith("INSERT OR REPLACE INTO tile"):
            in_tx["tile"] = True
        elif sql.startswith("INSERT INTO entry"):
            in_tx["entry"] = True
        elif sql == "COMMIT":
            for what in ("tile", "entry"):
                if in_tx[what]:
                    counts[what] += 1
                    in_tx[what] = False
            if (mode == "kill-in-integrate" and counts["tile"] == 3) or (
                mode == "kill-in-append" and counts["entry"] == 5
            ):
                os.kill(os.getpid(), signal.SIGKILL)

    ledger._conn.set_trace_callback(trace)
    out = sys.stdout
    print(f"READY {ledger.sequenced_size}", file=out, flush=True)
    next_index = ledger.sequenced_size
    while next_index < LIMIT_ENTRIES:
        items = [
            (KIND_PARTICIPANT_TX, payload(i)) for i in range(next_index, next_index + BATCH_ENTRIES)
        ]
        indexes = ledger.append(items)
        next_index = indexes[-1] + 1
        print(f"ACK {indexes[-1]}", file=out, flush=True)


if __name__ == "__main__":
    main()
