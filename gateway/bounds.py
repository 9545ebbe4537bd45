"""Input limits shared by the API, the bundle verifier and the audit: integers, JSON, metadata.

Every byte string or number that reaches the gateway from outside (an HTTP request, a bundle
file, a ledger file under audit) passes one of these checks before anything else looks at it, so
that a hostile input gets a typed error with a stable code and never a traceback, a 500 or an
unbounded allocation. The caller chooses the error class (RequestError in the API, BundleError in
the verifier, ...) so that each surface keeps its own `kind`; the codes are the same everywhere:

    too-large      more bytes than the surface allows
    too-deep       JSON nested deeper than MAX_JSON_DEPTH
    bad-json       not UTF-8 JSON
    duplicate-key  a JSON object names a key twice (RFC 8259 4: behaviour is unpredictable)
    not-integer    a JSON number with a fraction or exponent where integers belong
    non-finite     NaN, Infinity or -Infinity (not JSON at all, RFC 8259 6)
    out-of-range   an integer outside the range its field allows (SQLite: signed 64-bit)
    bad-metadata   device metadata of the wrong shape (check_metadata)

Pure: no I/O, no clocks; importable by gateway/contracts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from gateway.errors import EdgesealError, WireError

MIN_INT64 = -(2**63)
# why: SQLite stores signed 64-bit integers; a larger Python int bound as a parameter raises
# OverflowError inside the driver, so every integer that reaches a query is checked first.
MAX_INT64 = 2**63 - 1
# why: the deepest JSON edgeseal writes is a bundle whose event causes are bundles (about 6
# levels) or a transaction's args (about 4); 32 leaves room for partners' documents and keeps
# every parser far below Python's recursion limit (1000), which a deep document otherwise hits.
MAX_JSON_DEPTH = 32
# why: a transaction body is at most 16 KiB (gateway.contracts.tx.MAX_BODY_BYTES) + 4 signatures,
# base64 inside a JSON object; 64 KiB bounds every request body with room to spare.
MAX_BODY_BYTES = 64 * 1024
# why: the largest bundle edgeseal builds is an event with MAX_CAUSES (64) cause bundles, each
# with a 64-hash inclusion proof and a short chain of successors: well under 2 MiB. 16 MiB keeps
# the verifier from reading an arbitrary file into memory while leaving a wide margin.
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
# why: metadata names a device for people (site, asset, lot, owner); 4 KiB of canonical JSON and
# 4 levels hold every profile in boards/ many times over and keep registry reads cheap.
MAX_METADATA_BYTES = 4096
MAX_METADATA_DEPTH = 4
MAX_METADATA_KEY_CHARS = 64

ErrorFactory = Callable[[str, str], EdgesealError]

# A JSON string literal (RFC 8259 7): what json_depth skips so brackets inside strings don't count.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def check_int(value: Any, what: str, error: ErrorFactory, lo: int = 0, hi: int = MAX_INT64) -> int:
    """Return value if it is an int (not a bool) with lo <= value <= hi; else raise
    error("out-of-range") (or error("not-integer") if it is not an int at all)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise error("not-integer", f"{what} must be an integer")
    if not lo <= value <= hi:
        raise error("out-of-range", f"{what} must be between {lo} and {hi}")
    return value


def json_depth(text: str) -> int:
    """Return the deepest nesting of arrays and objects in JSON text (0 for a scalar).

    Linear in len(text) and never recursive, so it is safe on any input: run it before a
    recursive parser sees the text. Unbalanced brackets give a depth, not an error (the parser
    that follows reports them).
    """
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_strict(
    data: bytes | str,
    what: str,
    error: ErrorFactory,
    *,
    max_bytes: int = MAX_BODY_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    floats: bool = False,
) -> Any:
    """Return the value of strict JSON data; raise error(code, message) with a code of the module
    doc (too-large, bad-json, too-deep, duplicate-key, not-integer, non-finite).

    Strict: UTF-8, at most max_bytes and max_depth, no duplicate object keys, no NaN/Infinity,
    and no fractions or exponents unless floats=True (then they must be finite).
    """
    size = len(data)
    if size > max_bytes:
        raise error("too-large", f"{what} is {size} bytes, over the limit of {max_bytes}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise error("bad-json", f"{what} is not UTF-8") from None
    else:
        text = data
    if json_depth(text) > max_depth:
        raise error("too-deep", f"{what} is nested deeper than {max_depth} levels")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise error("duplicate-key", f"{what} names the key {key!r} twice")
            out[key] = value
        return out

    def number(literal: str) -> float:
        if not floats:
            raise error("not-integer", f"{what} has the number {literal[:32]}, not an integer")
        value = float(literal)
        if value in (float("inf"), float("-inf")):
            raise error("non-finite", f"{what} has the number {literal[:32]}, out of range")
        return value

    def constant(literal: str) -> Any:
        raise error("non-finite", f"{what} has {literal}, which is not JSON")

    try:
        return json.loads(
            text, object_pairs_hook=pairs, parse_float=number, parse_constant=constant
        )
    except EdgesealError:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: unreachable after json_depth
        raise error("bad-json", f"{what} is not JSON: {str(exc)[:120]}") from None


def _metadata_error(code: str, message: str) -> EdgesealError:
    return WireError("bad-metadata", message)


def check_metadata(value: Any, max_bytes: int = MAX_METADATA_BYTES) -> dict[str, Any]:
    """Return device metadata if it has the allowed shape; raise WireError("bad-metadata").

    Shape: a JSON object of at most max_bytes (default MAX_METADATA_BYTES) canonical bytes and
    MAX_METADATA_DEPTH levels; keys are non-empty strings of at most MAX_METADATA_KEY_CHARS;
    values are strings, int64 integers, booleans, null, arrays or objects of the same (no floats:
    DESIGN 1, values are scaled integers; no NaN/Infinity, which JSON cannot carry).
    """
    if not isinstance(value, dict):
        raise WireError("bad-metadata", "metadata must be a JSON object")
    _check_meta_value(value, 1, "metadata")
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) > max_bytes:
        raise WireError("bad-metadata", f"metadata is over {max_bytes} bytes")
    return value


def _check_meta_value(value: Any, depth: int, where: str) -> None:
    if isinstance(value, (dict, list)):
        if depth > MAX_METADATA_DEPTH:
            raise WireError("bad-metadata", f"metadata is nested deeper than {MAX_METADATA_DEPTH}")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not 0 < len(key) <= MAX_METADATA_KEY_CHARS:
                    raise WireError(
                        "bad-metadata",
                        f"{where}: keys are strings of 1 to {MAX_METADATA_KEY_CHARS} characters",
                    )
                _check_meta_value(item, depth + 1, f"{where}.{key}")
        else:
            for i, item in enumerate(value):
                _check_meta_value(item, depth + 1, f"{where}[{i}]")
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        check_int(value, where, _metadata_error, MIN_INT64, MAX_INT64)
    else:
        raise WireError(
            "bad-metadata", f"{where}: values are strings, integers, booleans, null, lists, objects"
        )
