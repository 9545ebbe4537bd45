"""Metrics through prometheus-client: the exposition parses, every label value is bounded."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.api.metrics import MAX_LABEL_VALUES, OTHER, ApiMetrics, bounded
from gateway.node import Node
from tests.gateway.node.helpers import make_settings


def test_bounded_keeps_the_most_frequent_and_sums_the_rest() -> None:
    values = [(f"t{i:03d}", float(i)) for i in range(200)]
    out = bounded(values, limit=10)
    assert len(out) == 10
    kept = dict(out)
    assert kept[OTHER] == sum(range(191))  # t000..t190 summed
    assert all(f"t{i:03d}" in kept for i in range(191, 200))
    assert bounded([("b", 1.0), ("a", 2.0)]) == [("a", 2.0), ("b", 1.0)]  # sorted by label


def test_exposition_parses_and_labels_stay_bounded(tmp_path: Path) -> None:
    node = Node(make_settings(tmp_path))
    try:
        m = ApiMetrics(node)
        for i in range(3 * MAX_LABEL_VALUES):  # a log full of event types nobody knows
            node.counters.contract_events[f"odd-{i}"] += 1
        node.counters.ingest_events["gap"] += 2
        m.count_request("/v1/entries", "GET", 200)
        m.count_request("unmatched", "BREW", 404)  # a made-up method is not a label value
        families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
        events = families["edgeseal_contract_events"].samples
        assert len(events) == MAX_LABEL_VALUES
        assert sum(s.value for s in events) == 3 * MAX_LABEL_VALUES
        methods = {s.labels["method"] for s in families["edgeseal_http_requests"].samples}
        assert methods == {"GET", OTHER}
        kinds = {s.labels["kind"]: s.value for s in families["edgeseal_ingest_events"].samples}
        assert kinds == {"gap": 2.0}
        assert families["edgeseal_ledger_tree_size"].samples[0].value == 0
        uptime = families["edgeseal_uptime_seconds"].samples[0].value
        assert 0 <= uptime < time.monotonic()
    finally:
        node.close()
