"""Engine tests: canonical encoding, signatures, nonces, registration, bindings, replay determinism."""

from __future__ import annotations

import random

import pytest

from gateway import wire
from gateway.contracts import Engine, canonical_json, decode_tx, extension_line, state_bytes
from gateway.contracts.tx import TX_DOMAIN, parse_canonical, sign_payload, tx_body
from gateway.errors import ContractError
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_PARTICIPANT_TX

from .helpers import T0, Board, Log, Party, next_nonce, setup

# ---- canonical JSON -------------------------------------------------------------------------


def test_canonical_json_sorted_compact_utf8() -> None:
    assert (
        canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"x": 1.5}, "tx-float: $.x: floats are not allowed, use scaled integers"),
        ({"x": 2**53}, "tx-int-range: $.x: integer outside +-(2^53-1)"),
        ({"x": "e\u0301"}, "tx-not-canonical: $.x: string is not in NFC"),
        ({1: 2}, "tx-malformed: $: object keys must be strings"),
        ({"x": b"raw"}, "tx-malformed: $.x: bytes is not a JSON type"),
    ],
)
def test_canonical_json_rejects(value: object, error: str) -> None:
    with pytest.raises(ContractError) as exc:
        canonical_json(value)
    assert str(exc.value) == error


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"a":1,"a":2}', "tx-not-canonical: duplicate key 'a'"),
        (b'{"a":1.0}', "tx-float: number 1.0 is not an integer"),
        (b'{"a":NaN}', "tx-float: NaN is not allowed"),
        (b'{"b":1,"a":2}', "tx-not-canonical: body is not in canonical form"),
        (b'{"a": 1}', "tx-not-canonical: body is not in canonical form"),
        (b'{"a":"\\u00e9"}', "tx-not-canonical: body is not in canonical form"),
        (b"\xff", "tx-malformed: body is not UTF-8"),
        (b"{", "tx-malformed: body is not JSON"),
    ],
)
def test_parse_canonical_rejects(data: bytes, error: str) -> None:
    with pytest.raises(ContractError) as exc:
        parse_canonical(data)
    assert str(exc.value) == error


# ---- transaction decoding --------------------------------------------------------------------

ALICE, BOB = Party("alice"), Party("bob")


def _body(**over: object) -> bytes:
    fields: dict = {
        "v": 1,
        "participant": ALICE.pk,
        "cosigners": [],
        "nonce": 1,
        "contract": "engine",
        "action": "register",
        "args": {},
        "time_s": T0,
    }
    fields.update(over)
    return canonical_json(fields)


def test_decode_tx_roundtrip() -> None:
    body = tx_body(ALICE.pk, 7, "c1", "act", {"n": 1}, T0, [BOB.pk])
    tx = decode_tx(sign_payload(body, [ALICE.key, BOB.key]))
    assert (tx.participant, tx.cosigners, tx.nonce, tx.contract, tx.action) == (
        ALICE.pk,
        (BOB.pk,),
        7,
        "c1",
        "act",
    )
    assert tx.args == {"n": 1} and tx.time_s == T0 and tx.body == body
    assert len(tx.tx_hash) == 64


def _signed(body: bytes) -> bytes:
    return sign_payload(body, [ALICE.key])


