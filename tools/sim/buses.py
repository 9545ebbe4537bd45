"""Bus fakes of the simulated world: I2C, 1-Wire, ADC, UART, Pin and a clock (MicroPython-compatible).

The fakes mimic MicroPython's machine/onewire objects: same method names and argument orders, and
the same failure modes (OSError(19) ENODEV for a NACKed address, OSError(5) EIO for bus errors).
The firmware's driver tests replay recorded traces through them (tests/firmware/fakes.py
re-exports this module), and the chip models of tools/sim/devices.py sit on them so that virtual
boards run the real drivers. This module runs unchanged under CPython and inside the MicroPython
VM (tools/mpvm.mjs runs tests/firmware there): MicroPython syntax only, no host-only imports.
"""

ENODEV = 19
EIO = 5
ETIMEDOUT = 116


def _bitrev8(b):
    r = 0
    for _ in range(8):
        r = (r << 1) | (b & 1)
        b >>= 1
    return r


def dallas_crc8(data):
    """Return the Dallas/Maxim CRC-8 computed MSB-first on bit-reversed bytes (poly 0x31).

    Deliberately a different formulation from the driver's (reflected 0x8C, LSB-first): both must
    agree with the Maxim AN27 example (ROM 02 1C B8 01 00 00 00 -> A2).
    """
    crc = 0
    for byte in data:
        crc ^= _bitrev8(byte)
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return _bitrev8(crc)


def sensirion_crc8(data):
    """Return the Sensirion CRC-8 via a 256-entry table (poly 0x31, init 0xFF); 0xBEEF -> 0x92."""
    crc = 0xFF
    for byte in data:
        crc = _SENSIRION_TABLE[crc ^ byte]
    return crc


def _make_sensirion_table():
    table = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table[i] = c
    return table


_SENSIRION_TABLE = _make_sensirion_table()


class FakeClock:
    """ticks_ms/ticks_diff/sleep_ms on a manual millisecond counter (sleep advances it)."""

    def __init__(self, start_ms=0):
        self.now_ms = start_ms
        self.sleeps = []

    def ticks_ms(self):
        return self.now_ms

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.sleeps.append(ms)
        self.now_ms += ms

    def advance(self, ms):
        self.now_ms += ms


class FakeI2C:
    """machine.I2C stand-in: per-address register maps (readfrom_mem_into/writeto_mem, pointer
    auto-increment into following registers) and response queues (writeto/readfrom_into).

    regs[addr][reg] is bytes, or a list of bytes replayed in order (the last one sticks).
    responses[addr] is a list of bytes returned by successive readfrom_into calls; when empty the
    device NACKs (OSError ENODEV), as a sensor still measuring does. log records every transfer.
    fail: a list of OSError instances raised by the next transfers, one each.
    readonly: (addr, reg) pairs whose writes are acknowledged but not stored.
    devices[addr]: a chip model (attach()) answering every transfer to addr as I2C transactions:
    device.i2c_write(data) for a write (a *_mem call writes the register address first, then
    reads or writes the data), device.i2c_read_into(buf) for a read; either may raise OSError
    (ENODEV: the chip NACKs). fail still applies first.
    """

    def __init__(self):
        self.readonly = set()
        self.regs = {}
        self.responses = {}
        self.devices = {}
        self.log = []
        self.fail = []

    def attach(self, addr, device):
        """Put the chip model device at addr (see devices above); returns device."""
        self.devices[addr] = device
        return device

    def add_device(self, addr, regs=None):
        self.regs[addr] = {} if regs is None else regs
        self.responses[addr] = []
        return self.regs[addr]

    def _check(self, addr):
        """Raise the next queued failure, or ENODEV when nothing answers at addr; return the
        chip model at addr or None (a register map / response queue device)."""
        if self.fail:
            raise self.fail.pop(0)
        dev = self.devices.get(addr)
        if dev is None and addr not in self.regs:
            raise OSError(ENODEV)
        return dev

    def _reg_bytes(self, dev, reg):
        v = dev.get(reg)
        if v is None:
            return b"\x00"
        if isinstance(v, list):
            if len(v) > 1:
                return v.pop(0)
            return v[0]
        return v

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self.log.append(("readfrom_mem_into", addr, memaddr, len(buf)))
        chip = self._check(addr)
        if chip is not None:  # register address write, repeated start, read
            chip.i2c_write(bytes([memaddr]))
            chip.i2c_read_into(buf)
            return
        dev = self.regs[addr]
        i = 0
        reg = memaddr
        while i < len(buf):
            data = self._reg_bytes(dev, reg)
            for b in data:
                if i >= len(buf):
                    break
                buf[i] = b
                i += 1
            reg += 1

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self.log.append(("writeto_mem", addr, memaddr, bytes(buf)))
        chip = self._check(addr)
        if chip is not None:
            chip.i2c_write(bytes([memaddr]) + bytes(buf))
            return
        if (addr, memaddr) not in self.readonly:
            self.regs[addr][memaddr] = bytes(buf)

    def writeto(self, addr, buf, stop=True):
        self.log.append(("writeto", addr, bytes(buf)))
        chip = self._check(addr)
        if chip is not None:
            chip.i2c_write(bytes(buf))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self.log.append(("readfrom_into", addr, len(buf)))
        chip = self._check(addr)
        if chip is not None:
            chip.i2c_read_into(buf)
            return
        queue = self.responses[addr]
        if not queue:
            raise OSError(ENODEV)
        data = queue.pop(0)
        for i in range(len(buf)):
            buf[i] = data[i] if i < len(data) else 0xFF

    def scan(self):
        found = list(self.regs)
        for addr in self.devices:
            if addr not in self.regs:
                found.append(addr)
        return sorted(found)


