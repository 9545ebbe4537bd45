"""Runs the plain firmware tests where pytest does not exist: the MicroPython VM and a real board.

Every top-level `test_*` function of every `test_*.py` under tests/firmware is called with no
arguments; a module may list host-only tests in `VM_SKIP = {"name": "reason"}`. Prints one line per
test and closes with "N passed, N failed, N skipped". Used by tools/mpvm.mjs (node) and by the
hardware-in-the-loop test (mpremote run on the board).
"""

import gc
import os
import sys


def _is_dir(path):
    """Return True if path is a directory (MicroPython has no os.path)."""
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def discover(root="tests/firmware"):
    """Return the dotted module names of test files under root, sorted."""
    found = []
    for name in sorted(os.listdir(root)):
        path = root + "/" + name
        if name == "__pycache__":
            continue
        if _is_dir(path):
            found += discover(path)
        elif name.startswith("test_") and name.endswith(".py"):
            found.append(path[:-3].replace("/", "."))
    return found


def run_module(modname, filt=""):
    """Run one module's tests; return (passed, failed, skipped)."""
    passed = failed = skipped = 0
    try:
        mod = __import__(modname, None, None, ["*"])
    except Exception as e:  # an import error fails the module, it does not stop the run
        print("ERROR importing", modname)
        sys.print_exception(e)  # type: ignore[attr-defined]
        return 0, 1, 0
    skip = getattr(mod, "VM_SKIP", {})
    names = sorted(n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n)))
    for name in names:
        full = modname + "::" + name
        if filt and filt not in full:
            continue
        if name in skip:
            print("SKIP", full, "-", skip[name])
            skipped += 1
            continue
        try:
            getattr(mod, name)()
            passed += 1
            print("ok  ", full)
        except Exception as e:
            failed += 1
            print("FAIL", full)
            sys.print_exception(e)  # type: ignore[attr-defined]
        gc.collect()
    return passed, failed, skipped


def main(filt="", root="tests/firmware"):
    """Run every test under root whose "module::name" contains filt; return the failure count."""
    total = [0, 0, 0]
    for modname in discover(root):
        for i, n in enumerate(run_module(modname, filt)):
            total[i] += n
    print("%d passed, %d failed, %d skipped" % tuple(total))
    return total[1] + (1 if total[0] == 0 else 0)
