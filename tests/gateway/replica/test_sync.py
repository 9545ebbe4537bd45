"""A replica against the real gateway (its node and API under uvicorn, gateway.api.serving):
it reaches the gateway's state hash, serves the same reads from its own copy, and then follows
the log incrementally, fetching only what it lacks."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

with warnings.catch_warnings():  # Starlette's TestClient still warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gateway.api.limits import RateLimits
from gateway.bundle import verify_bundle_bytes
from gateway.replica.app import create_replica_app
from gateway.replica.node import ReplicaNode, ReplicaOptions
from tests.gateway.api.helpers import ADMIN, LiveGateway
from tests.gateway.contracts.helpers import Board
from tests.gateway.replica.helpers import (
    filler_records,
    gateway_info,
    prepare_log,
    scenario_entries,
    wait_integrated,
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """The real gateway over the five contract scenarios and 1,500 device records."""
    tmp = tmp_path_factory.mktemp("gw")
    prepare_log(tmp / "data", scenario_entries() + filler_records(1500))
    with LiveGateway(tmp) as gw:
        wait_integrated(gw.base)
        yield gw


def open_replica(base: str, data_dir: Path) -> ReplicaNode:
    return ReplicaNode(ReplicaOptions(base, data_dir, gateway_info(base)["vkey"]))


def test_a_replica_reaches_the_gateways_state_hash(gateway: LiveGateway, tmp_path: Path) -> None:
    info = wait_integrated(gateway.base)
    node = open_replica(gateway.base, tmp_path / "replica")
    try:
        assert node.sync_once() == info["tree_size"]
        status = node.to_json()
        assert status["tree_size"] == info["tree_size"]
        assert status["state_hash"] == info["state_hash"]
        assert status["alarms"] == []
        assert node.sync_once() == 0  # nothing new
    finally:
        node.stop()


def _json(client: Any, url: str) -> Any:
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.text)
    return resp.json()


def test_the_replica_serves_the_gateways_reads(gateway: LiveGateway, tmp_path: Path) -> None:
    info = wait_integrated(gateway.base)
    node = open_replica(gateway.base, tmp_path / "replica")
    try:
        node.sync_once()
        size = node.reader.tree_size
        with (
            TestClient(create_replica_app(node)) as replica,
            httpx.Client(base_url=gateway.base) as gw,
        ):
            assert replica.get("/v1/checkpoint").text == gw.get("/v1/checkpoint").text
            assert replica.get("/checkpoint").text == gw.get("/v1/checkpoint").text
            contracts = _json(replica, "/v1/contracts")["contracts"]
            assert contracts and contracts == _json(gw, "/v1/contracts")["contracts"]
            for c in contracts:
                url = f"/v1/contracts/{c['id']}"
                assert _json(replica, url) == _json(gw, url)
            for url in (
                f"/v1/proof/inclusion?index=7&size={size}",
                f"/v1/proof/consistency?old=100&new={size}",
                "/v1/entries?since=0&limit=50",
                "/v1/contract-events?limit=50",
            ):
                assert _json(replica, url) == _json(gw, url), url
            for path in (
                "/tile/0/000",
                "/tile/entries/001",
                f"/tile/0/{(size >> 8):03d}.p/{size & 255}",
            ):
                assert replica.get(path).content == gw.get(path).content, path
            tx_index = next(
                e["index"]
                for e in _json(replica, "/v1/entries?since=0&limit=20")["entries"]
                if e["kind"] == "participant-tx"
            )
            bundle = replica.get(f"/v1/bundle/{tx_index}").content
            assert bundle == gw.get(f"/v1/bundle/{tx_index}").content
            assert verify_bundle_bytes(bundle, info["vkey"]).index == tx_index
            status = _json(replica, "/v1/replica")
            assert status["state_hash"] == info["state_hash"]
            assert replica.get("/healthz").json()["status"] == "ok"
            assert "edgeseal_replica_tree_size" in replica.get("/metrics").text
            # a replica takes no writes
            assert replica.post("/v1/transactions", json={"payload": "AA=="}).status_code in (
                404,
                405,
            )
    finally:
        node.stop()


def test_the_replica_follows_the_log_fetching_only_what_it_lacks(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    node = open_replica(gateway.base, tmp_path / "replica")
    try:
        node.sync_once()
        before = node.client.requests
        size = node.reader.tree_size
        for name in ("follow-1", "follow-2", "follow-3"):
            body = {"public_key": Board(name).public_key.hex()}
            resp = httpx.post(gateway.base + "/v1/devices", json=body, headers=ADMIN, timeout=30)
            assert resp.status_code == 201, resp.text
        info = wait_integrated(gateway.base)
        assert node.sync_once() == info["tree_size"] - size == 3
        assert node.to_json()["state_hash"] == info["state_hash"]
        # the checkpoint, the partial level-0 tile and bundle, and the level-1 tile above: no
        # full tile or bundle it already holds
        assert node.client.requests - before <= 5
    finally:
        node.stop()


def test_a_replica_restarted_in_process_resumes_from_its_copy(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    info = wait_integrated(gateway.base)
    node = open_replica(gateway.base, tmp_path / "replica")
    node.sync_once()
    node.stop()
    again = open_replica(gateway.base, tmp_path / "replica")
    try:
        assert again.reader.tree_size == info["tree_size"]
        assert again.to_json()["state_hash"] == info["state_hash"]  # replayed from its own copy
        assert again.sync_once() == 0
        assert again.client.requests == 1  # only the checkpoint
    finally:
        again.stop()


def test_a_rate_limited_replica_waits_and_completes(tmp_path: Path) -> None:
    """The gateway's read limit answers 429 with Retry-After: the replica waits it out."""
    prepare_log(tmp_path / "gw" / "data", scenario_entries() + filler_records(1000))
    tight = RateLimits(read_rate_per_s=100.0, read_burst=3)
    with LiveGateway(tmp_path / "gw", limits=tight) as gw:
        info = wait_integrated(gw.base)
        node = open_replica(gw.base, tmp_path / "replica")
        try:
            assert node.sync_once() == info["tree_size"]
            assert node.to_json()["state_hash"] == info["state_hash"]
        finally:
            node.stop()
