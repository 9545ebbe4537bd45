"""Simulated flash filesystem for power-loss tests: counts write points and can cut power at any one."""

# Flash model (conservative compared with LittleFS, see docs/journal.md):
# - Bytes passed to write() sit in a volatile buffer until flush()/close(); a power cut loses them.
# - At a cut during write() or flush(), an arbitrary prefix of the unflushed bytes may reach flash
#   (0 bytes, all of them, all but one, a random prefix, or a random prefix followed by junk).
# - Opening with 'wb' truncates the file on flash at once; opening a missing file with 'ab'/'wb'
#   creates it at once (both are write points).
# - rename() and remove() are atomic: a cut at one either applied it or not (chosen by the seed).
# - After a cut every operation raises PowerCut (close() does nothing) until remount().

ENOENT = 2
EEXIST = 17


class PowerCut(Exception):
    """Raised at the armed write point, after the torn part of that write reached the flash."""


def _mix(seed, n):
    """Return a deterministic 32-bit pseudo-random value for (seed, n) (xorshift32 rounds)."""
    x = (seed * 2654435761 + n * 40503 + 0x9E3779B9) & 0xFFFFFFFF
    if x == 0:
        x = 1
    for _ in range(3):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    return x


TEAR_MODES = ("none", "full", "all-but-one", "prefix", "prefix+junk")


class SimFlash:
    """In-memory filesystem with the interface of firmware.fs.VfsFS plus power-cut control.

    points counts write points (non-empty write, non-empty flush, create/truncate at open,
    rename, remove, mkdir) since creation; arm(k) cuts power at write point number k (1-based).
    """

    def __init__(self, seed=1, tear=None):
        self.seed = seed
        # Index into TEAR_MODES to force one kind of tear; None: chosen per write point by the seed.
        self.tear = tear
        self.files = {}
        self.dirs = {""}
        self.points = 0
        self.cut_at = -1
        self.off = False
        self.last_cut = None
        self.epoch = 0

    # power control -------------------------------------------------------------------------
    def arm(self, k):
        """Cut power at write point number k (counted like self.points); returns nothing."""
        self.cut_at = k

    def disarm(self):
        """Forget the armed write point; returns nothing."""
        self.cut_at = -1

    def remount(self):
        """Power back on (a reboot): drop volatile state and every open handle; returns self.

        The armed point stays armed, so a cut can be placed after any number of reboots."""
        self.off = False
        self.epoch += 1
        return self

    def snapshot(self):
        """Return a copy of the durable state (files, dirs, points counter)."""
        files = {}
        for p in self.files:
            files[p] = bytes(self.files[p])
        return (files, set(self.dirs), self.points)

    def restore(self, snap):
        """Replace the durable state with a snapshot from snapshot(); powers on; returns self."""
        files, dirs, points = snap
        self.files = {}
        for p in files:
            self.files[p] = bytearray(files[p])
        self.dirs = set(dirs)
        self.points = points
        return self.remount()

    def _check_on(self):
        if self.off:
            raise PowerCut("power is off")

    def _point(self, what):
        """Count one write point; return True when power must be cut here."""
        self._check_on()
        self.points += 1
        if self.points == self.cut_at:
            self.off = True
            self.last_cut = (self.points, what)
            return True
        return False

    def _tear(self, data):
        """Return what reaches flash of data when power is cut while writing it."""
        n = len(data)
        r = _mix(self.seed, self.points)
        mode = r % 5 if self.tear is None else self.tear
        if mode == 0 or n == 0:
            keep = b""
        elif mode == 1:
            keep = bytes(data)
        elif mode == 2:
            keep = bytes(data[: n - 1])
        elif mode == 3:
            keep = bytes(data[: (r >> 8) % (n + 1)])
        else:
            p = (r >> 8) % (n + 1)
            junk = bytearray(n - p)
            x = r
            for i in range(len(junk)):
                x = _mix(x, i)
                junk[i] = 0xFF if (r >> 20) & 1 else x & 0xFF
            keep = bytes(data[:p]) + bytes(junk)
        self.last_cut = (self.last_cut[0], self.last_cut[1] + " " + TEAR_MODES[mode], len(keep), n)
        return keep

    # filesystem interface ------------------------------------------------------------------
    def _parent_ok(self, path):
        i = path.rfind("/")
        parent = path[:i] if i >= 0 else ""
        if parent not in self.dirs:
            raise OSError(ENOENT)

    def open(self, path, mode):
        """Return a handle; mode is 'rb', 'ab' or 'wb' (what the firmware uses)."""
        self._check_on()
        if mode == "rb":
            if path not in self.files:
                raise OSError(ENOENT)
            return _SimFile(self, path, False)
        if mode not in ("ab", "wb"):
            raise ValueError("unsupported mode " + mode)
        self._parent_ok(path)
        if mode == "wb" or path not in self.files:
            cut = self._point("open " + mode + " " + path)
            self.files[path] = bytearray()
            if cut:
                raise PowerCut(path)
        return _SimFile(self, path, True)

    def rename(self, old, new):
        """Atomically rename old to new (replacing new)."""
        self._check_on()
        if old not in self.files:
            raise OSError(ENOENT)
        self._parent_ok(new)
        cut = self._point("rename " + old + " " + new)
        if cut and _mix(self.seed, self.points) & 1:
            raise PowerCut(old)
        self.files[new] = self.files.pop(old)
        if cut:
            raise PowerCut(old)

    def remove(self, path):
        """Atomically remove a file."""
        self._check_on()
        if path not in self.files:
            raise OSError(ENOENT)
        cut = self._point("remove " + path)
        if cut and _mix(self.seed, self.points) & 1:
            raise PowerCut(path)
        del self.files[path]
        if cut:
            raise PowerCut(path)

    def size(self, path):
        """Return the durable size of a file; OSError when missing."""
        self._check_on()
        if path not in self.files:
            raise OSError(ENOENT)
        return len(self.files[path])

    def exists(self, path):
        """Return True when path is a file or a directory."""
        self._check_on()
        return path in self.files or path in self.dirs

    def listdir(self, path):
        """Return the names of the files and directories directly under path."""
        self._check_on()
        if path not in self.dirs:
            raise OSError(ENOENT)
        prefix = path + "/" if path else ""
        out = []
        for p in list(self.files) + list(self.dirs):
            if p and p.startswith(prefix) and "/" not in p[len(prefix) :]:
                out.append(p[len(prefix) :])
        return out

    def mkdir(self, path):
        """Create a directory unless it exists (atomic write point)."""
        self._check_on()
        if path in self.dirs:
            return
        self._parent_ok(path)
        cut = self._point("mkdir " + path)
        self.dirs.add(path)
        if cut:
            raise PowerCut(path)

    def sync(self):
        """Nothing to do: flush() already commits in this model."""
        self._check_on()