class FakeDS18B20:
    """One DS18B20 as seen through the 1-Wire command layer: ROM, scratchpad, conversions.

    temps: raw temperature register values (signed 1/16 degC) taken by successive Convert T
    commands. scratchpads: optional exact 9-byte scratchpads returned by Read Scratchpad instead
    (replayed in order, then the computed one). bad_crc: corrupt the computed CRC byte.
    """

    def __init__(self, rom, temps=(), config=0x7F, th=0x4B, tl=0x46):
        self.rom = bytes(rom)
        self.temps = list(temps)
        self.temp_raw = 0x0550  # power-on value
        self.th = th
        self.tl = tl
        self.config = config
        self.scratchpads = []
        self.bad_crc = False
        self.conversions = 0

    def scratchpad(self):
        if self.scratchpads:
            return bytes(self.scratchpads.pop(0))
        t = self.temp_raw & 0xFFFF
        body = bytes([t & 0xFF, t >> 8, self.th, self.tl, self.config, 0xFF, 0x0C, 0x10])
        crc = dallas_crc8(body)
        if self.bad_crc:
            crc ^= 0x01
        return body + bytes([crc])

    def convert(self):
        self.conversions += 1
        if self.temps:
            self.temp_raw = self.temps.pop(0)


class FakeOneWire:
    """onewire.OneWire stand-in: reset/write/readinto/writebyte/readbyte/select_rom/scan/crc8.

    Decodes the bytes written after each reset: SKIP ROM (0xCC) or MATCH ROM (0x55 + 8 bytes), then
    a function command (0x44, 0xBE, 0x4E + 3 bytes). Unselected or absent devices read as 0xFF,
    as an idle pulled-up line does. log records ('reset'|'write'|'read', ...).
    """

    def __init__(self, devices=()):
        self.devices = list(devices)
        self.log = []
        self.fail = []
        self._reset_state()

    def _reset_state(self):
        self._rx = []  # bytes written since reset
        self._selected = None
        self._out = b""

    def reset(self, required=False):
        self.log.append(("reset",))
        if self.fail:
            raise self.fail.pop(0)
        self._reset_state()
        present = bool(self.devices)
        if required and not present:
            raise OSError(ENODEV)
        return present

    def write(self, buf):
        self.log.append(("write", bytes(buf)))
        if self.fail:
            raise self.fail.pop(0)
        for b in buf:
            self._byte_in(b)

    def writebyte(self, value):
        self.write(bytes([value]))

    def _byte_in(self, b):
        rx = self._rx
        rx.append(b)
        if self._selected is None:
            if rx[0] == 0xCC and len(rx) == 1:
                self._selected = self.devices[0] if len(self.devices) == 1 else "all"
                self._rx = []
            elif rx[0] == 0x55 and len(rx) == 9:
                rom = bytes(rx[1:9])
                self._selected = "none"
                for d in self.devices:
                    if d.rom == rom:
                        self._selected = d
                self._rx = []
            return
        dev = self._selected
        if rx[0] == 0x44 and len(rx) == 1:
            targets = self.devices if dev == "all" else ([] if dev == "none" else [dev])
            for d in targets:
                d.convert()
            self._rx = []
        elif rx[0] == 0xBE and len(rx) == 1:
            self._out = dev.scratchpad() if hasattr(dev, "scratchpad") else b"\xff" * 9
            self._rx = []
        elif rx[0] == 0x4E and len(rx) == 4:
            if hasattr(dev, "scratchpad"):
                dev.th, dev.tl, dev.config = rx[1], rx[2], rx[3]
            self._rx = []

    def readinto(self, buf):
        self.log.append(("read", len(buf)))
        if self.fail:
            raise self.fail.pop(0)
        out = self._out
        for i in range(len(buf)):
            buf[i] = out[i] if i < len(out) else 0xFF
        self._out = out[len(buf) :]

    def readbyte(self):
        buf = bytearray(1)
        self.readinto(buf)
        return buf[0]

    def select_rom(self, rom):
        self.reset()
        self.write(b"\x55" + bytes(rom))

    def scan(self):
        return [bytearray(d.rom) for d in self.devices]

    def crc8(self, data):
        return dallas_crc8(data)


