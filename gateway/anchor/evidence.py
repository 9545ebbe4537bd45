"""Anchor evidence: what proves, without trusting the gateway, that a checkpoint was anchored.

`build_evidence` (needs the chain's JSON-RPC) collects, for one anchor transaction: the chain
id, contract address, transaction hash, block number and hash, the block header (RLP) and a
Merkle-Patricia proof of the transaction's receipt in the block's receipts trie (Ethereum
Yellow Paper 4.3-4.4: key RLP(transaction index), value the EIP-2718 receipt encoding).
`verify_anchor_evidence` checks it offline against a checkpoint: the header hashes to the block
hash, the receipt proof leads to the header's receiptsRoot, the receipt succeeded and holds the
contract's Anchored log whose fields equal the checkpoint's origin, size, root and state hash.
`verify_anchor_online` adds what only the chain can say: the block is canonical and final.
docs/anchoring.md, section Evidence, gives the format.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import rlp
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from trie.exceptions import BadTrieProof, ValidationError
from trie.hexary import HexaryTrie

from gateway.anchor.chain import ANCHORED_TOPIC, AnchorError, Head, origin_hash
from gateway.contracts.engine import EXTENSION_PREFIX
from gateway.ledger.note import Checkpoint

EVIDENCE_VERSION = 1
EVIDENCE_KEYS = frozenset(
    {
        "version", "chain_id", "contract", "tx_hash", "block_number", "block_hash",
        "header_rlp", "receipt_index", "receipt_proof", "log_index", "tx_proof",
    }
)  # fmt: skip
# go-ethereum core/types.Header, in order; the fields after nonce exist from the hardfork named
# (a header holds a prefix of the optional ones; Besu and the L2 clients use the same layout).
HEADER_FIELDS = (
    "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot", "receiptsRoot",
    "logsBloom", "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "extraData",
    "mixHash", "nonce",
)  # fmt: skip
OPTIONAL_HEADER_FIELDS = (
    "baseFeePerGas",  # London (EIP-1559)
    "withdrawalsRoot",  # Shanghai (EIP-4895)
    "blobGasUsed",  # Cancun (EIP-4844)
    "excessBlobGas",  # Cancun (EIP-4844)
    "parentBeaconBlockRoot",  # Cancun (EIP-4788)
    "requestsHash",  # Prague (EIP-7685)
)
INT_FIELDS = {
    "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas", "blobGasUsed",
    "excessBlobGas",
}  # fmt: skip
TRANSACTIONS_ROOT_INDEX = 4
RECEIPTS_ROOT_INDEX = 5
NUMBER_INDEX = 8
# why: an evidence field larger than this is not evidence (a header is ~600 bytes, a proof node
# at most ~532); checking lengths first keeps a hostile bundle's verification cheap.
MAX_FIELD_BYTES = 64 * 1024
MAX_PROOF_NODES = 64

Check = tuple[str, bool, str]
# what decoding a hostile proof node or RLP item raises (the verifier turns each into a failed check)
_MALFORMED = (ValueError, TypeError, LookupError, AttributeError, rlp.DecodingError)


def _enc(value: Any) -> bytes:
    """Return the RLP encoding of value (Yellow Paper appendix B)."""
    return cast(bytes, rlp.encode(value))


def _unhex(text: str) -> bytes:
    """Return the bytes of a 0x-prefixed hex string ("0x" and "0x0" quantities give b"")."""
    body = text[2:] if text.startswith("0x") else text
    if len(body) % 2:
        body = "0" + body
    return bytes.fromhex(body)


def _rpc(w3: Any, method: str, params: list[Any]) -> Any:
    """Return the raw JSON result of a JSON-RPC call; raise AnchorError("rpc-error")."""
    answer = w3.provider.make_request(method, params)
    if "error" in answer or answer.get("result") is None:
        raise AnchorError("rpc-error", f"{method} failed: {answer.get('error', 'no result')}")
    return answer["result"]


def encode_header(block: dict[str, str]) -> bytes:
    """Return the RLP block header of a raw JSON-RPC block (eth_getBlockBy*): the fields of
    HEADER_FIELDS, then the optional ones the block has, in order."""
    fields: list[Any] = []
    for name in HEADER_FIELDS + OPTIONAL_HEADER_FIELDS:
        if name not in block or block[name] is None:
            if name in OPTIONAL_HEADER_FIELDS:
                break
            raise AnchorError("bad-block", f"the block has no {name}")
        value = block[name]
        fields.append(int(value, 16) if name in INT_FIELDS else _unhex(value))
    return _enc(fields)


def encode_receipt(receipt: dict[str, Any]) -> bytes:
    """Return the receipts-trie value of a raw JSON-RPC receipt: EIP-2718 type byte (none for
    legacy) || RLP([status, cumulativeGasUsed, logsBloom, logs])."""
    logs = [
        [_unhex(log["address"]), [_unhex(t) for t in log["topics"]], _unhex(log["data"])]
        for log in receipt["logs"]
    ]
    body = _enc(
        [
            int(receipt["status"], 16),
            int(receipt["cumulativeGasUsed"], 16),
            _unhex(receipt["logsBloom"]),
            logs,
        ]
    )
    kind = int(receipt.get("type", "0x0"), 16)
    return body if kind == 0 else bytes([kind]) + body


def build_evidence(w3: Any, contract_address: str, tx_hash: bytes) -> dict[str, Any]:
    """Return the evidence dict of the anchor transaction tx_hash (module doc), read from the
    node behind w3 (a web3.Web3). Raises AnchorError ("rpc-error", "bad-block" if the node's
    header or receipts do not hash to what its block says, "no-anchor-log")."""
    receipt = _rpc(w3, "eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
    block = _rpc(w3, "eth_getBlockByHash", [receipt["blockHash"], False])
    header = encode_header(block)
    if keccak(header) != _unhex(block["hash"]):
        raise AnchorError("bad-block", "the header fields do not hash to the block hash")
    receipts = _rpc(w3, "eth_getBlockReceipts", [block["hash"]])
    trie = HexaryTrie({})
    for r in receipts:
        trie[_enc(int(r["transactionIndex"], 16))] = encode_receipt(r)
    if trie.root_hash != _unhex(block["receiptsRoot"]):
        raise AnchorError("bad-block", "the block's receipts do not hash to its receiptsRoot")
    index = int(receipt["transactionIndex"], 16)
    log_index = _anchor_log_index(receipt, contract_address)
    txs = HexaryTrie({})
    for i, h in enumerate(block["transactions"]):
        txs[_enc(i)] = _unhex(_rpc(w3, "eth_getRawTransactionByHash", [h]))
    if txs.root_hash != _unhex(block["transactionsRoot"]):
        raise AnchorError("bad-block", "the block's transactions do not hash to its root")
    return {
        "version": EVIDENCE_VERSION,
        "chain_id": int(_rpc(w3, "eth_chainId", []), 16),
        "contract": to_checksum_address(contract_address),
        "tx_hash": "0x" + tx_hash.hex(),
        "block_number": int(block["number"], 16),
        "block_hash": block["hash"],
        "header_rlp": "0x" + header.hex(),
        "receipt_index": index,
        "receipt_proof": ["0x" + _enc(n).hex() for n in trie.get_proof(_enc(index))],
        "log_index": log_index,
        "tx_proof": ["0x" + _enc(n).hex() for n in txs.get_proof(_enc(index))],
    }


def _anchor_log_index(receipt: dict[str, Any], contract_address: str) -> int:
    """Return the position in the receipt of the contract's Anchored log."""
    for i, log in enumerate(receipt["logs"]):
        if (
            _unhex(log["address"]) == _unhex(contract_address)
            and log["topics"]
            and _unhex(log["topics"][0]) == ANCHORED_TOPIC
        ):
            return i
    raise AnchorError("no-anchor-log", "the transaction emitted no Anchored event")


