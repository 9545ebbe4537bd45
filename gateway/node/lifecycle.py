"""The gateway node's lifecycle: compose sequencer, read model and BLE link; start, watch, stop.

`Node(settings)` opens everything (blocking: the start-up replay); `await node.start()` starts
the group-commit and integration loops, the BLE link (BlueZ through bleak, or the radio an
`Extension` brings) and the systemd watchdog; `await node.stop()` finishes the batch in flight,
integrates everything and closes. Something composed from outside the gateway (the simulated
world of tools/sim) plugs in as an `Extension`: it may bring the radio the link uses and runs as
a task of the node; the gateway never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.ble.auth import LINK_KEY_FILE, LinkKeys, load_or_create_master
from gateway.ble.link import BleakBackends, BleLink, LinkConfig
from gateway.ble.ota import OtaPusher
from gateway.config import Settings
from gateway.contracts import Engine
from gateway.errors import StartupRefused
from gateway.files import create_exclusive
from gateway.node.index import Counters, LogIndex
from gateway.node.reads import ReadModel
from gateway.node.sequencer import Sequencer
from gateway.release import (
    MANIFEST_FILE,
    PUBLISHED_DIR,
    Release,
    ReleaseError,
    load_published,
)
from gateway.systemd import Notifier

if TYPE_CHECKING:
    from gateway.anchor.service import AnchorService
    from gateway.mqtt.bridge import MqttBridge
    from gateway.publish.witness import WitnessPublisher

log = logging.getLogger("edgeseal.node")

# why: the ledger integrates at the latest batch_interval_ms after an append; checking four times
# per interval keeps the checkpoint latency within 1.25x the interval.
TICKS_PER_BATCH_INTERVAL = 4
# why: systemd's watchdog is pinged only if the writer thread answers within this bound.
WRITER_PING_TIMEOUT_S = 5.0
# why: the link and the extension get this long to finish their uploads on stop; an upload is
# bounded by the link's own timeouts (stall 10 s), so 15 s lets one in flight complete.
STOP_TIMEOUT_S = 15.0
# why: boards are enrolled and releases published while the gateway runs; the running link
# takes both up within this long (a sleepy board's window period, a release's first push),
# for one registry read and one stat per period.
LINK_REFRESH_S = 10.0
TOKEN_FILE_MODE = 0o600
TOKEN_BYTES = 32  # 256-bit operator token
# why: the same floor as a configured token (gateway/config.py): a short token can be guessed
# over the API, and an empty one would make an empty bearer header an admin credential.
MIN_TOKEN_CHARS = 16


@dataclass
class BleStatus:
    """What the BLE link is doing: mode bluez/virtual/off, status running/unavailable/stopped."""

    mode: str = "off"
    status: str = "stopped"
    detail: str = ""


@dataclass(frozen=True)
class Radio:
    """The radio an extension brings: bleak backend classes, a mode name and a detail line."""

    backends: BleakBackends
    mode: str
    detail: str


class Extension(Protocol):
    """Something composed with a node from outside the gateway (e.g. tools/sim's virtual fleet).

    Called in this order: `radio()` before the link starts (None: use BlueZ, if settings.ble);
    `run(node)` as a task once the node is running (cancelled on stop); `close()` after the link
    stopped and before the last batch is committed.
    """

    async def radio(self) -> Radio | None:
        """Start what the extension needs; return the radio the link should use, or None."""
        ...

    async def run(self, node: Node) -> None:
        """Run alongside the node until cancelled."""
        ...

    async def close(self) -> None:
        """Stop; called once, after the link stopped."""
        ...


def check_token(token: str, source: str) -> str:
    """Return token without surrounding whitespace; raise StartupRefused("bad-operator-token")
    if, stripped, it is shorter than MIN_TOKEN_CHARS (empty and whitespace-only included).

    source names where the token came from (a file path or "the configuration") for the message.
    """
    stripped = token.strip()
    if len(stripped) < MIN_TOKEN_CHARS:
        raise StartupRefused(
            "bad-operator-token",
            f"the operator token from {source} has {len(stripped)} characters (whitespace "
            f"stripped); it needs at least {MIN_TOKEN_CHARS}: delete the file to have a new one "
            "generated, or configure a longer one",
        )
    return stripped


def load_or_create_token(path: Path) -> str:
    """Return the operator token stored at path, creating it (mode 0600) on first use.

    Raises PermissionError if the file is readable by group or others, StartupRefused
    ("bad-operator-token") if it holds fewer than MIN_TOKEN_CHARS non-blank characters.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} has mode {mode:o}; it must be 0600")
        return check_token(path.read_text(), str(path))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        create_exclusive(str(path), (token + "\n").encode(), TOKEN_FILE_MODE)
    except FileExistsError:  # another process created it first: use theirs
        return load_or_create_token(path)
    return token


