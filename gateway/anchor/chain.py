"""The EVM side of anchoring: the EdgesealAnchor contract through web3.py (deploy, anchor, read).

Blocking calls (HTTP JSON-RPC): the anchoring service runs them in a worker thread. Every call
that fails because the node is unreachable raises NodeDown; a call the contract refuses raises
AnchorRefused with the contract's error name as code, found by simulating the call
(eth_estimateGas) before anything is signed, so a refused anchor costs no gas.
docs/anchoring.md describes the contract and what finality means per chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound

from gateway.errors import EdgesealError
from gateway.files import create_exclusive

ARTEFACT_PATH = Path(__file__).with_name("EdgesealAnchor.json")
ANCHORED_EVENT = "Anchored(bytes32,uint64,bytes32,bytes32)"
ANCHORED_TOPIC = keccak(text=ANCHORED_EVENT)
ZERO32 = bytes(32)
# why: a JSON-RPC answer from a healthy node takes milliseconds; a node that does not answer in
# this long is treated as down (the service backs off), and the worker thread is freed soon.
RPC_TIMEOUT_S = 10.0
# why: eth_estimateGas is exact for this contract (no refunds, no gas-dependent branches); the
# margin covers a head that moved between the estimate and inclusion (a longer proof).
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 5, 4
# why: geth and the nodes built on it (Besu, most L2 sequencers, anvil) take a same-nonce
# replacement only if its fees are at least 10% higher; 9/8 clears that after rounding up.
REPRICE_NUM, REPRICE_DEN = 9, 8
# what nodes answer to a transaction whose fees they will not take (geth, anvil, Besu), lowercase
_UNDERPRICED = (
    "underpriced",
    "less than block base fee",
    "below configured minimum",
    "fee too low",
)
KEY_FILE_MODE = 0o600  # like the gateway's signing key: only the service user reads it


class AnchorError(EdgesealError):
    """Anchoring cannot go on: a bad key file, the wrong chain, an unknown contract head."""

    kind = "AnchorError"
    status = 503


class NodeDown(AnchorError):
    """The chain's JSON-RPC endpoint does not answer (the service backs off and retries)."""


class AnchorRefused(AnchorError):
    """The contract refuses the anchor; code is its error: NotSubmitter, WrongPrevious, Rollback,
    NotNewer, BadProof (gateway/anchor/EdgesealAnchor.sol)."""

    status = 409


@dataclass(frozen=True)
class Head:
    """A log head as the contract keeps it: tree size, RFC 9162 root, contract state hash."""

    size: int
    root: bytes
    state_hash: bytes = ZERO32


def origin_hash(origin: str) -> bytes:
    """Return the contract's key of a log: SHA-256 of the checkpoint's origin line (UTF-8)."""
    return hashlib.sha256(origin.encode("utf-8")).digest()


def commitment(head: Head) -> bytes:
    """Return keccak256(uint64 size || root || stateHash), what the contract stores for a head
    (EdgesealAnchor.commitment, abi.encodePacked)."""
    return keccak(head.size.to_bytes(8, "big") + head.root + head.state_hash)


def load_artefact() -> dict[str, Any]:
    """Return the committed compiled contract (abi, bytecode; tools/compile_anchor.py)."""
    return json.loads(ARTEFACT_PATH.read_text())


