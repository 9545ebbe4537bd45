"""Typed errors of the gateway: each has a stable short `code` and a stable message (DESIGN 7)."""


class EdgesealError(ValueError):
    """Base of every rejection of bad input; carries a stable `code` such as "truncated".

    The HTTP layer maps these to 4xx in one place; nothing that raises one may have changed state.
    """

    kind = "error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """Return the typed error body: {"error": kind, "code": code, "message": message}."""
        return {"error": self.kind, "code": self.code, "message": self.message}


class WireError(EdgesealError):
    """Bytes that do not parse as wire format v1 (docs/wire-format.md)."""

    kind = "WireError"


class SignatureError(EdgesealError):
    """A signature, key or per-device chain that does not authenticate the record."""

    kind = "SignatureError"


class ChainError(SignatureError):
    """A record that breaks its device's hash chain or reuses a sequence number."""

    kind = "ChainError"


class ProofError(EdgesealError):
    """A Merkle proof or a checkpoint that does not verify (RFC 9162 2.1.3, 2.1.4)."""

    kind = "ProofError"


class ContractError(EdgesealError):
    """A participant transaction or entry that a contract rejects."""

    kind = "ContractError"
