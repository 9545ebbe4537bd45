"""Run code against the dashboard's gateway/web/verify.js in Node (no browser): for its tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VERIFY_JS = Path(__file__).resolve().parents[3] / "gateway" / "web" / "verify.js"
# why: Node starts in ~50 ms; a loaded 2-core machine and a few thousand Ed25519 checks in pure
# JS may take far longer. A deadline, not a timing assertion.
NODE_TIMEOUT_S = 300.0


def run_js(body: str, arg: Any) -> Any:
    """Return the JSON value `body` returns, run as the body of `async (V, arg) => {...}` with V
    the verify.js module and arg a JSON value. Skips the test if there is no `node`."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node")
    script = (
        f"const V = await import({json.dumps(VERIFY_JS.as_uri())});\n"
        "let input = ''; for await (const chunk of process.stdin) input += chunk;\n"
        f"const fn = async (V, arg) => {{ {body} }};\n"
        "process.stdout.write(JSON.stringify(await fn(V, JSON.parse(input))));\n"
    )
    proc = subprocess.run(
        [node, "--no-warnings", "--input-type=module", "-e", script],
        input=json.dumps(arg).encode(),
        capture_output=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return json.loads(proc.stdout)