def load_key(path: Path) -> LocalAccount:
    """Return the account of the hex private key (optional 0x) in the file at path.

    Raises AnchorError("bad-key-file") if the file is missing, readable by group or others, or
    does not hold a 32-byte hex key. The key never appears in a message.
    """
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text().strip()
    except OSError as exc:
        raise AnchorError("bad-key-file", f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise AnchorError("bad-key-file", f"{path} has mode {mode:o}; it must be 0600")
    hex_key = text.removeprefix("0x")
    if len(hex_key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hex_key):
        raise AnchorError("bad-key-file", f"{path} does not hold a 32-byte hex private key")
    return Account.from_key(bytes.fromhex(hex_key))


def create_key(path: Path) -> LocalAccount:
    """Create a new random private key file (mode 0600) at path; return its account.

    Raises FileExistsError if the file exists (a key is never overwritten).
    """
    account = Account.create()
    data = ("0x" + bytes(account.key).hex() + "\n").encode()
    create_exclusive(str(path), data, KEY_FILE_MODE)  # all or nothing: no half-written key
    return account


def connect(rpc_url: str, timeout_s: float = RPC_TIMEOUT_S) -> Web3:
    """Return a Web3 on rpc_url without web3's own retries (the service has its backoff)."""
    provider = Web3.HTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
    )
    return Web3(provider)


def _down(exc: Exception) -> bool:
    """Return True if exc means the node did not answer (connection refused, timeout)."""
    import requests  # web3's HTTP transport

    return isinstance(exc, requests.exceptions.RequestException | OSError | TimeoutError)


def _refusal(w3: Web3, abi: list[dict[str, Any]], exc: ContractLogicError) -> AnchorRefused:
    """Return the AnchorRefused for a revert, named by the contract's custom error."""
    data = exc.data if isinstance(exc.data, str) else ""
    for item in abi:
        if item.get("type") == "error":
            selector = "0x" + keccak(text=item["name"] + "()")[:4].hex()
            if data.startswith(selector):
                return AnchorRefused(
                    item["name"], f"the contract refuses the anchor ({item['name']})"
                )
    return AnchorRefused("reverted", f"the contract refuses the anchor: {exc}")


