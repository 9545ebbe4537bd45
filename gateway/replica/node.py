"""The replica node: its store, the sync thread and the read model the API serves from its copy.

`ReplicaNode(options)` opens (or creates) `<data_dir>/replica.db` and replays what it holds (a
restart after SIGKILL resumes from the last committed checkpoint: gateway.replica.store);
`start()` runs the sync loop in a thread; `reads` is the gateway's own ReadModel
(gateway.node.reads) over the replica's read-only Ledger view, its replayed contract state and
its LogIndex, so the API routes of the gateway serve the copy unchanged.

On misbehaviour the node raises the alarm: an ERROR log line, a row in the replica's alarm table
(shown by /v1/replica, counted in /metrics), the evidence file `<data_dir>/evidence/<kind>-
<size>-<UTC time>.json`, and it stops advancing (a restart keeps the alarm; the copy up to the
last verified checkpoint stays served).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from gateway.contracts import Engine
from gateway.contracts.engine import State
from gateway.files import write_atomically
from gateway.ledger import Ledger
from gateway.ledger.note import NoteVerifier, parse_checkpoint, parse_note
from gateway.node.reads import ReadModel
from gateway.node.sequencer import Sequencer
from gateway.publish.policy import WitnessPolicy, load_policy
from gateway.replica import evidence
from gateway.replica.anchors import AnchorRef, AnchorWatch
from gateway.replica.client import TilesClient, Unavailable
from gateway.replica.replay import Replay
from gateway.replica.store import ReplicaStore
from gateway.replica.sync import Misbehaviour, NotTrusted, Syncer

log = logging.getLogger("edgeseal.replica")

DB_FILE = "replica.db"
EVIDENCE_DIR = "evidence"
# why: the gateway's /checkpoint may be cached 2 s (gateway/api/routes/tiles.py) and integrates
# about once a second; polling every 2 s keeps a replica within a few seconds of the gateway.
POLL_S = 2.0
# why: evidence is for anyone to check: readable by all, written by the replica's user only.
EVIDENCE_FILE_MODE = 0o644


@dataclass
class ReplicaOptions:
    """What `edgeseal replica` is given: the log's URL, the data dir, its vkey, a policy file."""

    source: str
    data_dir: Path
    vkey: str
    policy: str | None = None
    poll_s: float = POLL_S
    anchor: AnchorRef | None = None  # the chain the gateway anchors on, to cross-check


@dataclass
class SyncStatus:
    """What the sync loop did last (for /v1/replica and /metrics)."""

    steps: int = 0
    entries_synced: int = 0
    last_step_entries: int = 0
    last_step_s: float = 0.0
    last_ok_at: float | None = None
    last_error: str = ""
    running: bool = False


class _Source:
    """What ReadModel reads through (the sequencer's `ledger`, `open_ledger()`, `state`), for the
    replica's copy: its read-only Ledger and the replayed state. ReadModel's writer-side method
    (ingest_events) is never mounted on the replica's API."""

    def __init__(self, node: ReplicaNode) -> None:
        self._node = node

    @property
    def ledger(self) -> Ledger:
        return self._node.reader

    def open_ledger(self) -> Ledger:
        return self._node.reader

    @property
    def state(self) -> State:
        return self._node.syncer.replay.state


