"""A full disk at the gateway: ingest stops acking, loses and corrupts nothing, raises the storage
alarm, and resumes without a restart when space returns (docs/operations.md, Full disk).

Real firmware boards (VirtualFleet) upload over the virtual radio through the unchanged BleLink
into a started gateway Node (its sequencer, group commit, ingest and ledger). The disk fills in
one of two ways:

- SQLITE_FULL injected at the SQLite layer: `PRAGMA max_page_count` at the current size of the
  ledger and the derived state, so SQLite answers "database or disk is full" as on ENOSPC;
- a real full filesystem: the gateway's data dir on a small tmpfs the test mounts (root or CI
  only), filled with a file that is then deleted.

Properties: every ACK a board applies covers only records a separate connection can read from
the ledger file (durably committed); the boards keep their records through the outage; the alarm
is logged at error level and shown by /healthz and /metrics; when space returns every record the
boards journaled arrives, exactly once, in chain order; the offline audit passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from firmware.sampler import Sampler
from gateway import wire
from gateway.api import create_app
from gateway.ble.link import BleLink
from gateway.ledger import KIND_DEVICE_RECORD
from gateway.ledger.audit import audit
from gateway.node import Node
from gateway.node.groupcommit import STORAGE_FULL
from tests.gateway.ble.helpers import (
    TEST_KEYS,
    TEST_LINK,
    WAIT_S,
    freeze_sampling,
    load_profiles,
    recording_journals,
    run,
    wait_until,
)
from tests.gateway.node.helpers import make_settings
from tools.sim.fleet import VirtualBoard, VirtualFleet

PROFILES = ("cold-chain-logger", "energy-meter")
RETRIES_DURING_OUTAGE = 4  # failed commits to see (boards retrying) before space returns
TMPFS_BYTES = 16 * 1024 * 1024  # the gateway's files after start-up take well under 1 MB
FILLER_CHUNK_BYTES = 64 * 1024


def ledger_seqs(ledger_path: Path) -> dict[bytes, set[int]]:
    """Return {device id: seqs} of the device records a fresh read-only connection sees in the
    ledger file: what is durably committed, not what a writer holds in memory."""
    conn = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT data FROM entry").fetchall()
    finally:
        conn.close()
    out: dict[bytes, set[int]] = {}
    for (data,) in rows:
        entry = bytes(data)
        if entry[0] == KIND_DEVICE_RECORD:  # entry = kind || record; record[3:19] id, [19:23] seq
            out.setdefault(entry[4:20], set()).add(int.from_bytes(entry[20:24], "big"))
    return out


@contextlib.contextmanager
def acks_checked_against(ledger_path: Path, produced: dict[bytes, list[tuple[int, bytes]]]):
    """Wrap the firmware's Sampler.ack: before a board deletes records, check that every record
    it journaled up to the acked seq is in the ledger file. Yield the list of violations."""
    violations: list[str] = []
    acks: list[tuple[bytes, int]] = []
    original = Sampler.ack

    def ack(self: Any, seq: int) -> Any:
        dev = bytes(self.dev_id)
        committed = ledger_seqs(ledger_path).get(dev, set())
        missing = [s for s, _ in produced.get(dev, []) if s <= seq and s not in committed]
        if missing:
            violations.append(f"{dev.hex()[:8]} ACK({seq}) before seqs {missing[:5]} committed")
        acks.append((dev, seq))
        return original(self, seq)

    with mock.patch.object(Sampler, "ack", ack):
        yield violations


# ---------------------------------------------------------------------------- disk faults


class PageLimit:
    """SQLITE_FULL from SQLite itself: max_page_count at the current size of both databases."""

    name = "sqlite-max-page-count"

    def __init__(self, node: Node) -> None:
        self.node = node
        self.defaults: list[int] = []

    def _conns(self) -> list[sqlite3.Connection]:
        seq = self.node.sequencer
        assert seq.ledger is not None
        return [seq.ledger._conn, seq.ingest._conn]

    async def fill(self) -> None:
        def apply() -> None:
            for conn in self._conns():
                self.defaults.append(conn.execute("PRAGMA max_page_count").fetchone()[0])
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {pages}")

        await self.node.sequencer.write(apply)  # the writer thread owns the connections

    async def free(self) -> None:
        def apply() -> None:
            for conn, limit in zip(self._conns(), self.defaults, strict=True):
                conn.execute(f"PRAGMA max_page_count = {limit}")

        await self.node.sequencer.write(apply)


class FillerFile:
    """ENOSPC from the kernel: a file that takes every free byte of the gateway's tmpfs."""

    name = "tmpfs-enospc"

    def __init__(self, mount: Path) -> None:
        self.path = mount / "filler"

    async def fill(self) -> None:
        await asyncio.to_thread(self._fill)

    def _fill(self) -> None:
        """Write until ENOSPC, halving the write size down to one byte (unbuffered: no write
        is left for close() to fail on)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        size = FILLER_CHUNK_BYTES
        try:
            while size >= 1:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    size //= 2
        finally:
            os.close(fd)

    async def free(self) -> None:
        self.path.unlink()


@contextlib.contextmanager
def small_tmpfs():
    """Mount a TMPFS_BYTES tmpfs on a fresh directory; yield its path; unmount it after.

    Skips when not root and not in CI, or (outside CI) when mounting fails.
    """
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a tmpfs needs root (or CI)")
    mount = Path(tempfile.mkdtemp(prefix="edgeseal-full-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        mount.rmdir()
        if os.environ.get("CI"):
            raise AssertionError(f"mount -t tmpfs failed: {done.stderr.strip()}")
        pytest.skip(f"mount -t tmpfs failed: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


# ---------------------------------------------------------------------------- the scenario


@contextlib.asynccontextmanager
async def running_link(node: Node, fleet: VirtualFleet) -> AsyncIterator[BleLink]:
    """Run a BleLink (test timers) over the fleet's radio into node's sequencer until exit."""
    assert fleet.central is not None
    link = BleLink(node.sequencer, fleet.central.backends, TEST_LINK, link_keys=TEST_KEYS)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    try:
        yield link
    finally:
        stop.set()
        await task


async def health(client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    """Return (the /healthz body, the /metrics text)."""
    body = (await client.get("/healthz")).json()
    return body, (await client.get("/metrics")).text


def refused(link: BleLink) -> int:
    """Return how many uploads the link saw refused for a full disk (nothing acked)."""
    return link.stats.errors.get("ingest/storage-full", 0)


def metric(text: str, name: str) -> float:
    """Return the value of the unlabelled metric name in a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def wait_for_health(client: httpx.AsyncClient, storage: str) -> tuple[dict, str]:
    """Poll /healthz until its storage status is `storage`; return (body, metrics text)."""
    seen: list[tuple[dict, str]] = []

    async def check() -> bool:
        seen.append(await health(client))
        return seen[-1][0]["storage"]["status"] == storage

    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"health never showed {storage}"
        await asyncio.sleep(0.05)
    return seen[-1]


