"""The real BleLink through bleak's BlueZ backend, against python-dbusmock's bluez5 on a private bus.

No kernel Bluetooth here, so BlueZ itself is replaced: a private dbus-daemon stands in for the
system bus (DBUS_SYSTEM_BUS_ADDRESS), python-dbusmock's `bluez5` template plays org.bluez, and this
test adds what the template lacks (DESIGN, Pitfalls): GATT objects (GattService1 and three
GattCharacteristic1 with ReadValue/WriteValue/StartNotify/StopNotify, announced by
InterfacesAdded), ManufacturerData/ServiceData as dicts (the template types them as arrays), and
Connect/Disconnect that really set Connected and ServicesResolved. The test itself is the board:
it watches the mock's MethodCalled signal on the control characteristic and answers by changing
the data characteristic's Value (PropertiesChanged), which is how BlueZ delivers notifications.
Covers scan (Discovery + PropertiesChanged on Device1), connect, read, notify, write, disconnect.
"""

import asyncio
import contextlib
import dataclasses
import os
import select
import shutil
import subprocess
import sys
import time

import pytest

from gateway.ble import auth
from gateway.ble import protocol as p
from gateway.ble.link import BleLink
from tests.gateway.ble.helpers import (
    TEST_KEYS,
    TEST_LINK,
    WAIT_S,
    MemoryCollector,
    make_chain,
    wait_until,
)

dbus_fast = pytest.importorskip("dbus_fast", reason="dbus-fast comes with bleak; bleak missing")
from dbus_fast import BusType, Message, MessageType, Variant  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

MOCK = "org.freedesktop.DBus.Mock"
CHAR = "org.bluez.GattCharacteristic1"
DEVICE = "org.bluez.Device1"
ADDRESS = "C0:FF:EE:00:00:01"
# The tests' link timers (helpers.py); no second upload on an advert still saying pending > 0.
FAST = dataclasses.replace(TEST_LINK, success_cooldown_s=WAIT_S)
# Wait for the daemon and the mock to come up: a cold python start on a loaded CI machine.
STARTUP_TIMEOUT_S = 20.0


def _dbusmock_python():
    """Return a Python that can run `-m dbusmock` (EDGESEAL_DBUSMOCK_PYTHON, this one, system)."""
    candidates = [os.environ.get("EDGESEAL_DBUSMOCK_PYTHON"), sys.executable, "/usr/bin/python3"]
    for py in candidates:
        if py and os.path.exists(py):
            ok = subprocess.run(
                [py, "-c", "import dbusmock, dbus"], capture_output=True, timeout=30
            ).returncode
            if ok == 0:
                return py
    return None


def _missing(reason: str) -> None:
    """Skip on a developer machine without the system packages; fail in CI, which installs them."""
    if os.environ.get("CI"):
        pytest.fail("CI must run make deps-system first: " + reason)
    pytest.skip(reason)


