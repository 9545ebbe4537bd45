"""The HTTP API (FastAPI): thin routes over gateway.service.Service; docs/api.md describes it.

One exception handler maps every EdgesealError to a 4xx with its `to_dict()` body; request
validation errors and unknown routes get the same typed body. Admin writes need the operator
bearer token; participant writes are signed transactions; writes are rate-limited per
participant and per client IP (token buckets).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import bundle as bundles
from gateway.contracts import agri
from gateway.contracts.fishfarm import score_bp
from gateway.errors import ContractError, EdgesealError, ProofError
from gateway.ledger import merkle
from gateway.ledger.entries import KIND_NAMES
from gateway.service import Service, ServiceUnavailable
from gateway.wire import device_id_for

# ---- tunables -------------------------------------------------------------------------------

# why: a participant submits a handful of transactions per minute in every use case (bids,
# handovers, ticks); 5/s sustained with bursts of 20 never limits them and bounds a runaway client.
PARTICIPANT_RATE_PER_S = 5.0
PARTICIPANT_BURST = 20
# why: before any signature is checked, the only identity is the client address; Ed25519
# verification costs ~60 us, so 20/s per address keeps one client far from using a Pi core.
IP_RATE_PER_S = 20.0
IP_BURST = 40
# why: bounds the memory of the limiter under many distinct senders (oldest buckets evicted).
MAX_BUCKETS = 10_000
# why: a transaction body is at most 16 KiB (gateway.contracts.tx.MAX_BODY_BYTES) + 4 signatures,
# base64 grows it by 4/3; anything larger is not a valid request.
MAX_BODY_BYTES = 64 * 1024
MAX_PAGE = 1000  # entries/events per list request
DEFAULT_PAGE = 100
WEB_DIR = Path(__file__).resolve().parent / "web"

# ContractError codes that mean "the transaction itself is malformed" (400), not "the contracts
# refuse it" (422).
TX_DECODE_CODES = frozenset(
    {
        "tx-malformed",
        "tx-not-canonical",
        "tx-float",
        "tx-int-range",
        "tx-unsigned",
        "tx-signature-count",
        "tx-bad-public-key",
        "tx-bad-signature",
        "tx-clock-skew",
    }
)
CODE_STATUS = {
    "not-found": 404,
    "unknown-lot": 404,
    "unauthorized": 401,
    "already-enrolled": 409,
    "already-revoked": 409,
    "not-integrated": 409,
    "wrong-contract-type": 409,
    "too-large": 413,
    "rate-limited": 429,
    "unavailable": 503,
}


class RequestError(EdgesealError):
    """A request the API cannot take: bad parameters, unknown route, wrong method."""

    kind = "RequestError"


class NotFound(EdgesealError):
    """No such entry, device, contract, lot or transaction."""

    kind = "NotFound"


class AuthError(EdgesealError):
    """An admin request without a valid operator token."""

    kind = "AuthError"


class RateLimited(EdgesealError):
    """Too many writes from one participant or client address."""

    kind = "RateLimited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__("rate-limited", message)
        self.retry_after_s = retry_after_s


def status_for(exc: EdgesealError) -> int:
    """Return the HTTP status of a typed error (docs/api.md, Errors)."""
    if exc.code in CODE_STATUS:
        return CODE_STATUS[exc.code]
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ContractError) and exc.code not in TX_DECODE_CODES:
        return 422
    return 400


# ---- rate limiting --------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    """Token buckets per key: `rate_per_s` tokens per second, at most `burst` stored."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take one token for key; return 0.0 if allowed, else the seconds until one is free."""
        now = self._clock()
        b = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.at_s) * self.rate_per_s)
        b.at_s = now
        self._buckets[key] = b
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate_per_s


# ---- request bodies ------------------------------------------------------------------------

HEX_KEY = r"^[0-9a-f]{64}$"
HEX_DEVICE = r"^[0-9a-f]{32}$"


