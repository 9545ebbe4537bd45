"""The import rules of docs/architecture.md, checked on the source: who may import what.

Read from the AST of every module (imports inside functions count too), so a lazy import cannot
slip past. A rule that fails names the module and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# storage and the modules that own it: routes reach them only through the node's read model
# and sequencer (gateway.node), never directly
STORAGE = ("sqlite3", "gateway.ledger.store", "gateway.ingest", "gateway.registry")
# the only gateway modules that import bleak: the link drives BleakClient/BleakScanner, the
# bumble backend implements bleak's backend base classes
BLEAK_USERS = {"gateway/ble/link.py", "gateway/ble/bumble_backend.py"}


def _modules(folder: str) -> Iterator[Path]:
    yield from sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _violations(folder: str, forbidden: tuple[str, ...], skip: set[str] = frozenset()) -> list:
    out = []
    for path in _modules(folder):
        rel = path.relative_to(ROOT).as_posix()
        if rel in skip:
            continue
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{rel}:{line} imports {name}")
    return out


def test_the_gateway_imports_neither_firmware_nor_tools_nor_tests() -> None:
    assert _violations("gateway", ("firmware", "tools", "tests")) == []


def test_routes_reach_storage_only_through_the_node() -> None:
    assert _violations("gateway/api", STORAGE) == []


def test_only_the_link_and_its_bumble_backend_import_bleak() -> None:
    assert _violations("gateway", ("bleak",), skip=BLEAK_USERS) == []


def test_the_firmware_imports_nothing_of_the_host() -> None:
    assert _violations("firmware", ("gateway", "tools", "tests")) == []


def test_contracts_are_pure_functions_of_state_and_entry() -> None:
    # no clock, no randomness, no I/O, no storage: replay must give the same state everywhere
    # (gateway.ledger.entries is the pure entry codec and may be used)
    impure = ("time", "os", "random", "socket", "asyncio", "sqlite3", "gateway.ledger.store")
    assert _violations("gateway/contracts", impure + ("gateway.node", "gateway.api")) == []


def test_the_gateway_edits_neither_sys_path_nor_sys_modules() -> None:
    found = []
    for path in _modules("gateway"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
                and node.attr in ("path", "modules")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses sys.{node.attr}")
    assert found == []


# why 80: a function longer than a screen holds more than one job; the straight-line decoders
# are the exception (one field after another, splitting them would only hide the format)
MAX_FUNCTION_LINES = 80
STRAIGHT_LINE_DECODERS = {("gateway/wire.py", "decode_record")}


def test_no_gateway_function_is_longer_than_a_screen() -> None:
    long = []
    for path in _modules("gateway"):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (rel, node.name) not in STRAIGHT_LINE_DECODERS:
                    long.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    assert long == []


def test_the_witness_server_runs_without_a_gateway() -> None:
    # a participant runs it alone: no node, no API, no BLE link, no ledger store behind it (the
    # witness client, gateway/publish/witness.py, is a task of the Node and may use gateway.node)
    forbidden = ("gateway.node", "gateway.api", "gateway.ble", "gateway.ledger.store")
    witness = {"cosignature.py", "witness_logs.py", "witness_state.py", "witness_service.py"}
    witness.add("witness_server.py")
    skip = {
        p.relative_to(ROOT).as_posix() for p in _modules("gateway/publish") if p.name not in witness
    }
    assert _violations("gateway/publish", forbidden, skip) == []


# the participant's side: the client and the one transaction format it shares with the engine
PARTICIPANT_SIDE = ("gateway/client.py", "gateway/txformat.py")
# a participant installs no server: no web framework, node, ledger (store), contract engine
SERVER_SIDE = ("fastapi", "starlette", "uvicorn", "sqlite3", "gateway.node", "gateway.api",
               "gateway.ledger", "gateway.contracts", "gateway.ble", "gateway.server")  # fmt: skip


def test_the_participant_client_imports_nothing_of_the_server() -> None:
    # direct imports here; tests/gateway/test_client.py checks what importing it loads in all
    found = [
        f"{rel}:{line} imports {name}"
        for rel in PARTICIPANT_SIDE
        for line, name in _imports(ROOT / rel)
        if any(name == f or name.startswith(f + ".") for f in SERVER_SIDE)
    ]
    assert found == []
