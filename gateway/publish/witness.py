"""The gateway's witness client: have every new checkpoint cosigned by the policy's witnesses.

For each witness of the policy that has a URL, one asyncio task (WitnessPublisher.run) submits
the newest signed checkpoint with C2SP tlog-witness "add-checkpoint" (c2sp.org/tlog-witness):

    POST <url>/add-checkpoint
    old <size the witness last cosigned>\\n
    <RFC 9162 2.1.4 consistency proof from that size, one base64 hash a line>\\n ...
    \\n
    <the gateway's signed checkpoint note>

A 200 answer holds cosignature/v1 lines (c2sp.org/tlog-cosignature); each is verified with the
witness's policy key before it is stored. A 409 answer (Content-Type text/x.tlog.size) gives the
witness's current size: the client proves again from it and retries once. Anything else is
retried with capped exponential backoff; a witness that is down delays only its own task, never
ingest or the API (the tasks only read the ledger, in worker threads).

Answers that say the log misbehaved, or that the witness does, raise the witness alarm (logged,
counted in /metrics and /v1/gateway, and kept as evidence in the alarm table):

    inconsistent   422: the witness's cosigned tree is not a prefix of ours (a fork of our log)
    ahead          409 with a size above our tree: the witness cosigned a larger tree of our
                   origin than we have (a fork or a rolled-back ledger)
    refused        403: the witness does not accept our key or signature
    unknown-log    404: the witness does not witness our origin (configuration)
    bad-request    400/413: the witness refused the request's form (a bug)
    bad-cosignature 200 with a line that does not verify with the witness's policy key

Durable state (CosignatureStore, `<data_dir>/cosignatures.db`, SQLite WAL, synchronous=FULL):
the size each witness last cosigned (so a restart resumes from it), the checkpoint text each
cosignature covers and the cosignature lines, and the alarms. A file of its own rather than the
gateway's state.db: state.db is owned by the writer thread and rebuilt from the log, whereas
cosignatures cannot be rebuilt (a witness never cosigns an older tree again) and their writes,
paced by remote witnesses, must never queue behind or in front of ingest's group commits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from gateway.errors import ProofError
from gateway.ledger.note import Checkpoint, parse_checkpoint, parse_note
from gateway.publish.policy import PolicyWitness, QuorumResult, WitnessPolicy

log = logging.getLogger("edgeseal.witness-client")

DB_NAME = "cosignatures.db"
SIZE_CONTENT_TYPE = "text/x.tlog.size"  # tlog-witness, add-checkpoint, 409 response
# why: a witness answers in milliseconds on a LAN and within seconds across the internet; a
# stalled one must not hold its task much longer than a few batch intervals.
REQUEST_TIMEOUT_S = 10.0
# why: the first retry after a failure comes soon (a witness restarting), later ones at most
# every MAX_BACKOFF_S so that an outage costs one small request per witness and interval.
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0
# why: the newest tree size is polled at this pace: a dict read, far cheaper than a request, and
# well inside the checkpoint latency bound (batch_interval_ms, default 1 s).
POLL_INTERVAL_S = 0.05
# why: the API composes the newest notes from memory; the cosignatures of this many recent
# sizes are cached (older ones stay in the database).
RECENT_SIZES = 64
# why: /v1/checkpoint, /v1/gateway and /metrics compose the newest notes on every request; the
# policy's verdict on each distinct note is kept (a few recent sizes times their cosigners).
CHECKED_NOTES = 4 * RECENT_SIZES
# why: a cosignature answer is one or a few lines; a larger body is not a witness's answer.
MAX_ANSWER_BYTES = 64 * 1024
# why: tlog-witness, add-checkpoint: a size line is at most 20 digits and a newline.
MAX_SIZE_ANSWER_BYTES = 32
MAX_EVIDENCE_BYTES = 16 * 1024
BUSY_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS witness_size (
    vkey TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    updated_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS checkpoint (
    size INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    log_signature TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS cosignature (
    size INTEGER NOT NULL REFERENCES checkpoint(size),
    vkey TEXT NOT NULL,
    line TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (size, vkey)
) STRICT;
CREATE TABLE IF NOT EXISTS alarm (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    witness TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    evidence TEXT NOT NULL
) STRICT;
"""


