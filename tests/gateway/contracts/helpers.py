"""Test helpers: signing participants, boards that build real signed record chains, a toy log."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, run_state_machine_as_test
from nacl.signing import SigningKey

from gateway import wire
from gateway.contracts import Engine, decode_event, make_tx, state_hash, tx_entry
from gateway.ledger.entries import KIND_DEVICE_RECORD, encode_enrollment
from tests.support import ChainDevice

# One nonce counter for every Party: nonces only need to increase per participant, so a shared
# counter keeps them increasing across logs, tests and re-created Party objects.
_NONCES = itertools.count(1)
STEPS = {"count": 0}  # stateful-test steps run in this process (reported by the machines)
T0 = 1_799_971_200  # a Unix time inside u32 range, aligned to 900 s and to a UTC day
assert T0 % 86400 == 0


class Party:
    """A participant: a deterministic Ed25519 key and its nonce counter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.key = SigningKey(hashlib.sha256(b"party " + name.encode()).digest())
        self.pk = bytes(self.key.verify_key).hex()

    def tx(
        self,
        contract: str,
        action: str,
        args: dict[str, Any],
        time_s: int,
        cosigners: tuple[Party, ...] = (),
        nonce: int | None = None,
    ) -> bytes:
        """Return a signed transaction entry with the next shared nonce unless one is given."""
        if nonce is None:
            nonce = next(_NONCES)
        keys = [self.key, *(c.key for c in cosigners)]
        return tx_entry(make_tx(keys, nonce, contract, action, args, time_s))


class Board(ChainDevice):
    """A device: key SHA-256("board <name>"), its hash chain from seq 1, every record signed."""

    def __init__(self, name: str) -> None:
        super().__init__(name, tag=b"board ", seq=1)
        self.id = self.device_id.hex()

    def enrollment(self) -> bytes:
        """Return the enrollment entry of this board."""
        return bytes((0x04,)) + encode_enrollment(self.device_id, self.public_key, {"board": "t"})

    def record(
        self,
        time_s: int,
        values: list[tuple[int, int, int | bytes]],
        kind: int = wire.READING,
        synced: bool = True,
    ) -> bytes:
        """Return the next signed record as a ledger entry (kind 0x01 || record bytes)."""
        raw = self.emit(kind, values, time_s=time_s, flags=wire.TIME_SYNCED if synced else 0)
        wire.decode_record(raw)  # the helper must only build valid records
        return bytes((KIND_DEVICE_RECORD,)) + raw


class Log:
    """An in-memory log driven through the engine; emitted events are appended like the gateway."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine()
        self.entries: list[bytes] = []
        self.state = self.engine.initial_state()
        self.events: list[dict[str, Any]] = []

    def add(self, entry: bytes) -> list[dict[str, Any]]:
        """Apply entry at the next index, append its events to the log; return them decoded."""
        index = len(self.entries)
        self.entries.append(entry)
        self.state, events = self.engine.apply(self.state, index, entry)
        self.entries.extend(events)
        decoded = [decode_event(e) for e in events]
        self.events.extend(decoded)
        return decoded

    def ok(self, entry: bytes) -> list[dict[str, Any]]:
        """Apply entry and assert it was not rejected; return its events."""
        events = self.add(entry)
        for e in events:
            assert e["type"] not in ("rejected",), e["data"]
        return events

    def reject(self, entry: bytes) -> str:
        """Apply entry, assert the state is unchanged, return the rejection "code: message"."""
        before = self.state
        before_hash = state_hash(before)
        events = self.add(entry)
        assert self.state is before
        assert state_hash(before) == before_hash
        rejected = [e for e in events if e["type"] == "rejected"]
        assert len(rejected) == 1, events
        return f"{rejected[0]['data']['code']}: {rejected[0]['data']['message']}"

    def data(self, contract: str) -> dict[str, Any]:
        """Return the contract's data in the current state."""
        return self.state["contracts"][contract]["data"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Return every event of type kind emitted so far."""
        return [e for e in self.events if e["type"] == kind]


def setup(log: Log, roles: dict[str, tuple[Party, list[str]]], time_s: int = T0) -> Party:
    """Register an operator and the given parties (name -> (party, roles)); return the operator."""
    op = Party("operator")
    known = log.state["participants"]
    if op.pk not in known:
        log.ok(op.tx("engine", "register", {"public_key": op.pk, "name": "op", "roles": ["operator"]}, time_s))  # fmt: skip
    for name, (party, rs) in roles.items():
        if party.pk not in log.state["participants"]:
            log.ok(op.tx("engine", "register", {"public_key": party.pk, "name": name, "roles": rs}, time_s))  # fmt: skip
    return op


def enroll_and_bind(
    log: Log, owner: Party, contract: str, boards: list[Board], time_s: int
) -> None:
    """Enroll boards and bind them to contract, signed by the contract's owner."""
    for b in boards:
        log.ok(b.enrollment())
        log.ok(owner.tx("engine", "bind-device", {"contract": contract, "device": b.id}, time_s))


def next_nonce() -> int:
    """Return a fresh nonce from the shared counter."""
    return next(_NONCES)


class Machine:
    """Mixin of the stateful tests: apply an entry; a rejection must leave the state unchanged."""

    log: Log

    @invariant()
    def count_rule_step(self) -> None:
        """Count state-machine steps (an invariant runs once after init and after every rule)."""
        RULE_STEPS[type(self).__name__] = RULE_STEPS.get(type(self).__name__, 0) + 1

    def step(self, entry: bytes) -> tuple[list[dict[str, Any]], str | None]:
        """Return (events, "code: message" of a rejection or None) after applying entry."""
        STEPS["count"] += 1
        before = self.log.state
        before_hash = state_hash(before)
        events = self.log.add(entry)
        rejected = [e for e in events if e["type"] == "rejected"]
        if rejected:
            assert len(events) == 1
            assert self.log.state is before and state_hash(before) == before_hash
            return events, f"{rejected[0]['data']['code']}: {rejected[0]['data']['message']}"
        return events, None


RULE_STEPS: dict[str, int] = {}
# The issue asks for >= 10,000 stateful steps over the five contracts: 2,000 each, at least.
MIN_RULE_STEPS_PER_CONTRACT = 2000
MACHINE_SETTINGS = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def run_machine(machine_cls: type) -> int:
    """Run a contract's state machine; return its step count (asserted >= the per-contract floor)."""
    name = machine_cls.__name__
    before = RULE_STEPS.get(name, 0)
    run_state_machine_as_test(machine_cls, settings=MACHINE_SETTINGS)
    steps = RULE_STEPS.get(name, 0) - before
    assert steps >= MIN_RULE_STEPS_PER_CONTRACT, f"{name}: only {steps} stateful steps"
    return steps
