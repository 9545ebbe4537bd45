"""RFC 9162 Merkle tree hashing, proof generation and verification, independent of any store.

Anyone can check edgeseal proofs with this module alone (it imports only hashlib and
gateway.errors). Vocabulary:

- ``leaf_hash(entry)``: SHA-256(0x00 || entry)                     (RFC 9162 2.1.1)
- ``node_hash(left, right)``: SHA-256(0x01 || left || right)        (RFC 9162 2.1.1)
- a *node* ``(level, index)`` is the root of the complete subtree over the leaves
  ``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are leaf hashes.
- ``size`` is a number of leaves, ``index`` a leaf position counting from 0.

Proof generation takes a ``node_at(level, index) -> bytes`` callable, so any storage of
complete-subtree hashes (tiles, a dict, a list of leaf hashes) can produce proofs; it never
needs more than O(log size) node reads. Verification raises ``ProofError`` (codes
"bad-range", "bad-proof", "root-mismatch") and never returns a boolean, so a forgotten
check cannot pass silently.

Consistency from size 0. RFC 9162 2.1.4 defines a consistency proof PROOF(m, D[n]) for
0 < m <= n only. Like transparency-dev/merkle (proof.Consistency and VerifyConsistency:
"consistency proof from empty tree is meaningless") and Go's golang.org/x/mod/sumdb/tlog
(ProveTree, CheckTree: old size >= 1), ``prove_consistency`` and ``verify_consistency``
refuse size1 == 0 with ProofError("bad-range"), whatever size2 and the roots are: a verifier
that accepted (0, n, [], root1, root2) would accept any root1, the forged empty tree
included. (transparency-dev's verifier alone still accepts (0, 0, [], X, X) for any X; we
refuse it too, so prove and verify agree on every input.) Whether a tree extends the empty
tree is not a proof but a comparison: ``verify_extends`` accepts size1 == 0 only with an
empty proof and root1 == MTH({}) = SHA-256() (RFC 9162 2.1.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from gateway.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) (RFC 9162 2.1.1)

NodeSource = Callable[[int, int], bytes]
Range = tuple[int, int]

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """Return SHA-256(0x00 || entry), the hash of a leaf holding `entry` (RFC 9162 2.1.1)."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), an interior node hash (RFC 9162 2.1.1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two k with k < n; requires n > 1 (RFC 9162 2.1.1)."""
    if n < 2:
        raise ValueError(f"largest_power_of_two_below needs n > 1, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def subtree_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """Return the complete subtrees (level, index), left to right, that make up [start, end).

    Precondition: 0 <= start < end and start is a multiple of the smallest power of two
    >= end - start (true of every range in an RFC 9162 proof and of [0, size)). Then
    MTH(D[start:end]) is the right fold of node_hash over these nodes (RFC 9162 2.1.1).
    """
    width = end - start
    if start < 0 or width <= 0 or start & ((1 << (width - 1).bit_length()) - 1):
        raise ValueError(f"range [{start}, {end}) is not aligned as RFC 9162 proofs need")
    nodes: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, node_at: NodeSource) -> bytes:
    """Return MTH(D[start:end]) from stored complete-subtree hashes (RFC 9162 2.1.1).

    Preconditions as for subtree_nodes; reads popcount(end - start) nodes.
    """
    nodes = subtree_nodes(start, end)
    level, index = nodes[-1]
    h = node_at(level, index)
    for level, index in reversed(nodes[:-1]):
        h = _sha256(NODE_PREFIX + node_at(level, index) + h).digest()
    return h


def root(size: int, node_at: NodeSource) -> bytes:
    """Return the root hash MTH(D[0:size]) of the tree of `size` leaves (RFC 9162 2.1.1)."""
    if size < 0:
        raise ProofError("bad-range", f"tree size {size} is negative")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(0, size, node_at)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """Return the leaf ranges whose MTHs form PATH(index, D[0:size]), leaf end first.

    RFC 9162 2.1.3.1, unrolled: the first range is the sibling of the leaf, the last one
    the sibling of the top-level subtree that holds it. Requires 0 <= index < size.
    """
    if not 0 <= index < size:
        raise ProofError("bad-range", f"index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _check_consistency_sizes(size1: int, size2: int) -> None:
    """Raise ProofError("bad-range") unless 1 <= size1 <= size2.

    RFC 9162 2.1.4 defines PROOF(m, D[n]) for 0 < m <= n only; there is no consistency proof
    from the empty tree (module doc, "Consistency from size 0").
    """
    if size1 == 0 and size2 >= 0:
        raise ProofError(
            "bad-range",
            f"no consistency proof from the empty tree (size 0) to size {size2}: every tree "
            "extends it; check the old root is MTH({}) instead (verify_extends)",
        )
    if not 1 <= size1 <= size2:
        raise ProofError("bad-range", f"no consistency proof from size {size1} to {size2}")


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """Return the leaf ranges whose MTHs form PROOF(size1, D[0:size2]) (RFC 9162 2.1.4.1).

    Requires 1 <= size1 <= size2, else ProofError("bad-range"). Empty when size1 == size2.
    """
    _check_consistency_sizes(size1, size2)
    if size1 == size2:
        return []
    ranges: list[Range] = []
    start, end, m, complete = 0, size2, size1, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = largest_power_of_two_below(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    ranges.reverse()
    return ranges


def prove_inclusion(index: int, size: int, node_at: NodeSource) -> list[bytes]:
    """Return the inclusion proof of leaf `index` in the tree of `size` leaves.

    RFC 9162 2.1.3.1. Requires 0 <= index < size and node_at to serve every complete
    subtree of that tree. Raises ProofError("bad-range") otherwise.
    """
    return [range_hash(a, b, node_at) for a, b in inclusion_ranges(index, size)]


def prove_consistency(size1: int, size2: int, node_at: NodeSource) -> list[bytes]:
    """Return the consistency proof between tree sizes size1 and size2 (RFC 9162 2.1.4.1).

    Requires 1 <= size1 <= size2 (ProofError("bad-range") otherwise, size1 == 0 included, as
    transparency-dev/merkle's proof.Consistency); the proof is empty when size1 == size2.
    """
    return [range_hash(a, b, node_at) for a, b in consistency_ranges(size1, size2)]


def _check_hashes(proof: Sequence[bytes]) -> None:
    """Raise ProofError("bad-proof") unless every element of `proof` is a 32-byte hash."""
    for i, h in enumerate(proof):
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise ProofError("bad-proof", f"proof element {i} is not a {HASH_SIZE}-byte hash")


def _check_roots(root1: bytes, root2: bytes) -> None:
    """Raise ProofError("bad-proof") unless root1 and root2 are 32-byte hashes."""
    for name, h in (("root1", root1), ("root2", root2)):
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise ProofError("bad-proof", f"{name} is not a {HASH_SIZE}-byte hash")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root implied by an inclusion proof for leaf hash `leaf` (RFC 9162 2.1.3.2).

    Raises ProofError("bad-range") unless 0 <= index < size and ("bad-proof") if the proof
    has the wrong number or shape of hashes for that index and size.
    """
    if not 0 <= index < size:
        raise ProofError("bad-range", f"index {index} is not in a tree of size {size}")
    if not isinstance(leaf, bytes | bytearray) or len(leaf) != HASH_SIZE:
        raise ProofError("bad-proof", f"leaf hash is not {HASH_SIZE} bytes")
    _check_hashes(proof)
    fn, sn = index, size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("bad-proof", "inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("bad-proof", "inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Return None if `proof` shows leaf hash `leaf` at `index` in the tree (size, root_hash).

    RFC 9162 2.1.3.2. Raises ProofError ("bad-range", "bad-proof" or "root-mismatch").
    """
    if root_from_inclusion_proof(leaf, index, size, proof) != root_hash:
        raise ProofError(
            "root-mismatch", f"inclusion proof for index {index} does not lead to the root"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Return None if `proof` shows the tree (size1, root1) is a prefix of (size2, root2).

    RFC 9162 2.1.4.2. Requires 1 <= size1 <= size2: size1 == 0 raises ProofError("bad-range")
    whatever the roots (module doc, "Consistency from size 0"; use verify_extends when the old
    tree may be empty). size1 == size2 needs an empty proof and equal roots. Raises ProofError
    ("bad-range", "bad-proof" or "root-mismatch") otherwise.
    """
    _check_consistency_sizes(size1, size2)
    _check_hashes(proof)
    _check_roots(root1, root2)
    if size1 == size2:
        if proof:
            raise ProofError("bad-proof", "equal sizes need an empty consistency proof")
        if root1 != root2:
            raise ProofError("root-mismatch", "equal sizes with different roots")
        return
    if not proof:
        raise ProofError("bad-proof", "empty consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: the proof omits root1
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("bad-proof", "consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("bad-proof", "consistency proof is too short")
    if fr != root1:
        raise ProofError(
            "root-mismatch", f"consistency proof does not lead to the size-{size1} root"
        )
    if sr != root2:
        raise ProofError(
            "root-mismatch", f"consistency proof does not lead to the size-{size2} root"
        )


def verify_extends(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Return None if the tree (size2, root2) extends the tree (size1, root1), the old one
    possibly empty; raise ProofError ("bad-range", "bad-proof" or "root-mismatch") otherwise.

    For size1 >= 1 this is verify_consistency (RFC 9162 2.1.4.2). Every tree extends the
    empty tree, so for size1 == 0 there is nothing to prove: the proof must be empty and root1
    must be MTH({}) = SHA-256() (RFC 9162 2.1.1), and root2 too when size2 == 0. This is the
    check of a checkpoint of size 0 that a peer's verify_consistency refuses outright.
    """
    if size1 != 0:
        verify_consistency(size1, size2, proof, root1, root2)
        return
    if size2 < 0:
        raise ProofError("bad-range", f"no tree of size {size2}")
    _check_hashes(proof)
    _check_roots(root1, root2)
    if proof:
        raise ProofError("bad-proof", "the empty tree needs no proof: the proof must be empty")
    if root1 != EMPTY_ROOT:
        raise ProofError("root-mismatch", "the size-0 root is not MTH({}) = SHA-256()")
    if size2 == 0 and root2 != EMPTY_ROOT:
        raise ProofError("root-mismatch", "the size-0 root is not MTH({}) = SHA-256()")
