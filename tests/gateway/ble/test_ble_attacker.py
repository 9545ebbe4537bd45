"""An attacker in radio range of a board (DESIGN 8), on the virtual radio, against the real firmware.

The real gateway uploads first while the board's GATT server records every write (tools/sim/
bluetooth.py BLE.writes), so the attacker holds genuine authenticated commands. Then:

1. the gateway's own link replays each of its commands on the same connection (a client that
   writes everything twice): the board refuses the copies (STATUS 4), both sides count them;
2. an attacker central connects, reads Info, writes ACK(last_seq) and TIME_SYNC (plain v1 and
   with made-up tags), replays the captured commands on its new connections, and writes garbage.

Afterwards: no record lost or altered, nothing acked, the board's clock unmoved, the rejections
counted on the board (Peripheral.auth_rejections) and the gateway (LinkStats.auth_rejections),
and the real gateway still drains the board into the ledger. The auth timeout (an unauthenticated
central is dropped, advertising resumes) is test_ble_fuzz's sits-there test.
"""

from __future__ import annotations

import os
from pathlib import Path

from bleak import BleakClient, BleakScanner

from gateway.ble import protocol as p
from gateway.ble.link import BleakBackends
from tests.gateway.ble.helpers import (
    WAIT_S,
    freeze_sampling,
    load_profiles,
    recording_journals,
    run,
    wait_until,
)
from tests.gateway.ble.test_ble_fuzz import Attacker, board_alive, journal_of
from tests.gateway.ble.test_fleet_e2e import Gateway, LinkRun, check_ledger, enroll_all
from tools.sim.fleet import VirtualBoard, VirtualFleet


def _control_writes(vb: VirtualBoard) -> list[bytes]:
    """Return every write the board's control characteristic received so far, in order."""
    handle = vb.board.peripheral._h_control
    return [value for _conn, h, value in vb.ble.writes if h == handle]


def _replaying(base: type) -> type:
    """Return a bleak client class that writes every control command twice (a replay on the same
    connection, as a relay in the middle could)."""

    class Replaying(base):  # type: ignore[misc, valid-type]
        async def write_gatt_char(self, char, data, response=None):  # type: ignore[no-untyped-def]
            await super().write_gatt_char(char, data, response)
            await super().write_gatt_char(char, data, response)

    return Replaying


def _garbage() -> list[bytes]:
    """Return writes that are not commands of this connection: v1 commands, made-up tags."""
    last_ack = p.encode_ack(0xFFFFFFFE)
    sync = p.encode_time_sync(2_000_000_000)
    return [
        p.encode_ack(0),
        last_ack,
        sync,
        p.encode_send_from(0, 0),
        last_ack + bytes([1]) + os.urandom(12),
        sync + bytes([1]) + os.urandom(12),
        b"",
        os.urandom(20),
        os.urandom(13),
        bytes(32),
    ]


async def _attack(attacker: Attacker, vb: VirtualBoard, writes: list[bytes]) -> int:
    """Connect to vb, read Info, write every item of writes (waiting for the board to answer each);
    return the number of writes made."""
    await attacker.central.start()
    found = await BleakScanner.find_device_by_filter(
        lambda d, ad: p.SERVICE_UUID in ad.service_uuids, timeout=WAIT_S,
        backend=attacker.central.backends.scanner,
    )  # fmt: skip
    assert found is not None
    per = vb.board.peripheral
    async with BleakClient(found, backend=attacker.central.backends.client, timeout=WAIT_S) as c:
        info = p.decode_info(bytes(await c.read_gatt_char(p.INFO_UUID)))
        assert info.device_id == vb.device_id and info.nonce != bytes(16)
        for w in writes:
            before = per.commands
            await c.write_gatt_char(p.CONTROL_UUID, w, response=True)
            await wait_until(lambda b=before: per.commands > b and not per._queue, WAIT_S,
                             "the board answered")  # fmt: skip
    await wait_until(lambda: not per.connected, WAIT_S, "the attacker gone")
    return len(writes)


def test_an_attacker_in_range_cannot_delete_records_or_move_the_clock(tmp_path: Path) -> None:
    async def scenario() -> None:
        gw = Gateway(tmp_path)
        with recording_journals() as produced:
            fleet = VirtualFleet(load_profiles(["energy-meter"]), str(tmp_path / "fleet"),
                                 sample_interval_s=0.1, heartbeat_interval_s=60, sign_every_n=3)  # fmt: skip
            (vb,) = await fleet.start()
            attacker = Attacker(fleet)
            per = vb.board.peripheral
            try:
                assert fleet.central is not None
                await wait_until(lambda: vb.board.sampler.depth >= 5, WAIT_S, "a few readings")
                enroll_all(gw, [vb])
                # the real gateway uploads (and syncs the clock): its commands are captured
                runner = LinkRun(gw, fleet.central.backends)
                async with runner.running():
                    await wait_until(lambda: runner.total("acks") >= 1, WAIT_S, "an upload")
                captured = _control_writes(vb)
                assert len(captured) >= 2 and per.auth_rejections == 0
                # 1. replays on the same connection: the gateway's own writes, twice each
                await wait_until(lambda: vb.board.sampler.depth >= 3, WAIT_S, "more readings")
                backends = fleet.central.backends
                replaying = LinkRun(gw, BleakBackends(_replaying(backends.client),
                                                      backends.scanner))  # fmt: skip
                async with replaying.running():
                    await wait_until(lambda: replaying.total("auth_rejections") >= 1, WAIT_S,
                                     "a replay refused")  # fmt: skip
                assert per.auth_rejections >= 1
                assert replaying.errors("unauthenticated") >= 1
                # 2. an attacker on new connections
                await wait_until(lambda: not per.connected, WAIT_S, "the gateway gone")
                freeze_sampling([vb])
                await wait_until(lambda: vb.board.sampler.depth >= 3, WAIT_S, "records held")
                before = journal_of(vb)
                acked = vb.board.journal.acked_seq
                t = vb.board.sampler.time
                offset_ms, synced = t._offset_ms, t.synced
                rejected = per.auth_rejections
                n = await _attack(attacker, vb, captured + _garbage())
                n += await _attack(attacker, vb, captured)  # again, on yet another connection
                assert per.auth_rejections - rejected == n
                assert journal_of(vb) == before, "a record was lost, altered or added"
                assert vb.board.journal.acked_seq == acked
                assert (t._offset_ms, t.synced) == (offset_ms, synced), "the clock moved"
                assert board_alive(vb)
                # the real gateway still drains the board, and nothing was lost on the way
                async with runner.running():
                    await wait_until(lambda: vb.board.sampler.depth == 0, WAIT_S, "drained")
                check_ledger(gw, [vb], produced)
                assert runner.total("auth_rejections") == 0
            finally:
                await attacker.close()
                await fleet.stop()
                gw.close()

    run(scenario(), 6 * WAIT_S)