class _SimFile:
    """A handle on a SimFlash file; writes stay volatile until flush()/close()."""

    def __init__(self, sim, path, writable):
        self.sim = sim
        self.path = path
        self.writable = writable
        self.pos = 0
        self.pending = bytearray()
        self.epoch = sim.epoch
        self.closed = False

    def _live(self):
        if self.sim.off or self.epoch != self.sim.epoch:
            raise PowerCut("handle from before a power cut")
        if self.closed:
            raise ValueError("I/O on closed file")
        return self.sim.files[self.path]

    def write(self, data):
        """Buffer data (volatile until flush); returns the number of bytes."""
        self._live()
        if not self.writable:
            raise OSError(9)
        n = len(data)
        if n == 0:
            return 0
        if self.sim._point("write " + self.path):
            torn = self.sim._tear(bytes(self.pending) + bytes(data))
            self.sim.files[self.path].extend(torn)
            raise PowerCut(self.path)
        self.pending.extend(data)
        return n

    def flush(self):
        """Commit the buffered bytes to flash (appended at the end)."""
        self._live()
        if not self.pending:
            return
        if self.sim._point("flush " + self.path):
            torn = self.sim._tear(self.pending)
            self.sim.files[self.path].extend(torn)
            raise PowerCut(self.path)
        self.sim.files[self.path].extend(self.pending)
        self.pending = bytearray()

    def close(self):
        """Flush and close; does nothing once power is off (so finally blocks stay quiet)."""
        if self.closed or self.sim.off or self.epoch != self.sim.epoch:
            self.closed = True
            return
        if self.writable:
            self.flush()
        self.closed = True

    def seek(self, pos, whence=0):
        """Move the read position (whence 0 or 2); returns it."""
        data = self._live()
        self.pos = pos if whence == 0 else len(data) + pos
        return self.pos

    def tell(self):
        """Return the read position."""
        self._live()
        return self.pos

    def read(self, n=-1):
        """Return up to n bytes from the read position (all when n < 0)."""
        data = self._live()
        end = len(data) if n < 0 else min(len(data), self.pos + n)
        out = bytes(data[self.pos : end])
        self.pos = max(self.pos, end)
        return out

    def readinto(self, buf):
        """Read into a buffer (bytearray or memoryview); returns the number of bytes read."""
        data = self._live()
        n = min(len(buf), len(data) - self.pos)
        if n <= 0:
            return 0
        buf[:n] = data[self.pos : self.pos + n]
        self.pos += n
        return n

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()
