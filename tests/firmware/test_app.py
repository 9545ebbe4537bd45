"""build_board from a real board profile with faked buses: sensors through drivers, BLE upload, reboot."""

import struct

from firmware import app, board, wire
from firmware.keystore import install_link_key
from firmware.sampler import Source
from tests.firmware.fakes import FakeDS18B20, FakeI2C, FakeOneWire, sensirion_crc8
from tests.firmware.simflash import SimFlash
from tests.firmware.test_sampler import SimClock, SimLoop, check_chain
from tests.firmware.vectors import W

try:
    import bluetooth  # the host shims: tests/shims is on sys.path under pytest
    import esp32
except ImportError:  # the MicroPython VM: tools/mpvm.mjs copies tests/shims, not on sys.path
    try:
        from tests.shims import bluetooth, esp32
    except ImportError:  # a board: no shims
        bluetooth = None
if bluetooth is not None:
    from tests.firmware.test_peripheral import LINK_KEY, Gateway, ack

VM_SKIP = {}
_WHY = "needs the host shims (tests/shims: bluetooth, esp32), not deployed to boards"

ROM = bytes([0x28, 0xFF, 0x4C, 0x3B, 0x61, 0x16, 0x03, 0xA5])


def _urandom(n):
    return bytes((i * 37 + 11) & 0xFF for i in range(n))


def _sht_frame(t_raw, rh_raw):
    t = bytes([t_raw >> 8, t_raw & 0xFF])
    h = bytes([rh_raw >> 8, rh_raw & 0xFF])
    return t + bytes([sensirion_crc8(t)]) + h + bytes([sensirion_crc8(h)])


def _buses(n_sht=200):
    ow = FakeOneWire([FakeDS18B20(ROM, temps=[0x0191] * 1000)])  # 25.0625 degC
    i2c = FakeI2C()
    i2c.add_device(68)
    i2c.responses[68] = [_sht_frame(0x6666, 0x8000) for _ in range(n_sht)]
    return {"ow0": ow, "i2c0": i2c}


def _profile():
    return board.load("boards/cold-chain-logger.json")


def _build(fs, ble, clock, nvs=None, buses=None):
    install_link_key(fs, nvs, LINK_KEY)  # provisioning: the gateway's uploads authenticate
    return app.build_board(
        _profile(), ble, fs, nvs, buses or _buses(), clock, _urandom, uuid=bluetooth.UUID
    )


def test_board_samples_profile_sensors_and_uploads():
    fs = SimFlash(seed=3)
    clock = SimClock()
    ble = bluetooth.BLE(1, clock)
    b = _build(fs, ble, clock)
    loop = SimLoop(clock)
    for c in b.coroutines():
        loop.spawn(c)
    loop.run_for(5 * 60 * 1000 - 1000)  # 5 readings at 60 s, no heartbeat yet (900 s)
    s = b.sampler
    assert s.readings == 5 and s.sensor_faults == 0
    gw = Gateway(ble, loop, 247)
    gw.connect()
    assert gw.info["board"] == "cold-chain-logger"
    assert gw.info["public_key"] == b.public_key
    assert wire.device_id(b.public_key) == b.dev_id == gw.info["device_id"]
    records, end = gw.upload(0)
    kinds = [wire.parse(r)[0] for r in records]
    assert kinds == [W.KIND_EVENT] + [W.KIND_READING] * 5 + [W.KIND_HEARTBEAT]
    first = wire.parse(records[0])
    assert first[7] == [(W.CH_EVENT_CODE, 0, W.EV_BOOT)]
    values = wire.parse(records[1])[7]
    assert values == [(1, 0, 2506), (1, 1, 2500), (2, 0, 5000)]
    check_chain(records, b.dev_id)
    assert gw.command(ack(end[1]))[1] == 0
    b.stop()
    loop.close()
    assert ble.adv is None


