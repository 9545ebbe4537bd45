"""`edgeseal participant`: a participant's commands over the gateway API (gateway.client).

keygen (a key file, mode 0600), register (an operator registers a participant's key with a name
and roles; the very first participant, the operator, registers itself), tx (build, sign, submit,
wait for the checkpoint, print the log index and events; or write a signing request that
cosigners sign elsewhere with cosign, then submit), show (a contract's state and events),
bundle (fetch and verify a proof bundle), epcis (an agri contract as GS1 EPCIS 2.0) and
import-epcis (EPCIS ObjectEvents a partner system emits, as signed transactions).
docs/participants.md walks through them. Every failure is one line on stderr and an exit code:
EXIT_FAILED (1) for a refusal, a failed check or an unreachable gateway, EXIT_USAGE (2) for bad
arguments or an unusable file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# why: args are small JSON objects (the body is at most 16 KiB, gateway.txformat.MAX_BODY_BYTES);
# a bound keeps `--args @/dev/zero` from being read whole
MAX_ARGS_FILE_BYTES = 65536
MAX_VKEY_FILE_BYTES = 4096
# why: the admission layer refuses a time_s more than this far from its clock
# (gateway/node/sequencer.py TX_MAX_SKEW_S; docs/api.md POST /v1/transactions)
GATEWAY_MAX_SKEW_S = 300

# the participant's clock (seconds); a module attribute so a test can skew this machine only
now_s: Callable[[], float] = time.time


class UsageError(Exception):
    """Bad arguments or an unusable input file: the command exits EXIT_USAGE with this message."""


def _out(line: str) -> None:
    print(line, file=sys.stdout)


def _err(cmd: str, line: str) -> None:
    print(f"edgeseal participant {cmd}: {line}"[:4000], file=sys.stderr)


def _client(args: argparse.Namespace) -> Any:
    from gateway.client import Client

    return Client(args.url)


def _read_small(path: str, max_bytes: int) -> bytes:
    """Return the bytes of the file at path ("-" = stdin); raise UsageError if unreadable or
    over max_bytes."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UsageError(f"{path} is over {max_bytes} bytes")
    return data


def parse_args_json(text: str) -> dict[str, Any]:
    """Return the transaction args given as JSON text or @file; raise UsageError unless it is a
    JSON object with integers only (the transaction format has no floats)."""
    if text.startswith("@"):
        raw = _read_small(text[1:], MAX_ARGS_FILE_BYTES)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{text[1:]} is not UTF-8") from None

    def no_float(value: str) -> Any:
        raise UsageError(f"--args: {value} is not an integer (use scaled integers)")

    try:
        value = json.loads(text, parse_float=no_float, parse_constant=no_float)
    except ValueError as exc:
        raise UsageError(f"--args is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--args must be a JSON object")
    return value


def _load_key(path: str) -> Any:
    from gateway.client import ClientError, load_key_file

    try:
        return load_key_file(path)
    except ClientError as exc:
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"cannot read the key file {path}: {exc.strerror or exc}") from None


def _skew_hint(client: Any) -> str:
    """Return a sentence on this machine's clock against the gateway's (its Date header)."""
    server = client.last_server_time_s
    if server is None:
        return (
            f"this machine's clock is over {GATEWAY_MAX_SKEW_S} s away from the gateway's: "
            "set it (enable NTP, e.g. `timedatectl set-ntp true`) and retry"
        )
    delta = now_s() - server
    side = "ahead of" if delta > 0 else "behind"
    return (
        f"this machine's clock is {abs(delta):.0f} s {side} the gateway's (it allows "
        f"{GATEWAY_MAX_SKEW_S} s): set it (enable NTP, e.g. `timedatectl set-ntp true`) and retry"
    )


_HINTS = {
    "not-operator": "only an operator registers participants: send your public key to the "
    "gateway's operator (see docs/participants.md)",
    "unknown-participant": "a signer is not registered yet: the gateway's operator registers "
    "it with `edgeseal participant register --key OPERATOR.key --public-key KEY ...`",
    "bootstrap-needs-operator": "the first participant of a gateway is its operator and "
    "registers itself with --roles operator",
    "handover-needs-both-signatures": "the taker cosigns a handover: add --cosigner-key, or "
    "--cosigner PK --out FILE and have the taker `cosign` it",
    "tx-replayed-nonce": "this key sent a higher nonce from elsewhere: pass --nonce above the "
    "one named (the nonce file then continues from it)",
}