def sleepy_period_s(devices: Iterable[Any]) -> float:
    """Return the longest advertising period (metadata "advertise_every_s", which `edgeseal
    board provision` copies from a battery profile's "power" object) of the active devices, 0.0
    when none sleeps. The link then treats that much silence as a sleeping fleet, not a stuck
    scanner or a lost board (docs/power.md). The running link is kept up to date
    (Node.refresh_link)."""
    periods = [
        d.metadata.get("advertise_every_s")
        for d in devices
        if d.status == "active" and isinstance(d.metadata, dict)
    ]
    return float(max((p for p in periods if type(p) is int and p > 0), default=0))


def _published_release(data_dir: Path) -> Release | None:
    """Return the release published in data_dir for the link to push (docs/ota.md), or None:
    none published, or a damaged one (logged: the boards would refuse it anyway, and ingest
    must not stop over it)."""
    try:
        return load_published(data_dir)
    except (ReleaseError, OSError) as exc:
        log.error(
            "OTA: the published release in %s is not usable, not pushing it: %s", data_dir, exc
        )
        return None


def _release_stamp(data_dir: Path) -> tuple[int, int] | None:
    """Return what identifies the published release's manifest on disk (inode, mtime in ns),
    None when there is none: `edgeseal release publish` swaps the directory, so either changes."""
    try:
        st = (data_dir / PUBLISHED_DIR / MANIFEST_FILE).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class Node:
    """One gateway: its sequencer (writes), read model (queries), BLE link and loops."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None) -> None:
        """Open (or create) everything under settings.data_dir and replay the log (blocking).

        Raises what Sequencer raises (a ledger of another key, an event mismatch, the
        StartupRefused codes), StartupRefused("bad-operator-token") and StartupRefused("bad-link-key")
        (a damaged data_dir/link.key).
        """
        self.settings = settings
        self.started_at = time.monotonic()
        self.ble = BleStatus()
        self.link: BleLink | None = None
        self._release_stamp: tuple[int, int] | None = None  # the release the link pushes
        self.phase = "starting"
        self.notifier = Notifier()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.operator_token is not None:
            self.operator_token = check_token(settings.operator_token, "the configuration")
        else:
            self.operator_token = load_or_create_token(settings.token_path)
        # the BLE link master secret: every board's link key derives from it (gateway/ble/auth.py)
        self.link_keys = LinkKeys(load_or_create_master(settings.data_dir / LINK_KEY_FILE))
        self.index = LogIndex()
        self.sequencer = Sequencer(settings, engine or Engine(), self.index, lambda: self.phase)
        self.witnesses = self._open_witnesses(settings)  # None without a witness policy
        self.reads = ReadModel(self.sequencer, self.index, self.witnesses)
        self.mqtt: MqttBridge | None = None
        if settings.mqtt_url:
            try:
                self.mqtt = self._open_mqtt(settings.mqtt_url)
            except Exception:
                self.sequencer.close()
                raise
        self.anchor = self._open_anchor(settings)  # None unless settings.anchor_rpc_url
        if self.anchor is not None:  # bundles carry the anchor evidence once an anchor is final
            self.reads.anchoring = self.anchor
            self.reads.anchor_for = self._anchor_for
        self._extension: Extension | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._link_tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._closed = False

    @property
    def counters(self) -> Counters:
        """Return the node's monotonic counters for /metrics."""
        return self.index.counters

    async def start(self, extension: Extension | None = None) -> None:
        """Start the loops and the BLE link, then the extension's task.

        Precondition: called once, on the event loop that will run the node. Raises what
        extension.radio() raises (nothing has been started by then but the loops).
        """
        seq = self.sequencer
        self._tasks.append(asyncio.create_task(seq.uploads.run(), name="group-commit"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="integrate"))
        self._extension = extension
        radio = await extension.radio() if extension is not None else None
        if radio is not None or self.settings.ble:
            self._link_tasks.append(asyncio.create_task(self._run_link(radio), name="ble-link"))
        self.phase = "running"
        if extension is not None:
            self._link_tasks.append(asyncio.create_task(self._guard(extension), name="extension"))
        interval = self.notifier.watchdog_interval_s
        if interval:
            self._link_tasks.append(asyncio.create_task(self._watchdog_loop(interval), name="wd"))
        if self.mqtt is not None:  # only reads the log; cancelled on stop (its cursor is durable)
            self._link_tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt"))
        if self.witnesses is not None:  # only reads the log; its state is durable per answer
            task = asyncio.create_task(self.witnesses.run(self._stop), name="witnesses")
            self._link_tasks.append(task)
        if self.anchor is not None:  # its own worker thread: a dead chain node blocks nothing
            self._link_tasks.append(asyncio.create_task(self.anchor.run(self._stop), name="anchor"))

    def _open_anchor(self, settings: Settings) -> AnchorService | None:
        """Return the anchoring service settings configure (docs/anchoring.md), or None; raise
        AnchorError("bad-key-file") (closing the sequencer) if its key is unusable."""
        if not settings.anchor_rpc_url:
            return None
        from gateway.anchor.service import open_service  # web3 is loaded only when configured
        from gateway.anchor.source import CheckpointSource, LedgerSource, NoteSource

        source: CheckpointSource = LedgerSource(self.sequencer.open_ledger)
        if self.witnesses is not None:  # anchor what the witnesses vouched for (quorum)
            witnesses = self.witnesses

            def newest_quorum() -> bytes | None:
                best = witnesses.newest_with_quorum()
                return None if best is None else best.note

            source = NoteSource(newest_quorum, self.sequencer.open_ledger)
        try:
            return open_service(settings, source)
        except Exception:
            self.sequencer.close()
            raise

    def _anchor_for(self, index: int, size: int) -> dict[str, Any] | None:
        """Return the anchor section of entry index for a bundle against the checkpoint of
        `size` (gateway.anchor.bundled.anchor_section), None if no final anchor covers it.
        Precondition: anchoring is configured. Reads the outbox and the ledger (any thread)."""
        from gateway.anchor.bundled import anchor_section

        assert self.anchor is not None
        led = self.sequencer.open_ledger()
        return anchor_section(self.anchor.outbox, led.origin, index, size, led.prove_consistency)

    def _open_witnesses(self, settings: Settings) -> WitnessPublisher | None:
        """Return the witness client of settings.witness_policy (docs/witness.md), or None;
        raise StartupRefused("bad-witness-policy") (closing the sequencer) if it is unusable."""
        if settings.witness_policy is None:
            return None
        from gateway.publish.policy import PolicyError, load_policy
        from gateway.publish.witness import CosignatureStore, WitnessPublisher

        try:
            policy = load_policy(str(settings.witness_policy))
        except PolicyError as exc:
            self.sequencer.close()
            raise StartupRefused(
                "bad-witness-policy", f"{settings.witness_policy}: {exc.code}: {exc.message}"
            ) from None
        store = CosignatureStore(str(settings.data_dir))
        return WitnessPublisher(policy, self.sequencer.open_ledger, store)

    def _open_mqtt(self, url: str) -> MqttBridge:
        """Return the MQTT bridge of settings (docs/mqtt.md); raise StartupRefused
        ("bad-mqtt-url", "bad-mqtt-topic-prefix", "bad-mqtt-cursor")."""
        from gateway.mqtt.bridge import MqttBridge  # aiomqtt is loaded only when configured

        s = self.settings
        return MqttBridge(
            self.reads,
            s.data_dir,
            url,
            origin=self.sequencer.open_ledger().origin,
            public_url=s.public_url or f"http://{s.host}:{s.port}",
            prefix=s.mqtt_topic_prefix,
            ha_discovery=s.mqtt_ha_discovery,
        )

    async def _guard(self, extension: Extension) -> None:
        try:
            await extension.run(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the extension's task failed")

    async def _tick_loop(self) -> None:
        """Integrate on the ledger's batch policy."""
        interval_s = max(self.settings.batch_interval_ms / 1000 / TICKS_PER_BATCH_INTERVAL, 0.01)
        seq = self.sequencer
        led = seq.open_ledger()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)
            if led.pending and led.due():
                try:
                    await seq.write(seq.integrate_if_due)
                except Exception as exc:  # a full disk raises the storage alarm (logged there)
                    if seq.uploads.storage.failed("integration", exc) is None:
                        log.exception("integration failed; retrying at the next tick")

    async def _watchdog_loop(self, interval_s: float) -> None:
        """Ping systemd's watchdog while the event loop and the writer thread both answer."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self.sequencer.write(lambda: None), WRITER_PING_TIMEOUT_S)
                self.notifier.watchdog()
            except TimeoutError:
                log.warning("writer thread busy for over %.0f s", WRITER_PING_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)

    async def _run_link(self, radio: Radio | None) -> None:
        """Run the BLE link until stop; on a missing adapter, log one line and keep serving."""
        if radio is not None:
            self.ble = BleStatus(radio.mode, "running", radio.detail)
        else:
            self.ble = BleStatus("bluez", "running", "BlueZ via bleak")
        self.link = BleLink(
            self.sequencer,
            radio.backends if radio else None,
            LinkConfig(),
            link_keys=self.link_keys,
        )
        self.refresh_link()  # the boards' advertising period and the published release
        refresh = asyncio.create_task(self._link_refresh_loop(), name="link-refresh")
        try:
            await self.link.run(self._stop)
            self.ble.status = "stopped"
        except asyncio.CancelledError:
            self.ble.status = "stopped"
            raise
        except Exception as exc:  # bleak: FileNotFoundError (no D-Bus), BleakDBusError (no BlueZ)
            reason = f"{type(exc).__name__}: {exc}".strip()
            self.ble = BleStatus(self.ble.mode, "unavailable", f"no BLE adapter found ({reason})")
            log.warning(
                "no BLE adapter found (%s): serving the API without BLE; "
                "`make run` runs the gateway with virtual boards",
                reason,
            )
        finally:
            refresh.cancel()

    async def _link_refresh_loop(self) -> None:
        """Every LINK_REFRESH_S, bring the running link up to date (refresh_link)."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), LINK_REFRESH_S)
            try:
                self.refresh_link()
            except Exception:  # a registry read failing must not stop the link
                log.exception("refreshing the link's settings failed; trying again later")

    def refresh_link(self) -> None:
        """Give the link the current longest advertising period of the active boards (boards
        enrolled or revoked while it runs) and the currently published release (at start, and
        after a new `edgeseal release publish` or its removal); returns None. No-op without a
        link."""
        link = self.link
        if link is None:
            return
        period_s = sleepy_period_s(self.reads.devices())
        if period_s != link.config.sleepy_period_s:
            link.config = dataclasses.replace(link.config, sleepy_period_s=period_s)
            log.info("link: the longest advertising period of the boards is now %.0f s", period_s)
        stamp = _release_stamp(self.settings.data_dir)
        if stamp != self._release_stamp:
            self._release_stamp = stamp
            release = _published_release(self.settings.data_dir)
            link.ota = OtaPusher(release) if release is not None else None
            log.info(
                "OTA: %s", "no release to push" if release is None else
                f"pushing the published release {release.release_id.hex()[:16]}",
            )  # fmt: skip

    async def stop(self) -> None:
        """Finish the batch in flight, integrate everything, close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.phase = "stopping"  # writes are refused from now on (ServiceUnavailable)
        self.notifier.stopping("finishing the batch in flight")
        self._stop.set()
        for t in self._link_tasks:
            if t.get_name() != "ble-link":  # the link finishes its uploads on _stop
                t.cancel()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._link_tasks, return_exceptions=True), STOP_TIMEOUT_S
            )
        if self._extension is not None:
            try:
                await self._extension.close()
            except Exception:
                log.exception("the extension did not close cleanly")
        self.sequencer.uploads.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.phase = "stopped"
        await self.sequencer.drain()
        if self.witnesses is not None:
            self.witnesses.store.close()
        if self.anchor is not None:
            await self.anchor.close()

    def close(self) -> None:
        """Close the databases without finishing anything (pending entries stay durable and
        integrate on the next open); for a node that was never started."""
        self.phase = "stopped"
        self._closed = True
        self.sequencer.close()
        if self.witnesses is not None:
            self.witnesses.store.close()
        if self.anchor is not None:
            self.anchor.outbox.close()