BAD_TX = [
    ("empty", b"", "tx-malformed: empty transaction payload"),
    ("unsigned", b"\x00" + _body(), "tx-unsigned: the transaction carries no signature"),
    ("too many sigs", b"\x05" + b"\x00" * 400, "tx-malformed: at most 4 signers"),
    ("truncated", b"\x01" + b"\x00" * 64, "tx-malformed: transaction payload is truncated"),
    ("float", _signed(b'{"x":1.5}'), "tx-float: number 1.5 is not an integer"),
    ("not object", _signed(b"[]"), "tx-malformed: body must be a JSON object"),
    (
        "missing field",
        _signed(canonical_json({"v": 1})),
        "tx-malformed: body fields: missing ['action', 'args', 'contract', 'cosigners', "
        "'nonce', 'participant', 'time_s'], unexpected []",
    ),
    ("version", _signed(_body(v=2)), "tx-malformed: v must be 1"),
    (
        "participant",
        _signed(_body(participant="AB")),
        "tx-malformed: participant must be 64 lowercase hex digits",
    ),
    ("nonce", _signed(_body(nonce=-1)), "tx-malformed: nonce must be a non-negative integer"),
    ("time", _signed(_body(time_s=True)), "tx-malformed: time_s must be a non-negative integer"),
    (
        "contract",
        _signed(_body(contract="")),
        "tx-malformed: contract must be a string of 1..64 characters",
    ),
    ("args", _signed(_body(args=[])), "tx-malformed: args must be a JSON object"),
    (
        "dup signer",
        _signed(_body(cosigners=[ALICE.pk])),
        "tx-malformed: signers must be distinct",
    ),
    (
        "sig count",
        _signed(_body(cosigners=[BOB.pk])),
        "tx-signature-count: 1 signatures for 2 signers",
    ),
    (
        "wrong key",
        sign_payload(_body(), [BOB.key]),
        f"tx-bad-signature: signature of {ALICE.pk[:16]}... is invalid",
    ),
    (
        "bad public key",
        _signed(_body(participant="00" * 32)),
        f"tx-bad-public-key: {'00' * 8}... is not usable",
    ),
]


@pytest.mark.parametrize(("name", "payload", "error"), BAD_TX, ids=[b[0] for b in BAD_TX])
def test_decode_tx_rejects(name: str, payload: bytes, error: str) -> None:
    with pytest.raises(ContractError) as exc:
        decode_tx(payload)
    assert str(exc.value) == error


def test_flipped_signature_bit_rejected() -> None:
    payload = bytearray(_signed(_body()))
    payload[5] ^= 1
    with pytest.raises(ContractError, match="tx-bad-signature"):
        decode_tx(bytes(payload))


def test_signature_has_domain_tag() -> None:
    body = _body()
    plain = ALICE.key.sign(body).signature  # without the domain tag
    with pytest.raises(ContractError, match="tx-bad-signature"):
        decode_tx(b"\x01" + plain + body)
    assert decode_tx(b"\x01" + ALICE.key.sign(TX_DOMAIN + body).signature + body).nonce == 1


# ---- engine rules, table-driven --------------------------------------------------------------


@pytest.fixture()
def world() -> tuple[Log, dict[str, Party], Board]:
    log = Log()
    parties = {n: Party(n) for n in ("grower", "retailer", "certifier", "stranger")}
    op = setup(
        log,
        {
            "grower": (parties["grower"], ["grower"]),
            "retailer": (parties["retailer"], ["retailer"]),
            "certifier": (parties["certifier"], ["certifier"]),
        },
    )
    parties["operator"] = op
    params = {"certifiers": [parties["certifier"].pk]}
    log.ok(parties["grower"].tx("engine", "create", {"id": "farm", "type": "agri", "params": params}, T0))  # fmt: skip
    board = Board("logger")
    log.ok(board.enrollment())
    return log, parties, board


def test_bootstrap_rules() -> None:
    log = Log()
    a, b = Party("a"), Party("b")
    assert (
        log.reject(
            a.tx("engine", "register", {"public_key": b.pk, "name": "b", "roles": ["operator"]}, T0)
        )  # fmt: skip
        == "bootstrap-needs-operator: the first participant registers itself with the operator role"
    )
    assert (
        log.reject(
            a.tx("engine", "register", {"public_key": a.pk, "name": "a", "roles": ["grower"]}, T0)
        )  # fmt: skip
        == "bootstrap-needs-operator: the first participant registers itself with the operator role"
    )
    assert (
        log.reject(b.tx("engine", "create", {"id": "x", "type": "agri", "params": {}}, T0))
        == f"unknown-participant: {b.pk[:16]}... is not registered"
    )
    log.ok(a.tx("engine", "register", {"public_key": a.pk, "name": "a", "roles": ["operator"]}, T0))  # fmt: skip
    assert list(log.state["participants"]) == [a.pk]