class ReplicaNode:
    """One participant's replica of one gateway's log (module doc)."""

    def __init__(self, options: ReplicaOptions, *, engine: Engine | None = None) -> None:
        """Open the store and replay it (blocking). Raises ProofError("bad-vkey") for a bad key,
        ValueError if the data dir replicates another log, PolicyError for a bad policy file."""
        self.options = options
        self.verifier = NoteVerifier.from_vkey(options.vkey)
        self.policy: WitnessPolicy | None = load_policy(options.policy) if options.policy else None
        options.data_dir.mkdir(parents=True, exist_ok=True)
        path = str(options.data_dir / DB_FILE)
        self.store = ReplicaStore(path, self.verifier.name, self.verifier.vkey)
        try:
            self.reader = Ledger.open_readonly(path)
        except BaseException:
            self.store.close()
            raise
        self.engine = engine or Engine()
        self.client = TilesClient(options.source)
        self.syncer = Syncer(
            self.store,
            self.reader,
            lambda: Replay(self.engine, self.reader),
            self.client,
            self.verifier,
            self.policy,
        )
        self.anchors = AnchorWatch(options.anchor) if options.anchor is not None else None
        # the API thread reads alarms from memory, never through the sync thread's connection
        self._alarms = self.store.alarms()
        self.status = SyncStatus()
        self.started_at = time.monotonic()
        self._reads: tuple[Replay, ReadModel] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def reads(self) -> ReadModel:
        """Return the gateway's read model over the replica's copy (gateway.node.reads)."""
        replay = self.syncer.replay
        if self._reads is None or self._reads[0] is not replay:
            # ReadModel is typed for the gateway's Sequencer; it reads only what _Source has
            self._reads = (replay, ReadModel(cast(Sequencer, _Source(self)), replay.index))
        return self._reads[1]

    def alarms(self) -> list[dict[str, Any]]:
        """Return the recorded alarms, oldest first."""
        return list(self._alarms)

    # ---- the sync loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sync loop in a thread."""
        self._thread = threading.Thread(target=self.run, name="edgeseal-replica-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sync loop (a step in flight finishes its current request) and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.syncer.close()
        self.client.close()
        self.syncer.replay.close()
        self.reader.close()
        self.store.close()

    def run(self) -> None:
        """Sync until stop() or an alarm (then serve the copy as it is)."""
        self.status.running = True
        try:
            while not self._stop.is_set():
                if self.alarms():
                    log.error("replica alarm raised: not advancing (see /v1/replica)")
                    return
                added = self.sync_once()
                if not added:
                    self._stop.wait(self.options.poll_s)
        finally:
            self.status.running = False

    def sync_once(self) -> int:
        """Run one sync step; return the entries it added (0 on no change or failure)."""
        started = time.monotonic()
        try:
            added = self.syncer.step()
        except Misbehaviour as m:
            self.raise_alarm(m)
            return 0
        except (NotTrusted, Unavailable) as exc:
            self.status.last_error = str(exc)
            log.warning("sync: %s", exc)
            return 0
        except Exception as exc:
            self.status.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("sync step failed")
            return 0
        self.reader.checkpoint()  # the read-only view reloads its sizes
        if self.anchors is not None and self.anchors.due():  # eth_getLogs at most every 30 s
            self.check_anchors()
        st = self.status
        st.steps += 1
        st.last_ok_at = time.time()
        st.last_error = ""
        if added:
            st.entries_synced += added
            st.last_step_entries = added
            st.last_step_s = time.monotonic() - started
            log.info(
                "synced %d entries to tree size %d in %.2f s",
                added,
                self.reader.tree_size,
                st.last_step_s,
            )
        return added

    def check_anchors(self) -> None:
        """Cross-check the gateway's anchors with the verified copy (gateway.replica.anchors);
        raise the alarm on a contradiction. A chain node that does not answer is logged and
        shown in /v1/replica, never an alarm."""
        assert self.anchors is not None
        held = self.store.checkpoint()
        if held is None:
            return
        try:
            self.anchors.check(self.reader, held, self.verifier)
        except Misbehaviour as m:
            self.raise_alarm(m)
        except Exception as exc:  # NodeDown, a wrong chain: the check waits for the next round
            self.anchors.view.error = f"{type(exc).__name__}: {exc}"
            log.warning("anchor check: %s", exc)

    def raise_alarm(self, m: Misbehaviour) -> str:
        """Export m's evidence, record and log the alarm; return the evidence file's path."""
        folder = self.options.data_dir / EVIDENCE_DIR
        folder.mkdir(exist_ok=True)
        size = parse_checkpoint(parse_note(m.doc["checkpoints"][-1].encode())[0]).size
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = str(folder / f"{m.kind}-{size}-{stamp}.json")
        write_atomically(path, evidence.dumps(m.doc), EVIDENCE_FILE_MODE)
        self.store.add_alarm(m.kind, m.detail, path)
        self._alarms = self.store.alarms()
        log.error("ALARM %s: %s; evidence: %s", m.kind, m.detail, path)
        return path

    def to_json(self) -> dict[str, Any]:
        """Return the /v1/replica body: source, sizes, state hash, sync status, alarms."""
        led = self.reader
        st = self.status
        return {
            "source": self.options.source,
            "origin": led.origin,
            "vkey": led.vkey,
            "tree_size": led.tree_size,
            "sequenced_size": led.sequenced_size,
            "state_hash": self.reads.state_hash_hex(),
            "policy": self.options.policy,
            "anchor": None if self.anchors is None else self.anchors.view.to_json(),
            "sync": {
                "running": st.running,
                "steps": st.steps,
                "entries_synced": st.entries_synced,
                "last_step_entries": st.last_step_entries,
                "last_step_s": round(st.last_step_s, 3),
                "last_ok_at": st.last_ok_at,
                "last_error": st.last_error,
            },
            "alarms": self.alarms(),
        }