def checkpoint_head(checkpoint: Checkpoint) -> Head:
    """Return the Head anchored for a checkpoint: its size, root and the state hash of its
    "edgeseal-state <hex>" extension line (zero if it has none)."""
    state = bytes(32)
    for line in checkpoint.extensions:
        if line.startswith(EXTENSION_PREFIX + " "):
            value = line[len(EXTENSION_PREFIX) + 1 :]
            if len(value) == 64:
                with contextlib.suppress(ValueError):
                    state = bytes.fromhex(value)
            break
    return Head(checkpoint.size, checkpoint.root, state)


def _field(evidence: dict[str, Any], name: str, kind: type) -> Any:
    """Return evidence[name] if it is of kind (bool excluded); raise ValueError naming it."""
    value = evidence.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} is missing or not a {kind.__name__}")
    if isinstance(value, str) and len(value) > 2 * MAX_FIELD_BYTES:
        raise ValueError(f"{name} is too long")
    return value


def _hex_field(evidence: dict[str, Any], name: str, size: int | None = None) -> bytes:
    """Return the bytes of the 0x-hex string evidence[name] (of `size` bytes if given): lower
    case, one spelling per value, as the evidence is built (the contract address alone is in
    its EIP-55 checksum spelling, checked by the caller)."""
    text = _field(evidence, name, str)
    if not text.startswith("0x") or len(text) % 2:
        raise ValueError(f"{name} is not 0x-prefixed hex of whole bytes")
    if name != "contract" and text != text.lower():
        raise ValueError(f"{name} is not lower-case hex")
    value = bytes.fromhex(text[2:])
    if size is not None and len(value) != size:
        raise ValueError(f"{name} is not {size} bytes")
    return value


