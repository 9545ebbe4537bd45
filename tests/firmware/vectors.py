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