class FakeADC:
    """machine.ADC stand-in replaying read_u16() and read_uv() sequences (the last value sticks)."""

    def __init__(self, u16=(), uv=()):
        self.u16 = list(u16)
        self.uv = list(uv)
        self.fail = []
        self.reads = 0

    def _next(self, seq):
        self.reads += 1
        if self.fail:
            raise self.fail.pop(0)
        if len(seq) > 1:
            return seq.pop(0)
        return seq[0]

    def read_u16(self):
        return self._next(self.u16)

    def read_uv(self):
        return self._next(self.uv)


class FakeUART:
    """machine.UART stand-in: any()/read(n)/readline()/readinto() over queued byte chunks.

    Each feed() chunk becomes available on its own (a chunk boundary models a line split across
    polls); read() returns None when nothing is buffered, as MicroPython's non-blocking read does.
    """

    def __init__(self, chunks=()):
        self.chunks = [bytes(c) for c in chunks]
        self.written = []

    def feed(self, data):
        self.chunks.append(bytes(data))

    def any(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, nbytes=-1):
        if not self.chunks:
            return None
        head = self.chunks[0]
        if nbytes < 0 or nbytes >= len(head):
            self.chunks.pop(0)
            return head
        self.chunks[0] = head[nbytes:]
        return head[:nbytes]

    def readline(self):
        if not self.chunks:
            return None
        head = self.chunks[0]
        i = head.find(b"\n")
        if i < 0:
            return self.read()
        return self.read(i + 1)

    def readinto(self, buf):
        data = self.read(len(buf))
        if data is None:
            return None
        for i, b in enumerate(data):
            buf[i] = b
        return len(data)

    def write(self, buf):
        self.written.append(bytes(buf))
        return len(buf)


class FakePin:
    """machine.Pin stand-in: value(), init(), irq(); set_level() fires the IRQ handler on an edge.

    levels: optional sequence returned by successive value() reads (for bit-banged protocols);
    otherwise value() returns the current level. Output writes via value(x) are logged.
    """

    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, level=0, levels=()):
        self.level = level
        self.levels = list(levels)
        self.handler = None
        self.trigger = 0
        self.mode = None
        self.pull = None
        self.writes = []

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            self.level = value

    def value(self, x=None):
        if x is None:
            if self.levels:
                return self.levels.pop(0)
            return self.level
        self.level = 1 if x else 0
        self.writes.append(self.level)
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, hard=False):
        self.handler = handler
        self.trigger = trigger

    def set_level(self, level):
        """Change the input level and run the IRQ handler if this edge is enabled."""
        if level == self.level:
            return
        rising = level > self.level
        self.level = level
        if self.handler is not None:
            mask = self.IRQ_RISING if rising else self.IRQ_FALLING
            if self.trigger & mask:
                self.handler(self)
