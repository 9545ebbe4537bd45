"""The API's pure ASGI middleware (gateway/api/middleware.py) through the app: the body guard
(size on the stream, strict JSON before FastAPI), the read limit, security headers, counting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.limits import MAX_READ_CHARGE_TOKENS, READ_BURST, READ_COST_UNIT_S, RateLimits
from gateway.api.middleware import CSP, DOCS_CSP, SECURITY_HEADERS
from gateway.bounds import MAX_BODY_BYTES, MAX_JSON_DEPTH
from tests.gateway.api.helpers import ADMIN, Api, assert_typed, open_api
from tests.gateway.contracts.helpers import Board

CHUNK_BYTES = 64 * 1024
HOSTILE_BODY_BYTES = 50 * 1024 * 1024


def sequenced(api: Api) -> int:
    """Return the ledger's sequenced size (what a hostile write must not change)."""
    return api.get("/v1/gateway").json()["sequenced_size"]


def test_a_chunked_body_is_refused_at_the_limit_without_reading_the_rest(api: Api) -> None:
    """httpx's ASGI transport hands the app the body chunk by chunk as the app asks for it (the
    TestClient would read it all first); tests/gateway/api/test_serving.py does the same
    against a real uvicorn over a socket."""
    size = sequenced(api)
    pulled = [0]

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: a chunked body
        while pulled[0] < HOSTILE_BODY_BYTES:
            pulled[0] += CHUNK_BYTES
            yield b"[" * CHUNK_BYTES

    async def post(url: str, headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=api.c.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            h = {"content-type": "application/json", **headers}
            return await client.post(url, content=body(), headers=h)

    for url, headers in (("/v1/transactions", {}), ("/v1/devices", ADMIN)):
        pulled[0] = 0
        r = api.run(post(url, headers))
        assert_typed(r, 413, "too-large")
        assert r.headers["connection"] == "close"
        # the guard stopped asking for more as soon as the limit was passed
        assert pulled[0] <= MAX_BODY_BYTES + 2 * CHUNK_BYTES, pulled[0]
    assert sequenced(api) == size


def test_content_length_over_the_limit_is_refused_before_reading(api: Api) -> None:
    headers = {"content-type": "application/json", "content-length": str(MAX_BODY_BYTES + 1)}
    r = api.post("/v1/transactions", content=b"{}", headers=headers)
    assert_typed(r, 413, "too-large")


def deep(levels: int) -> str:
    """Return JSON text of `levels` nested arrays."""
    return "[" * levels + "]" * levels


def test_request_json_is_checked_strictly_before_fastapi_parses_it(api: Api) -> None:
    size = sequenced(api)
    key = Board("mw-deep").public_key.hex()
    hostile = {
        "too-deep": f'{{"payload": {deep(1200)}}}',
        "duplicate-key": '{"payload": "AAAA", "payload": "BBBB"}',
        "non-finite": f'{{"public_key": "{key}", "metadata": {{"x": NaN}}}}',
        "bad-json": '{"payload": ',
    }
    for code, text in hostile.items():
        for url, headers in (("/v1/transactions", {}), ("/v1/devices", ADMIN)):
            h = {"content-type": "application/json", **headers}
            assert_typed(api.post(url, content=text.encode(), headers=h), 400, code)
    # just inside the depth limit, the request reaches FastAPI and the route (a typed 400 there)
    ok_depth = f'{{"public_key": "{key}", "metadata": {{"x": {deep(MAX_JSON_DEPTH - 2)}}}}}'
    h = {"content-type": "application/json", **ADMIN}
    r = api.post("/v1/devices", content=ok_depth.encode(), headers=h)
    assert_typed(r, 400, "bad-metadata")
    assert sequenced(api) == size


def test_every_response_carries_the_security_headers(api: Api) -> None:
    responses = {
        "/healthz": api.get("/healthz"),
        "/v1/entries/99": api.get("/v1/entries/99"),
        "/nope": api.get("/nope"),
        "delete": api.c.delete("/v1/checkpoint"),
        "too large": api.post("/v1/transactions", content=b"x" * (MAX_BODY_BYTES + 1)),
        "/ui/": api.get("/ui/"),
        "/ui/app.js": api.get("/ui/app.js"),
        "/metrics": api.get("/metrics"),
    }
    for what, r in responses.items():
        assert r.headers["content-security-policy"] == CSP, what
        for name, value in SECURITY_HEADERS.items():
            assert r.headers[name] == value, (what, name)
    assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
    docs = api.get("/docs")
    assert docs.headers["content-security-policy"] == DOCS_CSP
    assert docs.headers["x-content-type-options"] == "nosniff"


def test_the_dashboard_has_no_inline_script_or_style() -> None:
    """CSP allows only the dashboard's own files: an inline script or style would not run."""
    from gateway.api.app import WEB_DIR

    html = (WEB_DIR / "index.html").read_text()
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert 'src="app.js"' in html and 'href="style.css"' in html


def test_405_names_the_allowed_methods(api: Api) -> None:
    r = api.c.delete("/v1/checkpoint")
    assert_typed(r, 405, "method-not-allowed")
    assert r.headers["allow"] == "GET"
    r = api.c.put("/v1/transactions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_unauthenticated_reads_are_limited_per_address(api: Api) -> None:
    # the fixture's buckets never refill: READ_BURST reads pass, the next is 429
    codes = [api.get("/v1/participants").status_code for _ in range(READ_BURST + 1)]
    assert codes[:-1] == [200] * READ_BURST
    r = api.get("/v1/gateway")
    assert_typed(r, 429, "rate-limited")
    assert int(r.headers["retry-after"]) >= 1
    # writes have their own bucket: an admin write still goes through
    body = {"public_key": Board("mw-limit").public_key.hex()}
    assert api.post("/v1/devices", json=body, headers=ADMIN).status_code == 201


def test_dear_reads_spend_more_of_the_read_budget(tmp_path: Path) -> None:
    """A read is charged one token per READ_COST_UNIT_S of server time it took: here every
    read appears to take 10 units, so the burst is spent ten times sooner."""
    ticks = iter(range(10**6))
    limits = RateLimits(lambda: 1000.0, cost_clock=lambda: next(ticks) * 10 * READ_COST_UNIT_S)
    for api in open_api(tmp_path, limits=limits):
        codes = [api.get("/v1/participants").status_code for _ in range(READ_BURST // 10 + 2)]
        assert codes[: READ_BURST // 10] == [200] * (READ_BURST // 10)
        assert codes[-1] == 429


def test_a_read_that_waits_is_charged_at_most_the_cap(tmp_path: Path) -> None:
    """A read that waited 3 s (a replica, the chain node, a loaded machine) costs
    MAX_READ_CHARGE_TOKENS, not 600 tokens: the reader's next reads still pass."""
    ticks = iter(range(10**6))
    limits = RateLimits(lambda: 1000.0, cost_clock=lambda: next(ticks) * 3.0)
    for api in open_api(tmp_path, limits=limits):
        reads = int(READ_BURST // MAX_READ_CHARGE_TOKENS)
        codes = [api.get("/v1/participants").status_code for _ in range(reads + 2)]
        assert codes[:reads] == [200] * reads
        assert codes[-1] == 429


def http_series(api: Api) -> set[tuple[Any, ...]]:
    """Return the label sets of edgeseal_http_requests_total in /metrics."""
    text = api.get("/metrics").text
    return {
        tuple(sorted(s.labels.items()))
        for family in text_string_to_metric_families(text)
        if family.name == "edgeseal_http_requests"
        for s in family.samples
        if s.name == "edgeseal_http_requests_total"
    }


def test_made_up_methods_add_at_most_one_series(api: Api) -> None:
    before = http_series(api)
    for i in range(300):
        api.c.request(f"BREW{i}", "/v1/checkpoint")
    added = (
        http_series(api) - before - {(("method", "GET"), ("route", "/metrics"), ("status", "200"))}
    )
    assert len(added) <= 1, added
    assert {dict(s)["method"] for s in added} <= {"other"}


def test_request_bodies_reach_the_route_unchanged(api: Api) -> None:
    board = Board("mw-ok")
    body = json.dumps({"public_key": board.public_key.hex(), "metadata": {"site": "Kühlraum"}})
    h = {"content-type": "application/json; charset=utf-8", **ADMIN}
    r = api.post("/v1/devices", content=body.encode(), headers=h)
    assert r.status_code == 201, r.text
    assert api.get(f"/v1/devices/{board.id}").json()["metadata"] == {"site": "Kühlraum"}
