"""A persistent MQTT subscriber for the bridge tests: QoS 1, clean_session false, reconnecting.

It subscribes to `<prefix>/#` and records every message (topic, parsed JSON payload, raw bytes)
in arrival order; when the broker goes away it reconnects with the same client id, so the broker
delivers what it queued for the session meanwhile (MQTT 3.1.1 3.1.2.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

RETRY_S = 0.1  # why: the tests restart the broker; reconnect promptly once it is back


@dataclass
class Got:
    """One received message."""

    topic: str
    payload: bytes

    @property
    def value(self) -> dict[str, Any]:
        """Return the parsed JSON payload."""
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """Collects `<prefix>/#` into `got` (module doc); run() until cancelled."""

    host: str
    port: int
    prefix: str
    client_id: str = "edgeseal-test-subscriber"
    got: list[Got] = field(default_factory=list)
    connects: int = 0
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Receive until cancelled, reconnecting after any broker error."""
        # One Client reused across reconnects: messages paho acknowledged but the iterator had
        # not yet handed out when the connection broke stay in its queue (a fresh Client per
        # connection would drop them, a loss of the test's own making).
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, clean_session=False
        )
        while True:
            try:
                async with client:
                    self.connects += 1
                    await client.subscribe(f"{self.prefix}/#", qos=1)
                    self.subscribed.set()
                    async for msg in client.messages:
                        payload = msg.payload
                        assert isinstance(payload, bytes | bytearray)
                        self.got.append(Got(str(msg.topic), bytes(payload)))
            except aiomqtt.MqttError:
                await asyncio.sleep(RETRY_S)

    def log_messages(self) -> list[Got]:
        """Return the received messages except the bridge's status messages."""
        return [g for g in self.got if not g.topic.endswith("/status")]

    def indexes(self) -> list[int]:
        """Return the log index of every received message, in arrival order."""
        return [g.value["index"] for g in self.log_messages()]


@contextlib.asynccontextmanager
async def subscribed(sub: Subscriber, timeout_s: float = 30) -> Any:
    """Run sub as a task, yield once its first subscription is acknowledged, cancel on exit."""
    task = asyncio.create_task(sub.run(), name="subscriber")
    try:
        await asyncio.wait_for(sub.subscribed.wait(), timeout_s)
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