class EnrollRequest(BaseModel):
    """Enroll a device: its Ed25519 public key (64 hex) and optional metadata."""

    public_key: str = Field(pattern=HEX_KEY, description="Ed25519 public key, 64 lowercase hex")
    metadata: dict[str, Any] | None = Field(default=None, description="JSON object, no 'status'")


class RevokeRequest(BaseModel):
    """Revoke a device, with a reason recorded in the log."""

    reason: str = Field(min_length=1, max_length=200)


class TxRequest(BaseModel):
    """A participant transaction payload (n_sigs || signatures || body), base64."""

    payload: str = Field(min_length=4, max_length=MAX_BODY_BYTES)


# ---- parameters ----------------------------------------------------------------------------

Since = Annotated[int, Query(ge=-1, description="cursor: the last index or id seen")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Index = Annotated[int, PathParam(ge=0, le=2**62)]
DeviceId = Annotated[str, PathParam(pattern=HEX_DEVICE)]

# ---- the app -------------------------------------------------------------------------------


def _package_version() -> str:
    try:
        return version("edgeseal")
    except PackageNotFoundError:
        return "0+unknown"


def _error_response(exc: EdgesealError, **extra: Any) -> JSONResponse:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
    return JSONResponse({**exc.to_dict(), **extra}, status_code=status_for(exc), headers=headers)


def create_app(service: Service, *, clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """Return the FastAPI app serving `service` (which the caller starts and stops).

    clock: the rate limiters' time source in seconds (tests freeze it).
    """
    app = FastAPI(
        title="edgeseal gateway",
        version=_package_version(),
        description="Signed IoT readings in an RFC 9162 log with C2SP checkpoints; docs/api.md.",
    )
    app.state.service = service
    participant_buckets = TokenBuckets(PARTICIPANT_RATE_PER_S, PARTICIPANT_BURST, clock)
    ip_buckets = TokenBuckets(IP_RATE_PER_S, IP_BURST, clock)
    requests: Counter[tuple[str, str, int]] = Counter()
    app.state.requests = requests

    # ---- errors: one place -----------------------------------------------------------------

    @app.exception_handler(EdgesealError)
    async def _typed(_req: Request, exc: EdgesealError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        err = RequestError("bad-request", f"{'.'.join(first['loc'])}: {first['msg']}")
        return _error_response(err, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error_response(NotFound("not-found", "no such route"))
        err = RequestError("bad-request", str(exc.detail))
        return JSONResponse(err.to_dict(), status_code=exc.status_code)

    # ---- middleware: body size, request counts -----------------------------------------------

    @app.middleware("http")
    async def _count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response: Response = _error_response(
                RequestError("too-large", f"request body over {MAX_BODY_BYTES} bytes")
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        requests[(path, request.method, response.status_code)] += 1
        return response

    # ---- helpers ---------------------------------------------------------------------------

    def require_operator(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), service.operator_token.encode()
        ):
            raise AuthError("unauthorized", "this endpoint needs the operator bearer token")

    def limit_ip(request: Request) -> None:
        host = request.client.host if request.client else "unknown"
        wait_s = ip_buckets.take(host)
        if wait_s:
            raise RateLimited(f"too many writes from {host}", wait_s)

    def limit_participant(participant: str) -> None:
        wait_s = participant_buckets.take(participant)
        if wait_s:
            raise RateLimited(f"too many transactions from {participant[:16]}...", wait_s)

    def ledger() -> Any:
        led = service.ledger
        if led is None:
            raise ServiceUnavailable("unavailable", "the ledger is closed")
        return led

    def entry_view(index: int, entry: bytes, tree_size: int) -> dict[str, Any]:
        return {
            "index": index,
            "kind": KIND_NAMES.get(entry[0], "unknown"),
            "base64": bundles.b64(entry),
            "leaf_hash": bundles.b64(merkle.leaf_hash(entry)),
            "integrated": index < tree_size,
            "decoded": bundles.decode_view(entry),
        }

    def contract(cid: str, typ: str | None = None) -> dict[str, Any]:
        inst = service.state["contracts"].get(cid)
        if inst is None:
            raise NotFound("not-found", f"no contract {cid!r}")
        if typ is not None and inst["type"] != typ:
            raise RequestError(
                "wrong-contract-type", f"contract {cid!r} is a {inst['type']}, not {typ}"
            )
        return inst

    def device_lookup(device_id: bytes) -> tuple[bytes, int] | None:
        dev = service.device(device_id)
        return None if dev is None else (dev.first_key, dev.enrolled_index)

    # ---- service ---------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        if WEB_DIR.is_dir():
            return RedirectResponse("/ui/")
        return JSONResponse({"api": "/openapi.json", "docs": "/docs"})

    @app.get("/healthz", summary="liveness and a summary")
    async def healthz() -> JSONResponse:
        led = service.ledger
        body = {
            "status": "ok" if service.phase == "running" else service.phase,
            "tree_size": led.tree_size if led else None,
            "sequenced_size": led.sequenced_size if led else None,
            "pending": led.pending if led else None,
            "ble": service.ble.status if service.ble.mode != "off" else "off",
            "uptime_s": round(time.monotonic() - service.started_at, 3),
        }
        return JSONResponse(body, status_code=200 if service.phase == "running" else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            render_metrics(service, requests), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/gateway", summary="origin, verifier key, sizes, BLE status")
    async def gateway_info() -> dict[str, Any]:
        led = ledger()
        return {
            "origin": led.origin,
            "vkey": led.vkey,
            "tree_size": led.tree_size,
            "sequenced_size": led.sequenced_size,
            "pending": led.pending,
            "state_hash": service.state_hash_hex(),
            "ble": {
                "mode": service.ble.mode,
                "status": service.ble.status,
                "detail": service.ble.detail,
            },
            "version": _package_version(),
        }

    # ---- the log ---------------------------------------------------------------------------

    @app.get(
        "/v1/checkpoint",
        summary="the latest signed checkpoint (C2SP), or a stored one by size",
        response_class=PlainTextResponse,
    )
    async def checkpoint(size: Annotated[int | None, Query(ge=0)] = None) -> PlainTextResponse:
        led = ledger()
        if size is None:
            note = led.checkpoint()
        else:
            try:
                note = led.checkpoint_at(size)
            except ProofError:
                raise NotFound("not-found", f"no checkpoint at size {size}") from None
        return PlainTextResponse(note.decode("utf-8"), media_type="text/plain; charset=utf-8")

    @app.get("/v1/entries", summary="a page of entries, decoded")
    async def list_entries(
        since: Annotated[int, Query(ge=0, description="first index")] = 0,
        limit: Limit = DEFAULT_PAGE,
        kind: Annotated[str | None, Query(description="filter by kind name")] = None,
    ) -> dict[str, Any]:
        led = ledger()
        if kind is not None and kind not in KIND_NAMES.values():
            raise RequestError("bad-request", f"kind must be one of {sorted(KIND_NAMES.values())}")
        end = min(led.sequenced_size, since + limit)
        tree_size = led.tree_size
        out = [
            entry_view(i, e, tree_size)
            for i, e in led.entries(since, end)
            if kind is None or KIND_NAMES.get(e[0]) == kind
        ]
        return {"entries": out, "next": max(since, end), "sequenced_size": led.sequenced_size}

    @app.get("/v1/entries/{index}", summary="one entry: exact bytes and decoded view")
    async def get_entry(index: Index) -> dict[str, Any]:
        led = ledger()
        if index >= led.sequenced_size:
            raise NotFound("not-found", f"no entry at index {index}")
        return entry_view(index, led.entry(index), led.tree_size)

    @app.get("/v1/proof/inclusion", summary="RFC 9162 inclusion proof")
    async def proof_inclusion(
        index: Annotated[int, Query(ge=0)],
        size: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        led = ledger()
        n = led.tree_size if size is None else size
        if index >= n or n > led.tree_size:
            raise ProofError(
                "bad-range", f"need index < size <= tree size {led.tree_size}, got {index}, {n}"
            )
        hashes = led.prove_inclusion(index, n)
        return {
            "index": index,
            "size": n,
            "leaf_hash": bundles.b64(merkle.leaf_hash(led.entry(index))),
            "hashes": [bundles.b64(h) for h in hashes],
        }

    @app.get("/v1/proof/consistency", summary="RFC 9162 consistency proof")
    async def proof_consistency(
        old: Annotated[int, Query(ge=0)],
        new: Annotated[int | None, Query(ge=0)] = None,
    ) -> dict[str, Any]:
        led = ledger()
        n = led.tree_size if new is None else new
        if old > n or n > led.tree_size:
            raise ProofError(
                "bad-range", f"need old <= new <= tree size {led.tree_size}, got {old}, {n}"
            )
        return {
            "old": old,
            "new": n,
            "hashes": [bundles.b64(h) for h in led.prove_consistency(old, n)],
        }

    @app.get("/v1/bundle/{index}", summary="the offline proof bundle of an entry")
    async def get_bundle(index: Index) -> dict[str, Any]:
        led = ledger()
        if index >= led.sequenced_size:
            raise NotFound("not-found", f"no entry at index {index}")
        # a thread: an unsigned record or a rotated key means scanning part of the log
        return await asyncio.to_thread(bundles.build_bundle, led, index, device_lookup)

    # ---- devices ---------------------------------------------------------------------------

    @app.get("/v1/devices", summary="the device registry")
    async def list_devices() -> dict[str, Any]:
        return {"devices": [d.to_json() for d in service.devices()]}

    @app.get("/v1/devices/{device_id}", summary="one device")
    async def get_device(device_id: DeviceId) -> dict[str, Any]:
        dev = service.device(bytes.fromhex(device_id))
        if dev is None:
            raise NotFound("not-found", f"device {device_id} is not enrolled")
        return dev.to_json()

    @app.post("/v1/devices", status_code=201, summary="enroll a device key (operator)")
    async def enroll(body: EnrollRequest, request: Request) -> dict[str, Any]:
        limit_ip(request)
        require_operator(request)
        public_key = bytes.fromhex(body.public_key)
        index = await service.enroll(public_key, body.metadata)
        return {"device_id": device_id_for(public_key).hex(), "index": index}

    @app.post("/v1/devices/{device_id}/revoke", summary="revoke a device (operator)")
    async def revoke(device_id: DeviceId, body: RevokeRequest, request: Request) -> dict[str, Any]:
        limit_ip(request)
        require_operator(request)
        dev_id = bytes.fromhex(device_id)
        if service.device(dev_id) is None:
            raise NotFound("not-found", f"device {device_id} is not enrolled")
        index = await service.revoke(dev_id, body.reason)
        return {"device_id": device_id, "index": index}

    @app.get("/v1/events", summary="ingest events and alarms")
    async def list_events(
        since: Annotated[int, Query(ge=0)] = 0,
        limit: Limit = DEFAULT_PAGE,
        alarms_only: bool = False,
    ) -> dict[str, Any]:
        events = await service.ingest_events(since, limit, alarms_only)
        return {
            "events": [e.to_json() for e in events],
            "next": events[-1].id if events else since,
        }

    # ---- transactions and contracts --------------------------------------------------------

    @app.post("/v1/transactions", status_code=201, summary="submit a participant transaction")
    async def submit(body: TxRequest, request: Request) -> dict[str, Any]:
        limit_ip(request)
        try:
            payload = bundles.unb64(body.payload, "payload")
        except EdgesealError as exc:
            raise RequestError("bad-base64", exc.message) from None
        tx = service.check_tx(payload)
        limit_participant(tx.participant)
        admitted = await service.submit_tx(payload)
        return {"index": admitted.index, "tx_hash": admitted.tx_hash, "events": admitted.events}

    @app.get("/v1/transactions/{tx_hash}", summary="an accepted transaction's place in the log")
    async def get_tx(tx_hash: Annotated[str, PathParam(pattern=HEX_KEY)]) -> dict[str, Any]:
        found = service.tx_location(tx_hash)
        if found is None:
            raise NotFound("not-found", f"no accepted transaction {tx_hash}")
        index, events = found
        return {
            "tx_hash": tx_hash,
            "index": index,
            "integrated": index < ledger().tree_size,
            "events": events,
        }

    @app.get("/v1/participants", summary="registered participants and roles")
    async def participants() -> dict[str, Any]:
        return {"participants": service.state["participants"]}

    @app.get("/v1/contracts", summary="every contract instance, summarised")
    async def list_contracts() -> dict[str, Any]:
        out = []
        for cid, inst in sorted(service.state["contracts"].items()):
            out.append(
                {
                    "id": cid,
                    "type": inst["type"],
                    "owner": inst["owner"],
                    "clock_s": inst["clock_s"],
                    "devices": inst["devices"],
                    "created_at": inst["created_at"],
                }
            )
        return {"contracts": out}

    @app.get("/v1/contracts/{contract_id}", summary="one contract: params and data")
    async def get_contract(contract_id: str) -> dict[str, Any]:
        inst = contract(contract_id)
        return {"id": contract_id, **inst}

    @app.get("/v1/contract-events", summary="contract events from the log")
    async def contract_events(
        contract_id: Annotated[str | None, Query(alias="contract")] = None,
        type: Annotated[str | None, Query(description="event type")] = None,  # noqa: A002
        since: Since = -1,
        limit: Limit = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        types = frozenset({type}) if type else None
        return _events_page(service, contract_id, types, since, limit)

    @app.get("/v1/contracts/{contract_id}/lots", summary="agri: every lot")
    async def lots(contract_id: str) -> dict[str, Any]:
        return {"lots": contract(contract_id, "agri")["data"]["lots"]}

    @app.get("/v1/contracts/{contract_id}/lots/{lot_id}/trace", summary="agri: trace tree")
    async def trace(contract_id: str, lot_id: str) -> dict[str, Any]:
        data = contract(contract_id, "agri")["data"]
        if lot_id not in data["lots"]:
            raise NotFound("not-found", f"no lot {lot_id!r} in {contract_id!r}")
        return agri.trace_tree(data, lot_id)

    @app.get("/v1/contracts/{contract_id}/products/{code}", summary="agri: consumer view")
    async def product(contract_id: str, code: str) -> dict[str, Any]:
        return {"lots": agri.consumer_view(contract(contract_id, "agri")["data"], code)}

    @app.get("/v1/contracts/{contract_id}/pond", summary="fishfarm: risk, loan, policies")
    async def pond(contract_id: str) -> dict[str, Any]:
        inst = contract(contract_id, "fishfarm")
        data, params = inst["data"], inst["params"]
        score = score_bp(data["stats"], inst["clock_s"], params.get("excursion_penalty_bp", 0))
        return {
            "stats": data["stats"],
            "score_bp": score,
            "loan": data["loan"],
            "policies": data["policies"],
            "positions": data["positions"],
            "clock_s": inst["clock_s"],
        }

    @app.get("/v1/contracts/{contract_id}/collateral", summary="collateral: lien and alarms")
    async def collateral(contract_id: str) -> dict[str, Any]:
        return dict(contract(contract_id, "collateral")["data"])

    @app.get("/v1/contracts/{contract_id}/intervals", summary="energy: trading intervals")
    async def intervals(contract_id: str) -> dict[str, Any]:
        data = contract(contract_id, "energy")["data"]
        return {
            "intervals": data["intervals"],
            "meters": data["meters"],
            "positions": data["positions"],
        }

    @app.get("/v1/contracts/{contract_id}/settlements", summary="energy: settlement events")
    async def settlements(
        contract_id: str, since: Since = -1, limit: Limit = DEFAULT_PAGE
    ) -> dict[str, Any]:
        contract(contract_id, "energy")
        return _events_page(service, contract_id, SETTLEMENT_TYPES, since, limit)

    @app.get("/v1/contracts/{contract_id}/sessions", summary="parking: bay sessions")
    async def sessions(contract_id: str) -> dict[str, Any]:
        data = contract(contract_id, "parking")["data"]
        return {
            "sessions": data["sessions"],
            "bays": data["bays"],
            "wallets": data["wallets"],
            "anomalies": data["anomalies"],
        }

    @app.get("/v1/contracts/{contract_id}/receipts", summary="parking: receipt events")
    async def receipts(
        contract_id: str, since: Since = -1, limit: Limit = DEFAULT_PAGE
    ) -> dict[str, Any]:
        contract(contract_id, "parking")
        return _events_page(service, contract_id, RECEIPT_TYPES, since, limit)

    if WEB_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=str(WEB_DIR), html=True), name="ui")
    return app


SETTLEMENT_TYPES = frozenset({"cleared", "settled"})  # energy: the clearing and its settlement
RECEIPT_TYPES = frozenset({"charged", "unpaid"})  # parking: a paid session, or a flagged one


def _events_page(
    service: Service, contract_id: str | None, types: frozenset[str] | None, since: int, limit: int
) -> dict[str, Any]:
    events = service.contract_events(contract_id, types, since, limit)
    return {"events": events, "next": events[-1]["index"] if events else since}


# ---- metrics -------------------------------------------------------------------------------


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(service: Service, requests: Counter[tuple[str, str, int]]) -> str:
    """Return the Prometheus text exposition (format 0.0.4) of the service's metrics."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value:g}")

    led = service.ledger
    c = service.counters
    if led is not None:
        metric("edgeseal_ledger_tree_size", "gauge", "integrated entries", [("", led.tree_size)])
        metric(
            "edgeseal_ledger_sequenced_size",
            "gauge",
            "durably sequenced entries",
            [("", led.sequenced_size)],
        )
        metric(
            "edgeseal_ledger_pending", "gauge", "entries awaiting integration", [("", led.pending)]
        )
    metric("edgeseal_ingest_uploads_total", "counter", "uploads delivered", [("", c.uploads)])
    metric(
        "edgeseal_ingest_records_committed_total",
        "counter",
        "device records committed",
        [("", c.records_committed)],
    )
    metric(
        "edgeseal_ingest_duplicates_total", "counter", "duplicates dropped", [("", c.duplicates)]
    )
    metric(
        "edgeseal_ingest_rejected_total", "counter", "records rejected", [("", c.rejected_records)]
    )
    metric("edgeseal_group_commits_total", "counter", "group commits", [("", c.group_commits)])
    metric("edgeseal_checkpoints_total", "counter", "checkpoints signed", [("", c.checkpoints)])
    metric(
        "edgeseal_transactions_total",
        "counter",
        "participant transactions by result",
        [('{result="accepted"}', c.tx_accepted), ('{result="rejected"}', c.tx_rejected)],
    )
    metric(
        "edgeseal_contract_events_total",
        "counter",
        "contract events by type",
        [(f'{{type="{_esc(k)}"}}', v) for k, v in sorted(c.contract_events.items())],
    )
    metric(
        "edgeseal_ingest_events_total",
        "counter",
        "ingest events by kind",
        [(f'{{kind="{_esc(k)}"}}', v) for k, v in sorted(c.ingest_events.items())],
    )
    statuses = Counter(d.status for d in service.devices())
    metric(
        "edgeseal_devices",
        "gauge",
        "enrolled devices by status",
        [(f'{{status="{_esc(k)}"}}', v) for k, v in sorted(statuses.items())],
    )
    link = service.link
    if link is not None:
        for name, value in sorted(vars(link.stats).items()):
            if isinstance(value, int):
                metric(f"edgeseal_link_{name}_total", "counter", f"BLE link {name}", [("", value)])
    metric(
        "edgeseal_http_requests_total",
        "counter",
        "HTTP requests by route, method and status",
        [
            (f'{{route="{_esc(r)}",method="{m}",status="{s}"}}', n)
            for (r, m, s), n in sorted(requests.items())
        ],
    )
    metric(
        "edgeseal_uptime_seconds",
        "gauge",
        "seconds since start",
        [("", round(time.monotonic() - service.started_at, 3))],
    )
    return "\n".join(lines) + "\n"
