"""Contract routes: instances, their events, and every read view the contract types declare.

The per-type views are not written here: each contract class lists its `VIEWS`
(gateway.contracts.common.View) and `build_router` mounts them from the contract registry, so a
new contract type needs no edit of the HTTP layer.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from gateway.api.deps import DEFAULT_PAGE, Limit, Reads, Since
from gateway.api.responses import declare
from gateway.contracts import epcis
from gateway.contracts.common import Contract, View
from gateway.errors import NotFound, WrongContractType
from gateway.node import ReadModel

_SEGMENT = re.compile(r"\{([a-z_]+)\}")


def events_page(
    reads: ReadModel, contract_id: str | None, types: frozenset[str] | None, since: int, limit: int
) -> dict[str, Any]:
    """Return a page of contract events with index > since: {"events", "next"}."""
    events = reads.contract_events(contract_id, types, since, limit)
    return {"events": events, "next": events[-1]["index"] if events else since}


def epcis_export(reads: ReadModel, contract_id: str, base_url: str) -> dict[str, Any]:
    """Return the EPCIS 2.0 document of agri contract contract_id (gateway.contracts.epcis):
    its events as the read model holds them, each dated by the entry that caused it, with
    proof-bundle links under base_url. Raises NotFound, WrongContractType."""
    inst = reads.contract(contract_id, "agri")
    events: list[dict[str, Any]] = []
    since = -1
    while True:
        page = reads.contract_events(contract_id, None, since, DEFAULT_PAGE * 10)
        events += page
        if len(page) < DEFAULT_PAGE * 10:
            break
        since = page[-1]["index"]

    def time_of(index: int) -> int | None:
        try:
            return epcis.entry_time_s(reads.entry(index).entry)
        except NotFound:
            return None

    origin = reads.ledger().origin
    return epcis.epcis_document(
        contract_id, inst, events, time_of,
        created_s=int(time.time()), bundle_base=base_url, log_origin=origin,
    )  # fmt: skip


def build_router(contract_types: Mapping[str, Contract]) -> APIRouter:
    """Return the contracts router with the views of every type in contract_types mounted.

    Two types may declare the same view path: the route then serves each instance with the
    view of its own type, and an instance whose type has no such view is WrongContractType.
    """
    router = APIRouter()

    @router.get("/v1/contracts", summary="every contract instance, summarised", responses=declare())
    async def list_contracts(reads: Reads) -> dict[str, Any]:
        return {"contracts": reads.contracts()}

    @router.get(
        "/v1/contracts/{contract_id}",
        summary="one contract: params and data",
        responses=declare(404),
    )
    async def get_contract(contract_id: str, reads: Reads) -> dict[str, Any]:
        return {"id": contract_id, **reads.contract(contract_id)}

    @router.get("/v1/contract-events", summary="contract events from the log", responses=declare())
    async def contract_events(
        reads: Reads,
        contract_id: Annotated[str | None, Query(alias="contract")] = None,
        type: Annotated[str | None, Query(description="event type")] = None,  # noqa: A002
        since: Since = -1,
        limit: Limit = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        return events_page(reads, contract_id, frozenset({type}) if type else None, since, limit)

    @router.get(
        "/v1/contracts/{contract_id}/epcis",
        summary="agri: the lots' events as a GS1 EPCIS 2.0 JSON-LD document",
        responses=declare(404, 409),
    )
    async def contract_epcis(contract_id: str, reads: Reads, request: Request) -> dict[str, Any]:
        return epcis_export(reads, contract_id, str(request.base_url))

    by_path: dict[str, dict[str, tuple[Contract, View]]] = {}
    for typ, contract in contract_types.items():
        for view in contract.VIEWS:
            by_path.setdefault(view.path, {})[typ] = (contract, view)
    for path, views in by_path.items():
        summary = "; ".join(f"{typ}: {view.summary}" for typ, (_, view) in views.items())
        router.add_api_route(
            "/v1/contracts/{contract_id}/" + path,
            _view_endpoint(path, views),
            methods=["GET"],
            summary=summary,
            responses=declare(404, 409),
        )
    return router


def _view_endpoint(
    path: str, views: dict[str, tuple[Contract, View]]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Return the endpoint serving one view path for the types in views.

    Its signature (contract_id, the path's {segments}, since/limit for event views) is built
    from the path, so FastAPI validates and documents the parameters as for a written route.
    """
    segments = _SEGMENT.findall(path)
    patterns = {name: rx for _, view in views.values() for name, rx in view.patterns}
    paged = any(view.event_types for _, view in views.values())
    expected = " or ".join(sorted(views))

    async def endpoint(reads: ReadModel, contract_id: str, **kw: Any) -> dict[str, Any]:
        inst = reads.contract(contract_id)
        found = views.get(inst["type"])
        if found is None:
            raise WrongContractType(
                "wrong-contract-type",
                f"contract {contract_id!r} is a {inst['type']}, not {expected}",
            )
        contract, view = found
        if view.event_types:
            return events_page(reads, contract_id, view.event_types, kw["since"], kw["limit"])
        return getattr(contract, view.method)(contract_id, inst, **{s: kw[s] for s in segments})

    params = [
        inspect.Parameter("reads", inspect.Parameter.KEYWORD_ONLY, annotation=Reads),
        inspect.Parameter("contract_id", inspect.Parameter.KEYWORD_ONLY, annotation=str),
        *(
            inspect.Parameter(s, inspect.Parameter.KEYWORD_ONLY, annotation=_segment(patterns, s))
            for s in segments
        ),
    ]
    if paged:
        params += [
            inspect.Parameter(
                "since", inspect.Parameter.KEYWORD_ONLY, annotation=Since, default=-1
            ),
            inspect.Parameter(
                "limit", inspect.Parameter.KEYWORD_ONLY, annotation=Limit, default=DEFAULT_PAGE
            ),
        ]
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = "view_" + re.sub(r"\W+", "_", path).strip("_")
    return endpoint


def _segment(patterns: dict[str, str], name: str) -> Any:
    """Return the annotation of path segment name: a string, matching its view's pattern if the
    view declares one (View.patterns: e.g. the agri lot id charset), else any string."""
    pattern = patterns.get(name)
    return Annotated[str, PathParam(pattern=pattern)] if pattern else str
