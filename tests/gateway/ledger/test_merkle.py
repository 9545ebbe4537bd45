"""gateway.ledger.merkle against the RFC 9162 reference, published vectors and corrupted proofs."""

import pytest

from gateway.errors import ProofError
from gateway.ledger import merkle
from tests.gateway.ledger import reference_merkle as ref

MAX_SIZE = 64
ENTRIES = [b"entry-%d" % i for i in range(MAX_SIZE)]
LEAVES = [ref.leaf(e) for e in ENTRIES]
ROOTS = {n: ref.mth(ENTRIES[:n]) for n in range(MAX_SIZE + 1)}

# RFC 6962 test vectors (the Certificate Transparency reference tree of 8 leaves).
CT_ENTRIES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION_5_8 = [
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
]
CT_CONSISTENCY_2_5 = [
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
]


def list_source(leaves):
    """Return node_at(level, index) computing complete subtrees from a list of leaf hashes."""

    def node_at(level, index):
        hashes = leaves[index << level : (index + 1) << level]
        assert len(hashes) == 1 << level, "asked for an incomplete subtree"
        while len(hashes) > 1:
            hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    return node_at


SOURCE = list_source(LEAVES)


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_hashes_match_rfc6962_vectors():
    leaves = [merkle.leaf_hash(e) for e in CT_ENTRIES]
    for n in range(len(CT_ENTRIES) + 1):
        assert merkle.root(n, list_source(leaves[:n])).hex() == CT_ROOTS[n]
    assert merkle.EMPTY_ROOT.hex() == CT_ROOTS[0]
    src = list_source(leaves)
    assert [h.hex() for h in merkle.prove_inclusion(5, 8, src)] == CT_INCLUSION_5_8
    assert [h.hex() for h in merkle.prove_consistency(2, 5, src)] == CT_CONSISTENCY_2_5
    merkle.verify_inclusion(
        leaves[5], 5, 8, merkle.prove_inclusion(5, 8, src), bytes.fromhex(CT_ROOTS[8])
    )


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_inclusion_proof_matches_reference_and_verifies(size):
    root = merkle.root(size, SOURCE)
    assert root == ROOTS[size]
    for index in range(size):
        proof = merkle.prove_inclusion(index, size, SOURCE)
        assert proof == ref.path(index, ENTRIES[:size])
        merkle.verify_inclusion(LEAVES[index], index, size, proof, root)


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_inclusion_bit_flips_wrong_sizes_and_indexes_are_rejected(size):
    root = ROOTS[size]
    for index in range(size):
        proof = merkle.prove_inclusion(index, size, SOURCE)
        leaf = LEAVES[index]
        for i, h in enumerate(proof):  # a bit flip in every proof hash
            bad = proof[:i] + [flip(h, (7 * i + index + size) % 256)] + proof[i + 1 :]
            with pytest.raises(ProofError):
                merkle.verify_inclusion(leaf, index, size, bad, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(flip(leaf, index % 256), index, size, proof, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, proof, flip(root, size % 256))
        # A wrong size fails against that size's root. (Against this size's root it can
        # pass: the size is bound by the signed checkpoint, not by the proof.)
        for wrong_size in {size - 1, size + 1, 2 * size, index, 0}:
            if wrong_size == size or wrong_size > MAX_SIZE:
                continue
            with pytest.raises(ProofError):
                merkle.verify_inclusion(leaf, index, wrong_size, proof, ROOTS[wrong_size])
        for wrong_index in {index - 1, index + 1, index ^ 1, size}:
            if wrong_index == index:
                continue
            with pytest.raises(ProofError):
                merkle.verify_inclusion(leaf, wrong_index, size, proof, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, proof + [root], root)
        if proof:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(leaf, index, size, proof[:-1], root)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(leaf, index, size, proof[:-1] + [proof[-1][:31]], root)


def test_every_bit_of_a_proof_matters():
    size, index = 45, 22
    proof = merkle.prove_inclusion(index, size, SOURCE)
    for i, h in enumerate(proof):
        for bit in range(256):
            bad = proof[:i] + [flip(h, bit)] + proof[i + 1 :]
            with pytest.raises(ProofError, match="root-mismatch"):
                merkle.verify_inclusion(LEAVES[index], index, size, bad, ROOTS[size])


@pytest.mark.parametrize("size2", range(1, MAX_SIZE + 1))
def test_every_consistency_proof_matches_reference_and_verifies(size2):
    for size1 in range(1, size2 + 1):
        proof = merkle.prove_consistency(size1, size2, SOURCE)
        if size1 < size2:
            assert proof == ref.proof(size1, ENTRIES[:size2])
        else:
            assert proof == []
        merkle.verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])
        merkle.verify_extends(size1, size2, proof, ROOTS[size1], ROOTS[size2])


# Old roots a forger might offer for the empty tree: the true MTH({}), every real root, junk.
SIZE0_ROOTS = [merkle.EMPTY_ROOT, bytes(32), b"\xff" * 32, *ROOTS.values()]


