"""Prometheus metrics of a node, through prometheus-client: read at scrape time, labels bounded.

`NodeMetrics` is a custom collector over the node's counters, ledger sizes, registry and link
stats (nothing is counted twice: the node keeps the numbers, the collector reads them). The
HTTP request counter is a prometheus-client Counter in the same per-app registry. Every label
value comes from a bounded set: route templates (not raw paths), known methods, and at most
MAX_LABEL_VALUES distinct values per label, the rest summed under "other".
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.node import Node

# why: event types and ingest kinds come from the gateway's own code (a few dozen); a cap keeps
# a log written by other code, or a bug, from growing the exposition without bound.
MAX_LABEL_VALUES = 64
OTHER = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def bounded(values: Iterable[tuple[str, float]], limit: int = MAX_LABEL_VALUES) -> list:
    """Return [(label value, number)] sorted by label, at most `limit` of them: the most frequent
    limit - 1 keep their label, the rest are summed under OTHER."""
    items = sorted(values, key=lambda kv: (-kv[1], kv[0]))
    if len(items) > limit:
        rest = sum(v for _, v in items[limit - 1 :])
        items = [*items[: limit - 1], (OTHER, rest)]
    return sorted(items)


class NodeMetrics(Collector):
    """Reads a node's numbers at every scrape (module doc)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        """Yield one metric family per number the node keeps."""
        node = self.node
        sizes = node.reads.sizes()
        if sizes is not None:
            yield _gauge("edgeseal_ledger_tree_size", "integrated entries", sizes.tree_size)
            yield _gauge(
                "edgeseal_ledger_sequenced_size", "durably sequenced entries", sizes.sequenced_size
            )
            yield _gauge("edgeseal_ledger_pending", "entries awaiting integration", sizes.pending)
        c = node.counters
        for name, text, value in (
            ("ingest_uploads", "uploads delivered", c.uploads),
            ("ingest_records_committed", "device records committed", c.records_committed),
            ("ingest_duplicates", "duplicates dropped", c.duplicates),
            ("ingest_rejected", "records rejected", c.rejected_records),
            ("group_commits", "group commits", c.group_commits),
            ("checkpoints", "checkpoints signed", c.checkpoints),
        ):
            yield _counter(f"edgeseal_{name}", text, value)
        tx = CounterMetricFamily(
            "edgeseal_transactions", "participant transactions by result", labels=["result"]
        )
        tx.add_metric(["accepted"], c.tx_accepted)
        tx.add_metric(["rejected"], c.tx_rejected)
        yield tx
        yield _labelled(
            CounterMetricFamily("edgeseal_contract_events", "contract events by type", labels=["type"]),
            c.contract_events.items(),
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily("edgeseal_ingest_events", "ingest events by kind", labels=["kind"]),
            c.ingest_events.items(),
        )  # fmt: skip
        storage = node.sequencer.uploads.storage
        yield _gauge(
            "edgeseal_storage_alarm", "1 while the store cannot take writes", int(storage.alarm)
        )
        yield _counter("edgeseal_storage_failures", "writes failed: disk full or I/O error",
                       storage.failures)  # fmt: skip
        statuses = Tally(d.status for d in node.reads.devices())
        yield _labelled(
            GaugeMetricFamily("edgeseal_devices", "enrolled devices by status", labels=["status"]),
            statuses.items(),
        )  # fmt: skip
        if node.link is not None:
            for name, value in sorted(vars(node.link.stats).items()):
                if isinstance(value, int):
                    yield _counter(f"edgeseal_link_{name}", f"BLE link {name}", value)
        if node.witnesses is not None:  # the witness client (docs/witness.md)
            yield from _witness_metrics(node)
        anchor = node.reads.anchor_status()
        if anchor is not None:  # the anchoring service (docs/anchoring.md)
            yield from _anchor_metrics(anchor)
        if node.mqtt is not None:  # the MQTT bridge (docs/mqtt.md)
            mq = node.mqtt.status
            yield _gauge(
                "edgeseal_mqtt_connected", "1 while connected to the broker", int(mq.connected)
            )
            yield _gauge(
                "edgeseal_mqtt_next_index",
                "log index the bridge publishes next (durable cursor)",
                mq.next_index,
            )
            yield _counter("edgeseal_mqtt_published", "messages PUBACKed since start", mq.published)
        uptime_s = round(time.monotonic() - node.started_at, 3)
        yield _gauge("edgeseal_uptime_seconds", "seconds since start", uptime_s)


def _witness_metrics(node: Node) -> Iterator[Metric]:
    """Yield the witness client's numbers: cosignatures, failures and alarms per witness (the
    policy's names: a bounded set), and whether the newest checkpoint has its quorum."""
    client = node.witnesses
    assert client is not None
    status = list(client.status.values())
    for metric, text in (
        ("cosigned", "cosignatures collected"),
        ("failures", "failed add-checkpoint requests"),
        ("alarms", "witness alarms: refused or inconsistent checkpoints"),
    ):
        family = CounterMetricFamily(f"edgeseal_witness_{metric}", text, labels=["witness"])
        yield _labelled(family, [(s.name, getattr(s, metric)) for s in status])
    quorum = client.newest().quorum
    ok = int(bool(quorum and quorum.ok))
    yield _gauge("edgeseal_witness_quorum", "1 if the newest checkpoint has its quorum", ok)


def _anchor_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    """Yield the anchoring numbers of ReadModel.anchor_status: outbox rows per state (a fixed
    set), the newest anchored and final sizes, whether the chain node answers, failures."""
    yield _labelled(
        GaugeMetricFamily("edgeseal_anchor_outbox", "anchors by outbox state", labels=["state"]),
        status["anchors"].items(),
    )  # fmt: skip
    for name, text in (
        ("newest_size", "largest tree size anchored or being anchored"),
        ("final_size", "largest tree size anchored in a final block"),
        ("failures", "consecutive failed anchoring rounds"),
    ):
        yield _gauge(f"edgeseal_anchor_{name}", text, status[name])
    yield _gauge("edgeseal_anchor_node_up", "1 if the chain node answered", int(status["node_up"]))
    yield _counter("edgeseal_anchor_reorgs", "anchors whose block left the chain", status["reorgs"])


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


def _labelled(
    family: CounterMetricFamily | GaugeMetricFamily, values: Iterable[tuple[str, float]]
) -> Metric:
    for label, value in bounded(values):
        family.add_metric([str(label)], value)
    return family


class ApiMetrics(Collector):
    """The per-app registry: the node's numbers and the HTTP requests the app answered."""

    def __init__(self, node: Node) -> None:
        """Create a registry of its own (no process-global state: one app, one registry)."""
        self.requests: Tally[tuple[str, str, str]] = Tally()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeMetrics(node))
        self.registry.register(self)

    def count_request(self, route: str, method: str, status: int) -> None:
        """Count one answered request; route is a route template or "unmatched" (bounded by
        the app's routes), method one of KNOWN_METHODS or "other"."""
        self.requests[(route, method if method in KNOWN_METHODS else OTHER, str(status))] += 1

    def collect(self) -> Iterator[Metric]:
        """Yield the HTTP request counter."""
        family = CounterMetricFamily(
            "edgeseal_http_requests",
            "HTTP requests by route, method and status",
            labels=["route", "method", "status"],
        )
        for labels, n in sorted(self.requests.items()):
            family.add_metric(list(labels), n)
        yield family

    def render(self) -> bytes:
        """Return the text exposition (format 0.0.4) of every metric."""
        return generate_latest(self.registry)
