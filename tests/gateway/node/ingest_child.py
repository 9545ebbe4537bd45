"""Child process for test_recovery: a real gateway node ingesting one board's readings until killed.

Usage: python -m tests.gateway.node.ingest_child DATA_DIR

Prints "READY", then "ACK <seq>" after each durable upload of one signed reading. After
SYNC_AFTER_ACKS acks it copies the WAL into ledger.db (PRAGMA wal_checkpoint(FULL), from a second
connection, as SQLite's auto-checkpoint would after 64 MB) and prints "SYNCED <tree size>"; after
INTEGRATE_AFTER_ACKS more it forces an integration and prints "INTEGRATED <tree size>": the
entries and the checkpoint after SYNCED live only in the WAL, the checkpoint file has that newer
checkpoint. It keeps ingesting until killed (the parent SIGKILLs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.node import Node
from tests.gateway.node.helpers import make_settings
from tests.gateway.simboard import SimBoard

BOARD_NAME = "lost-wal"
SYNC_AFTER_ACKS = 6
INTEGRATE_AFTER_ACKS = 5
LIMIT_ACKS = 100_000  # stop on our own if nobody kills us


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Return the settings the child and the parent share (no radio, fast checkpoints)."""
    return make_settings(data_dir.parent, data_dir=data_dir, **overrides)


async def main(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    node = await asyncio.to_thread(Node, settings)
    await node.start()
    board = SimBoard(BOARD_NAME)
    await node.sequencer.enroll(board.public_key, {"board": BOARD_NAME})
    print("READY", flush=True)
    for acks in range(1, LIMIT_ACKS):
        raw = board.reading(2000 + acks, signed=True)
        ack = await node.sequencer.deliver(board.device_id, [raw])
        print(f"ACK {ack}", flush=True)
        led = node.sequencer.open_ledger()
        if acks == SYNC_AFTER_ACKS:
            await node.sequencer.write(node.sequencer.integrate_if_due, True)
            with contextlib.closing(sqlite3.connect(settings.ledger_path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
            print(f"SYNCED {led.tree_size}", flush=True)
        if acks == SYNC_AFTER_ACKS + INTEGRATE_AFTER_ACKS:
            await node.sequencer.write(node.sequencer.integrate_if_due, True)
            print(f"INTEGRATED {led.tree_size}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
