"""The `edgeseal` command line: one function per subcommand, each a thin call into gateway.

Subcommands: `serve` (the gateway service: BLE link, ingest, contracts, HTTP API), `audit`
(re-verify a ledger file), `keygen` (create the gateway key), `vkey` (print the gateway's C2SP
verifier key), `verify-bundle` (check a proof bundle offline), `enroll` (admin: enroll a device
from a provisioning file through the running gateway), `participant` (a participant's keys,
transactions and reads: gateway/participant_cli.py), `board` (flash, deploy, provision and
inspect a board over USB: gateway/boardctl), `replica` (a participant's verified replica of
the log, and `replica check-evidence`: gateway/replica/cli.py). Add a subcommand by writing `cmd_<name>`
and registering it in `build_parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the check ran and found a problem (audit)
EXIT_USAGE = 2  # bad arguments or unusable input


def audit_contracts(db: str) -> list[str]:
    """Return problems found by replaying the contracts over the log at db ([] = consistent).

    Replays every entry with the contract engine (DESIGN 4): each contract event in the log must
    be exactly the next event the engine emits, and each checkpoint's "edgeseal-state" line must
    equal the state hash of the prefix it covers. Never raises for a bad file: what cannot be
    read becomes a problem (the ledger audit, gateway.ledger.audit, says what is wrong with it).
    """
    from gateway.contracts.engine import Engine, state_hash
    from gateway.errors import EdgesealError
    from gateway.ledger.store import connect

    try:
        conn = connect(db, readonly=True)
    except (OSError, sqlite3.Error, ValueError) as exc:
        return [f"not replayed: cannot open the ledger: {exc}"]
    problems: list[str] = []
    try:
        claimed = _claimed_state_hashes(
            conn.execute("SELECT size, CAST(note AS BLOB) FROM checkpoint ORDER BY size")
        )

        def observe(size: int, state: Any) -> None:
            want = claimed.get(size)
            if want is not None and state_hash(state).hex() != want:
                problems.append(f"checkpoint {size}: state hash differs from the replay")

        rows = conn.execute("SELECT idx, typeof(data), CAST(data AS BLOB) FROM entry ORDER BY idx")
        Engine().audit(_blob_entries(rows), observe)
    except EdgesealError as exc:
        problems.append(str(exc))
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a non-UTF-8 SQLite message
        problems.append(f"replay stopped: SQLite error: {exc}")
    except Exception as exc:  # last resort: the audit reports, it never crashes
        problems.append(f"replay stopped at {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        conn.close()
    return problems


def _claimed_state_hashes(checkpoints: Iterable[tuple[Any, Any]]) -> dict[int, str]:
    """Return {size: hex state hash} of the "edgeseal-state" lines of the stored checkpoints;
    a note that does not parse is skipped (the ledger audit reports it)."""
    from gateway.contracts.engine import EXTENSION_PREFIX
    from gateway.errors import ProofError
    from gateway.ledger.note import parse_checkpoint, parse_note

    claimed: dict[int, str] = {}
    for size, note in checkpoints:
        if not isinstance(size, int) or not isinstance(note, bytes):
            continue
        try:
            extensions = parse_checkpoint(parse_note(note)[0]).extensions
        except ProofError:
            continue
        for line in extensions:
            if line.startswith(EXTENSION_PREFIX + " "):
                claimed[size] = line.split(" ", 1)[1]
    return claimed


def _blob_entries(rows: Iterable[tuple[Any, Any, Any]]) -> Iterator[tuple[int, bytes]]:
    """Yield (index, entry bytes) of (idx, SQLite type, CAST(data AS BLOB)) rows; raise
    WireError("not-a-blob") at the first entry not stored as a BLOB (the store writes BLOBs
    only) and ("missing-entry") at a gap in the indexes."""
    from gateway.errors import WireError

    for expect, (index, sql_type, data) in enumerate(rows):
        if index != expect:
            raise WireError("missing-entry", f"entry {expect} is missing")
        if sql_type != "blob" or not isinstance(data, bytes):
            raise WireError("not-a-blob", f"entry {index} is not stored as a BLOB")
        yield index, data


def _printable(text: str) -> str:
    """Return text with every non-printable character escaped (values from a hostile file
    must not drive the terminal)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit the ledger at --db (and the published checkpoints of --checkpoint); print a report;
    return EXIT_OK, or EXIT_FAILED when anything is wrong, an unreadable file included."""
    from gateway.ledger.audit import audit

    report = audit(args.db, vkey=args.vkey, published=args.checkpoint or ())
    lines: list[str] = []
    if report.vkey_from_file:
        lines.append(
            "audit: checkpoints checked with the vkey stored in the ledger "
            "(pass --vkey to check against a key you trust)"
        )
    lines.append(
        f"audit: {args.db}: origin {report.origin}, {report.entries} entries, "
        f"tree size {report.tree_size}, {report.checkpoints} checkpoints, "
        f"{report.devices} devices, {report.device_records} device records"
    )
    for check in report.published:
        size = f" (size {check.size})" if check.size is not None else ""
        if check.ok:
            status = "OK, the ledger extends it"
        elif check.codes:
            status = "FAILED: " + ", ".join(dict.fromkeys(check.codes))
        else:
            status = "not checked (the ledger is unreadable)"
        lines.append(f"audit: published checkpoint {check.name}{size}: {status}")
    contract_problems: list[str] = []
    if not args.ledger_only:
        if report.readable:
            contract_problems = audit_contracts(args.db)
        else:
            lines.append("audit: contracts not replayed (the ledger is unreadable)")
    lines += [f"  contracts: {problem}" for problem in contract_problems]
    ok = report.ok and not contract_problems
    if ok:
        checked = "" if args.ledger_only else ", contract replay"
        published = f", {len(report.published)} published checkpoints" if report.published else ""
        lines.append(f"audit: OK (log, checkpoints, device chains{published}{checked})")
    else:
        first = report.first_bad_index
        where = f": first bad index {first}" if first is not None else ""
        lines.append(f"audit: FAILED{where}")
        lines += [f"  {finding}" for finding in report.sorted_findings()]
        if report.truncated:
            lines.append("  ... (more findings not shown)")
    for line in lines:
        print(_printable(line), file=sys.stdout)
    return EXIT_OK if ok else EXIT_FAILED


def _create_key(command: str, path: str, name: str | None) -> Any:
    """Return a new NoteSigner written to path (mode 0600, never overwriting), or None after
    printing why it could not be created (exists, no such directory, permission denied)."""
    from gateway.ledger.note import KeyFileError, create_signer

    try:
        return create_signer(path, origin=name)
    except KeyFileError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
    except OSError as exc:  # no such directory, permission denied, read-only filesystem
        print(f"{command}: cannot create {path}: {exc.strerror or exc}", file=sys.stderr)
    return None


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create the gateway key file (mode 0600) at --key and print its vkey."""
    signer = _create_key("keygen", args.key, args.origin)
    if signer is None:
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
        with Ledger.open_readonly(args.db) as ledger:
            print(ledger.vkey)
    except (OSError, ValueError, KeyError, sqlite3.Error) as exc:
        # ValueError covers the EdgesealErrors of a damaged stored key or origin
        print(f"vkey: {args.db} is not a readable edgeseal ledger: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
            accept_loss=True if args.accept_loss else None,
            witness_policy=args.witness_policy,
            mqtt_url=args.mqtt,
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


# why: a C2SP vkey is one line of about 100 characters; a bound keeps `--key /dev/zero` or a
# mistaken large file from being read whole.
MAX_VKEY_FILE_BYTES = 4096


def _read_at_most(path: str, max_bytes: int) -> bytes:
    """Return the bytes of the file at path; raise OSError, or ValueError if over max_bytes."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"it is over the limit of {max_bytes} bytes")
    return data


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    """Verify a proof bundle file offline against --key (a vkey, or a file holding one) and, with
    --policy, the witness quorum, and with --rpc, that a format 4 bundle's anchor block is
    canonical and final (else that check is printed as not-checked); print each check by name
    and a summary and return EXIT_OK, or print "FAILED: <code>: <reason>" and return EXIT_FAILED.

    The file's bytes go through gateway.bundle.verify_bundle_bytes (strict canonical JSON, at
    most MAX_BUNDLE_BYTES): no input gives a traceback.
    """
    from gateway.bounds import MAX_BUNDLE_BYTES
    from gateway.bundle import verify_bundle_bytes
    from gateway.errors import EdgesealError

    def failed(reason: str) -> int:
        print(f"verify-bundle: FAILED: {reason}", file=sys.stderr)
        return EXIT_FAILED

    vkey = args.key
    if os.path.isfile(vkey):
        try:
            vkey = _read_at_most(vkey, MAX_VKEY_FILE_BYTES).decode("utf-8").strip()
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            return failed(f"bad-vkey: cannot read the key file {args.key}: {exc}")
    try:
        data = _read_at_most(args.file, MAX_BUNDLE_BYTES)
    except (OSError, ValueError) as exc:
        return failed(f"cannot read {args.file}: {exc}")
    if args.depth is not None and args.depth < 0:
        return failed(f"bad-depth: --depth must be >= 0, not {args.depth}")
    policy = None
    if args.policy:
        from gateway.publish.policy import load_policy

        try:
            policy = load_policy(args.policy)
        except EdgesealError as exc:
            return failed(f"bad-policy: {exc.code}: {exc.message}")
    try:
        result = verify_bundle_bytes(data, vkey, policy)
    except EdgesealError as exc:
        return failed(f"{exc.code}: {exc.message}")
    checks = [c.line() for c in result.checks if c.name != "anchor-canonical" or not args.rpc]
    pinned = _anchor_pins(result.anchor_evidence, args.chain_id, args.contract)
    if pinned is not None:
        if not pinned.startswith("anchor-pinned"):
            return failed(pinned)
        checks.append(pinned)
    if args.rpc and result.anchor_evidence is not None:
        online = _anchor_online(result.anchor_evidence, args.rpc, args.depth)
        if isinstance(online, str):
            return failed(online)
        checks += online
    elif args.rpc:
        checks.append("anchor-canonical: not-checked (the bundle carries no anchor)")
    for line in checks:
        print(f"  {line}")
    print(f"verify-bundle: {result.summary()}")
    return EXIT_OK


def _anchor_pins(evidence: dict[str, Any] | None, chain_id: int | None, contract: str | None
                 ) -> str | None:  # fmt: skip
    """Return None without pins, the "anchor-pinned: ok" check line if the verified anchor is on
    the pinned chain id and contract (compared case-insensitively), else the FAILED reason."""
    if chain_id is None and contract is None:
        return None
    if evidence is None:
        return "no-anchor: --chain-id/--contract given, the bundle carries no anchor"
    if chain_id is not None and evidence["chain_id"] != chain_id:
        return f"bad-anchor: anchored on chain {evidence['chain_id']}, not {chain_id}"
    if contract is not None and evidence["contract"].lower() != contract.lower():
        return f"bad-anchor: anchored by contract {evidence['contract']}, not {contract}"
    return f"anchor-pinned: ok (chain {evidence['chain_id']}, contract {evidence['contract']})"


def _anchor_online(evidence: dict[str, Any], rpc_url: str, depth: int | None) -> list[str] | str:
    """Return the check lines of what only the chain can say about a verified anchor (the node
    at rpc_url serves its chain; the block is canonical and final: `finalized` tag, or `depth`
    blocks deep), or the FAILED reason: a check failed or the node did not answer."""
    from gateway.anchor.chain import connect
    from gateway.anchor.evidence import verify_anchor_online

    try:
        results = verify_anchor_online(evidence, connect(rpc_url), depth)
    except Exception as exc:  # the node is down or answers nonsense: no traceback, a reason
        return f"anchor-unreachable: cannot ask {rpc_url}: {type(exc).__name__}: {exc}"[:2000]
    for name, ok, detail in results:
        if not ok:
            return f"bad-anchor: anchor-{name}: {detail}"
    return [f"anchor-{name}: ok ({detail})" for name, _ok, detail in results]


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


def cmd_witness_keygen(args: argparse.Namespace) -> int:
    """Create a witness key file (mode 0600, gateway.ledger.note format); print its vkey."""
    from gateway.publish.cosignature import CosignatureSigner

    signer = _create_key("witness keygen", args.key, args.name)
    if signer is None:
        return EXIT_USAGE
    print(CosignatureSigner(signer).vkey)
    return EXIT_OK


def cmd_witness_vkey(args: argparse.Namespace) -> int:
    """Print the witness's cosignature/v1 vkey (type 0x04) of the key file --key."""
    from gateway.ledger.note import KeyFileError, load_signer
    from gateway.publish.cosignature import CosignatureSigner

    try:
        print(CosignatureSigner(load_signer(args.key)).vkey)
    except KeyFileError as exc:
        print(f"witness vkey: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_witness_serve(args: argparse.Namespace) -> int:
    """Run the witness HTTP server until SIGTERM/SIGINT; EXIT_USAGE if a file is unusable."""
    import sqlite3

    from gateway.errors import EdgesealError
    from gateway.ledger.note import KeyFileError
    from gateway.publish.witness_server import open_service, serve

    try:
        service = open_service(args.key, args.logs, args.data_dir)
    except (KeyFileError, EdgesealError, OSError, sqlite3.Error) as exc:
        print(f"witness serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level)
    serve(service, args.host, args.port)
    return EXIT_OK


def add_witness_parser(sub: Any) -> None:
    """Register `edgeseal witness serve|keygen|vkey` on the top-level subparsers."""
    from gateway.publish.witness_server import DEFAULT_HOST, DEFAULT_PORT

    w = sub.add_parser("witness", help="the C2SP tlog-witness a participant runs")
    wsub = w.add_subparsers(dest="witness_command", required=True, metavar="WITNESS_COMMAND")
    p = wsub.add_parser("serve", help="serve add-checkpoint (C2SP tlog-witness) over HTTP")
    p.add_argument("--key", required=True, help="the witness key file (`witness keygen`)")
    p.add_argument("--logs", required=True, help="logs file: lines 'log <vkey> [<url>]'")
    p.add_argument("--data-dir", required=True, help="directory of the state (witness.db)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"listen address (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--log-level", default="info", help="debug, info, warning, error")
    p.set_defaults(func=cmd_witness_serve)
    p = wsub.add_parser("keygen", help="create a witness key (file mode 0600), print its vkey")
    p.add_argument("--key", required=True, help="path of the key file to create")
    p.add_argument("--name", required=True, help="witness name, e.g. witness.bank.example/w1")
    p.set_defaults(func=cmd_witness_keygen)
    p = wsub.add_parser("vkey", help="print the witness's cosignature/v1 vkey")
    p.add_argument("--key", required=True, help="the witness key file")
    p.set_defaults(func=cmd_witness_vkey)


def _add_serve_parser(sub: Any) -> None:
    """Add the `serve` command and its options to the subparsers `sub`."""
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
    p.add_argument(
        "--accept-loss",
        action="store_true",
        help="start although acknowledged history was lost: rebuild derived state from the "
        "ledger as it is and raise an alarm (docs/operations.md, Recovery)",
    )
    p.add_argument(
        "--witness-policy",
        metavar="FILE",
        help="C2SP tlog-policy file: witnesses to cosign every checkpoint (docs/witness.md)",
    )
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish verified readings and contract events to this MQTT broker: "
        "mqtt://[user:pass@]host[:port] or mqtts://... (docs/mqtt.md)",
    )
    p.set_defaults(func=cmd_serve)


def _add_audit_parser(sub: Any) -> None:
    """Register `edgeseal audit` (gateway/ledger/audit.py)."""
    p = sub.add_parser(
        "audit", help="re-verify a ledger: tree, checkpoints, device chains, contract replay"
    )
    p.add_argument("--db", required=True, help="path of the ledger SQLite file")
    p.add_argument("--vkey", help="the log's verifier key (C2SP vkey), obtained out of band")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a signed checkpoint published earlier (any file holding one signed note, e.g. "
        "a participant's copy or the gateway's data_dir/checkpoint): the ledger must extend it "
        "and still store it; repeatable",
    )
    p.add_argument(
        "--ledger-only",
        action="store_true",
        help="skip the contract replay (a log of another application's entries)",
    )
    p.set_defaults(func=cmd_audit)


def _add_verify_bundle_parser(sub: Any) -> None:
    """Register `edgeseal verify-bundle` (gateway/bundle.py; docs/api.md, Proof bundle)."""
    p = sub.add_parser("verify-bundle", help="check a proof bundle offline with the gateway vkey")
    p.add_argument("file", help="the bundle JSON file (GET /v1/bundle/{index})")
    p.add_argument("--key", required=True, help="the gateway's C2SP vkey, or a file holding it")
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="C2SP tlog-policy file: also check the checkpoint's witness cosignatures and quorum",
    )
    p.add_argument(
        "--rpc",
        metavar="URL",
        help="an EVM JSON-RPC node: also check the anchor's block is canonical and final",
    )
    p.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="with --rpc: final means N blocks deep (default: the chain's `finalized` block)",
    )
    p.add_argument("--chain-id", type=int, metavar="N", help="require the anchor on this chain")
    p.add_argument("--contract", metavar="ADDRESS", help="require the anchor by this contract")
    p.set_defaults(func=cmd_verify_bundle)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="edgeseal", description="edgeseal: signed IoT readings, Merkle ledger, proofs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_audit_parser(sub)

    p = sub.add_parser("keygen", help="create the gateway signing key (file mode 0600)")
    p.add_argument("--key", required=True, help="path of the key file to create")
    p.add_argument("--origin", help="log origin / key name (default edgeseal.example/gateway/<id>)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("vkey", help="print the gateway's verifier key (C2SP vkey)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--key", help="the gateway key file")
    src.add_argument("--db", help="a ledger file (prints the vkey stored in it)")
    p.set_defaults(func=cmd_vkey)

    _add_serve_parser(sub)

    _add_verify_bundle_parser(sub)

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

    add_witness_parser(sub)
    from gateway.replica.cli import add_replica_parser

    add_replica_parser(sub)
    from gateway.participant_cli import add_participant_parser  # `edgeseal participant ...`

    add_participant_parser(sub)
    from gateway.anchor.cli import add_anchor_parser  # `edgeseal anchor deploy|verify`

    add_anchor_parser(sub)
    _add_board_parser(sub)
    _add_release_parser(sub)
    return parser


def _add_board_parser(sub: Any) -> None:
    """Register `edgeseal board flash|deploy|provision|info` (gateway/boardctl, docs/boards.md)."""
    from gateway.boardctl.cli import add_board_parser

    add_board_parser(sub)


def _add_release_parser(sub: Any) -> None:
    """Register `edgeseal release keygen|build|sign|verify|publish` (gateway/release.py)."""
    from gateway.release import add_release_parser

    add_release_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `edgeseal` command line; return the process exit code.

    Every subcommand reports bad input itself, with a message and an exit code. An exception
    none of them expected is still one line on stderr and EXIT_FAILED, never a traceback
    (EDGESEAL_DEBUG=1 shows it): a person given a hostile file learns what failed, not where.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get("EDGESEAL_DEBUG"):
            raise
        print(
            f"edgeseal {args.command}: FAILED: unexpected {type(exc).__name__}: {exc}"[:2000],
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
