"""BLE fuzz on the virtual radio, both directions (DESIGN 7 and 8: bad input changes nothing).

1. A hostile central (any phone in range) connects to a virtual board running the real firmware
   and writes garbage, truncated, oversized and well-formed-but-wrong frames to every
   characteristic, and reads everything. The board must not crash, no record is lost or
   altered, it counts the commands it refuses (Peripheral.bad_commands and auth_rejections), and
   the real gateway still drains it afterwards.

   Since protocol v2 every command needs a tag under the board's link key, so everything this
   central writes is refused (STATUS 4, Peripheral.auth_rejections), well-formed v1 ACKs of held
   records included; test_ble_attacker.py replays genuine captured commands.

2. A hostile peripheral advertises the edgeseal service under an enrolled board's id prefix (an
   imposter) or as an enrolled board gone rogue, answers Info with garbage, notifies malformed,
   oversized and out-of-order frames, forged records, never answers, or disconnects mid-upload.
   The gateway's link must not crash, ingest nothing invalid, keep serving the honest board
   (which must not inherit the imposter's backoff), and count the rejections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError
from bumble.core import ProtocolError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.ble import protocol as p
from gateway.errors import WireError
from gateway.ingest import ALARMS, EV_UNKNOWN_DEVICE
from tests.gateway.ble.helpers import (
    TEST_LINK,
    WAIT_S,
    freeze_sampling,
    load_profiles,
    recording_journals,
    run,
    wait_until,
)
from tests.gateway.ble.test_fleet_e2e import Gateway, LinkRun, check_ledger, enroll_all
from tests.support import ChainDevice
from tools.sim.bluetooth import BLE, UUID
from tools.sim.fleet import VirtualBoard, VirtualFleet

ATTACKER_ADDRESS = "F0:00:00:00:0A:01"
HOSTILE_ADDRESS = "C0:00:00:00:0B:01"
# No shrinking: every example runs a virtual board and a gateway (seconds each); a failure is
# reported with the example as drawn.
FUZZ = settings(
    max_examples=6,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
# The link while a hostile peripheral is around: a short stall so a peripheral that never
# answers costs little; a permanent backoff far longer than the test, as in production, so an
# honest board that inherited an imposter's backoff would never drain.
HOSTILE_LINK = dataclasses.replace(TEST_LINK, stall_timeout_s=2.0, ack_timeout_s=2.0,
                                   permanent_backoff_s=10 * WAIT_S)  # fmt: skip
MAX_WRITE_BYTES = 244  # ATT MTU 247 - 3: the largest value one write request carries

# ------------------------------------------------------------------------ 1. hostile central

U32 = st.integers(0, 0xFFFFFFFF)
VALID = st.one_of(
    st.builds(p.encode_send_from, U32, st.integers(0, 0xFFFF)),
    st.builds(p.encode_time_sync, U32),
    st.just(p.encode_stop()),
)
# ("control", bytes): written to the control characteristic as is, except a well-formed ACK of
# a held seq (see the module doc); ("ack-above", k): ACK(last_seq + 1 + k), refused by the board.
CONTROL_WRITES = st.one_of(
    st.tuples(st.just("control"), st.binary(max_size=40)),  # garbage, empty included
    st.tuples(st.just("control"), VALID),  # well-formed, allowed
    st.tuples(  # truncated
        st.just("control"),
        st.builds(lambda c, n: c[: max(0, len(c) - n)], VALID, st.integers(1, 7)),
    ),
    st.tuples(  # oversized: a valid command with bytes after it
        st.just("control"),
        st.builds(
            lambda c, t: (c + t)[:MAX_WRITE_BYTES],
            VALID,
            st.binary(min_size=1, max_size=MAX_WRITE_BYTES),
        ),
    ),  # fmt: skip
    st.tuples(  # unknown opcodes with plausible lengths
        st.just("control"),
        st.builds(
            lambda op, body: bytes([op]) + body,
            st.sampled_from([0, 5, 0x7F, 0xFF]),
            st.binary(max_size=6),
        ),
    ),  # fmt: skip
    st.tuples(st.just("ack-above"), st.integers(0, 1000)),
    # back to back, not waiting for the board: overflows its command queue (STATUS busy)
    st.tuples(st.just("burst"), st.lists(st.binary(max_size=12), min_size=2, max_size=12)),
)
OTHER_OPS = st.one_of(
    st.tuples(st.sampled_from(["info", "data", "cccd"]), st.binary(max_size=MAX_WRITE_BYTES)),
    st.tuples(st.just("read"), st.sampled_from([p.INFO_UUID, p.DATA_UUID, p.CONTROL_UUID])),
    st.tuples(st.just("subscribe"), st.booleans()),
)
ATTACKS = st.lists(st.one_of(CONTROL_WRITES, CONTROL_WRITES, OTHER_OPS), min_size=5, max_size=40)


def journal_of(vb: VirtualBoard) -> list[tuple[int, bytes]]:
    """Return the board's unacked journal records as (seq, bytes)."""
    return [(seq, bytes(rec)) for seq, rec in vb.board.journal.iter_from(0)]