def _engine_cases(p: dict[str, Party], board: Board) -> list[tuple[str, bytes, str]]:
    g, r, s, op = p["grower"], p["retailer"], p["stranger"], p["operator"]
    reg = {"public_key": s.pk, "name": "s", "roles": ["driver"]}
    return [
        (
            "not operator",
            g.tx("engine", "register", reg, T0),
            "not-operator: only an operator registers participants",
        ),  # fmt: skip
        (
            "bad role",
            op.tx("engine", "register", {**reg, "roles": ["king"]}, T0),
            "bad-role: unknown role 'king'",
        ),  # fmt: skip
        (
            "dup role",
            op.tx("engine", "register", {**reg, "roles": ["driver", "driver"]}, T0),
            "bad-role: roles must be distinct",
        ),  # fmt: skip
        (
            "exists",
            op.tx("engine", "register", {**reg, "public_key": g.pk}, T0),
            "participant-exists: participant is already registered",
        ),  # fmt: skip
        (
            "missing arg",
            op.tx("engine", "register", {"name": "s", "roles": ["driver"]}, T0),
            "bad-args: public_key: required",
        ),  # fmt: skip
        (
            "extra arg",
            op.tx("engine", "register", {**reg, "x": 1}, T0),
            "bad-args: x: unexpected argument",
        ),  # fmt: skip
        (
            "unknown action",
            op.tx("engine", "explode", {}, T0),
            "unknown-action: engine has no action 'explode'",
        ),  # fmt: skip
        (
            "unknown contract",
            op.tx("nowhere", "tick", {}, T0),
            "unknown-contract: no contract 'nowhere'",
        ),  # fmt: skip
        (
            "unknown type",
            g.tx("engine", "create", {"id": "y", "type": "casino", "params": {}}, T0),
            "unknown-contract-type: no contract type 'casino'",
        ),  # fmt: skip
        (
            "contract exists",
            g.tx("engine", "create", {"id": "farm", "type": "agri", "params": {}}, T0),
            "contract-exists: contract 'farm' already exists",
        ),  # fmt: skip
        (
            "bad id",
            g.tx("engine", "create", {"id": "Farm!", "type": "agri", "params": {}}, T0),
            "bad-args: id: must match [a-z0-9][a-z0-9._-]{0,63}, not engine",
        ),  # fmt: skip
        (
            "creator role",
            r.tx("engine", "create", {"id": "p", "type": "parking", "params": {}}, T0),
            "role-required: creating parking needs the role parking_operator",
        ),  # fmt: skip
        (
            "bad params",
            g.tx("engine", "create", {"id": "z", "type": "agri", "params": {}}, T0),
            "bad-params: certifiers: required",
        ),  # fmt: skip
        (
            "not owner binds",
            r.tx("engine", "bind-device", {"contract": "farm", "device": board.id}, T0),
            "not-contract-owner: only the contract's owner binds devices",
        ),  # fmt: skip
        (
            "not enrolled",
            g.tx("engine", "bind-device", {"contract": "farm", "device": "00" * 16}, T0),
            "device-not-enrolled: device: is not enrolled in the log",
        ),  # fmt: skip
        (
            "bad device",
            g.tx("engine", "bind-device", {"contract": "farm", "device": "xyz"}, T0),
            "bad-args: device: must be 32 lowercase hex digits",
        ),  # fmt: skip
        (
            "unbind unbound",
            g.tx("engine", "unbind-device", {"contract": "farm", "device": board.id}, T0),
            "device-not-bound: device: is not bound to the contract",
        ),  # fmt: skip
        (
            "tick not allowed",
            r.tx("farm", "tick", {}, T0),
            "tick-not-allowed: only the owner or an operator may tick",
        ),  # fmt: skip
        ("tick args", g.tx("farm", "tick", {"x": 1}, T0), "bad-args: x: unexpected argument"),
        (
            "contract action",
            g.tx("farm", "fly", {}, T0),
            "unknown-action: agri has no action 'fly'",
        ),  # fmt: skip
    ]


