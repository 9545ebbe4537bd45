"""Compile gateway/anchor/EdgesealAnchor.sol with the pinned npm solc into the committed artefact.

`python tools/compile_anchor.py` rewrites gateway/anchor/EdgesealAnchor.json (abi, bytecode,
runtime bytecode, solc version, settings); `--check` exits 1 if recompiling gives anything
else (tests/gateway/anchor/test_contract.py runs the same comparison). Runs offline: solcjs
(node_modules/.bin/solcjs, package.json pins solc) is the compiler itself, compiled to wasm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "gateway" / "anchor" / "EdgesealAnchor.sol"
ARTEFACT = ROOT / "gateway" / "anchor" / "EdgesealAnchor.json"
SOLCJS = ROOT / "node_modules" / ".bin" / "solcjs"
CONTRACT = "EdgesealAnchor"
SOURCE_NAME = "EdgesealAnchor.sol"  # the unit name in the metadata: independent of checkouts
# why: the optimizer tuned for many runs makes each anchor cheaper (the contract is deployed
# once and called for years); cancun is the newest EVM that permissioned Besu/QBFT networks
# and the public L2s all run, and the code needs nothing newer.
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 100000},
    "evmVersion": "cancun",
    "viaIR": False,
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
COMPILE_TIMEOUT_S = 120.0  # why: solcjs takes 1-2 s; a loaded 2-core machine may be far slower


def compile_contract() -> dict[str, Any]:
    """Return the artefact dict compiled from SOURCE now; raise RuntimeError on a solc error."""
    request = {
        "language": "Solidity",
        "sources": {SOURCE_NAME: {"content": SOURCE.read_text()}},
        "settings": SETTINGS,
    }
    version = subprocess.run(
        [str(SOLCJS), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    out = subprocess.run(
        [str(SOLCJS), "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=COMPILE_TIMEOUT_S,
    ).stdout
    result = json.loads(out[out.index("{") :])  # solcjs may print a banner line first
    errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("solc: " + "; ".join(e["formattedMessage"] for e in errors))
    contract = result["contracts"][SOURCE_NAME][CONTRACT]
    return {
        "contractName": CONTRACT,
        "source": f"gateway/anchor/{SOURCE_NAME}",
        "solcVersion": version,
        "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def render(artefact: dict[str, Any]) -> str:
    """Return the artefact as the committed JSON text (sorted keys, two-space indent)."""
    return json.dumps(artefact, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the artefact (or with --check compare it); return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if the artefact is out of date")
    args = ap.parse_args(argv)
    text = render(compile_contract())
    if args.check:
        same = ARTEFACT.exists() and ARTEFACT.read_text() == text
        print(f"{ARTEFACT.relative_to(ROOT)}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    ARTEFACT.write_text(text)
    print(f"wrote {ARTEFACT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
