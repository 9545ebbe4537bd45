"""Test logs for anchoring: an in-memory RFC 9162 tree of numbered leaves, with proofs."""

from __future__ import annotations

from functools import cache

from gateway.anchor.chain import Head
from gateway.ledger import merkle


@cache
def _node(level: int, index: int) -> bytes:
    """Return the hash of node (level, index) of the tree whose leaf i holds b"entry <i>"."""
    if level == 0:
        return merkle.leaf_hash(b"entry %d" % index)
    return merkle.node_hash(_node(level - 1, 2 * index), _node(level - 1, 2 * index + 1))


def root(size: int) -> bytes:
    """Return MTH of the first `size` leaves (RFC 9162 2.1.1)."""
    return merkle.root(size, _node)


def head(size: int, state: bytes = bytes(32)) -> Head:
    """Return the Head of the first `size` leaves with state hash `state`."""
    return Head(size, root(size), state)


def proof(size1: int, size2: int) -> list[bytes]:
    """Return the RFC 9162 2.1.4 consistency proof from size1 to size2 (empty for size1 0)."""
    return merkle.prove_consistency(size1, size2, _node) if size1 else []
