"""The unchanged BleLink over the bumble backend, collecting from virtual boards end to end."""

import asyncio
import dataclasses
import random
import time

import pytest
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError
from bumble import att

from gateway.ble import bumble_backend
from gateway.ble import protocol as p
from gateway.ble.link import (
    BleakBackends,
    BleLink,
    DeviceState,
    LinkError,
    backoff_delay_s,
    classify,
)
from gateway.errors import ServiceUnavailable, WireError
from tests.gateway.ble.helpers import (
    TEST_KEYS,
    TEST_LINK,
    WAIT_S,
    MemoryCollector,
    MiniBoard,
    find_board,
    make_chain,
    run,
    wait_until,
)
from tools.sim.bluetooth import BLE
from tools.sim.radio import VirtualLink

FAST = TEST_LINK  # generous timeouts, short backoffs (helpers.py)


class Rig:
    """A virtual link with a central and MiniBoards; closes everything on exit."""

    def __init__(self):
        self.link = VirtualLink()
        self.central = self.link.new_central()
        self.bles = []
        self.events = []

    def board(self, name, n, **kw):
        dev_id, pk, records = make_chain(name, n, kw.pop("sign_every", 3))
        ble = BLE(self.link.new_device(name))
        self.bles.append(ble)
        return MiniBoard(ble, records, dev_id, pk, events=self.events, **kw)

    async def close(self):
        # The central first: its links go down while the boards still run, so each board sees
        # an ordinary disconnect and restarts advertising before its radio is closed. Powering
        # off a connected board makes bumble drop the connection without the controller (the
        # later disconnect is an "Unknown disconnection"), and the board's re-advertising then
        # runs on a task that outlives the rig.
        await self.central.close()
        for ble in self.bles:
            await ble.close()


async def _collect(link, until, timeout_s=WAIT_S):
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    try:
        await wait_until(until, timeout_s)
    finally:
        stop.set()
        await task


def _new_tasks(before):
    """Return the tasks of the running loop that were not in before (nor the current one)."""
    return [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]


def _assert_acks_follow_commits(events):
    committed = {}
    for kind, dev, seq in events:
        if kind == "committed" and seq is not None:
            committed[dev] = seq
        elif kind == "ack":
            assert committed.get(dev) is not None and committed[dev] >= seq, (dev.hex(), seq)


def test_two_boards_every_record_once_acks_after_commit_and_strangers_ignored():
    async def scenario():
        rig = Rig()
        await rig.central.start()
        a = rig.board("a", 30)  # MTU 247: one notification per record
        b = rig.board("b", 12, mtu=23)  # MTU 23: records split into up to 9 chunks
        stranger = rig.board("stranger", 5)
        col = MemoryCollector({a.dev_id: a.pk, b.dev_id: b.pk}, rig.events)
        link = BleLink(col, rig.central.backends, FAST, link_keys=TEST_KEYS)
        try:
            await _collect(link, lambda: not a.journal and not b.journal)
        finally:
            await rig.close()
        for board, n in ((a, 30), (b, 12)):
            seqs = [r.seq for r in col.committed[board.dev_id]]
            assert seqs == list(range(1, 2 * n, 2))
            assert board.send_from[0] == 0  # nothing committed yet: from the start
        assert stranger.send_from == [] and len(stranger.journal) == 5
        assert link.stats.not_enrolled_adverts > 0
        assert link.stats.acks >= 2 and link.stats.dropped_chunks == 0
        _assert_acks_follow_commits(rig.events)

    run(scenario())


def test_disconnect_mid_upload_resumes_from_the_first_unacked_record():
    async def scenario():
        rig = Rig()
        await rig.central.start()
        # 7 notifications = 7 records at MTU 247; records 3 and 6 are signed, so seqs up to the
        # 6th (seq 11) become authentic before the link drops.
        board = rig.board("drop", 20, drop_after_frames=7)
        col = MemoryCollector({board.dev_id: board.pk}, rig.events)
        link = BleLink(col, rig.central.backends, FAST, link_keys=TEST_KEYS)
        try:
            await _collect(link, lambda: not board.journal)
        finally:
            await rig.close()
        # seqs up to 11 committed but not acked (the link dropped first): the next connection
        # asks from the board's first unacked seq, since an ACK names only records sent on it
        assert board.send_from[:2] == [0, 1]
        assert col.duplicates >= 6  # the records of seqs 1, 3, .. 11, sent again
        assert link.stats.errors.get("disconnected", 0) >= 1
        assert [r.seq for r in col.committed[board.dev_id]] == list(range(1, 41, 2))
        _assert_acks_follow_commits(rig.events)

    run(scenario())


