"""The gateway's witness policy (C2SP tlog-policy): parse it, and check a checkpoint's quorum.

Format (c2sp.org/tlog-policy, "Policy file syntax and structure"): line based, items separated
by ASCII spaces or tabs, blank lines and "#" comment lines ignored; the only control characters
allowed are tab and newline (octets 0x09, 0x0A, 0x20-0x7E, 0x80-0xFF, "Character set").

    log <vkey> [<url>]                  a log (signed-note vkey, type 0x01; name = origin)
    witness <name> <vkey> [<url>]       a witness (cosignature/v1 vkey, type 0x04); <url> is its
                                        tlog-witness submission prefix (the gateway POSTs
                                        <url>/add-checkpoint)
    group <name> all|any|<k> <name>...  at least k of the n members witnessed (1 <= k <= n)
    quorum <name>|none                  exactly one; the name must be defined above

Names (witnesses and groups share one namespace, "none" is predefined) are opaque octet strings:
the file is read as bytes and non-ASCII octets are kept as they are (surrogateescape). A group
or the quorum may only name what preceding lines defined, which rules out cycles; a reference
to a later name is reported as "cycle" if it closes one, else "forward-reference". Duplicate
public keys (log or witness) and duplicate members of one group are refused.

Every malformed line raises PolicyError with a stable code and its line number in the message:
"bad-character", "bad-line", "bad-vkey", "bad-url", "bad-threshold", "duplicate-log",
"duplicate-witness", "duplicate-name", "reserved-name", "unknown-member", "forward-reference",
"cycle", "duplicate-member", "no-quorum", "duplicate-quorum", "too-large", "unreadable".

`WitnessPolicy.check(note)` verifies the note's cosignature/v1 lines (c2sp.org/tlog-cosignature)
by the policy's witnesses and evaluates the quorum; it is pure (no I/O, no clock).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from gateway.errors import EdgesealError, ProofError
from gateway.ledger.note import (
    SIG_PREFIX,
    NoteVerifier,
    UnverifiedNoteError,
    open_note,
    parse_note,
)
from gateway.publish.cosignature import CosignatureVerifier

# why: tlog-policy "Implementation limits" recommends supporting at least 32 logs, 32 witnesses
# and 32 groups; 256 of each (and 256 KiB of text) leave room while bounding a hostile file.
MAX_POLICY_BYTES = 256 * 1024
MAX_LOGS = 256
MAX_WITNESSES = 256
MAX_GROUPS = 256
NONE = "none"
ALL = "all"
ANY = "any"
URL_SCHEMES = ("http://", "https://")
ALLOWED_CONTROL_BYTES = (0x09, 0x0A)


class PolicyError(EdgesealError):
    """A witness policy file that is unreadable or malformed (codes in the module doc)."""

    kind = "PolicyError"


@dataclass(frozen=True)
class PolicyLog:
    """A `log` line: the log's note verifier (its key name is the origin) and optional URL."""

    verifier: NoteVerifier
    url: str | None


@dataclass(frozen=True)
class PolicyWitness:
    """A `witness` line: the policy's name for it, its cosignature/v1 key and optional URL."""

    name: str
    verifier: CosignatureVerifier
    url: str | None


@dataclass(frozen=True)
class PolicyGroup:
    """A `group` line: at least `k` of `members` (witness or group names) must have witnessed."""

    name: str
    k: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class QuorumResult:
    """The outcome of WitnessPolicy.check on one checkpoint note.

    ok: the note is well formed, signed by a policy log (if the policy lists logs) and the
    quorum holds. cosigned_by: names of the policy's witnesses whose cosignature/v1 line
    verified, in policy order. invalid: names of policy witnesses with a line that fails to
    verify (a tampered or mis-keyed cosignature: never counted). unknown_lines: signature lines
    by neither a policy log nor a policy witness (not checked). required: the fewest witnesses
    that can satisfy the quorum (0 for `quorum none`). reason: why ok is False ("" if ok).
    """

    ok: bool
    cosigned_by: list[str]
    invalid: list[str] = field(default_factory=list)
    unknown_lines: int = 0
    required: int = 0
    log_origin: str | None = None
    reason: str = ""

    @property
    def summary(self) -> str:
        """Return "<cosigned>/<required>" and " (short)" when the quorum does not hold."""
        return f"{len(self.cosigned_by)}/{self.required}" + ("" if self.ok else " (short)")


