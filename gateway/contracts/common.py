"""The contract interface, its call context, events, and argument checks shared by the contracts.

A contract is a stateless object with pure methods. The engine hands each method a private deep
copy of the contract's data (a JSON-like dict), which the method may mutate; if the method raises
ContractError the engine drops the copy, so the old state is untouched (copy-on-write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ContractError
from gateway.wire import Record

Event = dict[str, Any]  # {"type": str, "causes": [int], "data": {...}} before the engine wraps it
Data = dict[str, Any]  # one contract instance's mutable data
Params = dict[str, Any]  # one contract instance's validated parameters (immutable by convention)


def clone(value: Any) -> Any:
    """Return a deep copy of a JSON-like value (dict, list, str, int, bool, None)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def ev(kind: str, causes: Sequence[int], **data: Any) -> Event:
    """Return a contract event of type kind naming the log indexes that caused it."""
    return {"type": kind, "causes": sorted(set(causes)), "data": data}


@dataclass(frozen=True)
class Ctx:
    """What a contract may know about the entry it handles; never the wall clock.

    clock_s is the contract's clock after this entry: the maximum time carried by every entry the
    contract has accepted (tx time_s, TIME_SYNCED record time_s). time_s is this entry's own time.
    """

    index: int
    clock_s: int
    time_s: int
    contract_id: str
    owner: str
    sender: str | None = None  # hex key of the tx sender; None for a device record
    cosigners: tuple[str, ...] = ()
    roles: Mapping[str, Sequence[str]] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # hex device ids bound to this contract

    def has_role(self, participant: str, role: str) -> bool:
        """Return True if the registered participant holds role."""
        return role in self.roles.get(participant, ())

    def is_registered(self, participant: str) -> bool:
        """Return True if participant is a registered participant."""
        return participant in self.roles

    def require_role(self, role: str) -> str:
        """Return the sender's key if the sender holds role; raise ContractError("role-required")."""
        if self.sender is None or not self.has_role(self.sender, role):
            raise ContractError("role-required", f"this action needs the role {role}")
        return self.sender

    def require_sender(self, participant: str, code: str, message: str) -> str:
        """Return the sender's key if it is participant; raise ContractError(code, message)."""
        if self.sender != participant:
            raise ContractError(code, message)
        return participant


@dataclass(frozen=True)
class View:
    """A read-only view of a contract instance: GET /v1/contracts/{contract_id}/{path}.

    path: below the instance, with {name} segments (passed to the method as strings);
    summary: one line for the API's schema; patterns: (segment name, regex) pairs the API
    enforces on those segments (400 otherwise). Either method names the contract's method
    `method(contract_id, inst, **segments) -> dict` (inst: the instance from the state: type,
    owner, params, data, clock_s, ...), or event_types makes the view a page of the instance's
    contract events of those types (cursors since/limit, as GET /v1/contract-events).
    """

    path: str
    summary: str
    method: str = ""
    event_types: frozenset[str] = frozenset()
    patterns: tuple[tuple[str, str], ...] = ()


class Contract:
    """Base of the five contracts: every hook is pure apart from mutating its own data copy."""

    TYPE = ""
    CREATOR_ROLE = ""  # role a participant needs to create an instance ("" = any participant)
    # action name -> name of the method handling it: method(data, params, ctx, args) -> events
    ACTIONS: dict[str, str] = {}
    # the read views the API serves for instances of this type (mounted from the registry)
    VIEWS: tuple[View, ...] = ()

    def validate_params(self, params: dict[str, Any], ctx: Ctx) -> Params:
        """Return the normalised parameters; raise ContractError("bad-params") if invalid."""
        raise NotImplementedError

    def init(self, params: Params, ctx: Ctx) -> Data:
        """Return the initial data of a new instance."""
        raise NotImplementedError

    def advance(self, data: Data, params: Params, ctx: Ctx) -> list[Event]:
        """Return the events of time reaching ctx.clock_s (deadlines, gaps); mutates data.

        Called before every entry the contract handles and for "tick" transactions.
        """
        return []

    def on_tx(
        self, data: Data, params: Params, ctx: Ctx, action: str, args: dict[str, Any]
    ) -> list[Event]:
        """Return the events of a participant transaction; raise ContractError to reject it.

        Dispatches to the method ACTIONS names; an action it does not name is "unknown-action".
        """
        method = self.ACTIONS.get(action)
        if method is None:
            raise ContractError("unknown-action", f"{self.TYPE} has no action {action!r}")
        return getattr(self, method)(data, params, ctx, args)

    def on_record(self, data: Data, params: Params, ctx: Ctx, record: Record) -> list[Event]:
        """Return the events of a TIME_SYNCED device record from a device bound to the contract."""
        return []

    def on_bind(self, data: Data, params: Params, ctx: Ctx, device: str) -> list[Event]:
        """Return the events of binding device (hex id) to this contract; may reject it."""
        return []

    def on_unbind(self, data: Data, params: Params, ctx: Ctx, device: str) -> list[Event]:
        """Return the events of unbinding device (hex id) from this contract; may reject it."""
        return []