def test_stale_callbacks_after_reconnect_are_dropped_bleak_2002():
    async def scenario():
        rig = Rig()
        await rig.central.start()
        base = rig.central.backends.client
        assert base is not None
        leaked: list = []

        class LeakyClient(base):  # type: ignore[misc, valid-type]
            """Emulates BlueZ's leaked watchers: every callback ever registered for the board
            receives every later notification, and stop_notify removes nothing."""

            async def start_notify(self, characteristic, callback, **kwargs):
                leaked.append(callback)

                def fan_out(data):
                    for cb in list(leaked):
                        cb(data)

                await super().start_notify(characteristic, fan_out, **kwargs)

            async def stop_notify(self, characteristic):
                return None

        board = rig.board("leaky", 20, drop_after_frames=7)
        col = MemoryCollector({board.dev_id: board.pk}, rig.events)
        link = BleLink(
            col, BleakBackends(LeakyClient, rig.central.backends.scanner), FAST,
            link_keys=TEST_KEYS,
        )  # fmt: skip
        try:
            await _collect(link, lambda: not board.journal)
        finally:
            await rig.close()
        assert len(leaked) >= 2
        assert link.stats.stale_notifications > 0
        assert link.stats.dropped_chunks == 0 and link.stats.dropped_records == 0
        assert [r.seq for r in col.committed[board.dev_id]] == list(range(1, 41, 2))

    run(scenario())


def test_notification_guard_drops_callbacks_of_an_old_connection():
    link = BleLink(MemoryCollector({}), BleakBackends(), FAST)
    dev = bytes(16)
    old, new = object(), object()
    q_old: asyncio.Queue = asyncio.Queue()
    handler = link._notification_handler(dev, old, q_old)
    link._live[dev] = new
    handler(None, bytearray(b"\x02"))  # type: ignore[arg-type]
    assert q_old.empty() and link.stats.stale_notifications == 1
    link._live[dev] = old
    handler(None, bytearray(b"\x02"))  # type: ignore[arg-type]
    assert q_old.get_nowait() == b"\x02"


def test_error_classification_and_backoff():
    cases = [
        (TimeoutError(), "timeout", True),
        (BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"]), "in-progress", True),
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]), "le-connection-abort", True),
        (BleakError("Not connected"), "not-connected", True),
        (WireError("ble-bad-info", "x"), "protocol/ble-bad-info", False),
        (ServiceUnavailable("storage-full", "x"), "ingest/storage-full", True),
        (LinkError("wrong-device", "x", transient=False), "wrong-device", False),
        (RuntimeError("bug"), "internal", False),
    ]  # fmt: skip
    for exc, code, transient in cases:
        err = classify(exc)
        assert (err.code, err.transient) == (code, transient), exc
    rng = random.Random(1)
    delays = [backoff_delay_s(n, FAST, rng) for n in range(1, 12)]
    assert 0.05 * 0.75 <= delays[0] <= 0.05 * 1.25
    assert max(delays) <= FAST.backoff_max_s * 1.25
    assert delays[-1] >= FAST.backoff_max_s * 0.75


def test_a_board_that_lies_about_its_id_is_a_permanent_failure():
    async def scenario():
        rig = Rig()
        await rig.central.start()
        board = rig.board("liar", 3)
        other_id, other_pk, _ = make_chain("someone-else", 1)
        board.dev_id = board.dev_id[:4] + other_id[4:]  # same prefix, different id in Info
        board._refresh()
        col = MemoryCollector({board.dev_id[:4] + bytes(12): other_pk})
        link = BleLink(col, rig.central.backends, FAST, link_keys=TEST_KEYS)
        try:
            await _collect(link, lambda: link.stats.permanent_failures >= 1)
        finally:
            await rig.close()
        assert link.stats.errors.get("wrong-device") == 1
        assert board.send_from == []

    run(scenario())


def test_protocol_uuids_are_what_the_bumble_client_discovers():
    async def scenario():
        rig = Rig()
        await rig.central.start()
        board = rig.board("gatt", 1)
        await board.ble.settle()
        try:
            found = await find_board(rig.central)
            async with BleakClient(found, backend=rig.central.backends.client) as client:
                assert client.mtu_size == 247
                chars = {c.uuid: c.properties for s in client.services for c in s.characteristics}
                assert chars[p.INFO_UUID] == ["read"]
                assert chars[p.DATA_UUID] == ["notify"]
                assert chars[p.CONTROL_UUID] == ["write"]
                info = p.decode_info(bytes(await client.read_gatt_char(p.INFO_UUID)))
                assert info.device_id == board.dev_id
        finally:
            await rig.close()

    run(scenario())