def _at(number: int, message: str) -> str:
    return f"line {number}: {message}"


def _check_bytes(data: bytes) -> None:
    """Raise PolicyError("bad-character") at the first octet tlog-policy does not allow."""
    for index, octet in enumerate(data):
        if octet < 0x20 and octet not in ALLOWED_CONTROL_BYTES or octet == 0x7F:
            number = data.count(b"\n", 0, index) + 1
            raise PolicyError("bad-character", _at(number, f"control octet 0x{octet:02x}"))


def _url(fields: list[str], index: int, number: int) -> str | None:
    """Return the optional URL field (http or https, no trailing '/'); PolicyError("bad-url")."""
    if len(fields) <= index:
        return None
    url = fields[index]
    if not url.startswith(URL_SCHEMES) or len(url) <= len("https://") or not url.isascii():
        raise PolicyError("bad-url", _at(number, "a URL must be an ASCII http:// or https:// URL"))
    return url.rstrip("/")


def _threshold(text: str, n: int, number: int) -> int:
    """Return k of a group line (all, any, or canonical decimal in [1, n]); bad-threshold."""
    if text == ALL:
        return n
    if text == ANY:
        return 1
    # the length test first: int() of thousands of digits is slow or raises ValueError
    if len(text) > 6 or not text.isascii() or not text.isdigit() or text != str(int(text)):
        raise PolicyError(
            "bad-threshold", _at(number, f"threshold {text[:20]!r} is not all, any or k")
        )
    k = int(text)
    if not 1 <= k <= n:
        raise PolicyError("bad-threshold", _at(number, f"threshold {k} is not in [1, {n}]"))
    return k


class WitnessPolicy:
    """A parsed tlog-policy: logs, witnesses, groups and the quorum (a name, or "none")."""

    def __init__(
        self,
        logs: tuple[PolicyLog, ...],
        witnesses: tuple[PolicyWitness, ...],
        groups: tuple[PolicyGroup, ...],
        quorum: str,
        text: str,
    ) -> None:
        self.logs = logs
        self.witnesses = witnesses
        self.groups = groups
        self.quorum = quorum
        self.text = text  # the policy file as given (served at GET /v1/witness-policy)
        self._witness = {w.name: w for w in witnesses}
        self._group = {g.name: g for g in groups}
        self.required = self._min_required(quorum)

    def witness(self, name: str) -> PolicyWitness:
        """Return the witness of that policy name; KeyError if there is none."""
        return self._witness[name]

    def _min_required(self, name: str) -> int:
        """Return the fewest witnesses whose cosignatures can make `name` witness a checkpoint."""
        if name == NONE:
            return 0
        if name in self._witness:
            return 1
        group = self._group[name]
        costs = sorted(self._min_required(m) for m in group.members)
        return sum(costs[: group.k])

    def holds(self, cosigned: set[str], name: str | None = None) -> bool:
        """Return True if the witnesses named in `cosigned` satisfy `name` (default: the quorum).

        tlog-policy, "Defining a witness group": a group witnessed a checkpoint iff at least k of
        its n members did; a witness did iff it cosigned; `none` always holds.
        """
        target = self.quorum if name is None else name
        if target == NONE:
            return True
        if target in self._witness:
            return target in cosigned
        group = self._group[target]
        return sum(1 for m in group.members if self.holds(cosigned, m)) >= group.k

    def check(self, note: bytes) -> QuorumResult:
        """Return which policy witnesses validly cosigned the checkpoint note, and the quorum.

        Never raises for bad input: a note that does not parse, or (when the policy lists logs)
        is not validly signed by one of them, gives ok=False with the reason. Each signature line
        whose (name, key id) is a policy witness's cosignature/v1 key is verified over the note
        text (tlog-cosignature, "Ed25519 signed message"); one failing line marks that witness
        invalid and it does not count. Lines by other keys are counted in unknown_lines.
        """
        try:
            text, sigs = parse_note(note)
        except ProofError as exc:
            return QuorumResult(False, [], required=self.required, reason=exc.message)
        log_origin: str | None = None
        log_keys: set[tuple[str, bytes]] = set()
        if self.logs:
            verifiers = [log.verifier for log in self.logs]
            log_keys = {(v.name, v.key_id) for v in verifiers}
            try:
                opened = open_note(note, verifiers)
            except UnverifiedNoteError:
                return self._short(sigs, "not signed by a log of the policy")
            except ProofError as exc:
                return self._short(sigs, exc.message)
            log_origin = opened.verified[0].name
            if not text.startswith(log_origin + "\n"):
                return self._short(sigs, "the checkpoint origin is not the log's key name")
        by_key = {(w.verifier.name, w.verifier.key_id): w for w in self.witnesses}
        good: set[str] = set()
        bad: set[str] = set()
        unknown = 0
        for sig in sigs:
            witness = by_key.get((sig.name, sig.key_id))
            if witness is None:
                unknown += (sig.name, sig.key_id) not in log_keys
                continue
            blob = base64.b64encode(sig.key_id + sig.signature).decode()
            try:
                witness.verifier.verify(text, f"{SIG_PREFIX}{sig.name} {blob}\n")
            except ProofError:
                bad.add(witness.name)
                continue
            good.add(witness.name)
        good -= bad
        ok = self.holds(good)
        return QuorumResult(
            ok,
            [w.name for w in self.witnesses if w.name in good],
            [w.name for w in self.witnesses if w.name in bad],
            unknown,
            self.required,
            log_origin,
            "" if ok else "the witness quorum does not hold",
        )

    def _short(self, sigs: list, reason: str) -> QuorumResult:
        return QuorumResult(False, [], [], len(sigs), self.required, None, reason)


