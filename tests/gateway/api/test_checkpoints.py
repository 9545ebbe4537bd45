"""GET /v1/checkpoints and /v1/anchors (gateway/api/routes/checkpoints.py over
gateway.node.checkpoints): shape without witnesses or anchoring, bounds, and the replica verdict.

The replicas here are small HTTP servers on loopback ports that answer what a replica would, or
what a lying or broken one would: the verdict is the gateway's reading of their answers, and a
hostile answer must never read as agreement. The real replica, witnesses and anvil are in
tests/tools/sim/test_network.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.node.checkpoints import MAX_REPLICA_ANSWER_BYTES
from tests.gateway.api.helpers import Api, assert_typed, open_api

DEADLINE_S = 30.0  # why: a few REFRESH_S (2 s) periods, generous for a loaded machine


class FakeReplica:
    """A loopback HTTP server answering /v1/replica and /v1/checkpoint with set bodies."""

    def __init__(self) -> None:
        self.checkpoint = ""
        self.alarms: list[Any] = []
        self.padding = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/v1/replica":
                    body = json.dumps({"alarms": owner.alarms, "pad": "x" * owner.padding})
                elif self.path == "/v1/checkpoint":
                    body = owner.checkpoint
                else:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replicas() -> Iterator[list[FakeReplica]]:
    made = [FakeReplica() for _ in range(2)]
    yield made
    for r in made:
        r.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def verdicts(api: Api, size: int) -> dict[str, str]:
    """Return {replica URL: verdict} on the checkpoint of `size`."""
    rows = api.get("/v1/checkpoints").json()["checkpoints"]
    row = next(r for r in rows if r["size"] == size)
    return {r["url"]: r["status"] for r in row["replicas"]}


def test_without_witnesses_anchoring_or_replicas(api: Api) -> None:
    view = api.get("/v1/checkpoints").json()
    assert view["witnesses"] is None and view["anchoring"] is None and view["replicas"] == []
    newest = view["checkpoints"][0]
    assert newest["size"] == view["tree_size"]
    assert newest["cosignatures"] is None and newest["anchor"] is None
    assert newest["replicas"] == []
    assert api.get("/v1/anchors").json() == {"anchoring": None, "anchors": []}
    for bad in ("0", "65", "-1", "x"):
        assert_typed(api.get(f"/v1/checkpoints?limit={bad}"), 400, "bad-request")
        assert_typed(api.get(f"/v1/anchors?limit={bad}"), 400, "bad-request")


def test_replica_verdicts(tmp_path: Path, replicas: list[FakeReplica]) -> None:
    honest, liar = replicas
    down = f"http://127.0.0.1:{closed_port()}"
    urls = [honest.url, liar.url, down]
    for api in open_api(tmp_path, replica_urls=urls):
        note = api.get("/v1/checkpoint").text
        size = int(note.split("\n")[1])
        honest.checkpoint = note
        # a fork: the same size and origin with another root (what a replica would hold if the
        # gateway showed it another history)
        lines = note.split("\n")
        lines[2] = "A" * 43 + "="
        liar.checkpoint = "\n".join(lines)

        got = verdicts(api, size)
        assert got == {honest.url: "agrees", liar.url: "disagrees", down: "unreachable"}
        view = api.get("/v1/checkpoints").json()
        matches = {r["url"]: r["matches"] for r in view["replicas"]}
        assert matches == {honest.url: True, liar.url: False, down: False}

        honest.alarms = [{"kind": "fork"}]  # a replica that raised an alarm never agrees
        liar.checkpoint = "not a checkpoint"
        liar.padding = MAX_REPLICA_ANSWER_BYTES  # and an oversized answer is no answer
        want = {honest.url: "alarm", liar.url: "unreachable", down: "unreachable"}
        deadline = time.monotonic() + DEADLINE_S  # the view re-reads replicas every REFRESH_S
        while (got := verdicts(api, size)) != want:
            assert time.monotonic() < deadline, got
            time.sleep(0.2)


def test_replica_urls_must_be_http_urls(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.config import Settings

    ok = Settings(data_dir=tmp_path, replica_urls=["http://127.0.0.1:8090/", "https://r.example"])
    assert ok.replica_urls == ["http://127.0.0.1:8090", "https://r.example"]
    for bad in ("javascript:alert(1)", "ftp://r.example", "http://a b", ""):
        with pytest.raises(ValidationError, match="replica_urls"):
            Settings(data_dir=tmp_path, replica_urls=[bad])