CASE_NAMES = [c[0] for c in _engine_cases({n: Party(n) for n in ("grower", "retailer", "stranger", "operator")}, Board("x"))]  # fmt: skip


@pytest.mark.parametrize("case", CASE_NAMES)
def test_engine_rejections(world: tuple[Log, dict[str, Party], Board], case: str) -> None:
    log, parties, board = world
    for name, entry, error in _engine_cases(parties, board):
        if name == case:
            assert log.reject(entry) == error
            return
    raise AssertionError(case)


def test_nonce_strictly_increasing_and_rejected_nonce_reusable(world) -> None:
    log, p, _ = world
    g = p["grower"]
    args = {"lot": "L1", "product": "apples", "code": "0401", "quantity": 10, "origin": "NL"}
    n = next_nonce() + 1000
    log.ok(g.tx("farm", "register-lot", args, T0, nonce=n))
    replay = g.tx("farm", "register-lot", {**args, "lot": "L2"}, T0, nonce=n)
    assert log.reject(replay) == f"tx-replayed-nonce: nonce {n} is not above {n}"
    assert log.reject(g.tx("farm", "register-lot", {**args, "lot": "L2"}, T0, nonce=n - 1)) == (
        f"tx-replayed-nonce: nonce {n - 1} is not above {n}"
    )
    # a contract rejection does not consume the nonce (no state changes at all)
    assert log.reject(g.tx("farm", "register-lot", args, T0, nonce=n + 1)) == "lot-exists: lot 'L1' already exists"  # fmt: skip
    log.ok(g.tx("farm", "register-lot", {**args, "lot": "L2"}, T0, nonce=n + 1))
    assert log.state["nonces"][g.pk] == n + 1


def test_tx_expired(world) -> None:
    log, p, _ = world
    g = p["grower"]
    log.ok(g.tx("farm", "tick", {}, T0 + 5000))
    assert log.reject(g.tx("farm", "tick", {}, T0 + 4399)) == (
        f"tx-expired: time_s {T0 + 4399} is over 600 s behind the contract"
    )
    log.ok(g.tx("farm", "tick", {}, T0 + 4400))
    assert log.state["contracts"]["farm"]["clock_s"] == T0 + 5000


def test_bind_unbind_and_records_route(world) -> None:
    log, p, board = world
    g = p["grower"]
    ev = log.ok(g.tx("engine", "bind-device", {"contract": "farm", "device": board.id}, T0))
    assert [e["type"] for e in ev] == ["device-bound"]
    assert log.state["devices"][board.id]["contracts"] == ["farm"]
    assert log.reject(
        g.tx("engine", "bind-device", {"contract": "farm", "device": board.id}, T0)
    ) == ("device-already-bound: device: is already bound to the contract")
    log.ok(g.tx("engine", "unbind-device", {"contract": "farm", "device": board.id}, T0))
    assert log.state["devices"][board.id]["contracts"] == []
    assert log.state["contracts"]["farm"]["devices"] == []


def test_bad_entries_emit_rejections_and_change_nothing(world) -> None:
    log, _, board = world
    assert log.reject(b"") == "bad-entry: empty entry"
    assert log.reject(b"\x09abc") == "bad-entry-kind: unknown entry kind 0x09"
    assert log.reject(b"\x01\x02") == "bad-version: version 2 is not supported (expected 1)"
    assert log.reject(b"\x04\x01") == "bad-enrollment: enrollment payload is truncated"
    assert log.reject(bytes((KIND_PARTICIPANT_TX,))) == "tx-malformed: empty transaction payload"