def board_alive(vb: VirtualBoard) -> bool:
    """Return True if none of the board's tasks ended with an error and the peripheral runs."""
    for task in vb.board._tasks:
        if task.done() and (task.cancelled() or task.exception() is not None):
            return False
    return vb.board.peripheral.running and not vb.board._tasks[2].done()


class Attacker:
    """A second central on the fleet's radio that talks raw GATT to one board."""

    def __init__(self, fleet: VirtualFleet) -> None:
        assert fleet.link is not None
        self.central = fleet.link.new_central(ATTACKER_ADDRESS)
        self.notified: list[bytes] = []
        self.refused_writes = 0  # GATT-level refusals (read-only / notify-only characteristics)
        self.skipped_acks = 0

    async def attack(self, vb: VirtualBoard, ops: list) -> None:
        """Connect to vb, run ops, disconnect; GATT errors of single ops are expected."""
        await self.central.start()
        found = await BleakScanner.find_device_by_filter(
            lambda d, ad: p.SERVICE_UUID in ad.service_uuids, timeout=WAIT_S,
            backend=self.central.backends.scanner,
        )  # fmt: skip
        assert found is not None
        async with BleakClient(found, backend=self.central.backends.client, timeout=WAIT_S) as c:
            data_char = c.services.get_characteristic(p.DATA_UUID)
            assert data_char is not None
            cccd = data_char.get_descriptor("00002902-0000-1000-8000-00805f9b34fb")
            peripheral = vb.board.peripheral
            for kind, arg in ops:
                try:
                    await asyncio.wait_for(self._op(c, vb, kind, arg, cccd), WAIT_S)
                except (BleakError, ProtocolError) as e:  # refused by the GATT server
                    self.refused_writes += 1
                    if not c.is_connected:
                        raise AssertionError(f"the board dropped the attacker: {e}") from e
                # Let the board answer before the next op: commands still queued when the link
                # drops are discarded unanswered (by design), so they would go uncounted.
                await wait_until(lambda: not peripheral._queue and not peripheral._busy_ops,
                                 WAIT_S, "the board answered")  # fmt: skip

    async def _op(self, c: BleakClient, vb: VirtualBoard, kind: str, arg, cccd) -> None:
        if kind == "control":
            if self._valid_ack_of_held_record(vb, arg):
                self.skipped_acks += 1
                return
            await c.write_gatt_char(p.CONTROL_UUID, arg, response=True)
        elif kind == "ack-above":
            last = vb.board.sampler.last_seq
            await c.write_gatt_char(p.CONTROL_UUID, p.encode_ack(min(last + 1 + arg, 0xFFFFFFFF)),
                                    response=True)  # fmt: skip
        elif kind == "burst":
            for raw in arg:
                if not self._valid_ack_of_held_record(vb, raw):
                    await c.write_gatt_char(p.CONTROL_UUID, raw, response=True)
        elif kind == "info":
            await c.write_gatt_char(p.INFO_UUID, arg, response=True)
        elif kind == "data":
            await c.write_gatt_char(p.DATA_UUID, arg, response=True)
        elif kind == "cccd":  # bleak refuses CCCD writes: through bumble's GATT client
            (conn,) = self.central.device.connections.values()
            await conn.gatt_client.write_value(cccd.handle, arg, with_response=True)
        elif kind == "read":
            await c.read_gatt_char(arg)
        elif arg:
            await c.start_notify(p.DATA_UUID, lambda _ch, d: self.notified.append(bytes(d)))
        else:
            await c.stop_notify(p.DATA_UUID)

    @staticmethod
    def _valid_ack_of_held_record(vb: VirtualBoard, raw: bytes) -> bool:
        try:
            op, args = p.decode_command(raw)
        except WireError:
            return False
        return op == p.CMD_ACK and args[0] <= vb.board.sampler.last_seq

    async def close(self) -> None:
        await self.central.close()


