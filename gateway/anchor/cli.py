"""`edgeseal anchor deploy|verify`: deploy the anchor contract; check anchor evidence.

Registered on the top-level command line by gateway/cli.py (add_anchor_parser). Each command
reports bad input itself, with a message on stderr and exit code 2 (1: a check failed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_anchor_deploy(args: Any) -> int:
    """Deploy EdgesealAnchor with the key in args.key (created first with --create-key); print
    the contract address and the settings that point a gateway at it."""
    from gateway.anchor.chain import AnchorError, connect, create_key, deploy, load_key

    key_path = Path(args.key)
    try:
        account = create_key(key_path) if args.create_key else load_key(key_path)
    except (AnchorError, FileExistsError) as exc:
        print(f"anchor deploy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    w3 = connect(args.rpc)
    try:
        chain_id = int(w3.eth.chain_id)
        if args.chain_id is not None and chain_id != args.chain_id:
            print(f"anchor deploy: the node serves chain {chain_id}, not {args.chain_id}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        address, tx_hash, gas = deploy(w3, account, args.submitter)
    except Exception as exc:  # the node is down, the account has no funds, ...
        print(f"anchor deploy: {type(exc).__name__}: {exc}"[:2000], file=sys.stderr)
        return EXIT_FAILED
    print(f"deployed EdgesealAnchor at {address} on chain {chain_id}")
    print(f"transaction 0x{tx_hash.hex()}, gas {gas}, from {account.address}")
    print(f"anchors are taken from {args.submitter or account.address} only")
    print("\n# edgeseal.toml")
    print(f'anchor_rpc_url = "{args.rpc}"\nanchor_chain_id = {chain_id}')
    print(f'anchor_contract = "{address}"\nanchor_key_file = "{key_path.resolve()}"')
    return EXIT_OK


def cmd_anchor_verify(args: Any) -> int:
    """Check anchor evidence (JSON) against a checkpoint note offline, and with --rpc that its
    block is canonical and final; print one line per check."""
    from gateway.anchor.evidence import verify_anchor_evidence, verify_anchor_online
    from gateway.errors import EdgesealError
    from gateway.ledger.note import parse_checkpoint, parse_note

    try:
        evidence = json.loads(Path(args.evidence).read_text())
        checkpoint = parse_checkpoint(parse_note(Path(args.checkpoint).read_bytes())[0])
    except (OSError, ValueError, EdgesealError) as exc:
        print(f"anchor verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    checks = verify_anchor_evidence(evidence, checkpoint)
    if args.rpc and checks and all(ok for _, ok, _ in checks):
        from gateway.anchor.chain import connect

        checks += verify_anchor_online(evidence, connect(args.rpc), args.depth)
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return EXIT_OK if checks and all(ok for _, ok, _ in checks) else EXIT_FAILED


def add_anchor_parser(sub: Any) -> None:
    """Register `edgeseal anchor deploy|verify` on the top-level subparsers."""
    a = sub.add_parser("anchor", help="anchoring checkpoints on an EVM chain (docs/anchoring.md)")
    asub = a.add_subparsers(dest="anchor_command", required=True, metavar="ANCHOR_COMMAND")
    p = asub.add_parser("deploy", help="deploy the EdgesealAnchor contract")
    p.add_argument("--rpc", required=True, help="the chain's JSON-RPC URL")
    p.add_argument("--key", required=True, help="file holding the deployer's hex private key")
    p.add_argument("--create-key", action="store_true", help="create the key file (mode 0600)")
    p.add_argument("--chain-id", type=int, help="refuse a node of another chain")
    p.add_argument(
        "--submitter", help="the only account that may anchor (default: the deploying one)"
    )
    p.set_defaults(func=cmd_anchor_deploy)
    p = asub.add_parser("verify", help="check anchor evidence against a checkpoint")
    p.add_argument("--evidence", required=True, help="the evidence JSON (a bundle's anchor)")
    p.add_argument("--checkpoint", required=True, help="the signed checkpoint note it anchors")
    p.add_argument("--rpc", help="also check the block is canonical and final on this node")
    p.add_argument("--depth", type=int, help="final = this many blocks deep (default: tag)")
    p.set_defaults(func=cmd_anchor_verify)
