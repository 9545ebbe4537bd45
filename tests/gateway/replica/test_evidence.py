"""The offline evidence checker (gateway.replica.evidence) on documents built here: what it
confirms, and every way a document that proves nothing is refused (typed EvidenceError, never
another exception)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest

from gateway.contracts import Engine, extension_line
from gateway.ledger import NoteSigner, merkle
from gateway.ledger.note import Checkpoint, sign_checkpoint
from gateway.ledger.tiles import TileBuilder
from gateway.replica import evidence
from gateway.replica.evidence import EvidenceError, check_evidence
from tests.gateway.replica.helpers import filler_records, scenario_entries

SIGNER = NoteSigner.generate("edgeseal.example/gateway/evidence")
VERIFIER = SIGNER.verifier()


def signed(entries: list[bytes], line: str | None = None) -> bytes:
    """Return the checkpoint of entries signed by SIGNER, with the true state line or `line`."""
    builder = TileBuilder()
    builder.extend(merkle.leaf_hash(e) for e in entries)
    state, _ = Engine().audit(enumerate(entries)) if line is None else ({}, [])
    ext = line if line is not None else extension_line(state)
    return sign_checkpoint(Checkpoint(SIGNER.name, len(entries), builder.root(), (ext,)), SIGNER)


def replay_doc(kind: str, entries: list[bytes], note: bytes) -> dict[str, Any]:
    doc = evidence.base(kind, VERIFIER, "test", [note])
    doc["entries"] = evidence.entries_field(entries)
    return doc


def test_a_log_with_an_event_its_contracts_do_not_emit() -> None:
    entries = scenario_entries()
    forged_event = (
        b"\x03"
        + json.dumps(
            {"causes": [0], "contract": "engine", "data": {}, "type": "forged", "v": 1},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    )
    log = [*entries, forged_event]
    confirmed = check_evidence(replay_doc("event-mismatch", log, signed(log, "x y")), VERIFIER)
    assert confirmed.kind == "event-mismatch"


def test_a_true_state_line_is_not_a_state_mismatch() -> None:
    entries = scenario_entries()[:40]
    with pytest.raises(EvidenceError) as err:
        check_evidence(replay_doc("state-mismatch", entries, signed(entries)), VERIFIER)
    assert err.value.code == "not-proven"


def test_a_wrong_state_line_is_confirmed() -> None:
    entries = scenario_entries()[:40]
    note = signed(entries, "edgeseal-state " + "00" * 32)
    assert check_evidence(replay_doc("state-mismatch", entries, note), VERIFIER).kind == (
        "state-mismatch"
    )
    # entries that are not the signed tree's prove nothing about it
    other = filler_records(40)
    with pytest.raises(EvidenceError):
        check_evidence(replay_doc("state-mismatch", other, note), VERIFIER)


def test_equal_checkpoints_are_no_fork() -> None:
    note = signed(filler_records(10), "edgeseal-state " + "11" * 32)
    doc = evidence.base("fork", VERIFIER, "test", [note, note])
    with pytest.raises(EvidenceError) as err:
        check_evidence(doc, VERIFIER)
    assert err.value.code == "not-proven"
    conflict = evidence.base("state-conflict", VERIFIER, "t", [note, note])
    with pytest.raises(EvidenceError):
        check_evidence(conflict, VERIFIER)


def test_two_states_for_one_tree_are_a_state_conflict() -> None:
    entries = filler_records(10)
    a, b = (
        signed(entries, "edgeseal-state " + "11" * 32),
        signed(entries, "edgeseal-state " + "22" * 32),
    )
    doc = evidence.base("state-conflict", VERIFIER, "test", [a, b])
    assert check_evidence(doc, VERIFIER).kind == "state-conflict"


HOSTILE: list[Any] = [
    None,
    [],
    "text",
    {"format": "other"},
    {"format": evidence.FORMAT, "kind": "nope", "checkpoints": ["x"]},
    {"format": evidence.FORMAT, "kind": "fork", "checkpoints": []},
    {"format": evidence.FORMAT, "kind": "fork", "checkpoints": [1, 2]},
    {"format": evidence.FORMAT, "kind": "fork", "checkpoints": ["not a note"]},
]


@pytest.mark.parametrize("doc", HOSTILE)
def test_malformed_documents_are_refused(doc: Any) -> None:
    with pytest.raises(EvidenceError):
        check_evidence(doc, VERIFIER)


def test_hostile_fields_are_refused_with_a_typed_error() -> None:
    entries = filler_records(20)
    note = signed(entries, "edgeseal-state " + "00" * 32)
    good = replay_doc("state-mismatch", entries, note)
    bomb = base64.b64encode(gzip.compress(b"\0" * (1 << 20))).decode()
    for field in (
        {"encoding": "c2sp-entry-bundle+gzip+base64", "count": 20, "data": "%%%"},
        {"encoding": "c2sp-entry-bundle+gzip+base64", "count": 20, "data": "AAAA"},
        {
            "encoding": "c2sp-entry-bundle+gzip+base64",
            "count": "20",
            "data": good["entries"]["data"],
        },
        {"encoding": "c2sp-entry-bundle+gzip+base64", "count": 19, "data": good["entries"]["data"]},
        {"encoding": "c2sp-entry-bundle+gzip+base64", "count": 20, "data": bomb},
        {"encoding": "other", "count": 20, "data": good["entries"]["data"]},
        "not an object",
    ):
        doc = dict(good, entries=field)
        with pytest.raises(EvidenceError):
            check_evidence(doc, VERIFIER)
    fork = evidence.base("fork", VERIFIER, "t", [signed(entries[:5], "a b"), note])
    for proof in (
        None,
        {},
        {"old_size": 5, "new_size": 20, "old_root_in_new_tree": "x", "consistency": []},
        {"old_size": 5, "new_size": 20, "old_root_in_new_tree": 5, "consistency": [1]},
        {"old_size": 4, "new_size": 20, "old_root_in_new_tree": "", "consistency": []},
    ):
        with pytest.raises(EvidenceError):
            check_evidence(dict(fork, proof=proof), VERIFIER)
    tiles = evidence.base("tile-mismatch", VERIFIER, "t", [note])
    for extra in (
        {},
        {"tiles": {}, "failed": "edge"},
        {"tiles": {"tile/0/000.p/20": "!!"}, "failed": "edge"},
        {"tiles": {"../../etc": "AA=="}, "failed": "edge"},
        {"tiles": [], "failed": "tile/0/000"},
    ):
        with pytest.raises(EvidenceError):
            check_evidence({**tiles, **extra}, VERIFIER)