@FUZZ
@given(ops=ATTACKS)
def test_a_hostile_central_cannot_crash_a_board_or_change_its_journal(ops):
    with tempfile.TemporaryDirectory(prefix="edgeseal-fuzz-board-") as tmp:
        run(_hostile_central(Path(tmp), ops), 4 * WAIT_S)


async def _hostile_central(tmp: Path, ops: list) -> None:
    gw = Gateway(tmp)
    with recording_journals() as produced:
        fleet = VirtualFleet(load_profiles(["energy-meter"]), str(tmp / "fleet"),
                             sample_interval_s=0.1, heartbeat_interval_s=60, sign_every_n=3)  # fmt: skip
        (vb,) = await fleet.start()
        attacker = Attacker(fleet)
        try:
            await wait_until(lambda: vb.board.sampler.depth >= 5, WAIT_S, "a few readings")
            freeze_sampling([vb])
            before = journal_of(vb)
            acked_before = vb.board.journal.acked_seq
            bad_before = vb.board.peripheral.bad_commands + vb.board.peripheral.auth_rejections
            await attacker.attack(vb, ops)
            await attacker.close()
            peripheral = vb.board.peripheral
            await wait_until(lambda: not peripheral.connected and not peripheral._queue
                             and not peripheral._busy_ops, WAIT_S, "the board idle")  # fmt: skip
            assert board_alive(vb), [t for t in vb.board._tasks if t.done()]
            after = journal_of(vb)
            assert after[: len(before)] == before, "a record was lost or altered"
            assert vb.board.journal.acked_seq == acked_before
            refused = sum(1 for kind, arg in ops if kind == "ack-above" or kind == "control"
                          and not _valid_ack(vb, arg))  # fmt: skip
            # every refused command is counted (those in a burst may be answered busy instead):
            # none carries a tag under the board's link key, so all are refused unauthenticated
            bad = peripheral.bad_commands + peripheral.auth_rejections - bad_before
            assert bad >= refused, "refusals uncounted"
            assert fleet.central is not None
            enroll_all(gw, [vb])
            runner = LinkRun(gw, fleet.central.backends)
            async with runner.running():
                await wait_until(lambda: vb.board.sampler.depth == 0, WAIT_S, "drained")
            check_ledger(gw, [vb], produced)
        finally:
            await attacker.close()
            await fleet.stop()
            gw.close()


def _valid_ack(vb: VirtualBoard, raw: bytes) -> bool:
    """Return True for a v1-shaped ACK of a held record (the attacker skips those)."""
    return Attacker._valid_ack_of_held_record(vb, raw)


# ------------------------------------------------------------------------ 2. hostile peripheral

_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3