def test_unsynced_and_unbound_records_are_ignored(world) -> None:
    log, p, board = world
    before = log.state
    assert log.add(board.record(T0, [(1, 0, 2000)])) == []  # enrolled but unbound
    log.ok(p["grower"].tx("engine", "bind-device", {"contract": "farm", "device": board.id}, T0))
    before = log.state
    assert log.add(board.record(5, [(1, 0, 2000)], synced=False)) == []
    assert log.state is before


def test_event_entries_are_not_inputs(world) -> None:
    log, _, _ = world
    events = [e for e in log.entries if e[0] == KIND_CONTRACT_EVENT]
    assert events
    before = log.state
    for e in events:
        assert log.engine.apply(before, len(log.entries), e) == (before, [])


def test_extension_line() -> None:
    state = Engine.initial_state()
    line = extension_line(state)
    assert line.startswith("edgeseal-state ") and len(line) == len("edgeseal-state ") + 64
    assert (
        state_bytes(state) == b'{"contracts":{},"devices":{},"nonces":{},"participants":{},"v":1}'
    )


# ---- determinism -----------------------------------------------------------------------------


def _mixed_log() -> Log:
    """Return a log exercising every contract type, with rejections and events interleaved."""
    from . import test_agri, test_collateral, test_energy, test_fishfarm, test_parking

    log = Log()
    test_agri.scenario(log)
    test_fishfarm.scenario(log)
    test_collateral.scenario(log)
    test_energy.scenario(log)
    test_parking.scenario(log)
    return log


def test_replay_reproduces_state_hash_at_random_prefixes() -> None:
    log = _mixed_log()
    engine = Engine()
    # incremental hashes, recomputed from scratch by a fresh engine at random prefixes
    hashes = []
    state = engine.initial_state()
    for i, entry in enumerate(log.entries):
        state, _ = engine.apply(state, i, entry)
        hashes.append(extension_line(state))
    assert hashes[-1] == extension_line(log.state)
    rng = random.Random(30176)
    for k in sorted(rng.sample(range(1, len(log.entries) + 1), 12)) + [len(log.entries)]:
        replayed = Engine().replay(enumerate(log.entries[:k]))
        assert extension_line(replayed) == hashes[k - 1]


def test_apply_never_mutates_its_input() -> None:
    log = _mixed_log()
    engine = Engine()
    state = engine.initial_state()
    for i, entry in enumerate(log.entries):
        before = state_bytes(state)
        new, _ = engine.apply(state, i, entry)
        assert state_bytes(state) == before
        state = new


def test_audit_accepts_the_log_and_detects_forged_events() -> None:
    log = _mixed_log()
    engine = Engine()
    state, pending = engine.audit(enumerate(log.entries))
    assert pending == [] and extension_line(state) == extension_line(log.state)
    entries = list(log.entries)
    k = next(i for i, e in enumerate(entries) if e[0] == KIND_CONTRACT_EVENT and b"breach" in e)
    entries[k] = entries[k].replace(b'"breach"', b'"nothing"')
    with pytest.raises(ContractError) as exc:
        engine.audit(enumerate(entries))
    assert str(exc.value) == f"event-mismatch: entry {k}: not the expected event"
    with pytest.raises(ContractError, match="event nobody emitted"):
        engine.audit(enumerate([entries[k]]))


def test_event_names_its_causes() -> None:
    log = _mixed_log()
    for e in log.events:
        assert e["causes"], e
    # every event's causes precede the event in the log
    position = 0
    for i, entry in enumerate(log.entries):
        if entry[0] == KIND_CONTRACT_EVENT:
            from gateway.contracts import decode_event

            assert max(decode_event(entry)["causes"]) < i
            position += 1
    assert position == len(log.events)


def test_wire_constants_used_by_helpers() -> None:
    assert wire.TIME_SYNCED == 1
