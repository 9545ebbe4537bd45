"""End to end OTA over the virtual radio: the real BleLink pushes a signed release to a virtual board running the firmware."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from firmware import app as fw_app
from firmware import ota
from gateway.ble.link import BleLink
from gateway.ble.ota import OtaPusher
from gateway.release import keygen, load
from tests.gateway.ble.helpers import TEST_KEYS, TEST_LINK, WAIT_S, MemoryCollector, run
from tests.support.aio import wait_until
from tools.bench_ota import NEW_VERSION, make_release  # the bench pushes the same release
from tools.sim.bluetooth import BLE, UUID
from tools.sim.fleet import RootedFS, SimClock, VirtualFleet

# The OTA time of the last run (seconds, stream bytes), for tools/bench.py and the report
LAST_RUN: dict[str, float] = {}


def _slot_complete(fs: RootedFS, slot: str) -> int | None:
    """Return the version of the release in slot when every file matches its manifest."""
    f = fs.open(slot + "/" + ota.HEAD_NAME, "rb")
    head = f.read()
    f.close()
    m_len = int.from_bytes(head[4:6], "big")
    version, _min, files = ota.parse_manifest(head[6 : 6 + m_len])
    buf = bytearray(256)
    for path, _size, digest in files:
        if ota.file_sha256(fs, slot + "/" + path, buf) != digest:
            return None
    return version


def test_ota_of_the_whole_application_over_the_virtual_radio(tmp_path: Path) -> None:
    from firmware import board as fw_board

    rel_dir, pub = make_release(tmp_path)
    release = load(rel_dir, pub)
    profile = fw_board.load("boards/cold-chain-logger.json")

    async def scenario() -> None:
        fleet = VirtualFleet([profile], str(tmp_path / "fleet"), sample_interval_s=0.5,
                             heartbeat_interval_s=5, sign_every_n=4)  # fmt: skip
        (vb,) = await fleet.start()
        extra: list[BLE] = []
        stop = asyncio.Event()
        task = None
        try:
            fs = RootedFS(vb.root)
            ota.install_release_key(fs, None, pub)  # provisioning
            switched: list[float] = []
            vb.board.peripheral.ota_receiver().on_switch = lambda: switched.append(time.monotonic())
            assert fleet.central is not None and fleet.link is not None
            col = MemoryCollector({vb.device_id: vb.public_key})
            pusher = OtaPusher(release)
            link = BleLink(col, fleet.central.backends, TEST_LINK, link_keys=TEST_KEYS, ota=pusher)
            await wait_until(lambda: vb.board.sampler.depth >= 2, WAIT_S, "readings journaled")
            t0 = time.monotonic()
            task = asyncio.create_task(link.run(stop))
            await wait_until(lambda: switched, 3 * WAIT_S, "the board switched to the release")
            LAST_RUN.update(seconds=switched[0] - t0, bytes=len(pusher.stream))
            assert pusher.stats.installed == 1 and not pusher.stats.rejected
            # the reset: the board stops; at power-on boot_select picks the new slot (trial)
            vb.board.stop()
            assert ota.boot_select(fs) == "ota/a"
            assert _slot_complete(fs, "ota/a") == release.version
            # ... and the new application runs: here the same code with the new version (the
            # fleet runs CPython; the slot holds .mpy for the board), on a fresh radio device
            ble = BLE(fleet.link.new_device("board-0-new"))
            extra.append(ble)
            acked_before = vb.board.sampler.acked_seq
            board = fw_app.build_board(
                vb.profile, ble, fs, None, vb.buses, SimClock(), os.urandom,
                uuid=UUID, sign_every_n=4, firmware_version=NEW_VERSION,
            )  # fmt: skip
            assert board.dev_id == vb.device_id  # the same key: the chain goes on
            await board.start()
            try:

                def confirmed() -> bool:
                    p = ota.read_pointer(fs)
                    return p is not None and p[2] == "good"

                try:
                    await wait_until(confirmed, 2 * WAIT_S, "the new version's upload confirmed it")
                except AssertionError as exc:  # say where it stuck
                    per = board.peripheral
                    raise AssertionError(
                        f"{exc}; link {link.stats} states {link.states} tasks {link._tasks}; "
                        f"board conns {per.connections} auth {per.auth_rejections} errors "
                        f"{per.errors} ota errors {(per.ota.errors if per.ota else None)} depth {board.sampler.depth}"
                    ) from None
                assert board.sampler.acked_seq > acked_before
                assert pusher.stats.installed == 1  # not pushed again: Info says 0.9.0
            finally:
                board.stop()
        finally:
            stop.set()
            if task is not None:
                await task
            await fleet.stop()
            for ble in extra:
                await ble.close()
        print(f"OTA of {LAST_RUN['bytes']:.0f} bytes over the virtual radio: "
              f"{LAST_RUN['seconds']:.1f} s")  # fmt: skip

    run(scenario(), timeout_s=6 * WAIT_S)


def test_a_board_that_refuses_the_release_keeps_uploading(tmp_path: Path) -> None:
    from firmware import board as fw_board

    rel_dir, pub = make_release(tmp_path)
    release = load(rel_dir, pub)
    other = keygen(tmp_path / "other.key")  # the board learned another release key
    profile = fw_board.load("boards/cold-chain-logger.json")

    async def scenario() -> None:
        fleet = VirtualFleet([profile], str(tmp_path / "fleet"), sample_interval_s=0.5,
                             heartbeat_interval_s=5, sign_every_n=4)  # fmt: skip
        (vb,) = await fleet.start()
        stop = asyncio.Event()
        task = None
        try:
            fs = RootedFS(vb.root)
            ota.install_release_key(fs, None, other)
            assert fleet.central is not None
            col = MemoryCollector({vb.device_id: vb.public_key})
            pusher = OtaPusher(release)
            link = BleLink(col, fleet.central.backends, TEST_LINK, link_keys=TEST_KEYS, ota=pusher)
            task = asyncio.create_task(link.run(stop))
            await wait_until(lambda: vb.device_id in pusher.stats.rejected, WAIT_S, "refused")
            assert pusher.stats.rejected[vb.device_id] == ota.R_SIGNATURE
            acks = link.stats.acks
            await wait_until(lambda: link.stats.acks >= acks + 2, WAIT_S, "uploads go on")
            assert pusher.stats.pushes == 1  # never offered again
            assert ota.read_pointer(fs) is None and not fs.exists("ota/stage")
            assert pusher.stats.chunks <= 40  # refused at the head, before any file byte
            assert not link.stats.permanent_failures
        finally:
            stop.set()
            if task is not None:
                await task
            await fleet.stop()

    run(scenario(), timeout_s=4 * WAIT_S)
