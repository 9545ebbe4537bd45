"""The node's lifecycle: restart replays the log, a crash's missing events, stop refuses writes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.contracts import Engine
from gateway.errors import NotFound, ServiceUnavailable
from gateway.ledger import Ledger
from gateway.node import Node
from tests.gateway.contracts.helpers import Party
from tests.gateway.node.helpers import PARKING, World, make_settings, run, started


def test_restart_replays_to_the_same_state(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    async def first() -> tuple[str, int]:
        service = await started(settings)
        world = World()
        try:
            await world.setup(service)
            bay = world.bays[0]
            await service.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now + 60)])
        finally:
            await service.stop()  # feeds the engine with everything sequenced
        with Ledger.open_readonly(str(settings.ledger_path)) as led:
            return service.reads.state_hash_hex(), led.sequenced_size

    state_hex, size = run(first())
    again = Node(settings)
    try:
        assert again.reads.state_hash_hex() == state_hex
        assert again.sequencer.ledger is not None and again.sequencer.ledger.sequenced_size == size
        assert len(again.reads.devices()) == 2
        with pytest.raises(NotFound):
            again.reads.tx_location("0" * 64)
        assert again.reads.contract_events(PARKING, frozenset({"session-opened"}))
    finally:
        again.close()


def test_restart_appends_events_a_crash_left_out(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Node(settings)
    led = service.sequencer.ledger
    assert led is not None
    op = Party("crash-op")
    tx = op.tx(
        "engine",
        "register",
        {"public_key": op.pk, "name": "op", "roles": ["operator"]},
        int(time.time()),
    )
    led.append([(tx[0], tx[1:])])  # appended as if the process died before its events
    service.close()
    again = Node(settings)
    try:
        assert again.sequencer.ledger is not None
        entries = list(again.sequencer.ledger.entries())
        assert entries[-1][1][0] == 0x03  # the missing event was appended at start-up
        _, pending = Engine().audit(entries)
        assert pending == []
        assert op.pk in again.reads.state["participants"]
    finally:
        again.close()


def test_writes_are_refused_once_stopping_and_deliveries_after_stop(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = await started(make_settings(tmp_path))
        op = Party("stop-op")
        reg = {"public_key": op.pk, "name": "op", "roles": ["operator"]}
        entry = op.tx("engine", "register", reg, int(time.time()))
        await node.stop()
        await node.stop()  # twice is fine
        assert node.phase == "stopped"
        with pytest.raises(ServiceUnavailable, match="the service is stopped"):
            await node.sequencer.submit_tx(entry[1:])
        with pytest.raises(ServiceUnavailable):
            await node.sequencer.enroll(b"\x01" * 32)
        with pytest.raises(ServiceUnavailable):
            await node.sequencer.deliver(b"\x02" * 16, [b"x"])
        with pytest.raises(ServiceUnavailable):
            node.reads.ledger()  # closed by stop
        assert node.reads.sizes() is None

    run(scenario())


class _Recording:
    """An extension recording its calls (no radio: the node keeps BLE off)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.ran = asyncio.Event()

    async def radio(self) -> None:
        self.calls.append("radio")

    async def run(self, node: Node) -> None:
        self.calls.append(f"run {node.phase}")
        self.ran.set()
        await asyncio.Event().wait()  # until cancelled by stop

    async def close(self) -> None:
        self.calls.append("close")


def test_an_extension_is_started_run_and_closed_in_order(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        node = Node(make_settings(tmp_path))
        ext = _Recording()
        await node.start(ext)
        await asyncio.wait_for(ext.ran.wait(), 10)
        assert node.link is None and node.ble.mode == "off"  # no radio, BLE off in settings
        await node.stop()
        return ext.calls

    assert run(scenario()) == ["radio", "run running", "close"]


def test_the_link_learns_the_longest_advertising_period_of_the_active_boards() -> None:
    """docs/power.md: `edgeseal board provision` copies a battery profile's advertise_every_s
    into the enrollment metadata; the node hands the longest to the link (sleepy_period_s)."""
    from gateway.node.lifecycle import sleepy_period_s
    from gateway.registry import Device

    def dev(status: str, metadata: dict[str, object]) -> Device:
        return Device(b"\x01" * 16, b"k", b"k", status, metadata, 0, None, None, None)

    assert sleepy_period_s([]) == 0.0
    assert sleepy_period_s([dev("active", {"profile": "pond-monitor"})]) == 0.0
    fleet = [
        dev("active", {"advertise_every_s": 900}),
        dev("active", {"advertise_every_s": 300}),
        dev("revoked", {"advertise_every_s": 3600}),  # a revoked board is not waited for
        dev("active", {"advertise_every_s": "7200"}),  # not an int: ignored, never a crash
        dev("active", {"advertise_every_s": True}),
        dev("active", {"advertise_every_s": -5}),
    ]
    assert sleepy_period_s(fleet) == 900.0


def test_the_running_link_takes_up_later_enrollments_and_publications(tmp_path: Path) -> None:
    """A sleepy board enrolled, and a release published (`edgeseal release publish`), while the
    gateway runs reach the running link without a restart (Node.refresh_link, every
    LINK_REFRESH_S); so does a release withdrawn."""
    import shutil

    from nacl.signing import SigningKey

    from gateway.ble.link import BleLink, LinkConfig
    from gateway.release import PUBLISHED_DIR, build, keygen, publish, sign

    src = tmp_path / "src" / "firmware"  # a one-module application is a whole release
    src.mkdir(parents=True)
    (src / "runtime.py").write_text("FIRMWARE_VERSION = (0, 9, 0)\n")
    key = tmp_path / "release.key"
    pub = keygen(key)

    async def scenario() -> None:
        node = await started(make_settings(tmp_path / "gw"))  # BLE off: no link of its own
        try:
            # the link as _run_link builds it at start; nothing touches a radio until it runs
            node.link = link = BleLink(node.sequencer, None, LinkConfig())
            node.refresh_link()
            assert link.config.sleepy_period_s == 0 and link.ota is None
            board = bytes(SigningKey(b"\x05" * 32).verify_key)
            await node.sequencer.enroll(board, {"advertise_every_s": 900})
            node.refresh_link()
            assert link.config.sleepy_period_s == 900
            for version, out in (("one", tmp_path / "rel1"), ("two", tmp_path / "rel2")):
                build(
                    src.parent, out, compile_mpy=False, created=f"2026-12-07T00:00:0{len(version)}Z"
                )
                sign(out, key)
                rel = publish(out, node.settings.data_dir, pub)
                node.refresh_link()
                assert link.ota is not None and link.ota.release.release_id == rel.release_id
            shutil.rmtree(node.settings.data_dir / PUBLISHED_DIR)
            node.refresh_link()
            assert link.ota is None
        finally:
            await node.stop()

    run(scenario())
