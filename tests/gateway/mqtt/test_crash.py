"""SIGKILL of a real gateway process while its MQTT bridge publishes: after a restart on the same
data_dir, a persistent QoS 1 subscriber has received every log index (duplicates only as the
identical message of the same index)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.gateway.contracts.helpers import Board
from tests.gateway.mqtt.broker import Broker
from tests.gateway.mqtt.subscriber import Subscriber, subscribed
from tests.gateway.mqtt.test_bridge import (
    DEADLINE_S,
    bridge_of,
    caught_up,
    check_at_least_once,
    expected_messages,
    sensor_readings,
)
from tests.gateway.node.helpers import make_settings, run, started, wait_until

ROOT = Path(__file__).resolve().parents[3]
# why: the child imports the gateway and starts a node; on a loaded machine that takes seconds.
CHILD_DEADLINE_S = 120
MESSAGES_BEFORE_KILL = 25  # the subscriber has this many when the child is killed


def test_gateway_sigkill_and_restart_skips_no_index(tmp_path: Path, broker: Broker) -> None:
    data = tmp_path / "data"
    settings = make_settings(tmp_path, mqtt_url=broker.url)

    async def scenario() -> None:
        # the topic prefix derives from the log origin, which the child's first start creates;
        # subscribe to every edgeseal topic instead
        sub = Subscriber("127.0.0.1", broker.port, "edgeseal")
        async with subscribed(sub):
            env = dict(
                os.environ,
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            )
            child = subprocess.Popen(
                [sys.executable, "-m", "tests.gateway.mqtt.bridge_child", str(data), broker.url],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            try:
                await wait_until(
                    lambda: len(sub.indexes()) >= MESSAGES_BEFORE_KILL or child.poll() is not None,
                    CHILD_DEADLINE_S,
                    "the child's bridge publishing",
                )
                assert child.poll() is None, "the child died on its own"
                child.send_signal(signal.SIGKILL)  # while it ingests and publishes
            finally:
                if child.poll() is None:
                    child.kill()
                await asyncio.to_thread(child.wait)
            assert child.returncode == -signal.SIGKILL
            seen_before = set(sub.indexes())

            node = await started(
                settings
            )  # the same data_dir: replay, then publish from the cursor
            try:
                bridge = bridge_of(node)
                assert bridge.cursor.next_index <= max(seen_before) + 1
                sensor = Board("mqtt-after-crash")
                await node.sequencer.enroll(sensor.public_key, {"board": "after"})
                await sensor_readings(node, sensor, 1_800_100_000, 5)
                await wait_until(lambda: caught_up(node), DEADLINE_S, "bridge caught up")
                expected = expected_messages(node)
                want = {i for i, _, _ in expected}
                await wait_until(
                    lambda: want <= set(sub.indexes()), DEADLINE_S, "every index received"
                )
                assert seen_before <= want
                check_at_least_once(sub.log_messages(), expected)
            finally:
                await node.stop()

    run(scenario(), timeout_s=240)
