"""firmware/manifest.py (frozen-modules build): it freezes every firmware module and main.py."""

import os

ROOT_FILES = ("manifest.py", "main.py")  # the manifest itself; main.py is frozen as `main`


def _py_files(directory, prefix=""):
    """Return the .py files under directory, relative to it ('drivers/x.py'), stubs excluded."""
    out = []
    for name in os.listdir(directory):
        path = directory + "/" + name
        if name in ("stubs-fix", "__pycache__"):
            continue
        if os.stat(path)[0] & 0x4000:
            out += _py_files(path, prefix + name + "/")
        elif name.endswith(".py"):
            out.append(prefix + name)
    return out


def _evaluate():
    """Run the manifest with recording stand-ins for MicroPython's manifestfile functions."""
    calls = {"include": [], "package": [], "module": []}
    env = {
        "include": lambda path, **kw: calls["include"].append(path),
        "package": lambda path, files=None, base_path=".", opt=None: calls["package"].append(
            (path, files, base_path)
        ),
        "module": lambda path, base_path=".", opt=None: calls["module"].append((path, base_path)),
    }
    with open("firmware/manifest.py") as f:
        exec(f.read(), env)
    return calls


def test_manifest_freezes_every_firmware_module_and_main():
    calls = _evaluate()
    assert calls["include"] == ["$(PORT_DIR)/boards/manifest.py"]
    assert len(calls["package"]) == 1
    path, files, base = calls["package"][0]
    assert path == "firmware" and base == ".."
    expected = sorted(f for f in _py_files("firmware") if f not in ROOT_FILES)
    assert sorted(files) == expected
    assert calls["module"] == [("main.py", ".")]
