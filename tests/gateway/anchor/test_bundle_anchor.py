"""Format 4 proof bundles end to end: a node that anchors on a real anvil (one witness, quorum 1)
serves bundles carrying the anchor section once the anchor is final; `edgeseal verify-bundle`
checks it offline (naming every check, and the one it cannot do offline) and with --rpc; any
single bit changed in the anchor section fails, and so does evidence of another chain, contract
or block."""

from __future__ import annotations

import base64
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from gateway.anchor.chain import connect, deploy
from gateway.anchor.outbox import FINAL
from gateway.bundle import BUNDLE_VERSION_ANCHORED, encode_bundle, verify_bundle_bytes
from gateway.cli import EXIT_FAILED, main
from gateway.errors import EdgesealError
from gateway.ledger.note import create_signer
from gateway.node import Node
from gateway.publish.policy import WitnessPolicy, load_policy
from tests.gateway.api.helpers import Api, open_api
from tests.gateway.contracts.helpers import Board
from tests.gateway.publish.witness_procs import Witness, write_policy
from tests.support.anvil import CHAIN_ID, DEV_KEY, Anvil

DEADLINE_S = 60.0  # why: a witness process, anvil and the node on a loaded 2-core machine
# why: every field of the anchor section is flipped, each at up to this many sampled bits (most
# flips fail in well under a millisecond: about a second in all); EDGESEAL_FLIP_EVERY_BIT=1
# flips every bit of the section (~30,000 flips, tens of seconds).
BITS_PER_FIELD = 200
FLIP_EVERY_BIT = bool(os.environ.get("EDGESEAL_FLIP_EVERY_BIT"))
OFFLINE_CHECKS = (
    "checkpoint-signature", "witness-quorum: ok", "inclusion: ok", "entry-signature: ok",
    "anchor-checkpoint: ok", "anchor-consistency: ok", "anchor-format: ok", "anchor-header: ok",
    "anchor-transaction: ok", "anchor-receipt-proof: ok", "anchor-receipt-status: ok",
    "anchor-log: ok", "anchor: ok",
)  # fmt: skip


def wait_for(pred: Callable[[], Any], what: str) -> None:
    """Return once pred() is true; AssertionError naming `what` after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not pred():
        assert time.monotonic() < deadline, f"{what}: not reached in {DEADLINE_S} s"
        time.sleep(0.05)


def final_sizes(node: Node) -> list[int]:
    """Return the sizes of the node's final anchors."""
    assert node.anchor is not None
    return [a.head.size for a in node.anchor.outbox.anchors() if a.state == FINAL]


def quorum_size(api: Api) -> int:
    """Return the size of the newest checkpoint with witness quorum (0 if none)."""
    return int(api.get("/v1/gateway").json()["witnesses"]["newest_quorum_size"] or 0)


@dataclass(frozen=True)
class Anchored:
    """A format 4 bundle of entry 0 (anchored at size 1, proven against size 3), its files."""

    data: bytes
    path: Path
    vkey: str
    policy_path: Path
    policy: WitnessPolicy
    rpc: str
    gateway: dict[str, Any]  # GET /v1/gateway once the bundle was served
    metrics: str  # GET /metrics then


