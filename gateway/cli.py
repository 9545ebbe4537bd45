"""The `edgeseal` command line: one function per subcommand, each a thin call into gateway.

Subcommands: `serve` (the gateway service: BLE link, ingest, contracts, HTTP API), `audit`
(re-verify a ledger file), `keygen` (create the gateway key), `vkey` (print the gateway's C2SP
verifier key), `verify-bundle` (check a proof bundle offline), `enroll` (admin: enroll a device
from a provisioning file through the running gateway). Add a subcommand by writing `cmd_<name>`
and registering it in `build_parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the check ran and found a problem (audit)
EXIT_USAGE = 2  # bad arguments or unusable input


def audit_contracts(db: str) -> list[str]:
    """Return problems found by replaying the contracts over the log at db ([] = consistent).

    Replays every entry with the contract engine (DESIGN 4): each contract event in the log must
    be exactly the next event the engine emits, and each checkpoint's "edgeseal-state" line must
    equal the state hash of the prefix it covers.
    """
    from gateway.contracts.engine import EXTENSION_PREFIX, Engine, state_hash
    from gateway.errors import EdgesealError
    from gateway.ledger import Ledger
    from gateway.ledger.note import parse_checkpoint

    ledger = Ledger.open_readonly(db)
    try:
        claimed: dict[int, str] = {}
        for size, note in ledger.checkpoints():
            text = note.decode().split("\n\n", 1)[0] + "\n"
            for line in parse_checkpoint(text).extensions:
                if line.startswith(EXTENSION_PREFIX + " "):
                    claimed[size] = line.split(" ", 1)[1]
        problems: list[str] = []

        def observe(size: int, state: Any) -> None:
            want = claimed.get(size)
            if want is not None and state_hash(state).hex() != want:
                problems.append(f"checkpoint {size}: state hash differs from the replay")

        try:
            Engine().audit(ledger.entries(), observe)
        except EdgesealError as exc:
            problems.append(str(exc))
        return problems
    finally:
        ledger.close()


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit the ledger at --db; print findings; return EXIT_OK or EXIT_FAILED."""
    from gateway.ledger.audit import audit

    report = audit(args.db, vkey=args.vkey)
    out = sys.stdout
    if report.vkey_from_file:
        print(
            "audit: checkpoints checked with the vkey stored in the ledger "
            "(pass --vkey to check against a key you trust)",
            file=out,
        )
    print(
        f"audit: {args.db}: origin {report.origin}, {report.entries} entries, "
        f"tree size {report.tree_size}, {report.checkpoints} checkpoints, "
        f"{report.devices} devices, {report.device_records} device records",
        file=out,
    )
    contract_problems: list[str] = []
    if not args.ledger_only and os.path.exists(args.db):
        contract_problems = audit_contracts(args.db)
    for problem in contract_problems:
        print(f"  contracts: {problem}", file=out)
    if report.ok and not contract_problems:
        checked = "" if args.ledger_only else ", contract replay"
        print(f"audit: OK (log, checkpoints, device chains{checked})", file=out)
        return EXIT_OK
    first = report.first_bad_index
    if first is not None:
        print(f"audit: FAILED: first bad index {first}", file=out)
    else:
        print("audit: FAILED", file=out)
    for finding in report.sorted_findings():
        print(f"  {finding}", file=out)
    if report.truncated:
        print("  ... (more findings not shown)", file=out)
    return EXIT_FAILED


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create the gateway key file (mode 0600) at --key and print its vkey."""
    from gateway.ledger.note import KeyFileError, create_signer

    try:
        signer = create_signer(args.key, origin=args.origin)
    except KeyFileError as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(signer.vkey)
    return EXIT_OK


def cmd_vkey(args: argparse.Namespace) -> int:
    """Print the C2SP verifier key of --key (the gateway key file) or --db (a ledger)."""
    from gateway.ledger.note import KeyFileError, load_signer

    if args.key:
        try:
            print(load_signer(args.key).vkey)
        except KeyFileError as exc:
            print(f"vkey: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    from gateway.ledger.store import Ledger

    try:
        ledger = Ledger.open_readonly(args.db)
    except (OSError, ValueError, KeyError) as exc:
        print(f"vkey: {args.db}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with ledger:
        print(ledger.vkey)
    return EXIT_OK


# why: a client of `edgeseal enroll` waits this long for the gateway before giving up.
HTTP_TIMEOUT_S = 30
log = logging.getLogger("edgeseal")
VIRTUAL_FLEET_MOVED = (
    "serve: the virtual fleet is not part of the gateway package; from a source checkout run "
    "`make run` (python -m tools.sim.run), which starts this gateway with five virtual boards"
)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway service until SIGTERM/SIGINT; return EXIT_OK after a clean stop."""
    from pydantic import ValidationError

    from gateway.config import load_settings
    from gateway.server import serve

    if args.virtual_fleet:
        print(VIRTUAL_FLEET_MOVED, file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings(
            args.config,
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            ble=False if args.no_ble else None,
        )
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"serve: bad configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    return asyncio.run(serve(settings))


def configure_logging(level: str) -> None:
    """Log to stderr at level (debug, info, warning, error) with times and logger names."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    """Verify a proof bundle offline against --key; print a summary; EXIT_OK or EXIT_FAILED."""
    from gateway.bundle import verify_bundle
    from gateway.errors import EdgesealError

    vkey = args.key
    if os.path.isfile(vkey):
        with open(vkey) as f:
            vkey = f.read().strip()
    try:
        with open(args.file, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"verify-bundle: FAILED: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        result = verify_bundle(document, vkey)
    except EdgesealError as exc:
        print(f"verify-bundle: FAILED: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    print(f"verify-bundle: {result.summary()}")
    return EXIT_OK


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enroll the device of a provisioning file through the running gateway's admin API."""
    from gateway.wire import device_id_for

    try:
        with open(args.file, encoding="utf-8") as f:
            prov = json.load(f)
        public_key = bytes.fromhex(prov["public_key"])
        if len(public_key) != 32:
            raise ValueError("public_key must be 32 bytes (64 hex digits)")
        metadata = prov.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValueError("metadata must be a JSON object")
        if "device_id" in prov and prov["device_id"] != device_id_for(public_key).hex():
            raise ValueError("device_id is not SHA-256(public_key)[0:16]")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"enroll: bad provisioning file {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    token = args.token or os.environ.get("EDGESEAL_OPERATOR_TOKEN")
    if not token:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            print(f"enroll: no operator token (--token or --token-file): {exc}", file=sys.stderr)
            return EXIT_USAGE
    body = json.dumps({"public_key": public_key.hex(), "metadata": metadata}).encode()
    request = urllib.request.Request(
        args.url.rstrip("/") + "/v1/devices",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
            reason = f"{err.get('code')}: {err.get('message')}"
        except ValueError:
            reason = str(exc)
        print(f"enroll: refused ({exc.code}) {reason}", file=sys.stderr)
        return EXIT_FAILED
    except (urllib.error.URLError, OSError) as exc:
        print(f"enroll: cannot reach the gateway at {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"enroll: device {answer['device_id']} enrolled at log index {answer['index']}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="edgeseal", description="edgeseal: signed IoT readings, Merkle ledger, proofs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "audit", help="re-verify a ledger: tree, checkpoints, device chains, contract replay"
    )
    p.add_argument("--db", required=True, help="path of the ledger SQLite file")
    p.add_argument("--vkey", help="the log's verifier key (C2SP vkey), obtained out of band")
    p.add_argument(
        "--ledger-only",
        action="store_true",
        help="skip the contract replay (a log of another application's entries)",
    )
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("keygen", help="create the gateway signing key (file mode 0600)")
    p.add_argument("--key", required=True, help="path of the key file to create")
    p.add_argument("--origin", help="log origin / key name (default edgeseal.example/gateway/<id>)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("vkey", help="print the gateway's verifier key (C2SP vkey)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--key", help="the gateway key file")
    src.add_argument("--db", help="a ledger file (prints the vkey stored in it)")
    p.set_defaults(func=cmd_vkey)

    p = sub.add_parser("serve", help="run the gateway: BLE link, ingest, contracts, HTTP API")
    p.add_argument(
        "--config",
        help="TOML config file (default $EDGESEAL_CONFIG or /etc/edgeseal/edgeseal.toml)",
    )
    p.add_argument("--data-dir", help="ledger, keys and state (default $EDGESEAL_DATA_DIR)")
    p.add_argument("--host", help="API listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default 8000)")
    p.add_argument("--virtual-fleet", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-ble", action="store_true", help="do not start the BLE link")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("verify-bundle", help="check a proof bundle offline with the gateway vkey")
    p.add_argument("file", help="the bundle JSON file (GET /v1/bundle/{index})")
    p.add_argument("--key", required=True, help="the gateway's C2SP vkey, or a file holding it")
    p.set_defaults(func=cmd_verify_bundle)

    p = sub.add_parser("enroll", help="enroll a device from a provisioning file (operator)")
    p.add_argument("file", help='provisioning JSON: {"public_key": hex, "metadata": {...}}')
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway's API")
    p.add_argument("--token", help="operator token (default $EDGESEAL_OPERATOR_TOKEN)")
    p.add_argument(
        "--token-file",
        default="/var/lib/edgeseal/operator.token",
        help="file holding the operator token",
    )
    p.set_defaults(func=cmd_enroll)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `edgeseal` command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