def check_log(node: Node, boards: list[VirtualBoard], produced) -> int:
    """Assert the ledger holds every record each board journaled, once, in chain order and
    authentic, that the journals are empty and the audit passes; return the record count."""
    ledger_path = node.settings.ledger_path
    conn = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    try:
        entries = [bytes(d) for (d,) in conn.execute("SELECT data FROM entry ORDER BY idx")]
    finally:
        conn.close()
    total = 0
    for vb in boards:
        got = [e[1:] for e in entries if e[0] == KIND_DEVICE_RECORD and e[4:20] == vb.device_id]
        mine = [raw for _, raw in produced[vb.device_id]]
        assert got == mine, f"{vb.profile['name']}: log {len(got)} records, board {len(mine)}"
        chain = wire.DeviceChain(vb.device_id, vb.public_key)
        authentic = []
        for raw in got:
            authentic += chain.push(wire.decode_record(raw))
        assert len(authentic) == len(got) and not chain.pending
        assert vb.board.sampler.depth == 0, f"{vb.profile['name']}: journal not empty"
        total += len(got)
    report = audit(str(ledger_path))
    assert report.ok, [str(f) for f in report.sorted_findings()]
    assert report.device_records == total
    return total


async def outage_scenario(data_dir: Path, fleet_dir: Path, fault_of, caplog) -> None:
    """Fill the disk while real boards upload, check the alarm and that nothing is acked, free
    it, check everything arrives. fault_of(node) returns the fault (PageLimit, FillerFile)."""
    node = await asyncio.to_thread(Node, make_settings(data_dir.parent, data_dir=data_dir))
    await node.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(node)), base_url="http://gw"
    )
    storage = node.sequencer.uploads.storage
    fleet = VirtualFleet(load_profiles(PROFILES), str(fleet_dir), sample_interval_s=0.1,
                         heartbeat_interval_s=0.5, sign_every_n=3)  # fmt: skip
    filled: PageLimit | FillerFile | None = None
    with (
        recording_journals() as produced,
        acks_checked_against(node.settings.ledger_path, produced) as violations,
    ):
        boards = await fleet.start()
        try:
            for vb in boards:
                await node.sequencer.enroll(vb.public_key, {"profile": vb.profile["name"]})
            seq = node.sequencer
            async with running_link(node, fleet) as link:
                await wait_until(lambda: all(seq.last_committed_seq(vb.device_id) is not None
                                             for vb in boards), WAIT_S, "first uploads")  # fmt: skip
                fault = fault_of(node)
                await fault.fill()
                filled = fault
                await wait_until(lambda: refused(link) >= RETRIES_DURING_OUTAGE, WAIT_S,
                                 "uploads refused on the full disk")  # fmt: skip
                body, text = await wait_for_health(client, STORAGE_FULL)
                assert body["status"] == "degraded"
                assert metric(text, "edgeseal_storage_alarm") == 1
                assert metric(text, "edgeseal_storage_failures_total") >= RETRIES_DURING_OUTAGE
                await wait_until(lambda: all(vb.board.sampler.depth > 0 for vb in boards),
                                 WAIT_S, "boards holding records")  # fmt: skip
                await fault.free()
                filled = None
                await wait_until(lambda: not storage.alarm, WAIT_S, "alarm cleared")
                freeze_sampling(boards)
                await wait_until(lambda: all(vb.board.sampler.depth == 0 for vb in boards),
                                 WAIT_S, "journals drained after the outage")  # fmt: skip
            body, text = await health(client)
            assert body["status"] == "ok" and body["storage"]["status"] == "ok"
            assert metric(text, "edgeseal_storage_alarm") == 0
        finally:
            if filled is not None:  # a failed check left the disk full: free it to stop cleanly
                await filled.free()
            await fleet.stop()
            await client.aclose()
            await node.stop()
        assert violations == []
        assert check_log(node, boards, produced) > 0
    alarms = [r for r in caplog.records if r.name == "edgeseal.groupcommit"]
    assert any(r.levelno == logging.ERROR and STORAGE_FULL in r.getMessage() for r in alarms)
    assert any("cleared" in r.getMessage() for r in alarms)
    assert storage.alarms >= 1


def test_sqlite_full_stops_acks_raises_the_alarm_and_ingest_resumes(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run(outage_scenario(tmp_path / "data", tmp_path / "fleet", PageLimit, caplog), 240)


def test_a_full_filesystem_stops_acks_raises_the_alarm_and_ingest_resumes(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with small_tmpfs() as mount:
        filler = FillerFile(mount)
        run(outage_scenario(mount / "data", tmp_path / "fleet", lambda _n: filler, caplog), 240)