def verify_anchor_evidence(evidence: Any, checkpoint: Checkpoint) -> list[Check]:
    """Return the offline checks of anchor evidence against a checkpoint, as
    (check name, ok, detail) in order: "format", "header", "transaction", "receipt-proof",
    "receipt-status", "anchor-log". A check that cannot run because an earlier one failed is not listed; the
    evidence holds iff the list is non-empty and every check is ok. Never raises on bad input.

    Trusts nothing in the evidence: every field is bound to the block hash (the transaction
    proof binds tx_hash, chain_id and contract), and the block hash is only as good as the chain
    the verifier believes: pin chain id and contract, check canonicity with
    verify_anchor_online.
    """
    try:
        version = evidence.get("version") if isinstance(evidence, dict) else None
        if type(version) is not int or version != EVIDENCE_VERSION:
            raise ValueError(f"not anchor evidence version {EVIDENCE_VERSION}")
        if set(evidence) != EVIDENCE_KEYS:  # strict: no field that is not checked
            raise ValueError(f"the evidence fields are not exactly {sorted(EVIDENCE_KEYS)}")
        _field(evidence, "chain_id", int)
        contract = _hex_field(evidence, "contract", 20)
        if evidence["contract"] != to_checksum_address(contract):
            raise ValueError("contract is not in its EIP-55 checksum spelling")
        tx_hash = _hex_field(evidence, "tx_hash", 32)
        number = _field(evidence, "block_number", int)
        block_hash = _hex_field(evidence, "block_hash", 32)
        header = _hex_field(evidence, "header_rlp")
        index = _field(evidence, "receipt_index", int)
        log_index = _field(evidence, "log_index", int)
        nodes = _field(evidence, "receipt_proof", list)
        if len(nodes) > MAX_PROOF_NODES or not all(isinstance(n, str) for n in nodes):
            raise ValueError("receipt_proof is not a list of hex strings")
        proof = [rlp.decode(_hex_field({"n": n}, "n")) for n in nodes]
        tx_nodes = _field(evidence, "tx_proof", list)
        if len(tx_nodes) > MAX_PROOF_NODES or not all(isinstance(n, str) for n in tx_nodes):
            raise ValueError("tx_proof is not a list of hex strings")
        tx_proof = [rlp.decode(_hex_field({"n": n}, "n")) for n in tx_nodes]
        if index < 0 or log_index < 0:
            raise ValueError("negative index")
    except _MALFORMED as exc:
        return [("format", False, str(exc))]
    checks: list[Check] = [("format", True, f"chain {evidence['chain_id']}, block {number}")]
    roots = _check_header(header, block_hash, number, checks)
    if roots is None:
        return checks
    tx_root, receipts_root = roots
    checks.append(
        _check_transaction(tx_root, index, tx_proof, tx_hash, evidence["chain_id"], contract)
    )
    receipt = _check_receipt_proof(receipts_root, index, proof, checks)
    if receipt is None:
        return checks
    checks.append(_check_anchor_log(receipt, log_index, contract, checkpoint))
    return checks


def _check_header(
    header: bytes, block_hash: bytes, number: int, checks: list[Check]
) -> tuple[bytes, bytes] | None:
    """Append the "header" check; return the header's (transactionsRoot, receiptsRoot) if it
    passed."""
    if keccak(header) != block_hash:
        checks.append(("header", False, "keccak256(header_rlp) is not block_hash"))
        return None
    try:
        fields = rlp.decode(header)
        tx_root, root = fields[TRANSACTIONS_ROOT_INDEX], fields[RECEIPTS_ROOT_INDEX]
        got = int.from_bytes(fields[NUMBER_INDEX], "big")
    except _MALFORMED:
        checks.append(("header", False, "header_rlp is not a block header"))
        return None
    if not all(isinstance(r, bytes) and len(r) == 32 for r in (tx_root, root)) or got != number:
        checks.append(("header", False, f"the header is of block {got}, not {number}"))
        return None
    checks.append(("header", True, "keccak256(header_rlp) == block_hash"))
    return tx_root, root