@dataclasses.dataclass(frozen=True)
class Hostility:
    """What one hostile peripheral does (drawn by hypothesis)."""

    impersonate: bool  # advertise the honest board's id prefix (else its own, enrolled, id)
    info: str  # "garbage" | "copy" (a valid Info with the claimed id) | "other" (another id)
    info_bytes: bytes  # the garbage Info
    frames: tuple[bytes, ...]  # notified on every SEND_FROM, in order
    after: str  # then: "end" | "silent" | "disconnect"
    on_ack: str  # "ok" | "refuse" | "silent" | "garbage"


def _forged_record(device_id: bytes, seq: int, body: bytes) -> bytes:
    """Return a well-formed-looking record of device_id whose signature cannot verify."""
    dev = ChainDevice("forger", tag=b"edgeseal fuzz forger ", seq=seq, time_s=100, flags=0)
    raw = bytearray(dev.readings(1, sign_every=1)[0][1])
    raw[3:19] = device_id  # claim device_id: the signature no longer matches
    if body:  # flip the signature's tail too
        raw[-len(body) :] = body
    return bytes(raw)


def _frames(draw, device_id: bytes) -> tuple[bytes, ...]:
    out: list[bytes] = []
    for kind in draw(st.lists(st.sampled_from(
        ["garbage", "chunk-junk", "oversized", "out-of-order", "forged", "bad-end", "status"]
    ), max_size=8)):  # fmt: skip
        if kind == "garbage":
            out.append(draw(st.binary(max_size=MAX_WRITE_BYTES)))
        elif kind == "chunk-junk":  # a whole record that is not one
            out += p.encode_chunks(draw(st.binary(min_size=1, max_size=240)), 1, 247)
        elif kind == "oversized":  # chunks adding up to more than a record can be
            out += [bytes([p.FRAME_CHUNK, 2, i, 3]) + bytes(120) for i in range(3)]
        elif kind == "out-of-order":
            chunks = p.encode_chunks(bytes(range(200)), 3, 23)
            out += chunks[::-1]
        elif kind == "forged":
            body = draw(st.binary(max_size=8))
            out += p.encode_chunks(
                _forged_record(device_id, draw(st.integers(0, 50)), body), 4, 247
            )
        elif kind == "bad-end":
            out.append(p.encode_end(p.END_ALL_SENT, 7, 3) + draw(st.binary(min_size=1, max_size=4)))
        else:
            out.append(p.encode_status(draw(st.integers(0, 255)), draw(st.integers(0, 255)), 0))
    return tuple(out)


@st.composite
def hostilities(draw, honest_id: bytes, rogue_id: bytes) -> Hostility:
    impersonate = draw(st.booleans())
    claimed = honest_id if impersonate else rogue_id
    return Hostility(
        impersonate=impersonate,
        info=draw(st.sampled_from(["garbage", "copy", "other"])),
        info_bytes=draw(st.binary(max_size=120)),
        frames=_frames(draw, claimed),
        after=draw(st.sampled_from(["end", "silent", "disconnect"])),
        on_ack=draw(st.sampled_from(["ok", "refuse", "silent", "garbage"])),
    )


