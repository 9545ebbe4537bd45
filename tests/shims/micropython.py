"""Host shim of MicroPython's `micropython` module so firmware imports on CPython (never deployed)."""


def const(value):
    """Return value unchanged; on the board mpy-cross folds const() into the bytecode."""
    return value


def native(func):
    """Return func unchanged; on the board this selects the native code emitter."""
    return func


def viper(func):
    """Return func unchanged (host stand-in for the viper emitter)."""
    return func


def mem_info(*_args):
    """No-op on the host."""
    return None