@pytest.fixture(scope="module")
def anchored(tmp_path_factory: pytest.TempPathFactory, anvil_session: Anvil) -> Iterator[Anchored]:
    tmp = tmp_path_factory.mktemp("anchored")
    (tmp / "data").mkdir()
    vkey = create_signer(str(tmp / "data" / "gateway.key"), origin="edgeseal.example/gw/a").vkey
    witness = Witness(tmp, "witness.example/w0", vkey)
    address, _tx, _gas = deploy(connect(anvil_session.url), Account.from_key(DEV_KEY))
    key = tmp / "anchor.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, DEV_KEY.encode())
    os.close(fd)
    try:
        witness.start()
        policy = write_policy(tmp / "policy.txt", vkey, [witness], 1)
        overrides = {
            "witness_policy": policy, "anchor_rpc_url": anvil_session.url,
            "anchor_chain_id": CHAIN_ID, "anchor_contract": address, "anchor_key_file": key,
            "anchor_entries": 1, "anchor_finality_depth": 0, "anchor_poll_s": 0.05,
        }  # fmt: skip
        for api in open_api(tmp, **overrides):
            node = api.service
            api.run(node.sequencer.enroll(Board("anchored-0").public_key, {}))
            wait_for(lambda n=node: 1 in final_sizes(n), "size 1 anchored and final")
            for i in (1, 2):
                api.run(node.sequencer.enroll(Board(f"anchored-{i}").public_key, {}))
            wait_for(lambda a=api: quorum_size(a) >= 3, "size 3 cosigned")
            resp = api.get("/v1/bundle/0")
            assert resp.status_code == 200, resp.text
            path = tmp / "bundle.json"
            path.write_bytes(resp.content)
            info, metrics = api.get("/v1/gateway").json(), api.get("/metrics").text
            yield Anchored(
                resp.content, path, vkey, policy, load_policy(str(policy)), anvil_session.url,
                info, metrics,
            )  # fmt: skip
    finally:
        witness.stop()


def test_a_bundle_of_an_anchored_entry_carries_the_anchor(anchored: Anchored) -> None:
    doc = json.loads(anchored.data)
    assert doc["version"] == BUNDLE_VERSION_ANCHORED
    section = doc["anchor"]
    assert set(section) == {"checkpoint", "consistency", "evidence"}
    assert "\n1\n" in section["checkpoint"] and section["consistency"]  # size 1 -> size 3
    assert section["checkpoint"].count("\u2014 ") == 1  # the gateway's signature line only
    assert section["evidence"]["chain_id"] == CHAIN_ID
    result = verify_bundle_bytes(anchored.data, anchored.vkey, anchored.policy)
    assert result.anchor_evidence == section["evidence"]
    assert {c.status for c in result.checks if c.name != "anchor-canonical"} == {"ok"}