class HostileBoard:
    """A peripheral on MicroPython's `bluetooth` API (the sim's) that breaks every rule."""

    def __init__(self, ble: BLE, how: Hostility, device_id: bytes, public_key: bytes) -> None:
        self.ble, self.how = ble, how
        self.device_id, self.public_key = device_id, public_key
        self.conn = None
        self.connections = 0
        ble.active(True)
        ble.config(mtu=247)
        svc = (
            UUID(p.SERVICE_UUID),
            (
                (UUID(p.INFO_UUID), 0x0002),
                (UUID(p.DATA_UUID), 0x0010),
                (UUID(p.CONTROL_UUID), 0x0008),
            ),
        )
        ((self.h_info, self.h_data, self.h_ctl),) = ble.gatts_register_services((svc,))
        ble.gatts_set_buffer(self.h_info, 160)
        ble.gatts_set_buffer(self.h_ctl, 32)
        ble.irq(self._irq)
        ble.gatts_write(self.h_info, self._info())
        self._advertise()

    def _info(self) -> bytes:
        how = self.how
        if how.info == "garbage":
            return how.info_bytes
        dev = self.device_id if how.info == "copy" else bytes(16)
        return p.encode_info(p.Info(dev, self.public_key, (6, 6, 6), 3, 0, 50, None, 1, 5, 0,
                                    "rogue"))  # fmt: skip

    def _advertise(self) -> None:
        self.ble.gap_advertise(20_000, adv_data=p.encode_advertising(self.device_id, 3))

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self.conn = data[0]
            self.connections += 1
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.conn = None
            self._advertise()
        elif event == _IRQ_GATTS_WRITE and data[1] == self.h_ctl and self.conn is not None:
            raw = bytes(self.ble.gatts_read(self.h_ctl))
            if raw[:1] == bytes([p.CMD_SEND_FROM]):
                self._stream()
            elif raw[:1] == bytes([p.CMD_ACK]):
                self._ack()

    def _notify(self, frame: bytes) -> None:
        if self.conn is not None:
            self.ble.gatts_notify(self.conn, self.h_data, frame)

    def _stream(self) -> None:
        for frame in self.how.frames:
            self._notify(frame)
        if self.how.after == "end":
            self._notify(p.encode_end(p.END_ALL_SENT, 50, 3))
        elif self.how.after == "disconnect" and self.conn is not None:
            self.ble.gap_disconnect(self.conn)

    def _ack(self) -> None:
        on_ack = self.how.on_ack
        if on_ack == "ok":
            self._notify(p.encode_status(p.CMD_ACK, p.STATUS_OK, 0))
        elif on_ack == "refuse":
            self._notify(p.encode_status(p.CMD_ACK, p.STATUS_BAD_ARGUMENT, 0))
        elif on_ack == "garbage":
            self._notify(b"\x03\xff")


ROGUE = ChainDevice("rogue", tag=b"edgeseal fuzz rogue ", seq=0, time_s=100, flags=0)
HONEST_PROFILE = "energy-meter"


@FUZZ
@given(data=st.data())
def test_a_hostile_peripheral_cannot_crash_the_link_or_get_anything_ingested(data):
    with tempfile.TemporaryDirectory(prefix="edgeseal-fuzz-link-") as tmp:
        run(_hostile_peripheral(Path(tmp), data), 4 * WAIT_S)


async def _hostile_peripheral(tmp: Path, data) -> None:
    gw = Gateway(tmp)
    with recording_journals() as produced:
        fleet = VirtualFleet(load_profiles([HONEST_PROFILE]), str(tmp / "fleet"),
                             sample_interval_s=0.1, heartbeat_interval_s=60, sign_every_n=3)  # fmt: skip
        (vb,) = await fleet.start()
        hostile_ble = None
        try:
            await wait_until(lambda: vb.board.sampler.depth >= 5, WAIT_S, "a few readings")
            freeze_sampling([vb])
            enroll_all(gw, [vb])
            gw.ingest.enroll(ROGUE.public_key, {"profile": "rogue"})
            how = data.draw(hostilities(vb.device_id, ROGUE.device_id))
            claimed = vb.device_id if how.impersonate else ROGUE.device_id
            key = vb.public_key if how.impersonate else ROGUE.public_key
            assert fleet.link is not None and fleet.central is not None
            hostile_ble = BLE(fleet.link.new_device("hostile", HOSTILE_ADDRESS))
            HostileBoard(hostile_ble, how, claimed, key)  # serves from its IRQ handler
            runner = LinkRun(gw, fleet.central.backends)
            async with runner.running(HOSTILE_LINK) as link:
                await wait_until(
                    lambda: _rogue_done(link), WAIT_S, "an upload from the rogue ended"
                )
                await wait_until(lambda: vb.board.sampler.depth == 0, WAIT_S, "honest drained")
                link_task_alive = not any(t.done() and not t.cancelled() and t.exception()
                                          for t in link._tasks.values())  # fmt: skip
            assert link_task_alive
            check_ledger(gw, [vb], produced, enrolled=2)  # every honest record once; audit ok
            log = gw.log()
            assert set(log) == {vb.device_id}, "a record of the rogue was ingested"
            _assert_rejections_counted(runner, gw, how, {raw for _, raw in produced[vb.device_id]})
        finally:
            await fleet.stop()
            if hostile_ble is not None:
                await hostile_ble.close()
            gw.close()