@pytest.mark.parametrize("size2", range(0, MAX_SIZE + 1))
def test_consistency_from_size_0_is_refused_as_the_peers_do(size2):
    """transparency-dev/merkle (proof.Consistency, VerifyConsistency) and Go's sumdb/tlog
    (ProveTree, CheckTree) have no consistency proof from the empty tree: refused for every
    new size and every pair of roots, (0, 0, [], X, X) included, by prove and verify alike."""
    with pytest.raises(ProofError, match="bad-range: no consistency proof from the empty tree"):
        merkle.prove_consistency(0, size2, SOURCE)
    with pytest.raises(ProofError, match="bad-range"):
        merkle.consistency_ranges(0, size2)
    for root1 in SIZE0_ROOTS:
        for root2 in (ROOTS[size2], root1, merkle.EMPTY_ROOT):
            for proof in ([], [ROOTS[size2]]):
                with pytest.raises(ProofError, match="bad-range"):
                    merkle.verify_consistency(0, size2, proof, root1, root2)


@pytest.mark.parametrize("size2", range(0, MAX_SIZE + 1))
def test_every_tree_extends_the_empty_tree_only_from_the_empty_root(size2):
    """verify_extends: size 0 is a comparison with MTH({}) = SHA-256() (RFC 9162 2.1.1)."""
    merkle.verify_extends(0, size2, [], merkle.EMPTY_ROOT, ROOTS[size2])
    for root1 in SIZE0_ROOTS[1:]:
        if root1 != merkle.EMPTY_ROOT:
            with pytest.raises(ProofError, match="root-mismatch"):
                merkle.verify_extends(0, size2, [], root1, ROOTS[size2])
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_extends(0, size2, [ROOTS[size2]], merkle.EMPTY_ROOT, ROOTS[size2])
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_extends(0, size2, [], merkle.EMPTY_ROOT, b"short")
    if size2 == 0:
        with pytest.raises(ProofError, match="root-mismatch"):
            merkle.verify_extends(0, 0, [], merkle.EMPTY_ROOT, ROOTS[1])
    else:  # size1 >= 1 is verify_consistency
        with pytest.raises(ProofError, match="root-mismatch"):
            merkle.verify_extends(size2, size2, [], ROOTS[size2], flip(ROOTS[size2], 1))
    with pytest.raises(ProofError, match="bad-range"):
        merkle.verify_extends(0, -1, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)


@pytest.mark.parametrize("size2", range(2, MAX_SIZE + 1))
def test_consistency_bit_flips_and_wrong_sizes_are_rejected(size2):
    for size1 in range(1, size2):
        proof = merkle.prove_consistency(size1, size2, SOURCE)
        r1, r2 = ROOTS[size1], ROOTS[size2]
        for i, h in enumerate(proof):
            bad = proof[:i] + [flip(h, (5 * i + size1) % 256)] + proof[i + 1 :]
            with pytest.raises(ProofError):
                merkle.verify_consistency(size1, size2, bad, r1, r2)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, flip(r1, 3), r2)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, r1, flip(r2, 200))
        for w1, w2 in {
            (size1 - 1, size2),
            (size1 + 1, size2),
            (size1, size2 + 1),
            (size1, size2 - 1),
        }:
            if (w1, w2) == (size1, size2) or w1 < 0 or w2 > MAX_SIZE or w1 > w2:
                continue
            with pytest.raises(ProofError):
                merkle.verify_consistency(w1, w2, proof, ROOTS[w1], ROOTS[w2])
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof + [r2], r1, r2)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof[:-1], r1, r2)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size2, size1, proof, r2, r1)


def test_consistency_edge_cases():
    merkle.verify_consistency(5, 5, [], ROOTS[5], ROOTS[5])
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_consistency(5, 5, [ROOTS[5]], ROOTS[5], ROOTS[5])
    with pytest.raises(ProofError, match="root-mismatch"):
        merkle.verify_consistency(5, 5, [], ROOTS[5], ROOTS[6])
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_consistency(3, 5, [], ROOTS[3], ROOTS[5])
    with pytest.raises(ProofError, match="bad-range"):
        merkle.verify_consistency(-1, 5, [], ROOTS[3], ROOTS[5])
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_consistency(3, 5, [b"short"], ROOTS[3], ROOTS[5])


def test_bad_ranges_raise_typed_errors():
    for index, size in [(0, 0), (-1, 3), (3, 3), (5, 3)]:
        with pytest.raises(ProofError, match="bad-range"):
            merkle.prove_inclusion(index, size, SOURCE)
        with pytest.raises(ProofError, match="bad-range"):
            merkle.verify_inclusion(LEAVES[0], index, size, [], ROOTS[3])
    with pytest.raises(ProofError, match="bad-range"):
        merkle.prove_consistency(4, 3, SOURCE)
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_inclusion(b"\x00" * 31, 0, 1, [], ROOTS[1])
    with pytest.raises(ProofError, match="bad-proof"):
        merkle.verify_inclusion(LEAVES[0], 0, 2, ["not bytes"], ROOTS[2])  # type: ignore[list-item]
    merkle.verify_inclusion(LEAVES[0], 0, 1, [], ROOTS[1])


def test_subtree_nodes_rejects_unaligned_ranges():
    assert merkle.subtree_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    for start, end in [(1, 3), (2, 5), (4, 9), (3, 3)]:
        with pytest.raises(ValueError):
            merkle.subtree_nodes(start, end)
