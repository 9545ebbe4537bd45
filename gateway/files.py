"""Small durable files (keys, tokens, the trusted checkpoint, cursors): all-or-nothing writes.

A power cut while a file is written must leave the old file or the new one, never a truncated
one: an empty key file makes the gateway refuse to start (a person then has to decide whether
the key is lost), and an empty token or link secret is worse. Both helpers here write a temp
file beside the target, fsync it, move it into place in one step and fsync the directory, so
the name points at complete bytes or at nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets

# why: keys, tokens and what the gateway trusts are readable by the service user only.
SECRET_FILE_MODE = 0o600


def _write_temp(path: str, data: bytes, mode: int) -> str:
    """Write data to a new temp file beside path (fchmod to mode, fsync); return its path."""
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # umask may have removed bits; never added
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _fsync_dir(path: str) -> None:
    """fsync the directory holding path, so a rename or link in it survives a power cut."""
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomically(path: str, data: bytes, mode: int = SECRET_FILE_MODE) -> None:
    """Replace the file at path with data so that a crash leaves the old or the new file.

    Temp file beside path, fsync, rename over path (POSIX rename is atomic), fsync of the
    directory. Returns None.
    """
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path)


def create_exclusive(path: str, data: bytes, mode: int = SECRET_FILE_MODE) -> None:
    """Create path holding data, all or nothing, never overwriting: FileExistsError if it exists.

    Temp file beside path, fsync, then os.link(temp, path): link fails with FileExistsError
    when the name is taken (so two processes racing to create a key cannot both win), and the
    name appears only once the bytes behind it are complete. Returns None.
    """
    if os.path.lexists(path):
        raise FileExistsError(path)
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path)