def _rogue_done(link) -> bool:
    """Return True once an upload from the hostile address ended (in success or failure)."""
    return any(
        address.upper() == HOSTILE_ADDRESS and (state.uploads or state.last_error)
        for (_dev, address), state in link.states.items()
    )


def _assert_rejections_counted(
    runner: LinkRun, gw: Gateway, how: Hostility, honest: set[bytes]
) -> None:
    """Every way the rogue misbehaved shows in the link's counters or in ingest's alarms."""
    errors = {code for s in runner.stats for code in s.errors}
    if how.info == "garbage":
        try:
            p.decode_info(how.info_bytes)
        except WireError:
            assert "protocol/ble-bad-info" in errors, errors
    elif how.info == "other":
        assert "wrong-device" in errors, errors
    for d in gw.deliveries:  # an upload carrying anything the honest board did not send
        if any(r not in honest for r in d.records):
            assert set(d.events) & (ALARMS | {EV_UNKNOWN_DEVICE}), d.events
    counted = sum(
        s.bad_frames + s.dropped_chunks + s.dropped_records + s.lost_tails + sum(s.errors.values())
        for s in runner.stats
    )
    assert counted >= 1, runner.stats


AUTH_TEST_MS = 500  # the board's auth limit in this test (AUTH_TIMEOUT_MS is 10 s)


def test_a_central_that_connects_and_sits_there_does_not_lock_the_gateway_out(tmp_path):
    """A phone that connects and sends nothing (so never authenticates) ends the board's
    advertising; the board drops it after its auth limit, advertises again, and the gateway
    drains it."""

    async def scenario():
        gw = Gateway(tmp_path)
        with recording_journals() as produced:
            fleet = VirtualFleet(load_profiles(["energy-meter"]), str(tmp_path / "fleet"),
                                 sample_interval_s=0.1, heartbeat_interval_s=60, sign_every_n=3)  # fmt: skip
            (vb,) = await fleet.start()
            attacker = Attacker(fleet)
            try:
                await wait_until(lambda: vb.board.sampler.depth >= 5, WAIT_S, "a few readings")
                freeze_sampling([vb])
                vb.board.peripheral.auth_timeout_ms = AUTH_TEST_MS
                await attacker.central.start()
                found = await BleakScanner.find_device_by_filter(
                    lambda d, ad: p.SERVICE_UUID in ad.service_uuids, timeout=WAIT_S,
                    backend=attacker.central.backends.scanner,
                )  # fmt: skip
                assert found is not None and fleet.central is not None
                client = BleakClient(found, backend=attacker.central.backends.client)
                await client.connect(timeout=WAIT_S)  # and then nothing
                enroll_all(gw, [vb])
                runner = LinkRun(gw, fleet.central.backends)
                async with runner.running():
                    await wait_until(lambda: vb.board.sampler.depth == 0, WAIT_S, "drained")
                assert vb.board.peripheral.auth_timeouts >= 1
                await wait_until(lambda: not client.is_connected, WAIT_S, "attacker dropped")
                check_ledger(gw, [vb], produced)
            finally:
                await attacker.close()
                await fleet.stop()
                gw.close()

    run(scenario(), 4 * WAIT_S)