@contextlib.contextmanager
def private_bluez():
    """Yield the address of a private bus on which dbusmock's bluez5 template owns org.bluez."""
    daemon_bin = shutil.which("dbus-daemon")
    if daemon_bin is None:
        _missing("dbus-daemon not installed (Debian package `dbus`; make deps-system)")
    py = _dbusmock_python()
    if py is None:
        _missing(
            "python-dbusmock + dbus-python not importable (Debian python3-dbusmock via "
            "make deps-system, or pip python-dbusmock + dbus-python)"
        )
    daemon = subprocess.Popen(
        [daemon_bin, "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    mock = None
    try:
        assert daemon.stdout is not None
        ready, _, _ = select.select([daemon.stdout], [], [], STARTUP_TIMEOUT_S)
        assert ready, "dbus-daemon did not print its address"
        address = daemon.stdout.readline().strip()
        assert address, "dbus-daemon printed no address"
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
        mock = subprocess.Popen(
            [py, "-m", "dbusmock", "--system", "--template", "bluez5"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield address
    finally:
        for proc in (mock, daemon):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()


async def _call(bus, path, iface, member, sig="", body=(), dest="org.bluez"):
    reply = await bus.call(
        Message(destination=dest, path=path, interface=iface, member=member, signature=sig,
                body=list(body))
    )  # fmt: skip
    if reply.message_type == MessageType.ERROR:
        raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
    return reply.body


async def _set(bus, path, iface, name, value):
    """Set a property with the standard Properties.Set; dbusmock emits PropertiesChanged.

    (dbusmock 0.28's UpdateProperties cannot wrap dict or array values; Set works everywhere.)
    """
    await _call(bus, path, "org.freedesktop.DBus.Properties", "Set", "ssv", (iface, name, value))


class MockBoard:
    """The board behind the mocked BlueZ device: GATT objects, adverts and the protocol."""

    def __init__(self, bus, dev_path, name, n):
        self.bus = bus
        self.dev_path = dev_path
        self.dev_id, self.pk, records = make_chain(name, n)
        self.journal = list(records)
        self.svc = f"{dev_path}/service0010"
        self.info = f"{self.svc}/char0011"
        self.data = f"{self.svc}/char0013"
        self.ctl = f"{self.svc}/char0016"
        self.send_from = []
        self.acks = []
        self.calls = []
        self._tasks = set()

    async def setup(self):
        bus = self.bus
        props = {
            "UUIDs": Variant("as", [p.SERVICE_UUID]),
            # the template types these as arrays; bleak expects dicts
            "ManufacturerData": Variant("a{qv}", {p.COMPANY_ID: Variant("ay", self._mfr())}),
            "ServiceData": Variant("a{sv}", {}),
            "AddressType": Variant("s", "random"),
        }
        for name, value in props.items():
            await _set(bus, self.dev_path, DEVICE, name, value)
        # Connect/Disconnect that keep Connected and resolve services (template quirk)
        for name, up in (("Connect", True), ("Disconnect", False)):
            code = (
                f"self.UpdateProperties('{DEVICE}', {{'Connected': dbus.Boolean({up}), "
                f"'ServicesResolved': dbus.Boolean({up})}})"
            )
            await _call(
                bus, self.dev_path, MOCK, "AddMethod", "sssss", (DEVICE, name, "", "", code)
            )
        info = p.encode_info(
            p.Info(
                self.dev_id,
                self.pk,
                (0, 0, 1),
                len(self.journal),
                1,
                2 * len(self.journal) - 1,
                None,
                1,
                5,
                0,
                "dbusmock",
            )  # fmt: skip
        )
        notify = (
            ("StartNotify", "", "", f"self.UpdateProperties('{CHAR}', {{'Notifying': dbus.Boolean(True)}})"),
            ("StopNotify", "", "", f"self.UpdateProperties('{CHAR}', {{'Notifying': dbus.Boolean(False)}})"),
        )  # fmt: skip
        objects = [
            (self.svc, "org.bluez.GattService1",
             {"UUID": Variant("s", p.SERVICE_UUID), "Primary": Variant("b", True),
              "Device": Variant("o", self.dev_path), "Includes": Variant("ao", [])}, []),
            (self.info, CHAR, self._char(p.INFO_UUID, ["read"], info),
             [("ReadValue", "a{sv}", "ay", f"ret = dbus.ByteArray(bytes.fromhex('{info.hex()}'))")]),
            (self.data, CHAR, self._char(p.DATA_UUID, ["notify"], b""), list(notify)),
            (self.ctl, CHAR, self._char(p.CONTROL_UUID, ["write"], b""),
             [("WriteValue", "aya{sv}", "", "")]),
        ]  # fmt: skip
        for path, iface, obj_props, methods in objects:
            await _call(bus, "/", MOCK, "AddObject", "ssa{sv}a(ssss)",
                        (path, iface, obj_props, [list(m) for m in methods]))  # fmt: skip
            await _call(
                bus, "/", MOCK, "EmitSignal", "sssav",
                ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded", "oa{sa{sv}}",
                 [Variant("o", path), Variant("a{sa{sv}}", {iface: obj_props})]),
            )  # fmt: skip
        rule = f"type='signal',interface='{MOCK}',member='MethodCalled'"
        await _call(bus, "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", (rule,),
                    dest="org.freedesktop.DBus")  # fmt: skip
        bus.add_message_handler(self._on_message)

    def _char(self, uuid, flags, value):
        return {
            "UUID": Variant("s", uuid),
            "Service": Variant("o", self.svc),
            "Flags": Variant("as", flags),
            "Value": Variant("ay", value),
            "Notifying": Variant("b", False),
            "MTU": Variant("q", 247),
        }

    def _mfr(self):
        return self.dev_id[:4] + min(len(self.journal), 0xFFFF).to_bytes(2, "big")

    async def advertise(self, stop):
        """Refresh RSSI and the pending count like a scanning adapter sees adverts."""
        rssi = -50
        while not stop.is_set():
            rssi = -51 if rssi == -50 else -50
            props = {
                "RSSI": Variant("n", rssi),
                "ManufacturerData": Variant("a{qv}", {p.COMPANY_ID: Variant("ay", self._mfr())}),
            }
            with contextlib.suppress(Exception):
                for name, value in props.items():
                    await _set(self.bus, self.dev_path, DEVICE, name, value)
            await asyncio.sleep(0.2)

    def _on_message(self, msg):
        if msg.member != "MethodCalled" or msg.interface != MOCK:
            return None
        self.calls.append((msg.path, msg.body[0]))
        if msg.path == self.ctl and msg.body[0] == "WriteValue":
            task = asyncio.get_running_loop().create_task(
                self._command(bytes(msg.body[1][0].value))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return None

    async def _notify(self, frame):
        await _set(self.bus, self.data, CHAR, "Value", Variant("ay", frame))

    async def _command(self, raw):
        op, args = p.decode_command(auth.open_command(raw)[0])  # the tag is the board's business
        if op == p.CMD_SEND_FROM:
            self.send_from.append(args[0])
            last = None
            for i, (seq, rec) in enumerate(r for r in self.journal if r[0] >= args[0]):
                for frame in p.encode_chunks(rec, i % 256, 247):
                    await self._notify(frame)
                last = seq
            await self._notify(p.encode_end(p.END_ALL_SENT, last, len(self.journal)))
        elif op == p.CMD_ACK:
            self.acks.append(args[0])
            self.journal = [(s, r) for s, r in self.journal if s > args[0]]
            await self._notify(p.encode_status(p.CMD_ACK, p.STATUS_OK, len(self.journal)))


async def _wait_for_name(bus, name, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        (has,) = await _call(bus, "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                             "s", (name,), dest="org.freedesktop.DBus")  # fmt: skip
        if has:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not appear on the private bus")


def test_bleak_bluez_backend_scan_connect_notify_write_disconnect(monkeypatch):
    with private_bluez() as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)

        async def scenario():
            bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
            stop = asyncio.Event()
            try:
                await _wait_for_name(bus, "org.bluez", STARTUP_TIMEOUT_S)
                await _call(bus, "/org/bluez", "org.bluez.Mock", "AddAdapter", "ss", ("hci0", "gw"))
                # bleak picks an adapter whose Roles include "central"; dbusmock 0.28 has no Roles
                with contextlib.suppress(RuntimeError):  # 0.38: PropertyExists
                    await _call(bus, "/org/bluez/hci0", MOCK, "AddProperty", "ssv",
                                ("org.bluez.Adapter1", "Roles", Variant("as", ["central"])))  # fmt: skip
                (dev_path,) = await _call(bus, "/org/bluez", "org.bluez.Mock", "AddDevice", "sss",
                                          ("hci0", ADDRESS, "es-board"))  # fmt: skip
                board = MockBoard(bus, dev_path, "dbusmock", 8)
                await board.setup()
                adverts = asyncio.create_task(board.advertise(stop))
                col = MemoryCollector({board.dev_id: board.pk})
                # None: bleak's default backend, BlueZ on Linux
                link = BleLink(col, None, FAST, link_keys=TEST_KEYS)
                run_task = asyncio.create_task(link.run(stop))
                await wait_until(
                    lambda: (
                        run_task.done()
                        or not board.journal
                        and link.stats.uploads_ok >= 1
                        and any(name == "Disconnect" for _path, name in board.calls)
                    ),
                    WAIT_S,
                    "the upload drained the board and disconnected",
                )
                stop.set()
                await run_task
                await adverts
            finally:
                stop.set()
                bus.disconnect()
            return board, col, link

        board, col, link = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT_S))
    assert [r.seq for r in col.committed[board.dev_id]] == list(range(1, 17, 2)), link.stats
    assert board.send_from == [0] and board.acks == [15]
    called = [name for _path, name in board.calls]
    for step in (
        "StartDiscovery",
        "Connect",
        "ReadValue",
        "StartNotify",
        "WriteValue",
        "Disconnect",
    ):
        assert step in called, (step, called)
    assert called.index("StartNotify") < called.index("WriteValue")  # bleak #374: subscribe first
    assert link.stats.uploads_ok == 1 and link.stats.acks == 1
