"""gateway/server.py: every start-up refusal the gateway can raise has its own exit status."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway import server

ROOT = Path(__file__).resolve().parents[2]


def _refusal_codes() -> set[str]:
    """Return the literal codes of every StartupRefused(...) call under gateway/."""
    codes = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "StartupRefused"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                codes.add(node.args[0].value)
    return codes


def test_every_startup_refusal_maps_to_an_exit_status_systemd_will_not_restart_on() -> None:
    """systemd restarts on 1 (RestartPreventExitStatus=2 3 4 5): a refusal mapped to 1 would
    loop for ever on a setting only the operator can fix."""
    codes = _refusal_codes()
    assert {
        "bad-operator-token",
        "bad-mqtt-cursor",
        "bad-witness-policy",
    } <= codes  # the scan works
    unmapped = {c for c in codes if server.exit_code_for(c) == server.EXIT_FAILED}
    assert unmapped == set()
    assert {server.exit_code_for(c) for c in codes} <= {2, 3, 4, 5}
