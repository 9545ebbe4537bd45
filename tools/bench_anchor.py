"""Benchmarks the gas of anchoring on a real anvil: per anchor (the first, the next ones) and per
record at the default policy (gateway/anchor/service.py: every DEFAULT_ENTRIES entries), against
a baseline measured in the same run: a bare anchor that only puts the same head in calldata (a
transaction to oneself, no contract, nothing checked or stored). Goals (docs/anchoring.md):
at most 60k gas per anchor and 100 gas per record at the default policy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (tools/bench.py imports it as tools.bench_anchor)
    sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402

from gateway.anchor.chain import AnchorChain, connect, deploy, origin_hash  # noqa: E402
from gateway.anchor.outbox import Outbox  # noqa: E402
from gateway.anchor.service import DEFAULT_ENTRIES, AnchorPolicy, AnchorService  # noqa: E402
from gateway.anchor.source import LedgerSource  # noqa: E402
from tests.gateway.anchor.rig import grow, open_ledger  # noqa: E402
from tests.support.anvil import CHAIN_ID, DEV_KEY, Anvil  # noqa: E402

GOAL_GAS_PER_ANCHOR = 60_000
GOAL_GAS_PER_RECORD = 100
# why: a checkpoint every second at ~256 records/s (the gateway's batch interval is 1 s); the
# policy then anchors every DEFAULT_ENTRIES entries, as in a busy deployment
ENTRIES_PER_CHECKPOINT = 256
DEFAULT_ANCHORS = 48  # ~49k records; ~10 s on this machine, mostly anvil round trips
ORIGIN = "bench.example/anchor"


def bare_anchor_gas(chain: AnchorChain, head_bytes: bytes) -> int:
    """Return the gas of the baseline: a 0-value transaction to oneself carrying head_bytes."""
    w3, account = chain.w3, chain.account
    tx = {
        "from": account.address,
        "to": account.address,
        "value": 0,
        "data": head_bytes,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": CHAIN_ID,
        "gas": 100_000,
        "maxFeePerGas": w3.eth.gas_price * 2,
        "maxPriorityFeePerGas": 1,
    }
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    return int(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["gasUsed"])


def main(argv: list[str] | None = None) -> int:
    """Print gas per anchor and per record vs the bare baseline and the goals; return 0 if the
    goals are met, 1 otherwise."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--anchors", type=int, default=DEFAULT_ANCHORS)
    ap.add_argument("--quick", action="store_true", help="a quarter of the anchors")
    args = ap.parse_args(argv)
    anchors = max(4, args.anchors // 4 if args.quick else args.anchors)
    with tempfile.TemporaryDirectory() as tmp:
        node = Anvil(Path(tmp))
        node.start()
        try:
            account = Account.from_key(DEV_KEY)
            address, _tx, deploy_gas = deploy(connect(node.url), account)
            chain = AnchorChain(node.url, address, account, CHAIN_ID)
            ledger = open_ledger(Path(tmp) / "ledger.db", ORIGIN)
            outbox = Outbox(Path(tmp) / "anchor.db", CHAIN_ID, address)
            policy = AnchorPolicy(entries=DEFAULT_ENTRIES, finality_depth=0)  # default policy
            svc = AnchorService(chain, outbox, LedgerSource(lambda: ledger), policy)
            while len(outbox.anchors()) < anchors:
                grow(ledger, ENTRIES_PER_CHECKPOINT)
                svc.step()
            svc.step()
            rows = outbox.anchors()
            head = origin_hash(ORIGIN) + rows[-1].head.size.to_bytes(8, "big")
            bare = bare_anchor_gas(chain, head + rows[-1].head.root + rows[-1].head.state_hash)
        finally:
            node.stop()
    gas = [r.gas_used or 0 for r in rows]
    first, rest = gas[0], gas[1:]
    per_record = sum(rest) / (rows[-1].head.size - rows[0].head.size)
    print(f"contract deployment        {deploy_gas:8d} gas (once)")
    print(f"bare calldata anchor       {bare:8d} gas (baseline: nothing checked or stored)")
    print(f"first anchor (claims)      {first:8d} gas  {first / bare:.2f}x baseline")
    print(f"next anchors ({len(rest):3d})        {statistics.mean(rest):8.0f} gas mean, "
          f"{max(rest)} max  {statistics.mean(rest) / bare:.2f}x baseline")  # fmt: skip
    print(f"per record, {DEFAULT_ENTRIES} entries/anchor {per_record:6.1f} gas "
          f"(log grown to {rows[-1].head.size} entries)")  # fmt: skip
    ok_anchor = max(gas) <= GOAL_GAS_PER_ANCHOR
    ok_record = per_record <= GOAL_GAS_PER_RECORD
    print(f"goal <= {GOAL_GAS_PER_ANCHOR} gas per anchor: {'met' if ok_anchor else 'MISSED'}; "
          f"goal <= {GOAL_GAS_PER_RECORD} gas per record: {'met' if ok_record else 'MISSED'}")  # fmt: skip
    return 0 if ok_anchor and ok_record else 1


if __name__ == "__main__":
    raise SystemExit(main())
