"""Typed errors of the gateway: each has a stable short `code`, a stable message and its HTTP status.

Every rejection of bad input raises one of these (DESIGN 7). `kind` is the class name a client
sees in the error body; `status` is the HTTP status the API's one handler answers with
(docs/api.md, Errors). A subclass that only changes the status keeps its parent's `kind`, so a
client keeps telling errors apart by kind and code.
"""


class EdgesealError(ValueError):
    """Base of every rejection of bad input; carries a stable `code` such as "truncated".

    The HTTP layer maps these to their `status` in one place; nothing that raises one may have
    changed state.
    """

    kind = "error"
    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """Return the typed error body: {"error": kind, "code": code, "message": message}."""
        return {"error": self.kind, "code": self.code, "message": self.message}


# ---- bytes and signatures -------------------------------------------------------------------


class WireError(EdgesealError):
    """Bytes that do not parse as wire format v1 (docs/wire-format.md)."""

    kind = "WireError"


class RegistryConflict(WireError):
    """An enrollment or revocation the registry already holds ("already-enrolled",
    "already-revoked")."""

    status = 409


class SignatureError(EdgesealError):
    """A signature, key or per-device chain that does not authenticate the record."""

    kind = "SignatureError"


class ChainError(SignatureError):
    """A record that breaks its device's hash chain or reuses a sequence number."""

    kind = "ChainError"


# ---- proofs and bundles ---------------------------------------------------------------------


class ProofError(EdgesealError):
    """A Merkle proof or a checkpoint that does not verify (RFC 9162 2.1.3, 2.1.4)."""

    kind = "ProofError"


class BundleError(EdgesealError):
    """A proof bundle that is malformed or does not verify."""

    kind = "BundleError"


class NotIntegrated(BundleError):
    """A bundle asked for an entry no checkpoint covers yet ("not-integrated"): retry soon."""

    status = 409


# ---- contracts ------------------------------------------------------------------------------


class ContractError(EdgesealError):
    """A participant transaction or entry that a contract rejects (nothing was appended)."""

    kind = "ContractError"
    status = 422


class TxError(ContractError):
    """A transaction that does not decode: malformed, not canonical, badly signed, or dated
    too far from the gateway's clock. The request itself is bad, so 400, not 422."""

    status = 400


class UnknownLot(ContractError):
    """A read of a lot the tracing contract does not hold ("unknown-lot")."""

    status = 404


class EpcisError(EdgesealError):
    """A GS1 EPCIS 2.0 document or event that cannot become a participant transaction
    (gateway/contracts/epcis.py): not EPCIS, an event type or business step without a
    contract action, a value out of bounds."""

    kind = "EpcisError"


# ---- the HTTP API ---------------------------------------------------------------------------


class RequestError(EdgesealError):
    """A request the API cannot take: bad parameters, unknown route, wrong method."""

    kind = "RequestError"


class WrongContractType(RequestError):
    """A per-contract route asked of a contract of another type ("wrong-contract-type")."""

    status = 409


class TooLarge(RequestError):
    """A request body over the API's limit ("too-large")."""

    status = 413


class RequestTimeout(RequestError):
    """A request body that did not arrive in time ("request-timeout"): a slow client."""

    status = 408


class NotFound(EdgesealError):
    """No such entry, device, contract, lot or transaction."""

    kind = "NotFound"
    status = 404


class AuthError(EdgesealError):
    """An admin request without a valid operator token."""

    kind = "AuthError"
    status = 401


class RateLimited(EdgesealError):
    """Too many writes from one participant or client address; retry after retry_after_s."""

    kind = "RateLimited"
    status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__("rate-limited", message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(EdgesealError):
    """The gateway is starting or stopping and cannot take writes."""

    kind = "Unavailable"
    status = 503


# ---- start-up -------------------------------------------------------------------------------


class StartupRefused(EdgesealError):
    """The gateway refuses to start because its files disagree with what it signed or acked,
    or a secret is missing or unusable (docs/operations.md, Recovery). Never raised by a request;
    `edgeseal serve` exits with the code gateway.server.exit_code_for(code) gives.

    Codes: "ledger-missing", "ledger-behind-checkpoint", "ledger-fork", "bad-checkpoint-file",
    "ledger-unreadable", "acked-data-lost", "key-missing", "bad-operator-token", "bad-link-key"
    (data_dir/link.key is not 32 bytes: gateway/ble/auth.py), "bad-mqtt-url",
    "bad-mqtt-topic-prefix", "bad-mqtt-cursor" (the MQTT bridge: gateway/mqtt/).
    """

    kind = "StartupRefused"
    status = 503