def _report(cmd: str, exc: Exception, client: Any = None) -> int:
    """Print the one-line report of a failure; return its exit code."""
    from gateway.client import ClientError
    from gateway.errors import ContractError, EdgesealError, EpcisError, TxError

    if isinstance(exc, UsageError):
        _err(cmd, str(exc))
        return EXIT_USAGE
    if isinstance(exc, TxError) and exc.code == "tx-clock-skew":
        _err(cmd, f"REFUSED: tx-clock-skew: {exc.message}")
        _err(cmd, _skew_hint(client))
        return EXIT_FAILED
    if isinstance(exc, ContractError):
        verdict = "REFUSED" if isinstance(exc, TxError) else "REJECTED by the contract"
        _err(cmd, f"{verdict}: {exc.code}: {exc.message}")
        if exc.code in _HINTS:
            _err(cmd, _HINTS[exc.code])
        return EXIT_FAILED
    if isinstance(exc, ClientError):
        _err(cmd, f"{exc.code}: {exc.message}")
        return EXIT_USAGE if exc.code in ("bad-key-file", "key-file-exists") else EXIT_FAILED
    if isinstance(exc, EpcisError):  # the input file, not the gateway
        _err(cmd, f"{exc.code}: {exc.message} (nothing submitted)")
        return EXIT_USAGE
    if isinstance(exc, EdgesealError):
        _err(cmd, f"FAILED: {exc.kind} {exc.code}: {exc.message}")
        return EXIT_FAILED
    raise exc


def _run(cmd: str, body: Callable[[Any], int], args: argparse.Namespace) -> int:
    """Run body(client) with one client; turn every expected failure into a report."""
    from gateway.errors import EdgesealError

    client = None
    try:
        client = _client(args)
        return body(client)
    except (UsageError, EdgesealError) as exc:
        return _report(cmd, exc, client)
    finally:
        if client is not None:
            client.close()


# ---- commands --------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a participant key file (mode 0600); print its public key (the participant id)."""
    from gateway.client import ClientError, create_key_file, public_key_hex

    try:
        key = create_key_file(args.key)
    except ClientError as exc:
        return _report("keygen", exc)
    except OSError as exc:
        _err("keygen", f"cannot create {args.key}: {exc.strerror or exc}")
        return EXIT_USAGE
    _out(public_key_hex(key))
    return EXIT_OK


def _nonce(args: argparse.Namespace) -> int:
    """Return --nonce (recorded in the key's nonce file) or the nonce file's next one."""
    from gateway.client import NonceFile

    nonces = NonceFile(args.key)
    if args.nonce is None:
        return nonces.next()
    nonces.record(args.nonce)
    return args.nonce


def _submit(client: Any, args: argparse.Namespace, keys: list[Any], contract: str,
            action: str, tx_args: dict[str, Any]) -> int:  # fmt: skip
    """Sign with keys, submit, wait for the checkpoint and print the outcome."""
    nonce = _nonce(args)
    done, status = client.transact(
        keys, contract, action, tx_args, nonce=nonce, time_s=int(now_s()), wait=not args.no_wait
    )
    return _print_outcome(args, done, status)


def _print_outcome(args: argparse.Namespace, done: Any, status: Any) -> int:
    """Print an accepted transaction (human lines, or JSON with --json); return EXIT_OK."""
    if args.json:
        _out(json.dumps({"index": done.index, "tx_hash": done.tx_hash, "events": done.events,
                         "integrated": bool(status and status.integrated)}, sort_keys=True))  # fmt: skip
        return EXIT_OK
    where = "in a checkpoint" if status is not None else "sequenced (not waiting for a checkpoint)"
    _out(f"accepted: log index {done.index}, tx {done.tx_hash}, {where}")
    for event in done.events:
        data = json.dumps(event.get("data", {}), sort_keys=True, ensure_ascii=False)
        _out(f"event {event['index']} {event['type']} {data}")
    return EXIT_OK


def cmd_register(args: argparse.Namespace) -> int:
    """Register a participant (--public-key, default the signer itself) with a name and roles,
    signed by --key: an operator's key, or for the first participant of a gateway its own."""

    def body(client: Any) -> int:
        from gateway.client import public_key_hex

        key = _load_key(args.key)
        who = args.public_key or public_key_hex(key)
        if len(who) != 64 or any(c not in "0123456789abcdef" for c in who):
            raise UsageError("--public-key must be 64 lowercase hex digits")
        roles = [r for r in args.roles.split(",") if r]
        tx_args = {"public_key": who, "name": args.name, "roles": roles}
        return _submit(client, args, [key], "engine", "register", tx_args)

    return _run("register", body, args)


