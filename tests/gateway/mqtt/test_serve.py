"""`edgeseal serve --mqtt URL` end to end: a real gateway process (python -m gateway.cli serve,
BLE off) publishes the contract events of transactions posted over HTTP; SIGKILLed and restarted
on the same data_dir, it skips no log index."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.contracts import make_tx
from tests.gateway.contracts.helpers import Party
from tests.gateway.mqtt.broker import Broker, free_port
from tests.gateway.mqtt.subscriber import Subscriber, subscribed
from tests.gateway.mqtt.test_bridge import check_at_least_once
from tests.gateway.node.helpers import run, wait_until

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "mqtt-serve-test-operator-token"
# why: the child imports the gateway and opens its ledger; a loaded machine takes seconds.
START_DEADLINE_S = 120
DEADLINE_S = 60


def start_gateway(data: Path, port: int, url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m gateway.cli serve --mqtt url` and return once /healthz answers 200."""
    env = dict(
        os.environ,
        EDGESEAL_OPERATOR_TOKEN=TOKEN,
        EDGESEAL_BATCH_INTERVAL_MS="50",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("EDGESEAL_CONFIG", None)
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--no-ble", "--data-dir", str(data)]
    cmd += ["--port", str(port), "--mqtt", url]
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=err, stderr=err)
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the gateway did not answer in {START_DEADLINE_S} s")
        time.sleep(0.05)


def post_tx(client: httpx.Client, party: Party, nonce: int, action: str, args: Any) -> None:
    """Post one engine transaction of party; assert it was accepted."""
    payload = make_tx([party.key], nonce, "engine", action, args, int(time.time()))
    res = client.post("/v1/transactions", json={"payload": base64.b64encode(payload).decode()})
    assert res.status_code == 201, res.text


def contract_event_indexes(client: httpx.Client) -> set[int]:
    """Return the log indexes of every integrated contract event, read through the API."""
    out: set[int] = set()
    since = 0
    while True:
        page = client.get("/v1/entries", params={"since": since, "limit": 1000}).json()
        out |= {e["index"] for e in page["entries"] if e["kind"] == "contract-event"}
        if page["next"] == since or not page["entries"]:
            return out
        since = page["next"]


def settled(client: httpx.Client) -> bool:
    """Return True once every sequenced entry is integrated."""
    gw = client.get("/v1/gateway").json()
    return bool(gw["tree_size"] == gw["sequenced_size"])


def test_serve_publishes_and_survives_sigkill(tmp_path: Path, broker: Broker) -> None:
    data, port = tmp_path / "data", free_port()
    log = tmp_path / "gateway.log"
    op = Party("mqtt-serve-op")
    base = f"http://127.0.0.1:{port}"

    async def scenario() -> None:
        sub = Subscriber("127.0.0.1", broker.port, "edgeseal")
        async with subscribed(sub):
            proc = start_gateway(data, port, broker.url, log)
            try:
                with httpx.Client(base_url=base, timeout=30) as client:
                    reg = {"public_key": op.pk, "name": "op", "roles": ["operator"]}
                    post_tx(client, op, 1, "register", reg)
                    for i in range(2, 12):
                        other = Party(f"mqtt-serve-{i}")
                        args = {"public_key": other.pk, "name": f"p{i}", "roles": ["driver"]}
                        post_tx(client, op, i, "register", args)
                    await wait_until(lambda: len(sub.indexes()) >= 6, DEADLINE_S, "first events")
                proc.send_signal(signal.SIGKILL)  # about half the events are published yet
                assert proc.wait(30) == -signal.SIGKILL
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            proc = start_gateway(data, port, broker.url, log)
            try:
                with httpx.Client(base_url=base, timeout=30) as client:
                    for i in range(12, 16):
                        other = Party(f"mqtt-serve-{i}")
                        args = {"public_key": other.pk, "name": f"p{i}", "roles": ["driver"]}
                        post_tx(client, op, i, "register", args)
                    await wait_until(lambda: settled(client), DEADLINE_S, "log integrated")
                    want = contract_event_indexes(client)
                    assert len(want) == 15
                    await wait_until(
                        lambda: want <= set(sub.indexes()), DEADLINE_S, "every event received"
                    )
                    expected = []
                    for i in sorted(want):
                        entry = client.get(f"/v1/entries/{i}").json()
                        got = next(g for g in sub.log_messages() if g.value["index"] == i)
                        assert (
                            got.value["type"]
                            == entry["decoded"]["type"]
                            == "participant-registered"
                        )
                        assert got.value["leaf_hash"] == entry["leaf_hash"]
                        expected.append((i, got.topic, got.payload))
                    check_at_least_once(sub.log_messages(), expected)
                    # the bridge's state is visible to the operator, the broker password is not
                    await wait_until(
                        lambda: client.get("/v1/gateway").json()["mqtt"]["next_index"] > max(want),
                        DEADLINE_S,
                        "cursor past the last event",
                    )
                    status = client.get("/v1/gateway").json()["mqtt"]
                    assert status["connected"] is True and status["connects"] >= 1
                    metrics = client.get("/metrics").text
                    assert "edgeseal_mqtt_connected 1.0" in metrics
                    assert f"edgeseal_mqtt_next_index {float(status['next_index'])}" in metrics
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    run(scenario(), timeout_s=300)
