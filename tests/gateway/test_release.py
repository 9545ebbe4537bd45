"""Tests of gateway/release.py: build, sign, load, and the board's own check of what it builds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from firmware import ota
from gateway import cli
from gateway.release import (
    ReleaseError,
    build,
    keygen,
    load,
    load_published,
    parse_version,
    sign,
)
from tests.firmware.simflash import SimFlash

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path, version: str = "0.2.0") -> Path:
    """Return a copy of the repository's firmware tree declaring FIRMWARE_VERSION version."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "firmware", src / "firmware",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    rt = src / "firmware" / "runtime.py"
    new = "FIRMWARE_VERSION = ({})".format(version.replace(".", ", "))
    text = re.sub(r"FIRMWARE_VERSION = \(\d+, \d+, \d+\)", new, rt.read_text())
    rt.write_text(text)
    return src


def test_build_sign_load_and_the_board_installs_it(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    key = tmp_path / "release.key"
    pub = keygen(key)
    assert key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ReleaseError, match="exists"):
        keygen(key)
    out = tmp_path / "rel"
    m = build(src, out, min_version=parse_version("0.1.0"), created="2026-12-07T00:00:00Z")
    assert m["version"] == 0x000200 and all(f["path"].endswith(".mpy") for f in m["files"])
    assert "firmware/manifest.py" not in {f["path"] for f in m["files"]}
    with pytest.raises(ReleaseError, match="bad-signature"):
        load(out, pub)  # not signed yet
    sign(out, key)
    rel = load(out, pub)
    data = rel.stream()
    # the board's own code accepts it (firmware/ota.py on CPython)
    fs = SimFlash()
    ota.install_release_key(fs, None, pub)
    rx = ota.Receiver(fs, None, 0x000100)
    st, off = rx.begin(len(data), len(rel.head()), rel.release_id)
    assert (st, off) == (ota.ST_OK, 0)
    while off < len(data):
        st, off = rx.data(off, data[off : off + 226])
        assert st == ota.ST_OK
    assert rx.end() == (ota.ST_OK, 0x000200)


def test_tampering_is_caught(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    key = tmp_path / "k"
    pub = keygen(key)
    out = tmp_path / "rel"
    build(src, out, compile_mpy=False)
    sign(out, key)
    f = out / "files" / "firmware" / "ota.py"
    f.write_bytes(f.read_bytes() + b"#")
    with pytest.raises(ReleaseError, match="does not match"):
        load(out, pub)
    with pytest.raises(ReleaseError, match="does not match"):
        sign(out, key)
    f.write_bytes(f.read_bytes()[:-1])
    load(out, pub)
    other = keygen(tmp_path / "k2")
    with pytest.raises(ReleaseError, match="bad-signature"):
        load(out, other)
    m = json.loads((out / "release.json").read_bytes())
    (out / "release.json").write_text(json.dumps(m, indent=1))
    with pytest.raises(ReleaseError, match="canonical"):
        load(out, pub)


def test_version_must_match_the_tree(tmp_path: Path) -> None:
    src = _tree(tmp_path, "0.3.1")
    with pytest.raises(ReleaseError, match="bad-version"):
        build(src, tmp_path / "o", version=parse_version("0.4.0"))
    with pytest.raises(ReleaseError, match="bad-version"):
        build(src, tmp_path / "o", min_version=parse_version("1.0.0"))
    for bad in ("1.2", "256.0.0", "x", "-1"):
        with pytest.raises(ReleaseError, match="bad-version"):
            parse_version(bad)
    assert parse_version("1.2.3") == 0x010203


def test_cli_release_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path)
    key = tmp_path / "k"
    assert cli.main(["release", "keygen", "--key", str(key)]) == 0
    pub = capsys.readouterr().out.strip()
    out = tmp_path / "rel"
    assert cli.main(["release", "build", "--src", str(src), "--out", str(out), "--source"]) == 0
    assert cli.main(["release", "sign", str(out), "--key", str(key)]) == 0
    assert cli.main(["release", "verify", str(out), "--public-key", pub]) == 0
    assert "version 0.2.0" in capsys.readouterr().out
    assert cli.main(["release", "verify", str(out), "--public-key", "00" * 32]) == 2
    assert "bad-signature" in capsys.readouterr().err
    assert cli.main(["release", "build", "--src", str(src), "--out", str(out)]) == 2
    data = tmp_path / "data"
    data.mkdir()
    assert load_published(data) is None
    argv = ["release", "publish", str(out), "--public-key", pub, "--data-dir", str(data)]
    assert cli.main(argv) == 0
    published = load_published(data)
    assert published is not None and published.version == 0x000200
    assert cli.main(argv) == 0  # replacing it works too
    assert cli.main([*argv[:3], "--public-key", "11" * 32, *argv[5:]]) == 2


def test_board_ota_publishes_and_the_node_hands_it_to_the_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`edgeseal board ota --release DIR` is the operator's word for publish; the node reads the
    published release at start (a damaged one is logged and not pushed, ingest goes on)."""
    from gateway.node.lifecycle import _published_release

    src = _tree(tmp_path)
    key = tmp_path / "k"
    pub = keygen(key).hex()
    out = tmp_path / "rel"
    build(src, out, compile_mpy=False)
    sign(out, key)
    data = tmp_path / "data"
    data.mkdir()
    assert _published_release(data) is None
    argv = ["board", "ota", "--release", str(out), "--public-key", pub, "--data-dir", str(data)]
    assert cli.main([*argv[:4], "--public-key", "22" * 32, *argv[6:]]) == 2  # wrong key
    assert _published_release(data) is None  # nothing published by a refused command
    assert cli.main(argv) == 0
    assert "published version 0.2.0" in capsys.readouterr().out
    rel = _published_release(data)
    assert rel is not None and rel.version == 0x000200
    (data / "release" / "release.json").write_text("{not json")
    assert _published_release(data) is None
    assert "not usable" in caplog.text


def test_an_update_installs_the_bytes_deploy_installs(tmp_path: Path) -> None:
    # one compile setting (gateway.release.MPY_CROSS_FLAGS, -O3, the board path as source
    # name): the heap bench measures these bytes, so an OTA update must not bring others
    from gateway.boardctl.deploy import compile_firmware
    from gateway.release import FILES_DIR

    src = _tree(tmp_path)
    out = tmp_path / "rel"
    m = build(src, out, created="2026-12-07T00:00:00Z")
    deployed = compile_firmware(src)
    # deploy installs main.py as source at the root (the image's entry point), not this copy
    paths = {f["path"] for f in m["files"]} - {"firmware/main.mpy"}
    assert paths and paths <= set(deployed)
    for path in paths:
        assert (out / FILES_DIR / path).read_bytes() == deployed[path], path