class AnchorChain:
    """One account's view of one EdgesealAnchor contract on one chain (blocking)."""

    def __init__(
        self,
        rpc_url: str,
        contract_address: str,
        account: LocalAccount | None,
        chain_id: int | None = None,
        timeout_s: float = RPC_TIMEOUT_S,
    ) -> None:
        """Connect lazily: nothing is asked of the node here. chain_id, if given, is checked
        by check_chain() (a wrong chain is refused before anything is sent). account: the
        submitter's key; None for a reader (a replica watching the anchors), which cannot send."""
        self.w3 = connect(rpc_url, timeout_s)
        self.address = Web3.to_checksum_address(contract_address)
        self._account = account
        self.expected_chain_id = chain_id
        self.abi = load_artefact()["abi"]
        self.contract = self.w3.eth.contract(address=self.address, abi=self.abi)

    @property
    def account(self) -> LocalAccount:
        """Return the submitter's account; AnchorError("read-only") for a reader."""
        if self._account is None:
            raise AnchorError("read-only", "this chain client has no key: it only reads")
        return self._account

    def _call(self, fn: Any, *args: Any) -> Any:
        """Return fn(*args); raise NodeDown if the node does not answer."""
        try:
            return fn(*args)
        except (ContractLogicError, TransactionNotFound, AnchorError):
            raise
        except Exception as exc:
            if _down(exc):
                raise NodeDown("node-down", f"the chain node does not answer: {exc}") from None
            raise

    def chain_id(self) -> int:
        """Return the node's chain id; raise AnchorError("wrong-chain") if it is not the
        configured one, NodeDown if the node does not answer."""
        got = int(self._call(lambda: self.w3.eth.chain_id))
        if self.expected_chain_id is not None and got != self.expected_chain_id:
            raise AnchorError(
                "wrong-chain", f"the node serves chain {got}, configured {self.expected_chain_id}"
            )
        return got

    def submitter(self) -> str:
        """Return the account the contract takes anchors from (checksummed)."""
        return str(self._call(lambda: self.contract.functions.submitter().call()))

    def stored(self, origin: str, block: Any = "latest") -> bytes:
        """Return the commitment the contract holds for origin at block (zero: none)."""
        fn = self.contract.functions.heads(origin_hash(origin))
        return bytes(self._call(lambda: fn.call(block_identifier=block)))

    def send_anchor(self, origin: str, prev: Head | None, new: Head, proof: list[bytes]) -> bytes:
        """Simulate, sign and return the raw transaction anchoring `new` over `prev` (None: the
        first anchor of origin). Nothing is broadcast (broadcast() does), so the caller can
        store the transaction durably first.

        Raises AnchorRefused (the contract's error) and NodeDown.
        """
        p = prev or Head(0, ZERO32, ZERO32)
        fn = self.contract.functions.anchor(
            origin_hash(origin), p.size, p.root, p.state_hash, new.size, new.root,
            new.state_hash, proof,
        )  # fmt: skip
        sender = self.account.address
        try:
            gas = self._call(lambda: fn.estimate_gas({"from": sender}))
        except (ContractCustomError, ContractLogicError) as exc:
            raise _refusal(self.w3, self.abi, exc) from None
        nonce = self._call(lambda: self.w3.eth.get_transaction_count(sender, "pending"))
        tx = self._call(
            lambda: fn.build_transaction(
                {
                    "from": sender,
                    "nonce": nonce,
                    "gas": gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN,
                    "chainId": self.chain_id(),
                }
            )
        )
        return bytes(self.account.sign_transaction(tx).raw_transaction)

    def reprice(self, raw_tx: bytes, max_fee_wei: int | None = None) -> bytes | None:
        """Return raw_tx signed again with the same nonce, call and gas limit, and fees raised
        to at least 9/8 of its own (a node takes it as a replacement) and to what the chain
        asks now: for EIP-1559, max fee 2 x the latest base fee + the priority fee (the
        base fee may double before it is mined), for a legacy transaction the node's gas price.
        Returns None if max_fee_wei (a cap, None: none) allows no replacement. Raises NodeDown.
        Precondition: raw_tx is one this account signed (send_anchor)."""
        if raw_tx[0] >= 0xC0:  # a legacy transaction: rlp([nonce, gasPrice, gas, to, ...])
            fields = rlp.decode(raw_tx)
            tx: dict[str, Any] = {
                "nonce": _int(fields[0]), "gasPrice": _int(fields[1]), "gas": _int(fields[2]),
                "to": Web3.to_checksum_address(fields[3]), "value": _int(fields[4]),
                "data": bytes(fields[5]), "chainId": self.chain_id(),
            }  # fmt: skip
            price = _raised_fee(
                tx["gasPrice"], int(self._call(lambda: self.w3.eth.gas_price)), max_fee_wei
            )
            if price is None:
                return None
            tx["gasPrice"] = price
        else:
            tx = dict(TypedTransaction.from_bytes(HexBytes(raw_tx)).as_dict())
            for name in ("v", "r", "s"):
                tx.pop(name, None)
            base = int(self._call(lambda: self.w3.eth.get_block("latest"))["baseFeePerGas"])
            tip = max(
                _bumped(tx["maxPriorityFeePerGas"]),
                int(self._call(lambda: self.w3.eth.max_priority_fee)),
            )
            fee = _raised_fee(tx["maxFeePerGas"], 2 * base + tip, max_fee_wei)
            if fee is None:
                return None
            tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = fee, min(tip, fee)
        return bytes(self.account.sign_transaction(tx).raw_transaction)

    def broadcast(self, raw_tx: bytes) -> bytes:
        """Send a signed transaction; return its hash. A node that already has it is fine.

        Raises NodeDown, AnchorError("nonce-used") if its nonce was taken by another
        transaction (the anchor must be signed again), AnchorError("underpriced") if the node
        will not hold it at its fees (reprice).
        """
        tx_hash = keccak(raw_tx)
        try:
            self._call(lambda: self.w3.eth.send_raw_transaction(raw_tx))
        except NodeDown:
            raise
        except Exception as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text:
                return tx_hash
            if "nonce too low" in text or "nonce is too low" in text:
                raise AnchorError("nonce-used", "the transaction's nonce was used") from None
            if any(marker in text for marker in _UNDERPRICED):
                raise AnchorError("underpriced", f"the node refuses its fees: {exc}") from None
            raise
        return tx_hash

    def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        """Return the transaction's receipt (status, blockNumber, blockHash, gasUsed) or None
        if it is not in the canonical chain."""
        try:
            r = self._call(lambda: self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        except TransactionNotFound:
            return None
        return dict(r)

    def known(self, tx_hash: bytes) -> bool:
        """Return True if the node knows the transaction (mined or in its pool)."""
        try:
            self._call(lambda: self.w3.eth.get_transaction(HexBytes(tx_hash)))
        except TransactionNotFound:
            return False
        return True

    def block_hash(self, number: int) -> bytes | None:
        """Return the canonical block hash at number, or None if there is no such block."""
        try:
            block = self._call(lambda: self.w3.eth.get_block(number))
        except Exception as exc:
            if type(exc).__name__ == "BlockNotFound":
                return None
            raise
        return bytes(block["hash"])

    def anchored(self, origin: str, lookback_blocks: int) -> list[tuple[Head, bytes]]:
        """Return (head, tx hash) of the contract's Anchored events for origin in the last
        lookback_blocks blocks, oldest first (eth_getLogs; public nodes cap the range)."""
        latest = int(self._call(lambda: self.w3.eth.block_number))
        logs = self._call(
            lambda: self.w3.eth.get_logs(
                {  # type: ignore[arg-type]  # web3's FilterParams TypedDict
                    "address": self.address,
                    "fromBlock": max(0, latest - lookback_blocks),
                    "toBlock": latest,
                    "topics": ["0x" + ANCHORED_TOPIC.hex(), "0x" + origin_hash(origin).hex()],
                }
            )
        )
        out = []
        for log in logs:
            data = bytes(log["data"])
            head = Head(int.from_bytes(data[:32], "big"), data[32:64], data[64:96])
            out.append((head, bytes(log["transactionHash"])))
        return out

    def final_number(self, depth: int | None) -> int:
        """Return the highest final block number: the `finalized` tag's block (depth None), or
        the latest block minus depth confirmations."""
        if depth is None:
            return int(self._call(lambda: self.w3.eth.get_block("finalized"))["number"])
        return int(self._call(lambda: self.w3.eth.block_number)) - depth


def _int(field: bytes) -> int:
    return int.from_bytes(field, "big")


def _bumped(wei: int) -> int:
    """Return the smallest fee a node takes to replace a transaction paying wei (rounded up)."""
    return -(-wei * REPRICE_NUM // REPRICE_DEN)


def _raised_fee(old_wei: int, asked_wei: int, cap_wei: int | None) -> int | None:
    """Return the replacement's fee for one paying old_wei: the larger of the bump nodes need
    and what the chain asks now, at most cap_wei (None: no cap); None if the cap is below the
    bump (no replacement would be taken)."""
    fee = max(_bumped(old_wei), asked_wei)
    if cap_wei is not None:
        fee = min(fee, cap_wei)
    return None if fee < _bumped(old_wei) else fee


def deploy(w3: Web3, account: LocalAccount, submitter: str | None = None) -> tuple[str, bytes, int]:
    """Deploy EdgesealAnchor from account for `submitter` (default: the same account), the only
    account that may anchor on it; return (contract address, tx hash, gas used).

    Raises AnchorError("deploy-failed") if the deployment reverts or creates no contract.
    """
    art = load_artefact()
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    owner = Web3.to_checksum_address(submitter or account.address)
    tx = factory.constructor(owner).build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise AnchorError("deploy-failed", f"deployment transaction {tx_hash.hex()} reverted")
    return str(receipt["contractAddress"]), bytes(tx_hash), int(receipt["gasUsed"])
