"""The anchoring outbox: states, idempotent adds, durable across a reopen (no chain needed)."""

from __future__ import annotations

from pathlib import Path

from gateway.anchor.outbox import FINAL, INCLUDED, PENDING, SENT, SUPERSEDED, Outbox
from tests.gateway.anchor.trees import head

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_rows_move_through_the_states_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "anchor.db"
    box = Outbox(path, 31337, CONTRACT)
    first = box.add("o", head(10), b"note-10")
    assert first is not None and first.state == PENDING
    assert box.add("o", head(10), b"note-10") is None  # idempotent
    box.mark_sent(first.id, 0, b"\x01" * 32, b"raw")
    box.mark_included(first.id, 7, b"\x02" * 32, 52_000)
    box.close()

    box = Outbox(path, 31337, CONTRACT.lower())  # the same contract, however spelled
    row = box.get(first.id)
    assert (row.state, row.block_number, row.gas_used, row.raw_tx) == (INCLUDED, 7, 52_000, b"raw")
    box.mark_dropped(row.id)  # a reorg: back to sent, the same transaction kept
    assert (box.get(row.id).state, box.get(row.id).raw_tx) == (SENT, b"raw")
    box.mark_included(row.id, 8, b"\x03" * 32, 52_000)
    box.mark_final(row.id, {"version": 1})
    assert box.get(row.id).evidence == {"version": 1}
    second = box.add("o", head(20), b"note-20")
    assert second is not None
    box.mark_pending(second.id, "refused: BadProof")
    assert (box.get(second.id).attempts, box.get(second.id).error) == (1, "refused: BadProof")
    box.mark_superseded(second.id, "given up")
    assert box.counts() == {PENDING: 0, SENT: 0, INCLUDED: 0, FINAL: 1, SUPERSEDED: 1}
    assert box.newest("o") == box.get(row.id)  # superseded rows are not anchored heads
    assert box.final_covering("o", 9) == box.get(row.id)
    assert box.final_covering("o", 10) is None
    assert Outbox(path, 1, CONTRACT).anchors() == []  # another chain sees none of it
    box.close()
