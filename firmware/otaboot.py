"""The boot side of OTA (docs/ota.md): which slot to run, counted trial boots, rollback.

main.py imports this small module at every power-on, before the application (firmware.ota, the
receiver, is imported only while an update arrives): boot_app picks the slot from the boot pointer
"ota/boot" and puts it first on sys.path; import_failed rolls a trial version back. It runs from
the MicroPython image's own copy, so the pointer format ("EOB1 slot version state boots prev
prev_version") must never change. firmware.ota re-exports everything here.
"""

from micropython import const

from firmware.fs import join

# why 3: a version that resets three times without one acked upload is not working; one or two
# resets can be a power cut or a MemoryError back-off the old version would have had as well.
# Private: main.py imports this module at every power-on and its names stay interned for good;
# firmware.ota publishes the same values (tests/firmware/test_ota.py pins them).
_MAX_TRIAL_BOOTS = const(3)
_OTA_DIR = const("ota")
_POINTER = const("ota/boot")
_POINTER_TMP = const("ota/boot.tmp")
_SLOTS = const(("a", "b"))
_FACTORY = const("-")  # the pointer's slot name for the MicroPython image's own frozen firmware


# ---- boot pointer ("EOB1 slot version state boots prev prev_version") ----------------------------
def read_pointer(fs):
    """Return (slot, version, state, boots, prev, prev_version) from the boot pointer, or None when
    there is none or it does not parse (the factory image then runs)."""
    try:
        f = fs.open(_POINTER, "rb")
    except OSError:
        return None
    try:
        raw = f.read(96)
    finally:
        f.close()
    try:
        p = raw.decode().split()
        if len(p) != 7 or p[0] != "EOB1" or p[3] not in ("good", "trial"):
            return None
        if p[1] not in _SLOTS or p[5] not in _SLOTS + (_FACTORY,):
            return None
        return (p[1], int(p[2]), p[3], int(p[4]), p[5], int(p[6]))
    except (ValueError, UnicodeError):
        return None


def write_pointer(fs, slot, version, state, boots, prev, prev_version):
    """Replace the boot pointer atomically (temp file, flush, rename); returns nothing.
    slot=_FACTORY removes it (the factory image runs)."""
    if slot == _FACTORY:
        _rm(fs, _POINTER)
        return
    fs.mkdir(_OTA_DIR)
    line = "EOB1 %s %d %s %d %s %d\n" % (slot, version, state, boots, prev, prev_version)
    f = fs.open(_POINTER_TMP, "wb")
    try:
        f.write(line.encode())
        f.flush()
    finally:
        f.close()
    fs.rename(_POINTER_TMP, _POINTER)


def boot_select(fs):
    """Return the slot directory to run ("ota/a", "ota/b") or None for the factory image; counts a
    trial boot, and rolls back once a trial version booted _MAX_TRIAL_BOOTS times unconfirmed.
    Called once per power-on, before the application is imported."""
    p = read_pointer(fs)
    if p is None:
        return None
    slot, version, state, boots, prev, prev_version = p
    if state == "trial":
        if boots >= _MAX_TRIAL_BOOTS:
            return _roll_back(fs, p)
        write_pointer(fs, slot, version, state, boots + 1, prev, prev_version)
    return join(_OTA_DIR, slot)


def _roll_back(fs, p):
    """Point back at p's previous slot (good); return its directory, None for the factory image."""
    prev, prev_version = p[4], p[5]
    write_pointer(fs, prev, prev_version, "good", 0, prev, prev_version)
    return None if prev == _FACTORY else join(_OTA_DIR, prev)


def roll_back(fs):
    """Abandon a trial version now (its import failed); returns the directory to run instead
    (None: factory). A good version is kept (nothing older to go to)."""
    p = read_pointer(fs)
    if p is None or p[2] != "trial":
        return None if p is None else join(_OTA_DIR, p[0])
    return _roll_back(fs, p)


def boot_app(root="/", fs=None):
    """Select the slot (boot_select) and make `import firmware.*` load from it: prepend
    root + slot to sys.path and forget the image's firmware modules imported so far. Returns the
    slot directory or None (factory image). main.py calls it before importing firmware.runtime."""
    import sys

    if fs is None:
        from firmware.fs import VfsFS

        fs = VfsFS()
    slot = boot_select(fs)
    _use(sys, root, slot)
    return slot


def _use(sys, root, slot):
    """Put root + slot first on sys.path (when slot) and drop every firmware module."""
    if slot is not None:
        sys.path.insert(0, root + slot)
    for name in list(sys.modules):
        if name == "firmware" or name.startswith("firmware."):
            del sys.modules[name]


def import_failed(root="/", fs=None):
    """The application did not import: roll a trial version back and return the slot directory to
    run instead (the caller resets the board). Returns the slot or None."""
    if fs is None:
        from firmware.fs import VfsFS

        fs = VfsFS()
    return roll_back(fs)


def _rm(fs, path):
    """Remove the file at path; returns True, or False when it was not there (MicroPython has
    no contextlib.suppress)."""
    try:
        fs.remove(path)
    except OSError:
        return False
    return True