def test_real_firmware_boards_on_the_virtual_radio(tmp_path):
    from firmware import board as fw_board
    from tools.sim.fleet import VirtualFleet

    profiles = [fw_board.load(f"boards/{n}.json") for n in ("cold-chain-logger", "energy-meter")]

    async def scenario():
        fleet = VirtualFleet(
            profiles, str(tmp_path), sample_interval_s=0.2, heartbeat_interval_s=2, sign_every_n=4
        )
        boards = await fleet.start()
        try:
            col = MemoryCollector({b.device_id: b.public_key for b in boards})
            assert fleet.central is not None
            link = BleLink(col, fleet.central.backends, FAST, link_keys=TEST_KEYS)
            await wait_until(lambda: all(b.board.sampler.depth >= 3 for b in boards), WAIT_S,
                             "a few readings journaled")  # fmt: skip

            def collected():
                return all(len(col.committed[b.device_id]) >= 5 for b in boards) and all(
                    b.board.sampler.acked_seq is not None and b.board.sampler.acked_seq >= 0
                    for b in boards
                )

            await _collect(link, collected)
        finally:
            await fleet.stop()
        for b in boards:
            recs = col.committed[b.device_id]
            seqs = [r.seq for r in recs]
            assert seqs == sorted(set(seqs))  # every record once, in chain order
            assert recs[0].kind == 3  # the boot event opens every journal
            assert any(r.kind == 1 for r in recs)  # simulated readings
            # acks trail commits (an upload cancelled at stop may have committed, not acked)
            assert 0 <= b.board.sampler.acked_seq <= col.last_committed_seq(b.device_id)
            assert b.board.peripheral.mtu in (23, 247)
            # The link synced each board's clock on its first connection (TIME_SYNC): later
            # records carry Unix time, and the board logged the correction as a time-sync event.
            synced = [r for r in recs if r.time_synced]
            assert synced and abs(synced[-1].time_s - time.time()) < 30
            assert any(r.kind == 3 and r.value(21) == 4 for r in recs)  # EV_TIME_SYNC
        assert link.stats.dropped_chunks == 0 and link.stats.bad_frames == 0
        assert link.stats.time_syncs >= len(boards)

    run(scenario(), 180)


def test_a_stop_while_unsubscribing_still_disconnects_and_leaves_no_task_behind():
    """Regression (a hang under load): a gateway stop that cancelled an upload while its
    connection unsubscribed skipped the disconnect, so the board was still connected after
    BleLink.run returned; closing the rig then left a board task running that asyncio.run's
    final cancel could not end (the test hung until pytest-timeout)."""

    async def scenario():
        before = asyncio.all_tasks()
        rig = Rig()
        await rig.central.start()
        base = rig.central.backends.client
        assert base is not None
        unsubscribing = asyncio.Event()
        release = asyncio.Event()

        class SlowUnsubscribe(base):  # type: ignore[misc, valid-type]
            async def stop_notify(self, characteristic):
                unsubscribing.set()
                await asyncio.wait_for(release.wait(), WAIT_S)  # the stop lands here
                await super().stop_notify(characteristic)

        board = rig.board("slow-unsubscribe", 4)
        col = MemoryCollector({board.dev_id: board.pk}, rig.events)
        backends = BleakBackends(SlowUnsubscribe, rig.central.backends.scanner)
        link = BleLink(col, backends, FAST, link_keys=TEST_KEYS)
        stop = asyncio.Event()
        task = asyncio.create_task(link.run(stop))
        try:
            await asyncio.wait_for(unsubscribing.wait(), WAIT_S)
            (upload,) = link._tasks.values()
            stop.set()  # run() cancels the upload, which is in its teardown
            await wait_until(upload.cancelling, WAIT_S, "the upload cancelled while unsubscribing")
            release.set()
            await asyncio.wait_for(task, WAIT_S)
            assert rig.central.device.connections == {}  # the disconnect ran all the same
        finally:
            stop.set()
            await rig.close()
        assert link.stats.uploads_ok == 1 and board.journal == []
        assert link._live == {}
        assert _new_tasks(before) == []

    run(scenario())