class _Parser:
    """One pass over the lines of a policy, building the policy's parts in order."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.logs: list[PolicyLog] = []
        self.witnesses: list[PolicyWitness] = []
        self.groups: list[PolicyGroup] = []
        self.quorum: str | None = None
        self.names: dict[str, str] = {}  # name -> "witness" | "group"
        self.keys: set[bytes] = set()
        self.later = self._all_definitions()

    def _all_definitions(self) -> dict[str, tuple[str, ...]]:
        """Return {group or witness name: its members} over the whole file (for cycle reports)."""
        out: dict[str, tuple[str, ...]] = {}
        for raw in self.text.split("\n"):
            fields = raw.replace("\t", " ").split(" ")
            fields = [f for f in fields if f]
            if len(fields) >= 3 and fields[0] == "witness":
                out.setdefault(fields[1], ())
            elif len(fields) >= 4 and fields[0] == "group":
                out.setdefault(fields[1], tuple(fields[3:]))
        return out

    def _closes_cycle(self, start: str, target: str) -> bool:
        """Return True if `target` reaches `start` through whole-file group definitions."""
        seen: set[str] = set()
        stack = [target]
        while stack:
            name = stack.pop()
            if name == start:
                return True
            if name not in seen:
                seen.add(name)
                stack.extend(self.later.get(name, ()))
        return False

    def _reference(self, name: str, owner: str, number: int) -> None:
        """Raise PolicyError unless `name` is a name defined on a preceding line."""
        if name in self.names:
            return
        if name == NONE:
            raise PolicyError("reserved-name", _at(number, "'none' cannot be a group member"))
        if name == owner or (name in self.later and self._closes_cycle(owner, name)):
            raise PolicyError("cycle", _at(number, f"{name!r} refers back to {owner!r}"))
        if name in self.later:
            raise PolicyError(
                "forward-reference", _at(number, f"{name!r} is defined on a later line")
            )
        raise PolicyError("unknown-member", _at(number, f"{name!r} is not defined"))

    def _define(self, name: str, kind: str, number: int) -> None:
        if name == NONE:
            raise PolicyError("reserved-name", _at(number, "the name 'none' is predefined"))
        if name in self.names:
            raise PolicyError("duplicate-name", _at(number, f"{name!r} is already defined"))
        self.names[name] = kind

    def _key(self, public_key: bytes, code: str, number: int) -> None:
        if public_key in self.keys:
            raise PolicyError(code, _at(number, "this public key is already listed"))
        self.keys.add(public_key)

    def line(self, number: int, fields: list[str]) -> None:
        """Parse one non-empty, non-comment line (split into fields)."""
        keyword = fields[0]
        if keyword == "log":
            self._log(number, fields)
        elif keyword == "witness":
            self._witness(number, fields)
        elif keyword == "group":
            self._group(number, fields)
        elif keyword == "quorum":
            if len(fields) != 2:
                raise PolicyError("bad-line", _at(number, "expected 'quorum <name>'"))
            if self.quorum is not None:
                raise PolicyError("duplicate-quorum", _at(number, "a second quorum line"))
            if fields[1] != NONE:
                self._reference(fields[1], "quorum", number)
            self.quorum = fields[1]
        else:
            raise PolicyError("bad-line", _at(number, f"unknown keyword {keyword[:40]!r}"))

    def _log(self, number: int, fields: list[str]) -> None:
        if len(fields) not in (2, 3):
            raise PolicyError("bad-line", _at(number, "expected 'log <vkey> [<url>]'"))
        try:
            verifier = NoteVerifier.from_vkey(fields[1])
        except (ProofError, UnicodeEncodeError) as exc:
            raise PolicyError("bad-vkey", _at(number, str(exc))) from None
        self._key(verifier.public_key, "duplicate-log", number)
        self.logs.append(PolicyLog(verifier, _url(fields, 2, number)))
        if len(self.logs) > MAX_LOGS:
            raise PolicyError("too-large", _at(number, f"more than {MAX_LOGS} logs"))

    def _witness(self, number: int, fields: list[str]) -> None:
        if len(fields) not in (3, 4):
            raise PolicyError("bad-line", _at(number, "expected 'witness <name> <vkey> [<url>]'"))
        try:
            verifier = CosignatureVerifier.from_vkey(fields[2])
        except (ProofError, UnicodeEncodeError) as exc:
            raise PolicyError("bad-vkey", _at(number, str(exc))) from None
        self._define(fields[1], "witness", number)
        self._key(verifier.public_key, "duplicate-witness", number)
        self.witnesses.append(PolicyWitness(fields[1], verifier, _url(fields, 3, number)))
        if len(self.witnesses) > MAX_WITNESSES:
            raise PolicyError("too-large", _at(number, f"more than {MAX_WITNESSES} witnesses"))

    def _group(self, number: int, fields: list[str]) -> None:
        if len(fields) < 4:
            raise PolicyError("bad-line", _at(number, "expected 'group <name> <k> <name>...'"))
        name, members = fields[1], tuple(fields[3:])
        if len(set(members)) != len(members):
            raise PolicyError("duplicate-member", _at(number, "a name is listed twice"))
        if name in members:
            raise PolicyError("cycle", _at(number, f"group {name!r} lists itself"))
        for member in members:
            self._reference(member, name, number)
        k = _threshold(fields[2], len(members), number)
        self._define(name, "group", number)
        self.groups.append(PolicyGroup(name, k, members))
        if len(self.groups) > MAX_GROUPS:
            raise PolicyError("too-large", _at(number, f"more than {MAX_GROUPS} groups"))


def parse_policy(text: str | bytes) -> WitnessPolicy:
    """Return the WitnessPolicy of tlog-policy text; raise PolicyError (module doc) otherwise.

    Bytes are checked octet by octet (tlog-policy "Character set") and decoded with
    surrogateescape, so names are compared as octet strings.
    """
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError("too-large", f"the policy is over {MAX_POLICY_BYTES} bytes")
    _check_bytes(data)
    decoded = data.decode("utf-8", "surrogateescape")
    parser = _Parser(decoded)
    for number, raw in enumerate(decoded.split("\n"), start=1):
        fields = [f for f in raw.replace("\t", " ").split(" ") if f]
        if not fields or fields[0].startswith("#"):
            continue
        parser.line(number, fields)
    if parser.quorum is None:
        raise PolicyError("no-quorum", "the policy has no 'quorum' line")
    return WitnessPolicy(
        tuple(parser.logs),
        tuple(parser.witnesses),
        tuple(parser.groups),
        parser.quorum,
        decoded,
    )


def load_policy(path: str) -> WitnessPolicy:
    """Return the policy in the file at `path` (parse_policy); PolicyError if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError("unreadable", f"{path}: {exc.strerror or exc}") from None
    return parse_policy(data)