def cmd_tx(args: argparse.Namespace) -> int:
    """Build, sign (--key sends, each --cosigner-key cosigns), submit a transaction and wait
    until a checkpoint covers it; print its log index and events."""

    def body(client: Any) -> int:
        tx_args = parse_args_json(args.args)
        keys = [_load_key(args.key), *(_load_key(p) for p in args.cosigner_key)]
        if args.cosigner or args.out:
            return _write_request(args, keys, tx_args)
        return _submit(client, args, keys, args.contract, args.action, tx_args)

    return _run("tx", body, args)


# ---- two-party signing: a request file passed from signer to signer ------------------------

REQUEST_TYPE = "edgeseal-tx-request"
MAX_REQUEST_FILE_BYTES = 65536  # a 16 KiB body in base64 and four signatures


def _save_request(path: str, body: bytes, signatures: dict[str, bytes]) -> None:
    import base64

    doc = {
        "type": REQUEST_TYPE,
        "v": 1,
        "body": base64.b64encode(body).decode(),
        "signatures": {pk: sig.hex() for pk, sig in sorted(signatures.items())},
    }
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _load_request(path: str) -> tuple[bytes, dict[str, bytes]]:
    """Return (body, {signer: signature}) of a request file; raise UsageError if it is not one."""
    import base64
    import binascii

    try:
        doc = json.loads(_read_small(path, MAX_REQUEST_FILE_BYTES))
        if doc.get("type") != REQUEST_TYPE or doc.get("v") != 1:
            raise ValueError(f"not an {REQUEST_TYPE} file")
        body = base64.b64decode(doc["body"], validate=True)
        sigs = {str(pk): bytes.fromhex(sig) for pk, sig in dict(doc["signatures"]).items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise UsageError(f"{path} is not a transaction request: {exc}") from None
    return body, sigs


def _describe(fields: dict[str, Any]) -> str:
    args = json.dumps(fields["args"], sort_keys=True, ensure_ascii=False)
    return (
        f"{fields['action']} on {fields['contract']} by {fields['participant'][:16]}... "
        f"(time_s {fields['time_s']}, nonce {fields['nonce']}) args {args}"
    )


def _write_request(args: argparse.Namespace, keys: list[Any], tx_args: dict[str, Any]) -> int:
    """Write a transaction request signed by keys, naming --cosigner keys still to sign."""
    from gateway.client import public_key_hex
    from gateway.errors import EdgesealError
    from gateway.txformat import TX_DOMAIN, parse_body, tx_body

    if not args.out:
        raise UsageError("--cosigner needs --out FILE: the request the cosigners sign")
    pks = [public_key_hex(k) for k in keys]
    cosigners = [*pks[1:], *(c for c in args.cosigner if c not in pks)]
    nonce = _nonce(args)
    body = tx_body(pks[0], nonce, args.contract, args.action, tx_args, int(now_s()), cosigners)
    try:
        parse_body(body)  # a cosigner key that is not 64 hex digits, too many signers, ...
    except EdgesealError as exc:
        raise UsageError(f"{exc.code}: {exc.message}") from None
    sigs = {pk: key.sign(TX_DOMAIN + body).signature for pk, key in zip(pks, keys, strict=True)}
    _save_request(args.out, body, sigs)
    waiting = [c for c in cosigners if c not in sigs]
    _out(f"request written to {args.out}; still to sign: {', '.join(waiting) or 'nobody'}")
    _out(f"submit it within {GATEWAY_MAX_SKEW_S} s of now (the gateway's clock-skew bound)")
    return EXIT_OK


def cmd_cosign(args: argparse.Namespace) -> int:
    """Add --key's signature to a transaction request file, after printing what it signs."""
    from gateway.client import public_key_hex
    from gateway.errors import EdgesealError
    from gateway.txformat import TX_DOMAIN, parse_body

    try:
        body, sigs = _load_request(args.file)
        fields = parse_body(body)
        key = _load_key(args.key)
    except (UsageError, EdgesealError) as exc:
        return _report("cosign", exc)
    pk = public_key_hex(key)
    if pk not in fields["cosigners"] and pk != fields["participant"]:
        _err("cosign", f"{pk[:16]}... is not a signer of this transaction")
        return EXIT_USAGE
    _out(f"signing: {_describe(fields)}")
    age_s = now_s() - fields["time_s"]
    if abs(age_s) > GATEWAY_MAX_SKEW_S:
        _err("cosign", f"warning: the request is {age_s:.0f} s old: the gateway will refuse it")
    sigs[pk] = key.sign(TX_DOMAIN + body).signature
    try:
        _save_request(args.output or args.file, body, sigs)
    except UsageError as exc:
        return _report("cosign", exc)
    signers = [fields["participant"], *fields["cosigners"]]
    waiting = [s for s in signers if s not in sigs]
    _out(f"signed; still to sign: {', '.join(waiting) or 'nobody (ready to submit)'}")
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a fully signed transaction request file and wait for the checkpoint."""

    def body(client: Any) -> int:
        from gateway.txformat import assemble_payload

        tx_body, sigs = _load_request(args.file)
        payload = assemble_payload(tx_body, sigs)
        done = client.submit(payload)
        status = None if args.no_wait else client.wait_integrated(done.tx_hash)
        return _print_outcome(args, done, status)

    return _run("submit", body, args)


def cmd_show(args: argparse.Namespace) -> int:
    """Print a contract's state (type, owner, clock, params, data) and its events as JSON."""

    def body(client: Any) -> int:
        doc = {"contract": client.contract(args.contract)}
        if not args.no_events:
            doc["events"] = client.contract_events(args.contract)
        _out(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False))
        return EXIT_OK

    return _run("show", body, args)


