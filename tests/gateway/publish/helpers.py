"""Test helpers for the witness: a real gateway Ledger as the log, and a witness around it."""

from __future__ import annotations

import base64
from pathlib import Path

from gateway.ledger.entries import KIND_PARTICIPANT_TX
from gateway.ledger.note import NoteSigner, create_signer, load_signer
from gateway.ledger.store import Ledger
from gateway.publish.cosignature import CosignatureSigner
from gateway.publish.witness_logs import load_logs
from gateway.publish.witness_service import WitnessService
from gateway.publish.witness_state import WitnessState

ORIGIN = "edgeseal.example/gateway/test-log"


class Log:
    """A real gateway ledger that grows on demand; checkpoints and proofs come from it."""

    def __init__(self, path: Path, signer: NoteSigner, tag: bytes = b"a") -> None:
        self.ledger = Ledger.open(str(path), signer, max_batch_entries=10**6)
        self.tag = tag

    def grow(self, count: int, tag: bytes | None = None) -> bytes:
        """Append `count` entries (payload tag-index), integrate, return the signed checkpoint."""
        start = self.ledger.tree_size
        prefix = self.tag if tag is None else tag
        self.ledger.append(
            [(KIND_PARTICIPANT_TX, prefix + b"-%d" % i) for i in range(start, start + count)]
        )
        return self.ledger.integrate()

    def proof(self, old: int, new: int) -> list[bytes]:
        """Return the RFC 9162 consistency proof from old to new (empty from 0)."""
        return [] if old == 0 else self.ledger.prove_consistency(old, new)

    def checkpoint_at(self, size: int) -> bytes:
        """Return the signed checkpoint the ledger stored for `size`."""
        return self.ledger.checkpoint_at(size)


def body(old: int, proof: list[bytes], note: bytes) -> bytes:
    """Return an add-checkpoint request body (C2SP tlog-witness)."""
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n".encode() + note


def write_logs(path: Path, *vkeys: str) -> Path:
    """Write a logs file with one `log <vkey>` line per key and a comment; return its path."""
    path.write_text("# logs this witness cosigns\n" + "".join(f"log {v}\n" for v in vkeys))
    return path


def make_witness(tmp: Path, log_vkey: str, name: str = "witness.example/w1") -> WitnessService:
    """Return a WitnessService with a fresh key file, a logs file of log_vkey, a data dir."""
    key = tmp / "witness.key"
    signer = load_signer(str(key)) if key.exists() else create_signer(str(key), origin=name)
    cosigner = CosignatureSigner(signer)
    logs = load_logs(str(write_logs(tmp / "logs.txt", log_vkey)))
    return WitnessService(cosigner, logs, WitnessState(str(tmp / "witness-data")))
