"""Stand-in board only (tools/boardvm): make filesystem errors carry the ESP32 port's errno values.

The WebAssembly port's VFS raises the C library's (WASI) numbers, e.g. OSError(44) for a missing
file, where a board raises OSError(2) (ENOENT, MicroPython's py/mperrno.h). mpremote and the
firmware read those numbers, so the stand-in wraps os and open() once at boot to translate them.
Runs inside the MicroPython VM (boardvm.mjs freezes it); never deployed to a board.
"""

import builtins
import os

# WASI errno -> MicroPython errno (py/mperrno.h, what the ESP32 port raises)
_WASI_TO_MP = {
    2: 13,  # EACCES
    8: 9,  # EBADF
    20: 17,  # EEXIST
    28: 22,  # EINVAL
    29: 5,  # EIO
    31: 21,  # EISDIR
    43: 19,  # ENODEV
    44: 2,  # ENOENT
    48: 12,  # ENOMEM
    51: 28,  # ENOSPC
    54: 20,  # ENOTDIR
    55: 39,  # ENOTEMPTY
    63: 1,  # EPERM
    69: 30,  # EROFS
}


def _wrap(fn):
    def call(*args, **kw):
        try:
            return fn(*args, **kw)
        except OSError as e:
            n = e.args[0] if e.args else None
            if n in _WASI_TO_MP:
                raise OSError(_WASI_TO_MP[n]) from None
            raise

    return call


def install():
    """Wrap os's filesystem calls and builtins.open; returns nothing."""
    for name in ("stat", "listdir", "ilistdir", "remove", "unlink", "mkdir", "rmdir", "rename",
                 "chdir", "statvfs"):  # fmt: skip
        if hasattr(os, name):
            setattr(os, name, _wrap(getattr(os, name)))
    builtins.open = _wrap(builtins.open)
