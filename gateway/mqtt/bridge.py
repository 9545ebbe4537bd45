"""The MQTT bridge task: publish every integrated device record and contract event, in log order,
with QoS 1, from a durable cursor (docs/mqtt.md).

One asyncio task of the node (gateway.node.lifecycle). It only reads: the log through the read
model (SQLite reads in a worker thread), so it never blocks ingest or the API; a broker that is
down or slow only makes it fall behind. Entries are published once a checkpoint covers them
(index < tree size), in batches: every message of a batch is PUBACKed (MQTT 3.1.1 4.3.2) before
the cursor moves past the batch, so a broker outage or a SIGKILL of the gateway costs at most a
batch published twice, never an entry skipped. A broken connection is retried with a capped
exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from gateway import wire
from gateway.errors import EdgesealError, ServiceUnavailable
from gateway.mqtt.cursor import Cursor
from gateway.mqtt.messages import Message, Where, default_prefix, ha_discovery, message_for
from gateway.mqtt.url import BrokerUrl, check_topic_prefix, parse_broker_url
from gateway.node.reads import ReadModel

log = logging.getLogger("edgeseal.mqtt")

# why: entries published per cursor write: one fsync per batch instead of per message, and at
# most this many messages are sent twice after a crash.
BATCH_ENTRIES = 256
# why: QoS 1 messages in flight at once (paho's default is 20); a loopback or LAN broker acks a
# batch in a few round trips.
MAX_INFLIGHT = 64
# why: how often the bridge looks for newly integrated entries; the tree grows at most once per
# batch_interval_ms, and the read is an in-memory size.
POLL_S = 0.1
# why: a PUBACK that takes longer means a dead or overloaded broker; reconnect and resend.
PUBACK_TIMEOUT_S = 30.0
# why: reconnect quickly after a broker restart, but back off to a gentle rate while it is down.
MIN_BACKOFF_S = 0.25
MAX_BACKOFF_S = 30.0
KEEPALIVE_S = 30  # why: a silent dead broker is noticed within 1.5 keepalives (MQTT 3.1.1 3.1.2.10)
# why: on stop the bridge tells subscribers it is offline, but must not hold up the shutdown.
OFFLINE_TIMEOUT_S = 2.0
STATUS_ONLINE, STATUS_OFFLINE = b"online", b"offline"


@dataclass
class BridgeStatus:
    """What the bridge is doing, for logs and tests."""

    connected: bool = False
    next_index: int = 0  # the durable cursor: every entry below it was PUBACKed
    published: int = 0  # messages PUBACKed since start (duplicates after a reconnect included)
    connects: int = 0
    last_error: str = ""


class MqttBridge:
    """Publishes one node's log to one broker (module doc)."""

    def __init__(
        self,
        reads: ReadModel,
        data_dir: Path,
        url: str,
        *,
        origin: str,
        public_url: str,
        prefix: str | None = None,
        ha_discovery: bool = False,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        """Check the URL and prefix and read the cursor (blocking: a small file).

        Raises StartupRefused("bad-mqtt-url"), ("bad-mqtt-topic-prefix") or ("bad-mqtt-cursor").
        """
        self.reads = reads
        self.broker: BrokerUrl = parse_broker_url(url)
        self.where = Where(
            origin=origin,
            prefix=check_topic_prefix(prefix if prefix else default_prefix(origin)),
            public_url=public_url.rstrip("/"),
        )
        self.cursor = Cursor(data_dir, f"{self.broker.display()} {self.where.prefix}")
        self.status = BridgeStatus(next_index=self.cursor.next_index)
        self.max_backoff_s = max_backoff_s
        self.ha_discovery = ha_discovery
        # discovery configs published since start (retained at the broker: once per process)
        self._announced: set[str] = set()
        digest = hashlib.sha256(f"{origin}\n{self.where.prefix}".encode()).hexdigest()
        self.client_id = f"edgeseal-{digest[:16]}"  # stable: a second bridge replaces the first
        self.status_topic = f"{self.where.prefix}/status"

    def _client(self) -> aiomqtt.Client:
        b = self.broker
        client = aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=b.password,
            identifier=self.client_id,
            clean_session=True,  # the durable cursor, not a broker session, carries our state
            keepalive=KEEPALIVE_S,
            timeout=PUBACK_TIMEOUT_S,
            max_inflight_messages=MAX_INFLIGHT,
            tls_context=ssl.create_default_context() if b.tls else None,
            will=aiomqtt.Will(self.status_topic, STATUS_OFFLINE, qos=1, retain=True),
        )
        client.pending_calls_threshold = BATCH_ENTRIES + 1  # a batch in flight is expected
        return client

    async def run(self) -> None:
        """Publish until cancelled; reconnect with capped exponential backoff on any broker or
        connection error. Never returns normally unless the ledger is closed."""
        backoff_s = MIN_BACKOFF_S
        log.info(
            "MQTT bridge to %s, topics %s/..., from index %d",
            self.broker.display(),
            self.where.prefix,
            self.cursor.next_index,
        )
        while True:
            try:
                async with self._client() as client:
                    self.status.connected = True
                    self.status.connects += 1
                    backoff_s = MIN_BACKOFF_S
                    await client.publish(self.status_topic, STATUS_ONLINE, qos=1, retain=True)
                    try:
                        if not await self._pump(client):
                            return
                    except asyncio.CancelledError:  # the node stops: say so, briefly
                        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                            await client.publish(
                                self.status_topic,
                                STATUS_OFFLINE,
                                qos=1,
                                retain=True,
                                timeout=OFFLINE_TIMEOUT_S,
                            )
                        raise
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: the cursor could not be written
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "MQTT bridge: %s; retrying in %.2f s", self.status.last_error, backoff_s
                )
            except ServiceUnavailable:  # the ledger closed under a read: the node is stopping
                return
            except Exception as exc:  # a bug must not end publishing for good: log, retry
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("MQTT bridge failed; retrying in %.2f s", backoff_s)
            finally:
                self.status.connected = False
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, self.max_backoff_s)

    async def _pump(self, client: aiomqtt.Client) -> bool:
        """Publish integrated entries from the cursor until the connection fails (raises
        MqttError); return False once the ledger is closed."""
        # We never subscribe, so the message iterator only ends, with MqttError, on disconnect:
        # racing it against a batch turns a lost connection into an error at once instead of a
        # PUBACK timeout.
        watcher = asyncio.create_task(self._watch(client))
        try:
            while True:
                sizes = self.reads.sizes()
                if sizes is None:
                    return False
                start = self.cursor.next_index
                if start >= sizes.tree_size:
                    done, _ = await asyncio.wait({watcher}, timeout=POLL_S)
                    if done:
                        watcher.result()  # raises the disconnect
                    continue
                end = min(sizes.tree_size, start + BATCH_ENTRIES)
                messages, after = await asyncio.to_thread(self._messages, start, end)
                if messages:
                    await self._publish_batch(client, messages, watcher)
                if after == start:  # nothing readable yet: wait rather than spin
                    await asyncio.sleep(POLL_S)
                    continue
                await asyncio.to_thread(self.cursor.advance, after)
                self.status.next_index = after
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher

    def _messages(self, start: int, end: int) -> tuple[list[Message], int]:
        """Return the messages of the integrated entries [start, end) in log order, and the index
        after the last entry read (end, unless the log held fewer integrated entries). Runs in a
        worker thread: SQLite reads."""
        page = self.reads.entries(start, end - start)
        out = []
        after = start
        announced = set(self._announced)  # and those of this batch
        for view in page.entries:
            if not view.integrated or view.index != after:  # never publish past the checkpoint
                break
            msg = message_for(view.index, view.entry, self.where)
            if msg is not None:
                if self.ha_discovery:
                    fresh = self._discovery(view.index, view.entry, announced)
                    announced.update(m.topic for m in fresh)
                    out.extend(fresh)
                out.append(msg)
            after = view.index + 1
        return out, after

    def _discovery(self, index: int, entry: bytes, announced: set[str]) -> list[Message]:
        """Return the Home Assistant discovery configs of a reading whose topics are not in
        announced (they go before the reading, so HA knows the sensor when its state arrives)."""
        try:
            rec = wire.decode_record(entry[1:])
        except EdgesealError:
            return []
        return [m for m in ha_discovery(rec, self.where, index) if m.topic not in announced]

    async def _watch(self, client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass

    async def _publish_batch(
        self, client: aiomqtt.Client, messages: list[Message], watcher: asyncio.Task[Any]
    ) -> None:
        """Publish messages with QoS 1 and return once every one is PUBACKed; raise MqttError
        (and leave the cursor where it is) if the connection fails first."""
        tasks = [
            asyncio.create_task(client.publish(m.topic, m.payload, qos=1, retain=m.retain))
            for m in messages
        ]
        try:
            pending: set[asyncio.Task[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(
                    pending | {watcher}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(watcher)
                for task in done:
                    task.result()  # raises the first failure (the watcher's: a disconnect)
            self.status.published += len(messages)
            self._announced.update(m.topic for m in messages if m.retain)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
