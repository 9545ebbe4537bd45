"""The API's typed error responses: the one body every error has, and what each route declares.

`error_response` turns an EdgesealError into its JSON response (status from the error class,
Retry-After when rate-limited). `ErrorBody` is that body as a model, for the OpenAPI schema;
`declare(...)` builds a route's `responses=` from the statuses it really answers, so the schema
documents 400/401/404/409/413/429/... and schema-driven tests (tests/gateway/api/test_schema.py)
hold the app to it.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.errors import EdgesealError, RateLimited


class ErrorDetail(BaseModel):
    """One failed check of request validation: where (path of names) and what."""

    loc: list[str]
    msg: str


class ErrorBody(BaseModel):
    """The typed error body (docs/api.md, Errors)."""

    error: str
    code: str
    message: str
    details: list[ErrorDetail] | None = None


# What each status means, for the schema (docs/api.md has the codes).
_WHEN = {
    400: "bad input: parameters, body or encoding (typed, never 422 for validation)",
    401: "no valid operator bearer token",
    404: "no such entry, device, contract, lot or transaction",
    408: "the request body did not arrive in time",
    409: "conflict with the current state",
    413: "request body over 64 KiB",
    422: "a valid transaction the contracts reject; nothing was appended",
    429: "rate-limited; see Retry-After",
    503: "the service is starting or stopping",
}
# Every route can answer these: bad parameters or body (400), a body over the limit (413) or a
# slow body (408), and the per-address rate limits (429).
COMMON = (400, 408, 413, 429)


_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def declare(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return a route's `responses=`: COMMON and statuses, each an application/json ErrorBody.

    The content is spelled out (not `model=`): FastAPI would give a model the route's own media
    type, text/plain on the checkpoint and metrics routes. error_schemas() are the components.
    """
    return {
        status: {
            "description": _WHEN[status],
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
        for status in sorted({*COMMON, *statuses})
    }


def error_schemas() -> dict[str, Any]:
    """Return the OpenAPI components declare() refers to: ErrorBody and ErrorDetail."""
    _, top = models_json_schema(
        [(ErrorBody, "serialization")], ref_template="#/components/schemas/{model}"
    )
    return dict(top["$defs"])


def error_response(
    exc: EdgesealError, *, close: bool = False, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """Return the typed error body with the error's HTTP status (Retry-After when limited).

    close: ask the server to close the connection after the answer (the request body was not
    read to its end, so the connection cannot carry another request). headers: added as given
    (e.g. Allow on a 405); extra: more body fields (e.g. details).
    """
    out = dict(headers or {})
    if isinstance(exc, RateLimited):
        out["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
    if close:
        out["Connection"] = "close"
    return JSONResponse({**exc.to_dict(), **extra}, status_code=exc.status, headers=out)