def _vkey(args: argparse.Namespace, client: Any) -> str:
    """Return the vkey to check bundles with: --vkey (a key or a file holding one), else the
    one the gateway reports (with a warning: that trusts the gateway)."""
    if args.vkey:
        if os.path.isfile(args.vkey):
            try:
                return _read_small(args.vkey, MAX_VKEY_FILE_BYTES).decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UsageError(f"{args.vkey} is not a vkey file") from None
        return args.vkey
    _err(
        "bundle",
        "warning: checked against the vkey the gateway itself reports; pass --vkey with the "
        "key you obtained out of band to check it independently",
    )
    return str(client.gateway()["vkey"])


def cmd_bundle(args: argparse.Namespace) -> int:
    """Fetch the proof bundle of a log entry, verify it, and write it to -o FILE."""

    def body(client: Any) -> int:
        from gateway.bundle import verify_bundle_bytes
        from gateway.errors import EdgesealError

        vkey = _vkey(args, client)
        data = client.bundle(args.index)
        try:
            result = verify_bundle_bytes(data, vkey)
        except EdgesealError as exc:
            _err("bundle", f"FAILED: {exc.code}: {exc.message} (not written)")
            return EXIT_FAILED
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        _out(f"verified: {result.summary()}; written to {args.output}")
        return EXIT_OK

    return _run("bundle", body, args)


