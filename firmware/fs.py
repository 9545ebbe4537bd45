"""Tiny filesystem interface (open/rename/remove/size/listdir/mkdir) over MicroPython's VFS or CPython's os."""

import os


class VfsFS:
    """The real filesystem: LittleFS on the ESP32 (MicroPython VFS), the host's filesystem on CPython.

    The journal, the sequence counter and the key store only use these methods, so the simulated
    flash of the power-loss tests (tests/firmware/simflash.py) can stand in for it.
    """

    def open(self, path, mode):
        """Return an open binary file; mode is one of 'rb', 'ab', 'wb'."""
        return open(path, mode)

    def rename(self, old, new):
        """Rename old to new, replacing new; atomic on LittleFS (and on POSIX hosts)."""
        os.rename(old, new)

    def remove(self, path):
        """Remove a file; raises OSError when it does not exist."""
        os.remove(path)

    def size(self, path):
        """Return the size of a file in bytes; raises OSError when it does not exist."""
        return os.stat(path)[6]

    def exists(self, path):
        """Return True when path exists."""
        try:
            os.stat(path)
        except OSError:
            return False
        return True

    def listdir(self, path):
        """Return the names (not paths) of the entries of a directory."""
        return os.listdir(path)

    def mkdir(self, path):
        """Create a directory unless it exists; returns nothing."""
        if not self.exists(path):
            os.mkdir(path)

    def sync(self):
        """Ask the filesystem to commit everything (os.sync where the port has it); returns nothing."""
        fn = getattr(os, "sync", None)
        if fn is not None:
            fn()


def join(directory, name):
    """Return directory/name ('' or None means the current directory)."""
    if not directory:
        return name
    if directory.endswith("/"):
        return directory + name
    return directory + "/" + name
