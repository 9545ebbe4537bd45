"""A participant's client of the gateway API: keys, signed transactions, reads, typed errors.

Everything a bank, an insurer, a grower or a market participant does over the API
(docs/participants.md): create a key file, build and sign a transaction (gateway.txformat, the
one implementation of the format the gateway verifies), submit it, wait until a checkpoint
covers it, read contracts and their events, fetch proof bundles and EPCIS documents. It imports
nothing of the server (no FastAPI, node or ledger store; tests/test_architecture.py).

Errors: an answer of the API becomes the gateway.errors class its body names (`error` kind and
HTTP status: ContractError 422 for a rejected transaction, TxError for a malformed or clock-
skewed one, RateLimited, ServiceUnavailable, NotFound, ...), with the API's stable `code` and
`message`; a gateway that cannot be reached is a ClientError("unreachable"). 429 and 503 are
retried with exponential backoff (honouring Retry-After) up to `max_retries` times.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from nacl.signing import SigningKey

from gateway import errors
from gateway.errors import EdgesealError, RateLimited, ServiceUnavailable
from gateway.files import SECRET_FILE_MODE, create_exclusive, write_atomically
from gateway.txformat import MAX_SAFE_INT, make_tx

DEFAULT_URL = "http://127.0.0.1:8000"
# why: a submit is one durable commit (milliseconds); 30 s covers a Pi under load and a slow link
TIMEOUT_S = 30.0
# why: the gateway's rate limits refill within seconds (docs/api.md); 6 tries with backoff
# 0.25 s doubling to at most 8 s wait about 16 s in all before the error reaches the caller
MAX_RETRIES = 6
BACKOFF_S = 0.25
MAX_BACKOFF_S = 8.0
# why: a checkpoint follows every batch within about a second (docs/ledger.md); 60 s is a
# gateway that is stuck, not slow
WAIT_INTEGRATED_S = 60.0
POLL_S = 0.2
# why: the largest answers a participant reads are a bundle (bounds.MAX_BUNDLE_BYTES, 16 MiB)
# and a contract with its full data; a bound keeps a hostile server from filling memory
MAX_RESPONSE_BYTES = 32 << 20
KEY_FILE_TYPE = "edgeseal-participant-key"
RETRY_STATUSES = frozenset({429, 503})


class ClientError(EdgesealError):
    """A failure on the participant's side of the API: the gateway is unreachable
    ("unreachable"), answered something that is not the API's ("bad-response"), a key file is
    unusable ("bad-key-file", "key-file-exists"), or a wait ran out ("timeout")."""

    kind = "ClientError"


# The API's error kinds (docs/api.md, Errors) -> the class for each status, so that a caller
# catches exactly what the server raised (a TxError is a 400 ContractError, and so on).
_ERROR_CLASSES: dict[str, dict[int, type[EdgesealError]]] = {
    "WireError": {400: errors.WireError, 409: errors.RegistryConflict},
    "SignatureError": {400: errors.SignatureError},
    "ChainError": {400: errors.ChainError},
    "ProofError": {400: errors.ProofError},
    "BundleError": {400: errors.BundleError, 409: errors.NotIntegrated},
    "ContractError": {422: errors.ContractError, 400: errors.TxError, 404: errors.UnknownLot},
    "RequestError": {
        400: errors.RequestError,
        408: errors.RequestTimeout,
        409: errors.WrongContractType,
        413: errors.TooLarge,
    },
    "NotFound": {404: errors.NotFound},
    "AuthError": {401: errors.AuthError},
    "Unavailable": {503: errors.ServiceUnavailable},
    "EpcisError": {400: errors.EpcisError},
}


def error_from_response(status: int, body: Any, retry_after_s: float | None) -> EdgesealError:
    """Return the typed error of an API error answer (status, parsed JSON body or None).

    A body naming a known kind gives that class (chosen by status), with the body's code and
    message; anything else (a proxy's HTML, uvicorn's plain 503) gives the class the status
    implies, with code "http-<status>".
    """
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code, message = body["code"][:100], str(body.get("message", ""))[:2000]
        kind = body.get("error")
    else:
        code, message, kind = f"http-{status}", f"the gateway answered HTTP {status}", None
    if status == 429 or kind == "RateLimited":
        return RateLimited(message, retry_after_s or 0.0)
    by_status = _ERROR_CLASSES.get(kind, {}) if isinstance(kind, str) else {}
    cls = by_status.get(status)
    if cls is None:
        cls = {
            401: errors.AuthError,
            404: errors.NotFound,
            422: errors.ContractError,
            503: ServiceUnavailable,
        }.get(status, errors.RequestError)
    return cls(code, message)


# ---- keys ------------------------------------------------------------------------------------


def create_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """Create a new participant key file at path (mode 0600, never overwriting); return the key.

    The file is JSON: {"type": KEY_FILE_TYPE, "v": 1, "seed": <32-byte Ed25519 seed, hex>,
    "public_key": <hex>}. Raises ClientError("key-file-exists") if path exists, OSError if it
    cannot be written.
    """
    key = SigningKey.generate()
    doc = {
        "type": KEY_FILE_TYPE,
        "v": 1,
        "seed": bytes(key).hex(),
        "public_key": bytes(key.verify_key).hex(),
    }
    data = (json.dumps(doc, indent=1) + "\n").encode()
    try:  # all or nothing: a crash never leaves a half-written key under the name
        create_exclusive(os.fspath(path), data, SECRET_FILE_MODE)
    except FileExistsError:
        raise ClientError("key-file-exists", f"{path} exists; not overwriting a key") from None
    return key


def load_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """Return the signing key of a participant key file (create_key_file's format).

    Raises ClientError("bad-key-file") if it is not one, or readable by group or others (a key
    others can read is not the participant's alone); OSError if it cannot be read.
    """
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClientError(
            "bad-key-file", f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it"
        )
    with open(path, "rb") as f:
        raw = f.read(4096)
    try:
        doc = json.loads(raw)
        seed = bytes.fromhex(doc["seed"])
        if doc.get("type") != KEY_FILE_TYPE or len(seed) != 32:
            raise ValueError("not a participant key")
        key = SigningKey(seed)
        if bytes(key.verify_key).hex() != doc.get("public_key"):
            raise ValueError("public_key does not match the seed")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ClientError("bad-key-file", f"{path} is not a participant key file: {exc}") from None
    return key


def public_key_hex(key: SigningKey) -> str:
    """Return the participant id of key: its Ed25519 public key, 64 lowercase hex digits."""
    return bytes(key.verify_key).hex()


class NonceFile:
    """The last nonce a key used, kept beside its key file (`<key file>.nonce`).

    Nonces must rise per participant (gaps allowed, docs/contracts.md). The next one is the
    larger of the last used + 1 and the time in milliseconds, so a key used from two machines
    or after losing this file still gets nonces the gateway accepts.
    """

    def __init__(self, key_path: str | os.PathLike[str]) -> None:
        self.path = Path(f"{os.fspath(key_path)}.nonce")

    def last(self) -> int:
        """Return the last nonce recorded (0 if none or unreadable)."""
        try:
            value = int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0
        return value if 0 <= value <= MAX_SAFE_INT else 0

    def next(self, now_ms: int | None = None) -> int:
        """Return the next nonce and record it (before it is used: a crash never reuses one)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        nonce = max(self.last() + 1, now)
        self.record(nonce)
        return nonce

    def record(self, nonce: int) -> None:
        """Record nonce as used (an explicit --nonce), unless a higher one is recorded."""
        value = max(self.last(), nonce)
        # durable before the nonce is used: after a power cut the file must not say less
        write_atomically(str(self.path), f"{value}\n".encode(), SECRET_FILE_MODE)


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """An accepted transaction: its log index, hash and the contract events it caused."""

    index: int
    tx_hash: str
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class TxStatus:
    """Where an accepted transaction is: index, event indexes, whether a checkpoint covers it."""

    tx_hash: str
    index: int
    events: list[int]
    integrated: bool


@dataclass
class Response:
    """A successful API answer: status, headers, body bytes, and the gateway's clock (Date)."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    server_time_s: float | None = field(default=None)

    def json(self) -> Any:
        """Return the body as JSON; raise ClientError("bad-response") if it is not JSON."""
        try:
            return json.loads(self.content)
        except ValueError:
            raise ClientError("bad-response", "the gateway's answer is not JSON") from None


def _server_time_s(headers: Mapping[str, str]) -> float | None:
    value = headers.get("date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if 0 <= value <= 3600 else None


# ---- the client ------------------------------------------------------------------------------


class Client:
    """The gateway API for one participant tool (docs/api.md). Thread-compatible, not shared.

    base_url: the gateway (http://host:port); transport: an httpx transport (tests pass the app
    in process: httpx.ASGITransport is async, so they run a real server instead); sleep: what
    waits between retries (seconds); on_retry(status, wait_s): called before each retry.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout_s: float = TIMEOUT_S,
        max_retries: int = MAX_RETRIES,
        backoff_s: float = BACKOFF_S,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int, float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.on_retry = on_retry
        self.last_server_time_s: float | None = None
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> Response:
        """Return the answer to one API request, retrying 429 and 503 with backoff.

        Raises the typed error of an error answer (error_from_response), ClientError
        ("unreachable") when no answer comes, ("bad-response") for an oversized one.
        """
        attempt = 0
        while True:
            try:
                with self._http.stream(method, path, **kw) as resp:
                    content = self._read_bounded(resp)
                    headers = {k.lower(): v for k, v in resp.headers.items()}
                    status = resp.status_code
            except httpx.HTTPError as exc:
                raise ClientError(
                    "unreachable", f"cannot reach the gateway at {self.base_url}: {exc}"
                ) from None
            server_time = _server_time_s(headers)
            if server_time is not None:
                self.last_server_time_s = server_time
            if status < 400:
                return Response(status, headers, content, server_time)
            retry_after = _retry_after_s(headers)
            if status in RETRY_STATUSES and attempt < self.max_retries:
                wait_s = min(MAX_BACKOFF_S, self.backoff_s * 2**attempt)
                if retry_after is not None:
                    wait_s = min(MAX_BACKOFF_S, max(wait_s, retry_after))
                if self.on_retry is not None:
                    self.on_retry(status, wait_s)
                self.sleep(wait_s)
                attempt += 1
                continue
            try:
                body = json.loads(content)
            except ValueError:
                body = None
            raise error_from_response(status, body, retry_after)

    @staticmethod
    def _read_bounded(resp: httpx.Response) -> bytes:
        chunks, total = [], 0
        for chunk in resp.iter_bytes():
            total += len(chunk)
            if total > MAX_RESPONSE_BYTES:
                raise ClientError("bad-response", f"answer over {MAX_RESPONSE_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def get_json(self, path: str, **params: Any) -> Any:
        """Return the JSON answer of GET path?params."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    # ---- reads -------------------------------------------------------------------------------

    def gateway(self) -> dict[str, Any]:
        """Return GET /v1/gateway: origin, vkey, sizes, state hash."""
        return self.get_json("/v1/gateway")

    def participants(self) -> dict[str, Any]:
        """Return the registered participants: public key hex -> {name, roles, registered_at}."""
        return self.get_json("/v1/participants")["participants"]

    def contracts(self) -> list[dict[str, Any]]:
        """Return every contract instance, summarised."""
        return self.get_json("/v1/contracts")["contracts"]

    def contract(self, contract_id: str) -> dict[str, Any]:
        """Return one contract instance with params and data; raise NotFound."""
        return self.get_json(f"/v1/contracts/{_segment(contract_id)}")

    def contract_events(
        self, contract_id: str | None = None, since: int = -1, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Return every contract event after index since (all pages), oldest first."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.get_json(
                "/v1/contract-events", contract=contract_id, since=since, limit=limit
            )
            out += page["events"]
            if len(page["events"]) < limit:
                return out
            since = page["next"]

    def view(self, contract_id: str, path: str) -> Any:
        """Return a contract type's view (GET /v1/contracts/{id}/{path}, e.g. "lots")."""
        return self.get_json(f"/v1/contracts/{_segment(contract_id)}/{path.lstrip('/')}")

    def epcis(self, contract_id: str) -> dict[str, Any]:
        """Return the EPCIS 2.0 document of an agri contract (GET /v1/contracts/{id}/epcis)."""
        return self.get_json(f"/v1/contracts/{_segment(contract_id)}/epcis")

    def tx_status(self, tx_hash: str) -> TxStatus:
        """Return where an accepted transaction is; raise NotFound if none has this hash."""
        body = self.get_json(f"/v1/transactions/{_segment(tx_hash)}")
        return TxStatus(body["tx_hash"], body["index"], list(body["events"]), body["integrated"])

    def bundle(self, index: int, wait_s: float = WAIT_INTEGRATED_S) -> bytes:
        """Return the proof bundle bytes of entry index, exactly as served (to be verified with
        gateway.bundle.verify_bundle_bytes); waits up to wait_s while it is not integrated."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.request("GET", f"/v1/bundle/{int(index)}").content
            except errors.NotIntegrated:
                if time.monotonic() >= deadline:
                    raise
                self.sleep(POLL_S)

    # ---- writes ------------------------------------------------------------------------------

    def submit(self, payload: bytes) -> Submitted:
        """Submit a signed transaction payload (n_sigs || signatures || body); return where it
        went. Raises ContractError (422: the contract refused it, nothing appended), TxError
        (400: malformed, badly signed or "tx-clock-skew"), RateLimited after the retries."""
        body = {"payload": base64.b64encode(payload).decode()}
        answer = self.request("POST", "/v1/transactions", json=body).json()
        return Submitted(answer["index"], answer["tx_hash"], list(answer["events"]))

    def wait_integrated(self, tx_hash: str, timeout_s: float = WAIT_INTEGRATED_S) -> TxStatus:
        """Return the transaction's status once a checkpoint covers it; raise
        ClientError("timeout") if none does within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.tx_status(tx_hash)
            if status.integrated:
                return status
            if time.monotonic() >= deadline:
                raise ClientError("timeout", f"no checkpoint covers {tx_hash} after {timeout_s} s")
            self.sleep(POLL_S)

    def transact(
        self,
        keys: Sequence[SigningKey],
        contract: str,
        action: str,
        args: dict[str, Any],
        *,
        nonce: int,
        time_s: int | None = None,
        wait: bool = True,
    ) -> tuple[Submitted, TxStatus | None]:
        """Build, sign (keys[0] sends, keys[1:] cosign), submit and (wait=True) wait until a
        checkpoint covers the transaction; return (Submitted, TxStatus or None)."""
        when = int(time.time()) if time_s is None else time_s
        payload = make_tx(keys, nonce, contract, action, args, when)
        done = self.submit(payload)
        return done, self.wait_integrated(done.tx_hash) if wait else None


def _segment(value: str) -> str:
    """Return value as one URL path segment (percent-encoded), so an id cannot change the path."""
    return quote(str(value), safe="")