def cmd_epcis(args: argparse.Namespace) -> int:
    """Print (or write to -o FILE) the GS1 EPCIS 2.0 document of an agri contract."""

    def body(client: Any) -> int:
        text = json.dumps(client.epcis(args.contract), indent=1, ensure_ascii=False) + "\n"
        if args.output:
            try:
                with open(args.output, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            _out(f"written to {args.output}")
        else:
            sys.stdout.write(text)
        return EXIT_OK

    return _run("epcis", body, args)


def cmd_import_epcis(args: argparse.Namespace) -> int:
    """Turn the ObjectEvents of an EPCIS 2.0 file into agri transactions; sign and submit each
    (all are checked before the first is submitted)."""

    def body(client: Any) -> int:
        from gateway.contracts.epcis import MAX_EPCIS_BYTES, parse_epcis, transactions_of_document

        raw = _read_small(args.file, MAX_EPCIS_BYTES)
        txs = transactions_of_document(parse_epcis(raw))
        keys = [_load_key(args.key), *(_load_key(p) for p in args.cosigner_key)]
        for action, tx_args in txs:
            _out(f"{action} {json.dumps(tx_args, sort_keys=True, ensure_ascii=False)}")
            code = _submit(client, args, keys, args.contract, action, tx_args)
            if code != EXIT_OK:
                return code
            if args.nonce is not None:  # an explicit first nonce: the next events take the next
                args.nonce += 1
        return EXIT_OK

    return _run("import-epcis", body, args)


# ---- the parser ------------------------------------------------------------------------------


def add_participant_parser(sub: Any) -> None:
    """Register `edgeseal participant ...` on the subparsers of the `edgeseal` parser."""
    from gateway.client import DEFAULT_URL

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("EDGESEAL_URL", DEFAULT_URL),
        help="the gateway's API (default $EDGESEAL_URL or %(default)s)",
    )
    signing = argparse.ArgumentParser(add_help=False)
    signing.add_argument("--key", required=True, help="the signer's key file (participant keygen)")
    signing.add_argument("--nonce", type=int, help="the nonce (default: next of <key>.nonce)")
    signing.add_argument("--no-wait", action="store_true", help="do not wait for a checkpoint")
    signing.add_argument("--json", action="store_true", help="print the outcome as JSON")

    p = sub.add_parser("participant", help="a participant's commands: keys, transactions, reads")
    psub = p.add_subparsers(dest="participant_command", required=True)

    q = psub.add_parser("keygen", help="create a participant key file (mode 0600)")
    q.add_argument("--key", required=True, help="path of the key file to create")
    q.set_defaults(func=cmd_keygen)

    q = psub.add_parser(
        "register", parents=[common, signing], help="register a participant (operator)"
    )
    q.add_argument("--public-key", help="the participant's public key (default: --key's own)")
    q.add_argument("--name", required=True, help="the participant's name (1..64 characters)")
    q.add_argument("--roles", required=True, help="comma-separated roles, e.g. grower,carrier")
    q.set_defaults(func=cmd_register)

    q = psub.add_parser(
        "tx", parents=[common, signing], help="sign, submit and confirm a transaction"
    )
    q.add_argument("action", help="the contract action, e.g. register-lot")
    q.add_argument("--contract", required=True, help="the contract id (engine for engine actions)")
    q.add_argument("--args", default="{}", help="the action's args: JSON, or @FILE")
    q.add_argument(
        "--cosigner-key", action="append", default=[], help="a cosigner's key file (repeatable)"
    )
    q.add_argument(
        "--cosigner",
        action="append",
        default=[],
        help="a cosigner's public key, to sign elsewhere (`cosign`); needs --out",
    )
    q.add_argument("--out", help="write a signing request here instead of submitting")
    q.set_defaults(func=cmd_tx)

    _add_request_parsers(psub, common)

    q = psub.add_parser("show", parents=[common], help="a contract's state and events")
    q.add_argument("--contract", required=True, help="the contract id")
    q.add_argument("--no-events", action="store_true", help="the state only")
    q.set_defaults(func=cmd_show)

    q = psub.add_parser("bundle", parents=[common], help="fetch and verify a proof bundle")
    q.add_argument("index", type=int, help="the log index of the entry")
    q.add_argument("-o", "--output", required=True, help="the file to write the bundle to")
    q.add_argument("--vkey", help="the gateway's vkey, or a file holding it (obtain out of band)")
    q.set_defaults(func=cmd_bundle)

    q = psub.add_parser("epcis", parents=[common], help="an agri contract as GS1 EPCIS 2.0")
    q.add_argument("--contract", required=True, help="the agri contract id")
    q.add_argument("-o", "--output", help="write the document here (default: stdout)")
    q.set_defaults(func=cmd_epcis)

    q = psub.add_parser(
        "import-epcis", parents=[common, signing], help="EPCIS ObjectEvents as transactions"
    )
    q.add_argument("file", help="an EPCIS 2.0 JSON document or event ('-' = stdin)")
    q.add_argument("--contract", required=True, help="the agri contract id")
    q.add_argument(
        "--cosigner-key", action="append", default=[], help="a cosigner's key (handovers)"
    )
    q.set_defaults(func=cmd_import_epcis)


def _add_request_parsers(psub: Any, common: argparse.ArgumentParser) -> None:
    """Register `cosign` and `submit`, the two-party signing of a `tx --out` request."""
    q = psub.add_parser("cosign", help="add your signature to a transaction request file")
    q.add_argument("file", help="the request (tx --out)")
    q.add_argument("--key", required=True, help="your key file")
    q.add_argument("-o", "--output", help="write the signed request here (default: in place)")
    q.set_defaults(func=cmd_cosign)

    q = psub.add_parser("submit", parents=[common], help="submit a fully signed request file")
    q.add_argument("file", help="the request, signed by every signer")
    q.add_argument("--no-wait", action="store_true", help="do not wait for a checkpoint")
    q.add_argument("--json", action="store_true", help="print the outcome as JSON")
    q.set_defaults(func=cmd_submit)
