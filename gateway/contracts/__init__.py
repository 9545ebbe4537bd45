"""The contract engine and the five ISO/IEC TR 30176 use-case contracts (docs/contracts.md).

Modules: tx (participant transactions: canonical JSON, Ed25519, nonces), common (the contract
interface, argument checks, events), engine (Engine: apply, replay, state hash, event audit), and
one module per contract: agri, fishfarm, collateral, energy, parking.
"""

from gateway.contracts.engine import (
    ENGINE_ID,
    Engine,
    decode_event,
    extension_line,
    rejection,
    state_bytes,
    state_hash,
)
from gateway.contracts.tx import Tx, canonical_json, decode_tx, make_tx, tx_entry

__all__ = [
    "ENGINE_ID",
    "Engine",
    "Tx",
    "canonical_json",
    "decode_event",
    "decode_tx",
    "extension_line",
    "make_tx",
    "rejection",
    "state_bytes",
    "state_hash",
    "tx_entry",
]
