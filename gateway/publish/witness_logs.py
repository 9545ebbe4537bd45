"""The witness's logs file: which logs it cosigns, in the `log` lines of C2SP tlog-policy.

Format (c2sp.org/tlog-policy, "Structure" and "Defining a log"): UTF-8 text, one item per line,
fields separated by ASCII spaces or tabs; blank lines and lines starting with "#" are ignored.

    log <vkey> [<url>]

The vkey is the log's signed-note verifier key (type 0x01, Ed25519, c2sp.org/tlog-checkpoint);
its key name is the log's origin. Several `log` lines may name one origin (a log with more than
one key: any of them is accepted, tlog-witness "the public key(s) it trusts for the checkpoint
origin"); the same public key twice is refused (tlog-policy: "Duplicate logs ... are not
allowed"). `witness`, `group` and `quorum` lines are accepted and ignored, so a full tlog-policy
file (the gateway's witness policy) can be given as is; any other keyword is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import EdgesealError
from gateway.ledger.note import NoteVerifier

# why: a witness serves a handful of participants' logs; 10k lines (and 1 MiB) leave room for a
# public witness while keeping start-up reading of a wrong file (a log dump) bounded.
MAX_LOGS_FILE_BYTES = 1024 * 1024
MAX_LOGS = 10_000
IGNORED_KEYWORDS = ("witness", "group", "quorum")


class LogsFileError(EdgesealError):
    """The logs file is unreadable or malformed (codes "unreadable", "bad-line", "bad-vkey",
    "duplicate-log", "too-large"); the witness refuses to start."""

    kind = "LogsFileError"


@dataclass(frozen=True)
class KnownLog:
    """One witnessed log: its origin, the verifiers of its keys, and the URLs given (if any)."""

    origin: str
    verifiers: tuple[NoteVerifier, ...]


def parse_logs(text: str) -> dict[str, KnownLog]:
    """Return {origin: KnownLog} of the `log` lines of tlog-policy text; raise LogsFileError."""
    keys: dict[str, list[NoteVerifier]] = {}
    seen_keys: set[bytes] = set()
    for number, raw in enumerate(text.split("\n"), start=1):
        fields = raw.replace("\t", " ").split()
        if not fields or fields[0].startswith("#") or fields[0] in IGNORED_KEYWORDS:
            continue
        if fields[0] != "log" or len(fields) not in (2, 3):
            raise LogsFileError("bad-line", f"line {number}: expected 'log <vkey> [<url>]'")
        try:
            verifier = NoteVerifier.from_vkey(fields[1])
        except EdgesealError as exc:
            raise LogsFileError("bad-vkey", f"line {number}: {exc.message}") from None
        if verifier.public_key in seen_keys:
            raise LogsFileError("duplicate-log", f"line {number}: this public key is listed twice")
        seen_keys.add(verifier.public_key)
        keys.setdefault(verifier.name, []).append(verifier)
        if len(seen_keys) > MAX_LOGS:
            raise LogsFileError("too-large", f"more than {MAX_LOGS} logs")
    return {origin: KnownLog(origin, tuple(vs)) for origin, vs in keys.items()}


def load_logs(path: str) -> Mapping[str, KnownLog]:
    """Return the logs of the file at `path` (parse_logs); LogsFileError if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LOGS_FILE_BYTES + 1)
    except OSError as exc:
        raise LogsFileError("unreadable", f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_LOGS_FILE_BYTES:
        raise LogsFileError("too-large", f"{path} is over {MAX_LOGS_FILE_BYTES} bytes")
    try:
        return parse_logs(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise LogsFileError("bad-line", f"{path} is not UTF-8") from None