class CheckpointSource(Protocol):
    """What the client reads of the log (gateway.ledger.Ledger has it); thread-safe reads."""

    @property
    def tree_size(self) -> int: ...

    def checkpoint(self) -> bytes: ...

    def checkpoint_at(self, size: int) -> bytes: ...

    def prove_consistency(self, size1: int, size2: int) -> list[bytes]: ...


def split_checkpoint(note: bytes) -> tuple[str, str]:
    """Return (checkpoint text, its first signature line) of the gateway's signed note."""
    text = note.decode("utf-8")
    body, _, sigs = text.partition("\n\n")
    first = sigs.split("\n", 1)[0]
    return body + "\n", first + "\n"


class CosignatureStore:
    """The client's durable state in `<data_dir>/cosignatures.db` (module doc)."""

    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, DB_NAME)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database (every write committed before it returned)."""
        with self._lock:
            self._conn.close()

    def sizes(self) -> dict[str, int]:
        """Return {witness vkey: size it last cosigned (or told us in a 409)}."""
        with self._lock:
            rows = self._conn.execute("SELECT vkey, size FROM witness_size").fetchall()
        return {str(v): int(s) for v, s in rows}

    def set_size(self, vkey: str, name: str, size: int) -> None:
        """Record that the witness of vkey is at `size` (a 409 told us, or it cosigned)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO witness_size (vkey, name, size, updated_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (vkey) DO UPDATE SET name = excluded.name, size = excluded.size,"
                " updated_ms = excluded.updated_ms",
                (vkey, name, size, int(time.time() * 1000)),
            )

    def add(
        self, size: int, body: str, log_line: str, vkey: str, name: str, line: str, ts: int
    ) -> None:
        """Store a verified cosignature `line` (timestamp ts) of checkpoint `body` at `size` and
        move the witness's size to `size`, in one transaction.

        Raises ValueError if another checkpoint text is stored for that size (the caller checks
        first: the gateway never signs two texts for one size).
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT body FROM checkpoint WHERE size = ?", (size,)).fetchone()
                if row is not None and row[0] != body:
                    raise ValueError(f"another checkpoint text is stored for size {size}")
                if row is None:
                    conn.execute(
                        "INSERT INTO checkpoint (size, body, log_signature) VALUES (?, ?, ?)",
                        (size, body, log_line),
                    )
                conn.execute(
                    "INSERT OR REPLACE INTO cosignature (size, vkey, line, timestamp)"
                    " VALUES (?, ?, ?, ?)",
                    (size, vkey, line, ts),
                )
                conn.execute(
                    "INSERT INTO witness_size (vkey, name, size, updated_ms) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (vkey) DO UPDATE SET name = excluded.name,"
                    " size = excluded.size, updated_ms = excluded.updated_ms",
                    (vkey, name, size, int(time.time() * 1000)),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def recent(self, limit: int) -> list[tuple[int, str, str, dict[str, str]]]:
        """Return [(size, body, log line, {vkey: cosignature line})] of the newest `limit`
        sizes that have cosignatures, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT size, body, log_signature FROM checkpoint ORDER BY size DESC LIMIT ?",
                (limit,),
            ).fetchall()
            out = []
            for size, body, log_line in rows:
                lines = self._conn.execute(
                    "SELECT vkey, line FROM cosignature WHERE size = ?", (size,)
                ).fetchall()
                out.append(
                    (int(size), str(body), str(log_line), {str(v): str(x) for v, x in lines})
                )
        return out

    def add_alarm(self, witness: str, kind: str, detail: str, evidence: str) -> None:
        """Keep an alarm and its evidence (the request's checkpoint, the witness's answer)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO alarm (time_ms, witness, kind, detail, evidence) VALUES (?, ?, ?, ?, ?)",
                (int(time.time() * 1000), witness, kind, detail, evidence[:MAX_EVIDENCE_BYTES]),
            )

    def alarms(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the newest `limit` alarms, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, time_ms, witness, kind, detail FROM alarm ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("id", "time_ms", "witness", "kind", "detail")
        return [dict(zip(keys, row, strict=True)) for row in rows]


@dataclass
class WitnessStatus:
    """What the client knows of one witness (for /v1/gateway and /metrics)."""

    name: str
    url: str | None
    size: int = 0
    cosigned: int = 0  # cosignatures collected since start
    failures: int = 0  # requests that failed since start (transient or alarm)
    alarms: int = 0  # alarms raised since start
    last_error: str = ""
    last_alarm: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the /v1/gateway view of this witness."""
        return {
            "name": self.name,
            "url": self.url,
            "size": self.size,
            "cosigned": self.cosigned,
            "failures": self.failures,
            "alarms": self.alarms,
            "last_error": self.last_error,
            "last_alarm": self.last_alarm,
        }


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A signed checkpoint note with the cosignatures collected for it.

    note: the C2SP signed note, the gateway's signature line first, then the cosignature/v1
    lines in policy order; quorum: the policy's check of the note (None without a policy).
    """

    size: int
    note: bytes
    quorum: QuorumResult | None = None


class WitnessAlarm(Exception):
    """An answer that shows the log or the witness misbehaving (kind: module doc)."""

    def __init__(self, kind: str, detail: str, evidence: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.evidence = evidence


class Transient(Exception):
    """A failure to retry later: the witness is down, slow, or answered 5xx."""


@dataclass
class _Recent:
    body: str
    log_line: str
    lines: dict[str, str] = field(default_factory=dict)  # vkey -> cosignature line


def request_body(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """Return the tlog-witness add-checkpoint body: "old N", proof lines, blank line, note."""
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old_size}\n{lines}\n".encode() + note


class WitnessPublisher:
    """Collects cosignatures for the newest checkpoint from every witness of a policy."""

    def __init__(
        self,
        policy: WitnessPolicy,
        source: Callable[[], CheckpointSource],
        store: CosignatureStore,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        """policy: the witnesses; source() returns the open ledger; store: durable state."""
        self.policy = policy
        self._source = source
        self.store = store
        self._transport = transport
        self._timeout_s = request_timeout_s
        self._max_backoff_s = max_backoff_s
        sizes = store.sizes()
        self.status = {
            w.name: WitnessStatus(w.name, w.url, sizes.get(_vkey(w), 0)) for w in policy.witnesses
        }
        self._vkeys = {w.name: _vkey(w) for w in policy.witnesses}
        self._recent: OrderedDict[int, _Recent] = OrderedDict()
        for size, body, log_line, lines in reversed(store.recent(RECENT_SIZES)):
            self._recent[size] = _Recent(body, log_line, lines)
        self._cache_lock = threading.Lock()
        self._checked: OrderedDict[bytes, QuorumResult] = OrderedDict()

    # ---- reads (any thread) ----------------------------------------------------------------

    def compose(self, note: bytes) -> WitnessedCheckpoint:
        """Return the signed checkpoint `note` with the cosignatures collected for its text.

        Precondition: note is the gateway's signed checkpoint (its first signature line is the
        gateway's). Cosignatures stored for the same size but another text are not attached.
        """
        body, first = split_checkpoint(note)
        size = parse_checkpoint(body).size
        with self._cache_lock:
            entry = self._recent.get(size)
            lines = dict(entry.lines) if entry is not None and entry.body == body else {}
        cosigs = "".join(lines[self._vkeys[w.name]] for w in self.policy.witnesses
                         if self._vkeys[w.name] in lines)  # fmt: skip
        full = (body + "\n" + first + cosigs).encode()
        with self._cache_lock:
            result = self._checked.get(full)
        if result is None:  # Ed25519 verifications: once per distinct note, not per request
            result = self.policy.check(full)
            with self._cache_lock:
                self._checked[full] = result
                while len(self._checked) > CHECKED_NOTES:
                    self._checked.popitem(last=False)
        return WitnessedCheckpoint(size, full, result)

    def newest(self) -> WitnessedCheckpoint:
        """Return the ledger's newest checkpoint with the cosignatures collected so far."""
        return self.compose(self._source().checkpoint())

    def newest_with_quorum(self) -> WitnessedCheckpoint | None:
        """Return the newest checkpoint whose collected cosignatures satisfy the quorum, or None.

        `quorum none` makes every checkpoint qualify (the newest is returned).
        """
        newest = self.newest()
        if newest.quorum is not None and newest.quorum.ok:
            return newest
        with self._cache_lock:
            candidates = sorted(self._recent.items(), reverse=True)
        for size, entry in candidates:
            if size >= newest.size:
                continue
            note = (entry.body + "\n" + entry.log_line).encode()
            found = self.compose(note)
            if found.quorum is not None and found.quorum.ok:
                return found
        return None

    def alarm_count(self) -> int:
        """Return the number of witness alarms raised since start."""
        return sum(s.alarms for s in self.status.values())

    def to_json(self) -> dict[str, Any]:
        """Return the /v1/gateway "witnesses" view: the quorum of the newest checkpoint and
        each witness's status."""
        newest = self.newest()
        good = newest.quorum
        best = self.newest_with_quorum()
        return {
            "quorum": good.summary if good is not None else None,
            "quorum_ok": bool(good and good.ok),
            "cosigned_by": good.cosigned_by if good is not None else [],
            "newest_quorum_size": best.size if best is not None else None,
            "alarms": self.alarm_count(),
            "witnesses": [self.status[w.name].to_json() for w in self.policy.witnesses],
        }

    # ---- the tasks ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Submit every new checkpoint to every witness with a URL until `stop` is set."""
        witnesses = [w for w in self.policy.witnesses if w.url]
        if not witnesses:
            return
        async with httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout_s, follow_redirects=False
        ) as client:
            tasks = [
                asyncio.create_task(self._loop(client, w, stop), name=f"witness {w.name}")
                for w in witnesses
            ]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(
        self, client: httpx.AsyncClient, witness: PolicyWitness, stop: asyncio.Event
    ) -> None:
        """Keep one witness at the newest checkpoint: submit, back off on failure."""
        status = self.status[witness.name]
        backoff_s = 0.0
        done_size = -1  # the tree size this task last brought the witness to
        while not stop.is_set():
            wait_s = backoff_s if backoff_s else POLL_INTERVAL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)
            if stop.is_set():
                return
            try:
                led = self._source()
                size = led.tree_size
            except Exception:  # the ledger is closing: the node stops us next
                continue
            if size == done_size and not backoff_s:
                continue
            try:
                await self._submit(client, witness, status)
                done_size = size
                backoff_s = 0.0
            except WitnessAlarm as alarm:
                status.failures += 1
                status.alarms += 1
                status.last_alarm = f"{alarm.kind}: {alarm.detail}"
                log.error("witness alarm from %s: %s: %s", witness.name, alarm.kind, alarm.detail)
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.to_thread(
                        self.store.add_alarm, witness.name, alarm.kind, alarm.detail, alarm.evidence
                    )
                backoff_s = self._next_backoff(backoff_s)
            except (Transient, httpx.HTTPError, OSError, sqlite3.Error) as exc:
                status.failures += 1
                status.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.info("witness %s: %s (retrying)", witness.name, status.last_error)
                backoff_s = self._next_backoff(backoff_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                status.failures += 1
                log.exception("witness %s: unexpected failure", witness.name)
                backoff_s = self._next_backoff(backoff_s)

    def _next_backoff(self, backoff_s: float) -> float:
        return min(self._max_backoff_s, max(INITIAL_BACKOFF_S, backoff_s * 2))

    async def _submit(
        self, client: httpx.AsyncClient, witness: PolicyWitness, status: WitnessStatus
    ) -> None:
        """Bring the witness to the newest checkpoint (tlog-witness add-checkpoint).

        On 409 the witness's size replaces ours and the request is made once more. Raises
        WitnessAlarm, Transient or httpx.HTTPError.
        """
        led = self._source()
        note = await asyncio.to_thread(led.checkpoint)
        body, log_line = split_checkpoint(note)
        checkpoint = parse_checkpoint(body)
        if (
            checkpoint.size == 0
            or status.size == checkpoint.size
            and self._has(checkpoint, body, witness)
        ):
            return
        for attempt in range(2):
            old = status.size
            if old > checkpoint.size:
                raise WitnessAlarm(
                    "ahead",
                    f"the witness cosigned size {old} of our origin, our tree has {checkpoint.size}",
                    note.decode("utf-8", "replace"),
                )
            proof = (
                []
                if old in (0, checkpoint.size)
                else await asyncio.to_thread(led.prove_consistency, old, checkpoint.size)
            )
            answer = await client.post(
                f"{witness.url}/add-checkpoint",
                content=request_body(old, proof, note),
                headers={"content-type": "text/plain"},
            )
            if answer.status_code == 409 and attempt == 0:
                status.size = self._conflict_size(answer, note)
                await asyncio.to_thread(
                    self.store.set_size, _vkey(witness), witness.name, status.size
                )
                continue
            await self._answer(answer, witness, status, checkpoint, body, log_line, note)
            return

    def _has(self, checkpoint: Checkpoint, body: str, witness: PolicyWitness) -> bool:
        with self._cache_lock:
            entry = self._recent.get(checkpoint.size)
            return entry is not None and entry.body == body and _vkey(witness) in entry.lines

    def _conflict_size(self, answer: httpx.Response, note: bytes) -> int:
        """Return the size in a 409 answer (tlog-witness: text/x.tlog.size, "<size>\\n")."""
        kind = answer.headers.get("content-type", "").split(";")[0].strip()
        text = answer.content[:MAX_SIZE_ANSWER_BYTES].decode("ascii", "replace")
        if kind != SIZE_CONTENT_TYPE or not text.endswith("\n") or not text[:-1].isdigit():
            raise WitnessAlarm("bad-request", f"409 without a size: {text[:40]!r}", "")
        return int(text[:-1])

    async def _answer(
        self,
        answer: httpx.Response,
        witness: PolicyWitness,
        status: WitnessStatus,
        checkpoint: Checkpoint,
        body: str,
        log_line: str,
        note: bytes,
    ) -> None:
        """Handle the final answer of an add-checkpoint request (module doc)."""
        code = answer.status_code
        text = answer.content[:2048].decode("utf-8", "replace")
        evidence = f"request checkpoint:\n{note.decode('utf-8', 'replace')}\nanswer {code}: {text}"
        if code == 200:
            lines = _cosignature_lines(answer.content)
            for line in lines:
                try:
                    ts = witness.verifier.verify(body, line)
                except ProofError:
                    continue
                await asyncio.to_thread(
                    self.store.add, checkpoint.size, body, log_line, _vkey(witness),
                    witness.name, line, ts,
                )  # fmt: skip
                self._remember(checkpoint.size, body, log_line, _vkey(witness), line)
                status.size = checkpoint.size
                status.cosigned += 1
                return
            raise WitnessAlarm(
                "bad-cosignature", "no answer line verifies with the policy key", evidence
            )
        if code == 409:
            size = self._conflict_size(answer, note)
            status.size = size
            await asyncio.to_thread(self.store.set_size, _vkey(witness), witness.name, size)
            if size > checkpoint.size:
                raise WitnessAlarm(
                    "ahead", f"the witness is at size {size} > our {checkpoint.size}", evidence
                )
            raise Transient(f"409 again (witness at size {size})")
        if code == 422:
            raise WitnessAlarm(
                "inconsistent", "the witness refused our consistency proof", evidence
            )
        if code == 403:
            raise WitnessAlarm("refused", "the witness refused our signature", evidence)
        if code == 404:
            raise WitnessAlarm("unknown-log", "the witness does not witness our origin", evidence)
        if code in (400, 413):
            raise WitnessAlarm("bad-request", f"{code}: {text[:200]}", evidence)
        raise Transient(f"HTTP {code}: {text[:200]}")

    def _remember(self, size: int, body: str, log_line: str, vkey: str, line: str) -> None:
        with self._cache_lock:
            entry = self._recent.get(size)
            if entry is None or entry.body != body:
                entry = _Recent(body, log_line)
                self._recent[size] = entry
                self._recent = OrderedDict(sorted(self._recent.items()))
                while len(self._recent) > RECENT_SIZES:
                    self._recent.popitem(last=False)
            entry.lines[vkey] = line


def _vkey(witness: PolicyWitness) -> str:
    """Return the witness's key as a stable storage key (its vkey string)."""
    v = witness.verifier
    data = base64.b64encode(b"\x04" + v.public_key).decode()
    return f"{v.name}+{v.key_id.hex()}+{data}"


def _cosignature_lines(content: bytes) -> list[str]:
    """Return the signature lines of a 200 answer (bounded; tlog-witness: one or more lines)."""
    if len(content) > MAX_ANSWER_BYTES:
        return []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [line + "\n" for line in text.split("\n") if line]


def checkpoint_of(note: bytes) -> Checkpoint:
    """Return the checkpoint of a signed note (no verification); ProofError if malformed."""
    return parse_checkpoint(parse_note(note)[0])