def test_a_gatt_request_whose_caller_timed_out_is_not_cancelled_inside_bumble():
    """Regression: the link's GATT timeout cancelled bumble's request; an answer arriving right
    after met the cancelled future (InvalidStateError at gatt_client's
    pending_response.set_result, logged from the host's packet callback), a later one was taken
    as the answer to the next request. The board here answers a write after the caller gave up."""

    async def scenario():
        loop = asyncio.get_running_loop()
        loop_errors: list = []
        loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
        rig = Rig()
        await rig.central.start()
        board = rig.board("late-answer", 1)
        await board.ble.settle()
        try:
            found = await find_board(rig.central)
            async with BleakClient(found, backend=rig.central.backends.client) as client:
                (conn,) = rig.central.device.connections.values()
                gatt = conn.gatt_client
                deliver = gatt.on_gatt_pdu
                held = []
                releases = []

                def late(pdu):
                    if pdu.op_code != att.Opcode.ATT_WRITE_RESPONSE or held:
                        deliver(pdu)
                        return
                    held.append(pdu)
                    once = [pdu]

                    def release(*_):
                        if once:
                            deliver(once.pop())

                    releases.append(release)
                    # Unfixed, giving up cancelled bumble's request: the answer then came in the
                    # narrowest window, right after the cancel.
                    gatt.pending_response.add_done_callback(release)

                gatt.on_gatt_pdu = late
                command = p.encode_time_sync(1_700_000_000)  # MiniBoard ignores TIME_SYNC
                with pytest.raises(TimeoutError):  # the answer is held: the caller gives up
                    await asyncio.wait_for(
                        client.write_gatt_char(p.CONTROL_UUID, command, True), 0.05
                    )
                await wait_until(lambda: releases, WAIT_S, "the board's answer")
                releases[0]()  # the answer arrives after the caller gave up
                # the request ends with its answer, not with the caller's timeout
                await wait_until(lambda: gatt.pending_request is None, WAIT_S, "request ended")
                await asyncio.wait_for(
                    client.write_gatt_char(p.CONTROL_UUID, command, True), WAIT_S
                )
        finally:
            await rig.close()
        assert loop_errors == [], [c.get("exception") or c.get("message") for c in loop_errors]

    run(scenario())


def test_central_close_is_bounded_when_a_disconnect_never_completes(monkeypatch):
    """A controller that lost track of a connection never completes its disconnect; close()
    still returns (each step is bounded) instead of hanging the gateway's shutdown."""
    monkeypatch.setattr(bumble_backend, "DISCONNECT_TIMEOUT_S", 0.2)

    async def scenario():
        rig = Rig()
        await rig.central.start()
        board = rig.board("stuck", 1)
        await board.ble.settle()
        found = await find_board(rig.central)
        client = BleakClient(found, backend=rig.central.backends.client)
        await client.connect()
        (conn,) = rig.central.device.connections.values()

        async def never(*_args, **_kwargs):
            await asyncio.Event().wait()

        conn.disconnect = never
        await asyncio.wait_for(rig.central.close(), WAIT_S)  # unbounded, it would never return
        # The board still holds the link (the central's bumble forgot it at power-off): let the
        # board end it, then close the board.
        assert board.ble.gap_disconnect(board.conn)
        await board.ble.settle()
        await board.ble.close()

    run(scenario())


def test_an_imposters_backoff_does_not_hold_back_the_real_board():
    """Regression: retry state was keyed by device id alone. Anything can advertise an enrolled
    board's 4-byte id prefix; an imposter's permanent failure (garbage Info, a wrong device)
    then put the real board, at another address, into PERMANENT_BACKOFF_S too."""

    async def scenario():
        dev_id, pk, _ = make_chain("real", 1)
        link = BleLink(MemoryCollector({dev_id: pk}), BleakBackends(), FAST)
        scheduled: list[str] = []

        async def upload(device, _device_id):
            scheduled.append(device.address)

        link._upload_with_retry = upload  # type: ignore[method-assign]
        adv = AdvertisementData(None, {p.COMPANY_ID: dev_id[:4] + b"\x00\x05"}, {},
                                [p.SERVICE_UUID], None, -50, ())  # fmt: skip
        link.states[(dev_id, "C0:00:00:00:00:AA")] = DeviceState(
            failures=0, next_attempt_s=time.monotonic() + 3600, last_error="protocol/ble-bad-info"
        )
        link.on_advertisement(BLEDevice("C0:00:00:00:00:AA", None, None), adv)  # the imposter
        link.on_advertisement(BLEDevice("C0:00:00:00:00:BB", None, None), adv)  # the real board
        await asyncio.gather(*link._tasks.values())
        assert scheduled == ["C0:00:00:00:00:BB"]

    run(scenario())


def test_a_peripheral_streaming_without_end_is_cut_off():
    """A hostile peripheral that streams records and never sends END cannot make the link hold
    more than max_records_per_round of them (memory on a Pi)."""

    async def scenario():
        config = dataclasses.replace(FAST, max_records_per_round=3)
        link = BleLink(MemoryCollector({}), BleakBackends(), config)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for i in range(10):
            for frame in p.encode_chunks(bytes([i]) * 40, i, 247):
                queue.put_nowait(frame)
        out: list[bytes] = []
        with pytest.raises(LinkError) as err:
            await link._receive(queue, p.Reassembler(), out)
        assert err.value.code == "too-many-records" and not err.value.transient
        assert len(out) == 4

    run(scenario())
