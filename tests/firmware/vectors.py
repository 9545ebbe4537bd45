"""Loads the shared JSON vectors of tests/vectors/ (CPython and MicroPython alike)."""

import json


def _vectors_dir():
    """Return the tests/vectors path, found from this file's location."""
    here = __file__.replace("\\", "/")
    tests_dir = here.rsplit("/", 2)[0] if "/" in here else "tests"
    return tests_dir + "/vectors"


def load(name):
    """Return the parsed JSON of tests/vectors/<name>."""
    with open(_vectors_dir() + "/" + name) as f:
        return json.load(f)


def unhex(s):
    """Return bytes from a hex string (MicroPython has bytes.fromhex)."""
    return bytes.fromhex(s)


def private_const(module, name, value):
    """Return value, the specified value of module's private constant name (`_X = const(...)`),
    after checking that the module agrees where it can be seen: CPython keeps such a constant as a
    module attribute, MicroPython folds it into the bytecode and keeps no name (there the tests of
    the behaviour pin it)."""
    got = getattr(module, name, value)
    assert got == value, (name, got, value)
    return value
