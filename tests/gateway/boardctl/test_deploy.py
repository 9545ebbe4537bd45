"""gateway/boardctl/deploy.py: compiled .mpy only, stale code removed (data kept), the listing
checked by size and SHA-256; the plan as a pure function."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from gateway.boardctl import deploy as dep
from gateway.boardctl.errors import BAD_PROFILE, VERIFY_FAILED, BoardError
from gateway.boardctl.link import BoardFile, BoardLink
from tests.gateway.boardctl.conftest import PROFILE, ROOT
from tools.boardvm.standin import StandIn


def _f(path: str, data: bytes = b"") -> BoardFile:
    return BoardFile(path, len(data), hashlib.sha256(data).hexdigest())


def _d(path: str) -> BoardFile:
    return BoardFile(path, -1, "")


def test_the_firmware_compiles_to_mpy_without_host_paths() -> None:
    files = dep.compile_firmware()
    assert "main.py" in files and "firmware/app.mpy" in files and "firmware/__init__.mpy" in files
    assert not [p for p in files if p.startswith("firmware/") and not p.endswith(".mpy")]
    assert "firmware/manifest.mpy" not in files and "firmware/main.mpy" not in files
    for path, data in files.items():
        assert str(ROOT).encode() not in data, path  # mpy-cross -s: no host path inside
    # the name tracebacks show: the file's path on the board, as MicroPython's __file__ of it
    assert b"firmware/app.mpy" in files["firmware/app.mpy"]
    assert b"firmware/app.py" not in files["firmware/app.mpy"]


def test_the_heap_bench_compiles_with_the_deploy_flags() -> None:
    # tools/firmware_heap.py runs inside the MicroPython VM and keeps its own copy of the flags:
    # the bench must measure the .mpy files a deploy installs
    tree = ast.parse((ROOT / "tools" / "firmware_heap.py").read_text())
    copies = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "MPY_CROSS_FLAGS" for t in node.targets)
    ]
    assert copies == [dep.MPY_CROSS_FLAGS]
    assert "-O3" in dep.MPY_CROSS_FLAGS


def test_the_plan_writes_what_differs_and_removes_only_stale_code() -> None:
    files = {"main.py": b"m", "firmware/a.mpy": b"a", "firmware/d/b.mpy": b"b", "board.json": b"{}"}
    listing = [
        _f("main.py", b"m"),  # same: not rewritten
        _f("firmware/a.mpy", b"old"),  # differs: rewritten
        _f("firmware/a.py", b"shadow"),  # a .py beside the .mpy: would win the import
        _d("firmware/d"), _d("firmware/gone"), _f("firmware/gone/x.mpy"),
        _f("stray.py"), _f("old.mpy"), _f("boot.py"),  # root code: boot.py stays
        _f("journal/0001", b"records"), _f("link.bin"), _f("state"), _d("journal"),  # data stays
    ]  # fmt: skip
    p = dep.plan(files, listing)
    assert p.write == ["board.json", "firmware/a.mpy", "firmware/d/b.mpy"]
    removed = [f.path for f in p.remove]
    assert removed == [
        "firmware/gone/x.mpy",
        "firmware/a.py",
        "firmware/gone",
        "old.mpy",
        "stray.py",
    ]
    assert dep.mismatches(files, listing)  # the board before the deploy does not match


def test_deploy_to_a_board_with_stale_files(blank_board: StandIn) -> None:
    flash = blank_board.flash_dir
    with BoardLink(blank_board.port) as link:
        for d in ("firmware", "firmware/old", "journal"):
            link.mkdir(d)
        for path, data in {
            "firmware/app.py": b"raise RuntimeError('stale source')\n",
            "firmware/old/x.mpy": b"M", "stray.py": b"x = 1\n",
            "journal/seg0": b"unacked records", "link.bin": b"L" * 40,
        }.items():  # fmt: skip
            link.write_file(path, data)
        compiled = dep.compile_firmware()
        p, listing = dep.deploy(link, PROFILE, files=compiled)
        assert {f.path for f in p.remove} == {
            "firmware/app.py",
            "firmware/old/x.mpy",
            "firmware/old",
            "stray.py",
        }
        paths = {f.path for f in listing}
        assert "firmware/app.py" not in paths and "firmware/app.mpy" in paths
        assert (flash / "journal" / "seg0").read_bytes() == b"unacked records"
        assert (flash / "link.bin").read_bytes() == b"L" * 40
        assert (
            link.exec("import firmware.app\nprint(firmware.app.JOURNAL_BYTES)").strip() == "65536"
        )
        again, _ = dep.deploy(link, PROFILE, files=compiled)  # nothing to do the second time
        assert again.write == [] and again.remove == []
    on_host = sorted(p.relative_to(flash).as_posix() for p in (flash / "firmware").rglob("*"))
    assert on_host and all(p.endswith(".mpy") or "." not in p for p in on_host)
    assert (flash / "board.json").read_bytes() == PROFILE.read_bytes()


def test_a_bad_profile_is_refused_before_the_board_is_touched(
    blank_board: StandIn, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"profile_format": 1, "name": "x", "chip": "esp8266"}')
    with BoardLink(blank_board.port) as link:
        with pytest.raises(BoardError) as err:
            dep.deploy(link, bad)
        assert err.value.code == BAD_PROFILE
        assert link.list_files() == []


def test_a_board_that_does_not_hold_the_deploy_fails_the_check(blank_board: StandIn) -> None:
    files = {"main.py": b"print(1)\n"}
    with BoardLink(blank_board.port) as link:
        p = dep.plan(files, [])
        p.write = []  # as if the write was lost
        with pytest.raises(BoardError) as err:
            dep.apply(link, p)
    assert err.value.code == VERIFY_FAILED and "main.py: missing" in err.value.message


def test_the_host_firmware_hash_is_the_boards(
    deployed_board: StandIn, compiled_firmware: dict[str, bytes]
) -> None:
    files = compiled_firmware
    with BoardLink(deployed_board.port) as link:
        board_hash = link.exec(
            "from firmware import provision\nprint(provision.firmware_hash().hex())"
        ).strip()
    assert board_hash == dep.firmware_hash(files).hex()


def test_the_cli_deploys_and_reports(
    deployed_board: StandIn, capsys: pytest.CaptureFixture
) -> None:
    from gateway.cli import main

    assert main(["board", "deploy", "--port", deployed_board.port, "--profile", str(PROFILE)]) == 0
    out = capsys.readouterr().out
    assert "all sizes and sha256 as deployed" in out and "0 stale removed" in out