def test_verify_bundle_names_every_check_offline_and_online(
    anchored: Anchored, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify-bundle", str(anchored.path), "--key", anchored.vkey]
    argv += ["--policy", str(anchored.policy_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in OFFLINE_CHECKS:
        assert name in out, out
    assert "anchor-canonical: not-checked" in out and "--rpc" in out
    assert main([*argv, "--rpc", anchored.rpc, "--depth", "0"]) == 0
    out = capsys.readouterr().out
    for name in (
        *OFFLINE_CHECKS,
        "anchor-chain-id: ok",
        "anchor-canonical: ok",
        "anchor-final: ok",
    ):
        assert name in out, out
    assert "not-checked" not in out
    # a block deeper than the chain is not final yet: said plainly, exit 1
    assert main([*argv, "--rpc", anchored.rpc, "--depth", "1000000"]) == EXIT_FAILED
    assert "anchor-final" in capsys.readouterr().err
    assert main([*argv, "--rpc", "http://127.0.0.1:9"]) == EXIT_FAILED  # nobody there
    assert "anchor-unreachable" in capsys.readouterr().err


def test_verify_bundle_pins_the_chain_and_contract(
    anchored: Anchored, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = json.loads(anchored.data)["anchor"]["evidence"]["contract"]
    argv = ["verify-bundle", str(anchored.path), "--key", anchored.vkey]
    assert main([*argv, "--chain-id", str(CHAIN_ID), "--contract", contract.lower()]) == 0
    assert "anchor-pinned: ok" in capsys.readouterr().out
    assert main([*argv, "--chain-id", "1"]) == EXIT_FAILED
    assert "bad-anchor: anchored on chain" in capsys.readouterr().err
    assert main([*argv, "--contract", "0x" + "11" * 20]) == EXIT_FAILED
    assert "bad-anchor: anchored by contract" in capsys.readouterr().err


def _value_spans(data: bytes, section: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Return {field: (start, end)} byte spans in the bundle file of every value of the anchor
    section (each consistency hash and evidence field on its own)."""
    start = data.index(b'"anchor":')
    spans = {}
    values = {"checkpoint": section["checkpoint"]}
    values |= {f"consistency[{i}]": h for i, h in enumerate(section["consistency"])}
    for key, value in section["evidence"].items():
        if isinstance(value, list):  # a proof: each node on its own
            values |= {f"evidence.{key}[{i}]": node for i, node in enumerate(value)}
        else:
            values[f"evidence.{key}"] = value
    for name, value in values.items():
        raw = encode_bundle(value)
        # a scalar is found after its key (an integer's digits may occur inside a hex string)
        key = name.split(".")[1] if "." in name and "[" not in name else None
        prefix = encode_bundle(key) + b":" if key else b""
        at = data.index(prefix + raw, start) + len(prefix)
        spans[name] = (at, at + len(raw))
    return spans


def test_any_single_bit_flip_in_an_anchored_bundle_fails(anchored: Anchored) -> None:
    data = anchored.data
    spans = _value_spans(data, json.loads(data)["anchor"])
    assert len(spans) >= 13
    rng = random.Random("anchor section bit flips")
    codes: dict[str, int] = {}
    # and the rest of the file: every bit of its first and last 8 bytes (the version among
    # them), a sample of the others (format 3's own rules: tests/gateway/test_bundle.py)
    everywhere = range(8 * len(data))
    spans["whole file"] = (0, len(data))
    edges = [*range(64), *range(8 * len(data) - 64, 8 * len(data))]
    for name, (start, end) in spans.items():
        bits = range(8 * start, 8 * end)
        sample = bits if FLIP_EVERY_BIT else rng.sample(bits, min(BITS_PER_FIELD, len(bits)))
        if name == "whole file":
            sample = everywhere if FLIP_EVERY_BIT else [*edges, *rng.sample(everywhere, 600)]
        for bit in sample:
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(EdgesealError) as info:
                verify_bundle_bytes(bytes(flipped), anchored.vkey, anchored.policy)
            assert info.value.code != "internal", (name, bit, info.value)
            codes[info.value.code] = codes.get(info.value.code, 0) + 1
    assert codes.get("bad-anchor", 0) > sum(codes.values()) // 2, codes


def _tampered(anchored: Anchored, change: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(anchored.data)
    change(doc["anchor"]["evidence"])
    return encode_bundle(doc)


def test_an_anchor_naming_another_chain_contract_or_block_fails(
    anchored: Anchored, anvil_session: Anvil
) -> None:
    evidence = json.loads(anchored.data)["anchor"]["evidence"]
    other, _tx, _gas = deploy(connect(anvil_session.url), Account.from_key(DEV_KEY))
    earlier = anvil_session.rpc("eth_getBlockByNumber", hex(evidence["block_number"] - 1), False)
    from gateway.anchor.evidence import encode_header

    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "chain": lambda e: e.update(chain_id=1),
        "contract": lambda e: e.update(contract=other),
        "block": lambda e: e.update(
            block_number=int(earlier["number"], 16),
            block_hash=earlier["hash"],
            header_rlp="0x" + encode_header(earlier).hex(),
        ),  # fmt: skip
        "log": lambda e: e.update(log_index=e["log_index"] + 1),
    }
    for what, change in changes.items():
        with pytest.raises(EdgesealError) as info:
            verify_bundle_bytes(_tampered(anchored, change), anchored.vkey, anchored.policy)
        assert info.value.code == "bad-anchor", (what, info.value)
    # an anchor section in a format 3 bundle, or none in a format 4 one, is refused
    doc = json.loads(anchored.data)
    doc["version"] = 3
    with pytest.raises(EdgesealError, match="only a format 4"):
        verify_bundle_bytes(encode_bundle(doc), anchored.vkey)
    doc = json.loads(anchored.data)
    doc["anchor"] = None
    with pytest.raises(EdgesealError, match="carries an anchor"):
        verify_bundle_bytes(encode_bundle(doc), anchored.vkey)


def test_the_anchor_status_is_served(anchored: Anchored) -> None:
    status = anchored.gateway["anchor"]
    assert status["chain_id"] == CHAIN_ID and status["node_up"] is True
    assert status["final_size"] >= 1 and status["newest_size"] >= status["final_size"]
    assert status["anchors"]["final"] >= 1 and set(status["anchors"]) >= {"pending", "final"}
    assert "edgeseal_anchor_node_up 1.0" in anchored.metrics
    assert 'edgeseal_anchor_outbox{state="final"}' in anchored.metrics
    assert "edgeseal_anchor_final_size" in anchored.metrics


def test_the_served_last_error_names_no_rpc_credentials() -> None:
    from gateway.node.reads import MAX_ERROR_CHARS, redact_urls

    err = "HTTPSConnectionPool(host='rpc.example'): Max retries exceeded with url: /v3/KEY (x)"
    assert "KEY" not in redact_urls(err)
    assert (
        redact_urls("https://u:pw@rpc.example/v3/KEY?k=1 down") == "https://rpc.example/<path> down"
    )
    assert len(redact_urls("x" * 10_000)) == MAX_ERROR_CHARS


# The dashboard's verifier (gateway/web/verify.js) on the same bundle, in Node: each bundle text
# is parsed strictly, its checkpoint verified, then verifyAnchor's checks are returned.
JS_ANCHOR = """
const run = async (text) => {
  let bundle;
  try { bundle = V.parseCanonical(text); } catch (e) { return "refused: " + e.code; }
  if (V.bundleShapeProblem(bundle)) return "refused: shape";
  const cp = await V.verifyCheckpoint(bundle.checkpoint, arg.vkey);
  if (!cp.ok) return "refused: checkpoint";
  return V.verifyAnchor(bundle, arg.vkey, cp.checkpoint, bundle.entry.index);
};
const data = V.unb64(arg.data);
const flips = [];
for (const bit of arg.bits) {
  const b = data.slice();
  b[bit >> 3] ^= 1 << (bit & 7);
  let text;
  try { text = V.fromUtf8(b); } catch { flips.push("refused: utf-8"); continue; }
  const r = await run(text);
  flips.push(typeof r === "string" ? r : r.find((c) => c.ok === false)?.name ?? "PASSED");
}
return { checks: await run(V.fromUtf8(data)), flips };
"""
JS_BITS_PER_FIELD = 24  # why: pure-JS Ed25519 may run per flip; a few seconds in all


def test_the_dashboard_verifier_checks_the_anchor_but_not_the_chain(anchored: Anchored) -> None:
    from tests.gateway.web.js import run_js

    data = anchored.data
    rng = random.Random("js anchor flips")
    bits: list[int] = []
    for start, end in _value_spans(data, json.loads(data)["anchor"]).values():
        span = range(8 * start, 8 * end)
        bits += span if FLIP_EVERY_BIT else rng.sample(span, min(JS_BITS_PER_FIELD, len(span)))
    arg = {"vkey": anchored.vkey, "data": base64.b64encode(data).decode(), "bits": bits}
    got = run_js(JS_ANCHOR, arg)
    names = [c["name"] for c in got["checks"]]
    assert names == [
        "anchor-checkpoint", "anchor-consistency", "anchor-format", "anchor-header",
        "anchor-transaction", "anchor-receipt-proof", "anchor-receipt-status", "anchor-log",
        "anchor-canonical",
    ]  # fmt: skip
    assert [c["ok"] for c in got["checks"]] == [True] * 8 + [None]  # the chain: not checked
    assert "not checked in the browser" in got["checks"][-1]["message"]
    assert "PASSED" not in got["flips"], [
        b for b, r in zip(bits, got["flips"], strict=True) if r == "PASSED"
    ]
    assert sum(r.startswith("anchor-") for r in got["flips"]) > len(bits) // 2, got["flips"]
