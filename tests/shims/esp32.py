"""Host stand-in for MicroPython's `esp32` module: NVS backed by a dict (optionally a JSON file).

Never deployed. Semantics of the ESP32 port: set_* stage a change that commit() makes durable;
get_i32 raises OSError(ENOENT) for a missing key; get_blob copies into a caller buffer and returns
the length (OSError when the buffer is too small). `NVS.power_cut()` drops uncommitted changes, as
a power cut would.

Power cuts at write points: NVS(namespace, store, flash=sim) with a tests/firmware/simflash.py
SimFlash counts every set_*, erase_key and commit as a write point on the same counter as the
simulated filesystem, so `sim.arm(k)` cuts power at the k-th write of the filesystem and NVS
together. A cut at a set/erase may or may not have reached flash (ESP-IDF writes the entry at
set time; commit is then a no-op), chosen by the flash's seed; a cut at commit may have committed
or not. Either way one entry is atomic (NVS checks each entry's CRC at init), never half written.
After a cut every call raises PowerCut until a new NVS object is opened on a remounted flash.
"""

import json
import os

ENOENT = 2
ENOMEM = 12  # ESP_ERR_NVS_INVALID_LENGTH surfaces as an OSError on the board

# path -> durable {namespace: {key: value}}; values are ints or bytes
_STORES = {}


def _load(path):
    if path is None:
        return {}
    if path in _STORES:
        return _STORES[path]
    data = {}
    if os.path.exists(path):
        with open(path) as f:
            raw = json.load(f)
        for ns, keys in raw.items():
            data[ns] = {}
            for k, v in keys.items():
                data[ns][k] = bytes.fromhex(v[1:]) if isinstance(v, str) else v
    _STORES[path] = data
    return data


class NVS:
    """esp32.NVS(namespace): small key-value storage; store=dict or path to share between boots."""

    def __init__(self, namespace, store=None, flash=None):
        self._flash = flash
        self._epoch = None if flash is None else flash.epoch
        if isinstance(store, dict):
            self._durable = store
            self._path = None
        else:
            self._path = store
            self._durable = _load(store) if store else {}
        self._ns = namespace
        self._durable.setdefault(namespace, {})
        self._staged = {}

    def _live(self):
        """Raise PowerCut when the simulated flash is off or this handle is from before a cut."""
        f = self._flash
        if f is not None and (f.off or f.epoch != self._epoch):
            from tests.firmware.simflash import PowerCut

            raise PowerCut("NVS handle from before a power cut")

    def _write_point(self, what, apply):
        """Count a write point; apply() makes the change. At a cut the change lands or not (by the
        flash's seed), then PowerCut is raised."""
        f = self._flash
        if f is None:
            apply()
            return
        self._live()
        if f._point("nvs " + what):
            from tests.firmware.simflash import PowerCut, _mix

            landed = _mix(f.seed, f.points) & 1
            if landed:
                apply()
                if what != "commit":  # ESP-IDF: a set reaches flash without commit
                    self._commit_now()
            f.last_cut = (f.last_cut[0], f.last_cut[1] + (" landed" if landed else " lost"))
            raise PowerCut(what)
        apply()

    def _get(self, key):
        self._live()
        v = self._staged[key] if key in self._staged else self._durable[self._ns].get(key)
        if v is None:
            raise OSError(ENOENT)
        return v

    def set_i32(self, key, value):
        if not -(2**31) <= value < 2**31:
            raise OverflowError("value does not fit i32")
        self._write_point("set " + key, lambda: self._stage(key, int(value)))

    def _stage(self, key, value):
        self._staged[key] = value

    def get_i32(self, key):
        v = self._get(key)
        if not isinstance(v, int):
            raise OSError(ENOENT)
        return v

    def set_blob(self, key, value):
        self._write_point("set " + key, lambda: self._stage(key, bytes(value)))

    def get_blob(self, key, buffer):
        v = self._get(key)
        if not isinstance(v, bytes):
            raise OSError(ENOENT)
        if len(buffer) < len(v):
            raise OSError(ENOMEM)
        buffer[: len(v)] = v
        return len(v)

    def erase_key(self, key):
        self._get(key)
        self._write_point("erase " + key, lambda: self._stage(key, None))

    def commit(self):
        """Make every staged change durable."""
        self._write_point("commit", self._commit_now)

    def _commit_now(self):
        ns = self._durable[self._ns]
        for k, v in self._staged.items():
            if v is None:
                ns.pop(k, None)
            else:
                ns[k] = v
        self._staged = {}
        if self._path:
            out = {}
            for name, keys in self._durable.items():
                out[name] = {}
                for k, v in keys.items():
                    out[name][k] = ("b" + v.hex()) if isinstance(v, bytes) else v
            with open(self._path, "w") as f:
                json.dump(out, f)

    def power_cut(self):
        """Test hook: lose every uncommitted change."""
        self._staged = {}


class Partition:
    """Minimal esp32.Partition stand-in: only what diagnostics may query."""

    RUNNING = 1

    def __init__(self, which):
        self.which = which

    def info(self):
        return (0, 0, 0x10000, 0x1F0000, "factory", False)


def raw_temperature():
    """Return a plausible raw internal temperature (deg F), as the ESP32 port does."""
    return 120