def test_reboot_keeps_identity_chain_and_seq_order():
    fs = SimFlash(seed=4)
    clock = SimClock()
    ble = bluetooth.BLE(1, clock)
    b = _build(fs, ble, clock)
    loop = SimLoop(clock)
    for c in b.coroutines():
        loop.spawn(c)
    loop.run_for(200000)
    b.stop()
    loop.close()
    last = b.journal.last_seq
    fs.remount()
    ble2 = bluetooth.BLE(2, clock)
    b2 = _build(fs, ble2, clock)
    assert b2.dev_id == b.dev_id and b2.sampler.boot == b.sampler.boot + 1
    loop = SimLoop(clock)
    for c in b2.coroutines():
        loop.spawn(c)
    loop.run_for(1000)
    recs = [r for _, r in b2.journal.iter_from(0)]
    check_chain(recs, b.dev_id)
    assert wire.parse(recs[-2])[3] > last  # boot event of the second boot (then a reading)
    b2.stop()
    loop.close()


def test_nvs_backed_seq_counter():
    fs = SimFlash(seed=5)
    store = {}
    clock = SimClock()
    b = _build(fs, bluetooth.BLE(1, clock), clock, esp32.NVS("edgeseal", store))
    for c in b.coroutines():
        c.close()
    b.sampler.sample_once()
    assert "seq_a" in store["edgeseal"] or "seq_b" in store["edgeseal"]
    b.stop()
    b2 = _build(fs, bluetooth.BLE(1, clock), clock, esp32.NVS("edgeseal", store))
    assert b2.sampler.seqs.peek() > b.journal.last_seq


def test_missing_sensor_becomes_fault_event_not_crash():
    fs = SimFlash(seed=6)
    clock = SimClock()
    buses = _buses()
    buses["ow0"] = FakeOneWire([])  # probe unplugged
    b = _build(fs, bluetooth.BLE(1, clock), clock, buses=buses)
    for c in b.coroutines():
        c.close()
    for _ in range(3):
        b.sampler.sample_once()
    recs = [wire.parse(r) for _, r in b.journal.iter_from(0)]
    faults = [p for p in recs if p[0] == W.KIND_EVENT and p[7][0][2] == W.EV_SENSOR_FAULT]
    assert len(faults) == 1 and faults[0][7][1] == (W.CH_EVENT_ARG, 0, W.CH_TEMPERATURE)
    assert [p[7] for p in recs if p[0] == W.KIND_READING][0] == [(1, 1, 2500), (2, 0, 5000)]
    b.stop()


def test_custom_sources_replace_profile_sensors():
    fs = SimFlash(seed=8)
    clock = SimClock()
    src = Source("w", lambda: [(W.CH_WEIGHT, 0, 1234)], W.CH_WEIGHT)
    b = app.build_board(
        _profile(), bluetooth.BLE(1, clock), fs, None, {}, clock, _urandom, sources=[src],
        uuid=bluetooth.UUID,
    )  # fmt: skip
    for c in b.coroutines():
        c.close()
    b.sampler.sample_once()
    last = wire.parse(b.journal.last()[1])
    assert last[7] == [(W.CH_WEIGHT, 0, 1234)]
    b.stop()


def test_start_stop_on_asyncio_with_real_clock():
    import asyncio

    fs = SimFlash(seed=9)
    ble = bluetooth.BLE(1)
    clock = app.RealClock()

    async def main():
        b = _build(fs, ble, clock)
        await b.start()
        await asyncio.sleep(0.2)
        adv = ble.adv
        b.stop()
        await asyncio.sleep(0)
        return b, adv

    b, adv = asyncio.run(main())
    assert adv is not None and struct.unpack(">H", adv[1][29:31])[0] == 2  # boot event + reading
    assert b.sampler.readings == 1
    assert ble.adv is None


if bluetooth is None:
    for _name in list(globals()):
        if _name.startswith("test_"):
            VM_SKIP[_name] = _WHY
VM_SKIP["test_start_stop_on_asyncio_with_real_clock"] = "asyncio.run is missing in the VM port"
