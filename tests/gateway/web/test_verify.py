"""The dashboard verifier's chain primitives (gateway/web/verify.js), run in Node against the
Python implementations the gateway's verifier uses: keccak-256 (pycryptodome through eth-utils),
strict RLP (pyrlp), Merkle-Patricia proofs (py-trie) and RFC 9162 consistency proofs."""

from __future__ import annotations

import base64
import functools
import random

import rlp
from eth_utils.crypto import keccak
from trie.hexary import HexaryTrie

from gateway.ledger import merkle
from tests.gateway.web.js import run_js


def test_keccak256_matches_known_vectors_and_pycryptodome() -> None:
    rng = random.Random("keccak")
    # every length around the 136-byte rate's edges, and multi-block messages
    lengths = [*range(0, 300), 543, 544, 1000, 4096]
    messages = [bytes(rng.getrandbits(8) for _ in range(n)) for n in lengths]
    got = run_js(
        "return arg.map((h) => V.hex(V.keccak256(V.unhex(h))));", [m.hex() for m in messages]
    )
    assert got == [keccak(m).hex() for m in messages]
    known = run_js(
        "return [V.hex(V.keccak256(new Uint8Array(0))), V.hex(V.keccak256(V.utf8('abc')))];", 0
    )
    assert known == [
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45",
    ]


def test_eip55_checksum_spelling() -> None:
    # EIP-55's own examples
    addresses = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ]
    got = run_js(
        "return arg.map((a) => V.checksumAddress(V.unhex(a.slice(2).toLowerCase())));", addresses
    )
    assert got == addresses


def _show(item: object) -> object:
    """Return an RLP item with its strings as hex (lists stay lists)."""
    return [_show(i) for i in item] if isinstance(item, list) else bytes(item).hex()  # type: ignore[call-overload]


BAD_RLP = {
    "single byte in a string": "8100",
    "long form for a short string": "b80141",
    "length with a leading zero": "b9003841",
    "truncated": "83aabb",
    "trailing byte": "8000",
    "list item past its list": "c283aabbcc",
}


def test_rlp_is_as_strict_as_pyrlp() -> None:
    good = [b"", b"\x00", b"\x7f", b"\x80", b"x" * 56, [b"a", [b"b", []], b"c" * 100], [[]] * 40]
    encoded = [rlp.encode(v).hex() for v in good]
    got = run_js(
        "const show = (x) => Array.isArray(x) ? x.map(show) : V.hex(x);"
        "return arg.map((h) => show(V.rlpDecode(V.unhex(h))));",
        encoded,
    )
    assert got == [_show(v) for v in good]
    refused = run_js(
        "return arg.map((h) => { try { V.rlpDecode(V.unhex(h)); return null; }"
        " catch (e) { return e.code; } });",
        list(BAD_RLP.values()),
    )
    assert refused == ["bad-rlp"] * len(BAD_RLP)
    for raw in BAD_RLP.values():  # pyrlp refuses them too
        try:
            rlp.decode(bytes.fromhex(raw))
        except rlp.DecodingError:
            continue
        raise AssertionError(raw)


def test_trie_proofs_match_py_trie() -> None:
    rng = random.Random("trie")
    cases = []
    for n in (1, 2, 3, 17, 130):  # small tries embed nodes under 32 bytes in their parents
        trie = HexaryTrie({})
        for i in range(n):
            trie[rlp.encode(i)] = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 5, 40))))
        for i in (0, n // 2, n - 1, n, n + 1000):  # present, and absent keys
            key = rlp.encode(i)
            proof = [rlp.encode(node).hex() for node in trie.get_proof(key)]
            want = HexaryTrie.get_from_proof(trie.root_hash, key, trie.get_proof(key))
            cases.append(((trie.root_hash.hex(), i, proof), want.hex()))
    got = run_js(
        "return arg.map(([root, i, proof]) => V.hex(V.trieGet(V.unhex(root), V.rlpInt(i),"
        " proof.map(V.unhex))));",
        [c[0] for c in cases],
    )
    assert got == [c[1] for c in cases]
    # a proof missing a node (here: the root) is refused, not read as "absent"
    root, i, proof = cases[-3][0]
    missing = run_js(
        "try { V.trieGet(V.unhex(arg[0]), V.rlpInt(arg[1]), arg[2].map(V.unhex)); return null; }"
        " catch (e) { return e.code; }",
        [root, i, proof[1:]],
    )
    assert missing == "bad-proof"


def test_consistency_proofs_match_rfc9162() -> None:
    leaves = [b"leaf %d" % i for i in range(40)]

    @functools.cache
    def node_at(level: int, index: int) -> bytes:
        if level == 0:
            return merkle.leaf_hash(leaves[index])
        return merkle.node_hash(node_at(level - 1, 2 * index), node_at(level - 1, 2 * index + 1))

    def b64(h: bytes) -> str:
        return base64.b64encode(h).decode()

    cases = []
    for old, new in ((1, 1), (1, 2), (3, 7), (4, 8), (8, 40), (13, 39), (40, 40)):
        proof = merkle.prove_consistency(old, new, node_at)
        roots = [b64(merkle.root(n, node_at)) for n in (old, new)]
        cases.append([old, new, [b64(h) for h in proof], *roots])
    bad = [*cases[3][:4], cases[2][4]]  # the wrong new root
    got = run_js(
        "const f = async ([a, b, p, r1, r2]) => V.verifyConsistency(BigInt(a), BigInt(b),"
        " p.map(V.unb64), V.unb64(r1), V.unb64(r2));"
        "return Promise.all(arg.map(f));",
        [*cases, bad],
    )
    assert got == [True] * len(cases) + [False]
