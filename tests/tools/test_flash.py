"""tools/flash.py: what it stages and the mpremote commands it sends, without a board."""

import json

import pytest

from tools import flash


def test_stage_compiles_every_firmware_module_for_xtensa(tmp_path):
    pkg = flash.stage(tmp_path, compiled=True)
    sources = {
        p.relative_to(flash.ROOT / "firmware").with_suffix("")
        for p in (flash.ROOT / "firmware").rglob("*.py")
        if "stubs-fix" not in p.parts and p.name != "__init__.py"
    }
    staged = {p.relative_to(pkg).with_suffix("") for p in pkg.rglob("*.mpy")}
    assert staged == sources
    header = (pkg / "wire.mpy").read_bytes()[:4]
    assert header[0] == ord("M") and header[1] == 6  # .mpy format 6 (MicroPython >= 1.22)
    assert (pkg / "__init__.py").exists() and (pkg / "drivers" / "__init__.py").exists()


def test_flash_sends_package_profile_and_main(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(flash, "mpremote", lambda port, *args: calls.append((port, args)))
    board = flash.ROOT / "boards" / "cold-chain-logger.json"
    assert flash.main(["--port", "/dev/ttyX", "--board", str(board)]) == 0
    verbs = [args[:1] + args[-1:] for _, args in calls]
    assert verbs == [("cp", ":"), ("cp", ":board.json"), ("cp", ":main.py"), ("reset", "reset")]
    assert all(port == "/dev/ttyX" for port, _ in calls)


def test_invalid_profile_is_refused_before_touching_the_board(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(flash, "mpremote", lambda port, *args: calls.append(args))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError):
        flash.main(["--port", "/dev/ttyX", "--board", str(bad)])
    assert calls == []


def test_romfs_deploy_sends_the_package_to_the_rom_partition(monkeypatch):
    calls = []
    monkeypatch.setattr(flash, "mpremote", lambda port, *args: calls.append(args))
    board = flash.ROOT / "boards" / "cold-chain-logger.json"
    assert flash.main(["--port", "/dev/ttyX", "--board", str(board), "--romfs"]) == 0
    assert calls[0][:2] == ("romfs", "deploy")
    assert [c[-1] for c in calls[1:]] == [":board.json", ":main.py", "reset"]