def _check_transaction(
    root: bytes, index: int, proof: list[Any], tx_hash: bytes, chain_id: int, contract: bytes
) -> Check:
    """Return the "transaction" check: the proof leads from the header's transactionsRoot to
    transaction `index`, whose keccak256 is tx_hash, sent on chain_id to the contract (an
    EIP-2718 typed transaction: chainId first; legacy: EIP-155 v)."""
    try:
        raw = HexaryTrie.get_from_proof(root, _enc(index), proof)
        if not raw:
            return ("transaction", False, f"no transaction at index {index} under the root")
        if keccak(raw) != tx_hash:
            return ("transaction", False, "the proven transaction is not tx_hash")
        fields = rlp.decode(raw[1:]) if raw[0] < 0x80 else rlp.decode(raw)
        if raw[0] >= 0x80:  # legacy: [nonce, gasPrice, gas, to, value, data, v, r, s]
            to, v = fields[3], int.from_bytes(fields[6], "big")
            got_chain = (v - 35) // 2 if v >= 35 else None
        else:  # typed: [chainId, nonce, ...]; `to` after gasPrice (type 1) or the two fees
            got_chain = int.from_bytes(fields[0], "big")
            to = fields[4] if raw[0] == 1 else fields[5]
    except (BadTrieProof, ValidationError, *_MALFORMED) as exc:
        return ("transaction", False, f"the transaction proof does not verify: {exc}")
    if got_chain != chain_id or to != contract:
        return ("transaction", False, f"the transaction is for chain {got_chain}, to 0x{to.hex()}")
    return ("transaction", True, f"transaction {index} of the block, to the contract")


def _check_receipt_proof(
    root: bytes, index: int, proof: list[Any], checks: list[Check]
) -> list[Any] | None:
    """Append the "receipt-proof" and "receipt-status" checks; return the decoded receipt
    [status, cumulativeGas, bloom, logs] if both passed."""
    try:
        value = HexaryTrie.get_from_proof(root, _enc(index), proof)
    except (BadTrieProof, ValidationError, *_MALFORMED) as exc:
        checks.append(("receipt-proof", False, f"the proof does not verify: {exc}"))
        return None
    if not value:
        checks.append(("receipt-proof", False, f"no receipt at index {index} under receiptsRoot"))
        return None
    checks.append(("receipt-proof", True, f"receipt {index} is under the header's receiptsRoot"))
    body = value[1:] if value[0] < 0x80 else value  # EIP-2718 typed receipt: skip the type
    try:
        receipt = rlp.decode(body)
        ok = isinstance(receipt, list) and len(receipt) == 4 and receipt[0] == b"\x01"
    except _MALFORMED:
        ok = False
    checks.append(("receipt-status", ok, "the transaction succeeded" if ok else "it failed"))
    return receipt if ok else None


def _check_anchor_log(
    receipt: list[Any], log_index: int, contract: bytes, checkpoint: Checkpoint
) -> Check:
    """Return the "anchor-log" check: log log_index is the contract's Anchored event and its
    origin hash, size, root and state hash are the checkpoint's."""
    logs = receipt[3]
    if not isinstance(logs, list) or log_index >= len(logs):
        return ("anchor-log", False, f"the receipt has no log {log_index}")
    try:
        address, topics, data = logs[log_index]
    except _MALFORMED:
        return ("anchor-log", False, "the log is malformed")
    if address != contract:
        return ("anchor-log", False, "the log is not from the contract")
    if len(topics) != 2 or topics[0] != ANCHORED_TOPIC or len(data) != 96:
        return ("anchor-log", False, "the log is not an Anchored event")
    want = checkpoint_head(checkpoint)
    got = Head(int.from_bytes(data[:32], "big"), bytes(data[32:64]), bytes(data[64:96]))
    if topics[1] != origin_hash(checkpoint.origin):
        return ("anchor-log", False, "the anchored origin is not the checkpoint's")
    if got != want:
        return ("anchor-log", False, f"anchored {got.size}/{got.root.hex()[:16]}..., "
                f"the checkpoint is {want.size}/{want.root.hex()[:16]}...")  # fmt: skip
    return ("anchor-log", True, f"size {got.size} anchored")


def verify_anchor_online(
    evidence: dict[str, Any], w3: Any, depth: int | None = None
) -> list[Check]:
    """Return the checks only the chain can answer, asked of the node behind w3: "chain-id"
    (the node serves evidence's chain), "canonical" (its block at block_number has block_hash)
    and "final" (that block is at or below the `finalized` tag's block, or `depth` blocks
    deep). Precondition: verify_anchor_evidence passed. Raises AnchorError("rpc-error")."""
    chain_id = int(_rpc(w3, "eth_chainId", []), 16)
    checks: list[Check] = [
        ("chain-id", chain_id == evidence["chain_id"], f"the node serves chain {chain_id}")
    ]
    number = evidence["block_number"]
    block = _rpc(w3, "eth_getBlockByNumber", [hex(number), False])
    canonical = block["hash"].lower() == evidence["block_hash"].lower()
    checks.append(("canonical", canonical, f"block {number} is {block['hash']}"))
    if depth is None:
        final = int(_rpc(w3, "eth_getBlockByNumber", ["finalized", False])["number"], 16)
    else:
        final = int(_rpc(w3, "eth_blockNumber", []), 16) - depth
    checks.append(("final", canonical and number <= final, f"final up to block {final}"))
    return checks
