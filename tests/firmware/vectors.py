"""Loads the shared JSON vectors of tests/vectors/ (CPython and MicroPython alike)."""

import json
import os


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


def source_consts(path):
    """Return {name: value} of the module-level private constants with a literal value
    (`_NAME = const(...)`: int, "str", b"bytes" or a tuple of "str") in the source file at path
    (repo-relative): read from the text, so MicroPython, which keeps no name for them, sees them
    too. Strings with escapes or in several pieces are left out. Precondition: no "#" inside
    those literals.
    """
    out = {}
    with open(_root() + "/" + path) as f:
        lines = [line.split("  #", 1)[0].rstrip() for line in f.read().split("\n")]
    for i, line in enumerate(lines):
        if not line.startswith("_") or " = const(" not in line:
            continue
        while line.count("(") > line.count(")") and i + 1 < len(lines):  # wrapped by the formatter
            i += 1
            line += lines[i].strip()
        name, rest = line.split(" = const(", 1)
        rest = rest.replace(",)", ")")
        if rest.startswith('("') and rest.endswith('"))'):  # a tuple of strings
            out[name] = tuple(rest[1:-2].split('"')[1::2])
        elif rest.startswith('"') or rest.startswith('b"'):
            text = rest[rest.index('"') + 1 : -2]
            if rest.endswith('")') and '"' not in text and "\\" not in text:  # one plain literal
                out[name] = text.encode() if rest[0] == "b" else text
        else:
            try:
                out[name] = int(rest[:-1], 0)
            except ValueError:
                continue  # an expression, not a literal
    return out


def firmware_sources():
    """Return the repo-relative paths of firmware/*.py and firmware/drivers/*.py."""
    out = []
    for d in ("firmware", "firmware/drivers"):
        out += [d + "/" + n for n in sorted(os.listdir(_root() + "/" + d)) if n.endswith(".py")]
    return out


def check_copies(path, module, names=None):
    """Check every private copy of the private constants of the firmware module at path (module:
    that module, imported) in the other firmware modules: same name, same value (a module that
    needs one keeps its own `_X = const(...)`, as a public one would be a global and an interned
    name in RAM); on CPython also the module's own attributes. names: only these constants (where
    other modules use the same name for something else). Return the number of copies."""
    source = source_consts(path)
    if names is not None:
        source = {name: source[name] for name in names}
    copies = 0
    for other in firmware_sources():
        if other == path:
            continue
        for name, value in source_consts(other).items():
            if name in source:
                assert value == source[name], (other, name, value, source[name])
                copies += 1
    for name, value in source.items():
        private_const(module, name, value)
    return copies


def _root():
    """Return the repo root, found from this file's location."""
    tests_dir = _vectors_dir().rsplit("/", 1)[0]
    return tests_dir.rsplit("/", 1)[0] if "/" in tests_dir else "."


class _Consts:
    """A firmware module's private constants under their public names (`_CH_X` as .CH_X)."""

    def __init__(self, path):
        for name, value in source_consts(path).items():
            setattr(self, name[1:], value)


# Wire format v1's registry (W.KIND_READING, W.CH_TEMPERATURE, W.EV_BOOT, ...) and BLE protocol
# v2's values (P.CMD_ACK, P.ST_OK, P.SERVICE_UUID, ...), from firmware/wire.py and protocol.py.
W = _Consts("firmware/wire.py")
P = _Consts("firmware/protocol.py")