# ---- argument checks: every failure is ContractError(code, "<name>: <rule>") with a stable text


def check_keys(
    args: Mapping[str, Any],
    required: Sequence[str],
    optional: Sequence[str] = (),
    code: str = "bad-args",
) -> None:
    """Return None if args has every required key and no key outside required + optional."""
    for key in required:
        if key not in args:
            raise ContractError(code, f"{key}: required")
    allowed = set(required) | set(optional)
    for key in sorted(args):
        if key not in allowed:
            raise ContractError(code, f"{key}: unexpected argument")


def get_int(
    args: Mapping[str, Any],
    key: str,
    lo: int | None = None,
    hi: int | None = None,
    code: str = "bad-args",
) -> int:
    """Return args[key] if it is an integer in [lo, hi]; raise ContractError(code) otherwise."""
    value = args.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContractError(code, f"{key}: must be an integer")
    if lo is not None and value < lo:
        raise ContractError(code, f"{key}: must be >= {lo}")
    if hi is not None and value > hi:
        raise ContractError(code, f"{key}: must be <= {hi}")
    return value


def get_opt_int(
    params: Mapping[str, Any], key: str, default: int, lo: int, hi: int, code: str = "bad-params"
) -> int:
    """Return params[key] (an integer in [lo, hi]) or default when the key is absent."""
    if key not in params:
        return default
    return get_int(params, key, lo, hi, code)


def get_str(args: Mapping[str, Any], key: str, max_len: int = 64, code: str = "bad-args") -> str:
    """Return args[key] if it is a non-empty string of at most max_len characters."""
    value = args.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise ContractError(code, f"{key}: must be a string of 1..{max_len} characters")
    return value


def _is_hex(value: Any, n_chars: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == n_chars
        and all(c in "0123456789abcdef" for c in value)
    )


def get_key(args: Mapping[str, Any], key: str, code: str = "bad-args") -> str:
    """Return args[key] if it is a hex Ed25519 public key (64 lowercase hex digits)."""
    value = args.get(key)
    if not _is_hex(value, 64):
        raise ContractError(code, f"{key}: must be 64 lowercase hex digits")
    assert isinstance(value, str)
    return value


def get_hex(args: Mapping[str, Any], key: str, n_bytes: int, code: str = "bad-args") -> str:
    """Return args[key] if it is n_bytes of lowercase hex (device ids: 16, commitments: 16)."""
    value = args.get(key)
    if not _is_hex(value, 2 * n_bytes):
        raise ContractError(code, f"{key}: must be {2 * n_bytes} lowercase hex digits")
    assert isinstance(value, str)
    return value


def get_list(
    args: Mapping[str, Any], key: str, min_len: int = 0, max_len: int = 64, code: str = "bad-args"
) -> list[Any]:
    """Return args[key] if it is a list of min_len..max_len items."""
    value = args.get(key)
    if not isinstance(value, list) or not min_len <= len(value) <= max_len:
        raise ContractError(code, f"{key}: must be a list of {min_len}..{max_len} items")
    return value


def require_registered(ctx: Ctx, participant: str, name: str) -> str:
    """Return participant if registered; raise ContractError("unknown-participant")."""
    if not ctx.is_registered(participant):
        raise ContractError("unknown-participant", f"{name}: is not a registered participant")
    return participant


def transfer(
    positions: dict[str, int], debit: str, credit: str, amount_minor: int
) -> dict[str, Any]:
    """Return a transfer record after moving amount_minor from debit to credit in positions.

    positions holds net money positions in minor units; every transfer keeps their sum at zero.
    Precondition: amount_minor >= 0.
    """
    positions[debit] = positions.get(debit, 0) - amount_minor
    positions[credit] = positions.get(credit, 0) + amount_minor
    return {"from": debit, "to": credit, "amount_minor": amount_minor}
