"""The contract engine: a pure, deterministic function from log entries to contract state and events.

docs/contracts.md is the specification. `Engine.apply(state, index, entry)` returns the new state
and the contract events (KIND_CONTRACT_EVENT entry bytes) the gateway appends to the log; it never
mutates its input state. `Engine.replay(entries)` folds apply over a log; `state_hash(state)` is
what goes into the checkpoint extension line. Event entries in the log are outputs: apply ignores
them as input, and `Engine.audit` checks that they are exactly what the engine emits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.contracts import agri, collateral, energy, fishfarm, parking
from gateway.contracts.common import (
    Contract,
    Ctx,
    Event,
    check_keys,
    clone,
    get_hex,
    get_key,
    get_list,
    get_str,
)
from gateway.contracts.tx import Tx, canonical_json, decode_tx, parse_canonical
from gateway.errors import ContractError, WireError
from gateway.ledger.entries import (
    KIND_CONTRACT_EVENT,
    KIND_DEVICE_ENROLLMENT,
    KIND_DEVICE_RECORD,
    KIND_PARTICIPANT_TX,
    decode_enrollment,
    decode_entry,
)
from gateway.wire import CHAIN_SEGMENT, decode_record

State = dict[str, Any]

ENGINE_ID = "engine"  # contract id of the engine's own actions (register, create, bind, ...)
STATE_VERSION = 1
EVENT_VERSION = 1
STATE_DOMAIN = b"edgeseal/v1/state\n"
EXTENSION_PREFIX = "edgeseal-state"
# why: a rejected transaction leaves no trace in state (its nonce is not consumed), so the same
# bytes could be re-sent later; a tx older than this against the contract clock is refused, which
# bounds that replay window to the admission layer's clock-skew tolerance.
TX_MAX_AGE_S = 600
ROLES = frozenset(
    {
        "operator",  # runs the gateway; registers participants; may tick any contract
        "grower",
        "processor",
        "carrier",
        "warehouse",
        "retailer",
        "certifier",
        "farmer",
        "lender",
        "insurer",
        "buyer",
        "borrower",
        "custodian",
        "prosumer",
        "market_operator",
        "grid_operator",
        "parking_operator",
        "driver",
    }
)
_CONTRACT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_NAME_MAX = 64

DEFAULT_CONTRACTS: dict[str, Contract] = {
    c.TYPE: c
    for c in (
        agri.AgriTracing(),
        fishfarm.FishFarmFinance(),
        collateral.ChattelMortgage(),
        energy.EnergyMarket(),
        parking.Parking(),
    )
}


def state_bytes(state: State) -> bytes:
    """Return the canonical serialisation of state: canonical JSON (docs/contracts.md)."""
    return canonical_json(state)


def state_hash(state: State) -> bytes:
    """Return SHA-256(STATE_DOMAIN || canonical state bytes): 32 bytes."""
    return hashlib.sha256(STATE_DOMAIN + state_bytes(state)).digest()


def extension_line(state: State) -> str:
    """Return the checkpoint extension line "edgeseal-state <hex state hash>"."""
    return f"{EXTENSION_PREFIX} {state_hash(state).hex()}"


def encode_event(contract_id: str, event: Event) -> bytes:
    """Return the KIND_CONTRACT_EVENT entry bytes (kind byte || canonical JSON) of event."""
    payload = canonical_json(
        {
            "v": EVENT_VERSION,
            "contract": contract_id,
            "type": event["type"],
            "causes": sorted(set(event["causes"])),
            "data": event["data"],
        }
    )
    return bytes((KIND_CONTRACT_EVENT,)) + payload


def decode_event(entry: bytes) -> dict[str, Any]:
    """Return the decoded event of a KIND_CONTRACT_EVENT entry; raise ContractError if malformed."""
    if not entry or entry[0] != KIND_CONTRACT_EVENT:
        raise ContractError("event-malformed", "not a contract event entry")
    value = parse_canonical(bytes(entry[1:]))
    if not isinstance(value, dict) or set(value) != {"v", "contract", "type", "causes", "data"}:
        raise ContractError(
            "event-malformed", "event fields are not v, contract, type, causes, data"
        )
    return value


def rejection(events: Iterable[bytes]) -> dict[str, Any] | None:
    """Return the data of the first "rejected" event among events ({code, message, ...}) or None."""
    for entry in events:
        value = decode_event(entry)
        if value["type"] in ("rejected", "record-rejected"):
            return value["data"]
    return None


def _reject(contract_id: str, index: int, err: ContractError | WireError, **data: Any) -> bytes:
    return encode_event(
        contract_id,
        {
            "type": "rejected",
            "causes": [index],
            "data": {"code": err.code, "message": err.message, **data},
        },
    )


class Engine:
    """Runs the contracts over log entries; holds no state of its own (state is passed in)."""

    def __init__(self, contracts: Mapping[str, Contract] | None = None) -> None:
        """Use the given contract types (type name -> Contract), default the five use cases."""
        self.contracts: dict[str, Contract] = dict(
            DEFAULT_CONTRACTS if contracts is None else contracts
        )

    # ---- state ---------------------------------------------------------------------------

    @staticmethod
    def initial_state() -> State:
        """Return the state of the empty log."""
        return {
            "v": STATE_VERSION,
            "participants": {},
            "nonces": {},
            "devices": {},
            "contracts": {},
        }

    def replay(self, entries: Iterable[tuple[int, bytes]], state: State | None = None) -> State:
        """Return the state after applying entries (index, entry bytes) in order to state.

        Precondition: indexes strictly increase and continue the log that produced state.
        """
        st = self.initial_state() if state is None else state
        for index, entry in entries:
            st, _ = self.apply(st, index, entry)
        return st

    def audit(
        self,
        entries: Iterable[tuple[int, bytes]],
        observe: Callable[[int, State], None] | None = None,
    ) -> tuple[State, list[bytes]]:
        """Return (state, events not yet in the log) after checking the log's event entries.

        Replays entries from the empty log. Every KIND_CONTRACT_EVENT entry must be, in order,
        the next event the engine emitted, and appear after all of its causes; otherwise
        ContractError("event-mismatch"). The returned list holds emitted events still pending.
        observe(size, state), if given, sees the state of every prefix of `size` entries (a
        checkpoint's state extension line describes one of them).
        """
        st = self.initial_state()
        pending: list[tuple[int, bytes]] = []  # (index of the emitting entry, event entry)
        size = 0
        for index, entry in entries:
            if observe is not None:
                observe(index, st)
            size = index + 1
            if entry[:1] == bytes((KIND_CONTRACT_EVENT,)):
                if not pending:
                    raise ContractError("event-mismatch", f"entry {index}: event nobody emitted")
                _, expected = pending.pop(0)
                if bytes(entry) != expected:
                    raise ContractError("event-mismatch", f"entry {index}: not the expected event")
                continue
            st, events = self.apply(st, index, entry)
            pending.extend((index, e) for e in events)
        if observe is not None:
            observe(size, st)
        return st, [e for _, e in pending]

    # ---- apply ---------------------------------------------------------------------------

    def apply(self, state: State, index: int, entry: bytes) -> tuple[State, list[bytes]]:
        """Return (new state, event entries) for the log entry at index; state is not mutated.

        Never raises for bad input: a rejected entry yields the unchanged state object and a
        "rejected" event naming index (docs/contracts.md, Rejections).
        """
        try:
            kind, payload = decode_entry(entry)
        except WireError as err:
            return state, [_reject(ENGINE_ID, index, err)]
        if kind == KIND_CONTRACT_EVENT:
            return state, []  # outputs are never inputs (docs/contracts.md, Replay rule)
        if kind == KIND_DEVICE_ENROLLMENT:
            return self._apply_enrollment(state, index, payload)
        if kind == KIND_DEVICE_RECORD:
            return self._apply_record(state, index, payload)
        assert kind == KIND_PARTICIPANT_TX
        try:
            tx = decode_tx(payload)
        except ContractError as err:
            return state, [_reject(ENGINE_ID, index, err)]
        try:
            return self._apply_tx(state, index, tx)
        except ContractError as err:
            target = tx.contract if tx.contract in state["contracts"] else ENGINE_ID
            return state, [_reject(target, index, err, tx_hash=tx.tx_hash)]

    def _apply_enrollment(
        self, state: State, index: int, payload: bytes
    ) -> tuple[State, list[bytes]]:
        try:
            enrollment = decode_enrollment(payload)
        except WireError as err:
            return state, [_reject(ENGINE_ID, index, err)]
        device = enrollment.device_id.hex()
        old = state["devices"].get(device, {"contracts": []})
        devices = dict(state["devices"])
        devices[device] = {
            "public_key": enrollment.public_key.hex(),
            "contracts": list(old["contracts"]),
            "enrolled_at": index,
        }
        return {**state, "devices": devices}, []

    def _apply_record(self, state: State, index: int, payload: bytes) -> tuple[State, list[bytes]]:
        try:
            record = decode_record(payload)
        except WireError as err:
            return state, [_reject(ENGINE_ID, index, err)]
        device = record.device_id.hex()
        info = state["devices"].get(device)
        if (
            info is None
            or not info["contracts"]
            or not record.time_synced
            or record.kind == CHAIN_SEGMENT
        ):
            # Unenrolled or unbound devices concern no contract; a record without Unix time
            # cannot be placed on a contract's clock (docs/contracts.md, Time); a chain_segment
            # only says records were lost: no reading, the gap stays absence of data.
            return state, []
        contracts = state["contracts"]
        new_contracts: dict[str, Any] | None = None
        out: list[bytes] = []
        for cid in sorted(info["contracts"]):
            inst = contracts[cid]
            impl = self.contracts[inst["type"]]
            clock_s = max(inst["clock_s"], record.time_s)
            ctx = self._ctx(state, inst, cid, index, clock_s, record.time_s, None, ())
            data = clone(inst["data"])
            try:
                events = impl.advance(data, inst["params"], ctx)
                events += impl.on_record(data, inst["params"], ctx, record)
            except ContractError as err:
                out.append(_reject(cid, index, err, device=device))
                continue
            if new_contracts is None:
                new_contracts = dict(contracts)
            new_contracts[cid] = {**inst, "data": data, "clock_s": clock_s}
            out.extend(encode_event(cid, e) for e in events)
        if new_contracts is None:
            return state, out
        return {**state, "contracts": new_contracts}, out

    @staticmethod
    def _ctx(
        state: State,
        inst: dict[str, Any],
        cid: str,
        index: int,
        clock_s: int,
        time_s: int,
        sender: str | None,
        cosigners: tuple[str, ...],
    ) -> Ctx:
        roles = {pk: tuple(p["roles"]) for pk, p in state["participants"].items()}
        return Ctx(
            index=index,
            clock_s=clock_s,
            time_s=time_s,
            contract_id=cid,
            owner=inst["owner"],
            sender=sender,
            cosigners=cosigners,
            roles=roles,
            devices=tuple(sorted(inst["devices"])),
        )

    def _apply_tx(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        participants = state["participants"]
        bootstrap = not participants and tx.contract == ENGINE_ID and tx.action == "register"
        for signer in tx.signers:
            if signer not in participants and not bootstrap:
                raise ContractError("unknown-participant", f"{signer[:16]}... is not registered")
        last = state["nonces"].get(tx.participant)
        if last is not None and tx.nonce <= last:
            raise ContractError("tx-replayed-nonce", f"nonce {tx.nonce} is not above {last}")
        nonces = {**state["nonces"], tx.participant: tx.nonce}
        if tx.contract == ENGINE_ID:
            new_state, events = self._engine_action(state, index, tx)
            return {**new_state, "nonces": nonces}, events
        inst = state["contracts"].get(tx.contract)
        if inst is None:
            raise ContractError("unknown-contract", f"no contract {tx.contract!r}")
        if tx.time_s + TX_MAX_AGE_S < inst["clock_s"]:
            raise ContractError(
                "tx-expired", f"time_s {tx.time_s} is over {TX_MAX_AGE_S} s behind the contract"
            )
        impl = self.contracts[inst["type"]]
        clock_s = max(inst["clock_s"], tx.time_s)
        ctx = self._ctx(
            state, inst, tx.contract, index, clock_s, tx.time_s, tx.participant, tx.cosigners
        )
        data = clone(inst["data"])
        events = impl.advance(data, inst["params"], ctx)
        if tx.action == "tick":
            check_keys(tx.args, ())
            if tx.participant != inst["owner"] and not ctx.has_role(tx.participant, "operator"):
                raise ContractError("tick-not-allowed", "only the owner or an operator may tick")
        else:
            events += impl.on_tx(data, inst["params"], ctx, tx.action, tx.args)
        contracts = {**state["contracts"], tx.contract: {**inst, "data": data, "clock_s": clock_s}}
        out = [encode_event(tx.contract, e) for e in events]
        return {**state, "contracts": contracts, "nonces": nonces}, out

    # ---- the engine's own actions ----------------------------------------------------------

    def _engine_action(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        handler = {
            "register": self._register,
            "set-roles": self._set_roles,
            "create": self._create,
            "bind-device": self._bind,
            "unbind-device": self._unbind,
        }.get(tx.action)
        if handler is None:
            raise ContractError("unknown-action", f"engine has no action {tx.action!r}")
        return handler(state, index, tx)

    @staticmethod
    def _roles(args: Mapping[str, Any]) -> list[str]:
        roles = get_list(args, "roles", 1, len(ROLES))
        for role in roles:
            if role not in ROLES:
                raise ContractError("bad-role", f"unknown role {role!r}")
        if len(set(roles)) != len(roles):
            raise ContractError("bad-role", "roles must be distinct")
        return sorted(roles)

    def _register(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        check_keys(tx.args, ("public_key", "name", "roles"))
        key = get_key(tx.args, "public_key")
        name = get_str(tx.args, "name", _NAME_MAX)
        roles = self._roles(tx.args)
        participants = state["participants"]
        if not participants:
            if key != tx.participant or "operator" not in roles:
                raise ContractError(
                    "bootstrap-needs-operator",
                    "the first participant registers itself with the operator role",
                )
        elif "operator" not in participants[tx.participant]["roles"]:
            raise ContractError("not-operator", "only an operator registers participants")
        if key in participants:
            raise ContractError("participant-exists", "participant is already registered")
        new = {**participants, key: {"name": name, "roles": roles, "registered_at": index}}
        event = {
            "type": "participant-registered",
            "causes": [index],
            "data": {"participant": key, "roles": roles},
        }
        return {**state, "participants": new}, [encode_event(ENGINE_ID, event)]

    def _set_roles(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        check_keys(tx.args, ("public_key", "roles"))
        key = get_key(tx.args, "public_key")
        roles = self._roles(tx.args)
        participants = state["participants"]
        if "operator" not in participants[tx.participant]["roles"]:
            raise ContractError("not-operator", "only an operator changes roles")
        if key not in participants:
            raise ContractError(
                "unknown-participant", "public_key: is not a registered participant"
            )
        new = {**participants, key: {**participants[key], "roles": roles}}
        event = {
            "type": "roles-changed",
            "causes": [index],
            "data": {"participant": key, "roles": roles},
        }
        return {**state, "participants": new}, [encode_event(ENGINE_ID, event)]

    def _create(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        check_keys(tx.args, ("id", "type", "params"))
        cid = get_str(tx.args, "id")
        ctype = get_str(tx.args, "type")
        params = tx.args["params"]
        if not _CONTRACT_ID.match(cid) or cid == ENGINE_ID:
            raise ContractError("bad-args", "id: must match [a-z0-9][a-z0-9._-]{0,63}, not engine")
        impl = self.contracts.get(ctype)
        if impl is None:
            raise ContractError("unknown-contract-type", f"no contract type {ctype!r}")
        if cid in state["contracts"]:
            raise ContractError("contract-exists", f"contract {cid!r} already exists")
        if not isinstance(params, dict):
            raise ContractError("bad-params", "params: must be an object")
        roles = state["participants"][tx.participant]["roles"]
        if impl.CREATOR_ROLE and impl.CREATOR_ROLE not in roles:
            raise ContractError(
                "role-required", f"creating {ctype} needs the role {impl.CREATOR_ROLE}"
            )
        stub = {"owner": tx.participant, "devices": []}
        ctx = self._ctx(state, stub, cid, index, tx.time_s, tx.time_s, tx.participant, tx.cosigners)
        checked = impl.validate_params(clone(params), ctx)
        data = impl.init(checked, ctx)
        inst = {
            "type": ctype,
            "owner": tx.participant,
            "params": checked,
            "clock_s": tx.time_s,
            "devices": [],
            "created_at": index,
            "data": data,
        }
        contracts = {**state["contracts"], cid: inst}
        event = {
            "type": "contract-created",
            "causes": [index],
            "data": {"type": ctype, "owner": tx.participant},
        }
        return {**state, "contracts": contracts}, [encode_event(cid, event)]

    def _binding(self, state: State, tx: Tx) -> tuple[str, dict[str, Any], str]:
        check_keys(tx.args, ("contract", "device"))
        cid = get_str(tx.args, "contract")
        device = get_hex(tx.args, "device", 16)
        inst = state["contracts"].get(cid)
        if inst is None:
            raise ContractError("unknown-contract", f"no contract {cid!r}")
        if inst["owner"] != tx.participant:
            raise ContractError("not-contract-owner", "only the contract's owner binds devices")
        if device not in state["devices"]:
            raise ContractError("device-not-enrolled", "device: is not enrolled in the log")
        return cid, inst, device

    def _bind(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        cid, inst, device = self._binding(state, tx)
        if device in inst["devices"]:
            raise ContractError("device-already-bound", "device: is already bound to the contract")
        return self._rebind(state, index, tx, cid, inst, device, bind=True)

    def _unbind(self, state: State, index: int, tx: Tx) -> tuple[State, list[bytes]]:
        cid, inst, device = self._binding(state, tx)
        if device not in inst["devices"]:
            raise ContractError("device-not-bound", "device: is not bound to the contract")
        return self._rebind(state, index, tx, cid, inst, device, bind=False)

    def _rebind(
        self,
        state: State,
        index: int,
        tx: Tx,
        cid: str,
        inst: dict[str, Any],
        device: str,
        bind: bool,
    ) -> tuple[State, list[bytes]]:
        impl = self.contracts[inst["type"]]
        clock_s = max(inst["clock_s"], tx.time_s)
        ctx = self._ctx(state, inst, cid, index, clock_s, tx.time_s, tx.participant, tx.cosigners)
        data = clone(inst["data"])
        events = impl.advance(data, inst["params"], ctx)
        if bind:
            events += impl.on_bind(data, inst["params"], ctx, device)
            devs = sorted([*inst["devices"], device])
        else:
            events += impl.on_unbind(data, inst["params"], ctx, device)
            devs = [d for d in inst["devices"] if d != device]
        info = state["devices"][device]
        bound = (
            sorted({*info["contracts"], cid})
            if bind
            else [c for c in info["contracts"] if c != cid]
        )
        devices = {**state["devices"], device: {**info, "contracts": bound}}
        new_inst = {**inst, "data": data, "clock_s": clock_s, "devices": devs}
        contracts = {**state["contracts"], cid: new_inst}
        kind = "device-bound" if bind else "device-unbound"
        events.append({"type": kind, "causes": [index], "data": {"device": device}})
        out = [encode_event(cid, e) for e in events]
        return {**state, "contracts": contracts, "devices": devices}, out
