"""`edgeseal board flash|deploy|provision|info`: argument parsing and printing over gateway.boardctl.

A new board: `flash` (MicroPython), `deploy` (the firmware and its profile), `provision` (key,
enrollment, link key). Each step fails with one line "edgeseal board <step>: <code>: <what to
do>" and exit status 1 (docs/boards.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from gateway.boardctl.errors import BAD_PROFILE, BAD_RELEASE_KEY, NO_TOKEN, BoardError
from gateway.release import cmd_publish

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_DATA_DIR = "/var/lib/edgeseal"
DEFAULT_URL = "http://127.0.0.1:8000"
RELEASE_KEY_BYTES = 32


def enrollment_metadata(profile: dict[str, Any]) -> dict[str, Any]:
    """Return what provisioning enrolls from a board profile: its name, and for a battery board
    its advertising period (power.advertise_every_s), from which the gateway's link learns how
    long the board may be silent (docs/power.md)."""
    metadata: dict[str, Any] = {"profile": profile["name"]} if "name" in profile else {}
    power = profile.get("power")
    if isinstance(power, dict) and type(power.get("advertise_every_s")) is int:
        metadata["advertise_every_s"] = power["advertise_every_s"]
    return metadata


def _load_profile(path: Path | None) -> dict[str, Any]:
    """Return the JSON profile at path ({} for None); raise BoardError(BAD_PROFILE)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BoardError(BAD_PROFILE, f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise BoardError(BAD_PROFILE, f"{path} is not a JSON object")
    return data


def cmd_flash(args: argparse.Namespace) -> int:
    """Write a MicroPython image (checked against the chip and an optional pinned sha256)."""
    from gateway.boardctl.image import PROFILE_SHA256_KEY, flash, read_image

    profile = _load_profile(args.profile)
    image = read_image(args.image, args.sha256 or profile.get(PROFILE_SHA256_KEY))
    print(f"image: {image.path} ({image.chip.name}, sha256 {image.sha256})")
    chip = flash(args.port, image, profile.get("chip"))
    print(f"flash: {chip} written at {hex(image.chip.offset)} and verified; MicroPython boots")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy the compiled firmware, the profile and main.py; print the verified listing."""
    from gateway.boardctl.deploy import deploy
    from gateway.boardctl.link import BoardLink
    from gateway.boardctl.progress import Progress

    with BoardLink(args.port) as link:
        plan, listing = deploy(link, args.profile, Progress("writing firmware").update)
        if args.reset:
            link.reset()
    for entry in plan.remove:
        print(f"removed stale {entry.path}")
    files = [f for f in listing if not f.is_dir]
    print(
        f"deploy: {len(plan.write)} written, {len(plan.remove)} stale removed; the board holds "
        f"{len(files)} files, all sizes and sha256 as deployed"
    )
    return EXIT_OK


def _token(args: argparse.Namespace) -> str:
    """Return the operator token: --token, $EDGESEAL_OPERATOR_TOKEN, or data_dir/operator.token."""
    token = args.token or os.environ.get("EDGESEAL_OPERATOR_TOKEN")
    if token:
        return token
    path = Path(args.data_dir) / "operator.token"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BoardError(NO_TOKEN, f"no operator token (--token, or {path}: {exc})") from None


def _release_key(text: str | None) -> bytes | None:
    """Return the release public key given as 64 hex digits; raise BoardError(BAD_RELEASE_KEY)."""
    if text is None:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != RELEASE_KEY_BYTES:
        raise BoardError(
            BAD_RELEASE_KEY, "--release-key must be 64 hex digits (edgeseal release keygen)"
        )
    return key


def cmd_provision(args: argparse.Namespace) -> int:
    """Make (or read) the board's key, enroll it, install its link key; idempotent."""
    from gateway.boardctl.link import BoardLink
    from gateway.boardctl.provision import GatewayClient, provision, read_master

    master = read_master(args.data_dir)
    client = GatewayClient(args.gateway, _token(args))
    profile = _load_profile(args.profile)
    metadata = enrollment_metadata(profile)
    print("provision: reading the board's key (made now on a first boot) ...", file=sys.stderr)
    release_key = _release_key(args.release_key)
    with BoardLink(args.port) as link:
        out = provision(link, client, master, metadata, release_key)
        if out.changes and not args.no_reset:
            link.reset()  # the firmware reads its keys at boot
            out.changes.append("board reset: it boots with its keys and uploads")
    if not out.changes:
        print(f"provision: device {out.device_id} is already provisioned; nothing changed")
    for change in out.changes:
        print(f"provision: device {out.device_id}: {change}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """Print what is on the board."""
    from gateway.boardctl.info import info
    from gateway.boardctl.link import BoardLink

    with BoardLink(args.port) as link:
        found = info(link)
    print("\n".join(found.lines()))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Run the chosen board subcommand; a BoardError is one line on stderr and EXIT_FAILED."""
    try:
        return int(args.board_func(args))
    except BoardError as exc:
        print(f"edgeseal board {args.board_command}: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


def add_board_parser(sub: Any) -> None:
    """Register `edgeseal board ...` on the top-level subparsers."""
    p = sub.add_parser("board", help="flash, deploy, provision and inspect a board over USB")
    p.set_defaults(func=run)
    bsub = p.add_subparsers(dest="board_command", required=True)

    f = bsub.add_parser("flash", help="write a downloaded MicroPython image with esptool")
    f.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    f.add_argument("--image", required=True, type=Path, help="the MicroPython .bin you downloaded")
    f.add_argument("--sha256", help="refuse the image unless its sha256 is this (hex)")
    f.add_argument("--profile", type=Path, help="boards/X.json: check its chip (and its pin)")
    f.set_defaults(board_func=cmd_flash)

    d = bsub.add_parser("deploy", help="deploy the compiled firmware and a board profile")
    d.add_argument("--port", required=True)
    d.add_argument("--profile", required=True, type=Path, help="boards/X.json")
    d.add_argument("--reset", action="store_true", help="reset the board afterwards")
    d.set_defaults(board_func=cmd_deploy)

    v = bsub.add_parser("provision", help="key, enrollment and link key (on the gateway host)")
    v.add_argument("--port", required=True)
    v.add_argument("--gateway", default=DEFAULT_URL, help="the gateway's API URL")
    v.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR),
                   help="the gateway's data directory (link.key, operator.token)")  # fmt: skip
    v.add_argument("--token", help="operator token (default $EDGESEAL_OPERATOR_TOKEN)")
    v.add_argument("--profile", type=Path, help="boards/X.json: its name goes in the metadata")
    v.add_argument("--release-key", help="the OTA release public key, 64 hex (docs/ota.md)")
    v.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    v.set_defaults(board_func=cmd_provision)

    o = bsub.add_parser("ota", help="publish a signed release; the gateway pushes it over BLE")
    o.add_argument("--release", dest="dir", required=True, type=Path,
                   help="the signed release (edgeseal release build, sign)")  # fmt: skip
    o.add_argument("--public-key", required=True, help="the release public key, 64 hex")
    o.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR),
                   help="the gateway's data directory")  # fmt: skip
    o.set_defaults(board_func=cmd_publish)

    i = bsub.add_parser("info", help="what is on the board: versions, key, free heap, files")
    i.add_argument("--port", required=True)
    i.set_defaults(board_func=cmd_info)
