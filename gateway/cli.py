"""The `edgeseal` command line: one function per subcommand, each a thin call into gateway.

Subcommands so far: `audit` (re-verify a ledger file), `keygen` (create the gateway key),
`vkey` (print the gateway's C2SP verifier key). Add a subcommand by writing `cmd_<name>`
and registering it in `build_parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1  # the check ran and found a problem (audit)
EXIT_USAGE = 2  # bad arguments or unusable input


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
    if report.ok:
        print("audit: OK", file=out)
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


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="edgeseal", description="edgeseal: signed IoT readings, Merkle ledger, proofs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("audit", help="re-verify a ledger: tree, checkpoints, device chains")
    p.add_argument("--db", required=True, help="path of the ledger SQLite file")
    p.add_argument("--vkey", help="the log's verifier key (C2SP vkey), obtained out of band")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `edgeseal` command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
