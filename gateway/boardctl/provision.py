"""`edgeseal board provision` and `info`: read the board's identity over USB, check its
self-signed attestation, enroll it with the gateway's API and install its link key; idempotent.

Where the link key comes from: provisioning runs on the gateway host and derives the board's
key from the gateway's master secret (data_dir/link.key, gateway/ble/auth.py derive_link_key).
There is deliberately no API that hands out link keys: with one, whoever holds the operator token
(a bearer token on the network) could command every board, silently, since commands are not in
the log, while enrollments are. The master never leaves the host; the key travels over the USB
cable only. Order: enroll first, then install the key, so a refused enrollment changes nothing
on the board; a re-run finishes whatever an interrupted run left undone.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from gateway.ble.auth import LINK_KEY_FILE, MASTER_BYTES, derive_link_key
from gateway.boardctl.errors import (
    BAD_ATTESTATION,
    ENROLL_REFUSED,
    GATEWAY_UNREACHABLE,
    KEY_CONFLICT,
    NO_MASTER,
    VERIFY_FAILED,
    BoardError,
)
from gateway.boardctl.link import BoardLink
from gateway.wire import device_id_for

# The same constants as firmware/provision.py (the gateway does not import firmware code; a test
# pins that they agree).
ATTEST_DOMAIN = b"edgeseal/v1/attest"
LINK_ID_DOMAIN = b"edgeseal/v1/link-id"
HTTP_TIMEOUT_S = 30
# why: the first identity makes the key and the signing table on an ESP32 (~3 s); generous
IDENTITY_TIMEOUT_S = 120
_IDENTITY = "from firmware import provision\nprovision.print_identity({create})\n"
_INSTALL = "from firmware import provision\nprovision.print_install_link_key({key!r})\n"
_INSTALL_RELEASE = "from firmware import provision\nprovision.print_install_release_key({key!r})\n"


@dataclass(frozen=True)
class Identity:
    """What the board says about itself (hex decoded); public_key None when it has no key yet."""

    public_key: bytes | None
    device_id: bytes | None
    mac: bytes
    firmware_hash: bytes
    attestation: bytes | None
    link_key_id: bytes | None
    release_key: bytes | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Identity:
        """Return the Identity of the board's JSON; raise BoardError(BAD_ATTESTATION) if malformed."""
        try:
            v = {k: None if d[k] is None else bytes.fromhex(d[k]) for k in _FIELDS}
            mac, fw = v["mac"], v["firmware_hash"]
            if mac is None or fw is None:
                raise ValueError("no mac or firmware hash")
        except (KeyError, TypeError, ValueError) as exc:
            raise BoardError(BAD_ATTESTATION, f"malformed identity from the board: {exc}") from None
        return cls(
            v["public_key"], v["device_id"], mac, fw, v["attestation"], v["link_key_id"],
            v["release_key"],
        )  # fmt: skip


_FIELDS = (
    "public_key", "device_id", "mac", "firmware_hash", "attestation", "link_key_id", "release_key",
)  # fmt: skip


def read_identity(link: BoardLink, create: bool) -> Identity:
    """Return the board's identity, making its key first when create (firmware/provision.py)."""
    code = _IDENTITY.format(create=bool(create))
    return Identity.from_json(link.exec_json(code, IDENTITY_TIMEOUT_S))


def verify_attestation(ident: Identity) -> None:
    """Return None when the attestation is the board key's Ed25519 signature of (domain, device
    id, MAC, firmware hash) and device_id = SHA-256(public key)[0:16]; raise BAD_ATTESTATION."""
    pk, sig = ident.public_key, ident.attestation
    dev = ident.device_id
    if pk is None or sig is None or dev is None or len(pk) != 32 or len(sig) != 64:
        raise BoardError(BAD_ATTESTATION, "the board sent no key or no attestation")
    if dev != device_id_for(pk):
        raise BoardError(BAD_ATTESTATION, "device id is not SHA-256(public key)[0:16]")
    msg = ATTEST_DOMAIN + dev + ident.mac + ident.firmware_hash
    try:
        crypto_sign_open(sig + msg, pk)
    except BadSignatureError:
        raise BoardError(BAD_ATTESTATION, "the attestation signature does not verify") from None


def link_key_id(key: bytes) -> bytes:
    """Return the public fingerprint of a link key (firmware/provision.py link_key_id)."""
    return hashlib.sha256(LINK_ID_DOMAIN + key).digest()[:8]


def read_master(data_dir: Path) -> bytes:
    """Return the gateway's link master from data_dir/link.key; raise BoardError(NO_MASTER)."""
    path = Path(data_dir) / LINK_KEY_FILE
    try:
        master = path.read_bytes()
    except OSError as exc:
        raise BoardError(
            NO_MASTER,
            f"cannot read {path} ({exc.strerror}): run provision on the gateway host, as a user "
            "who may read the gateway's data directory (--data-dir)",
        ) from None
    if len(master) != MASTER_BYTES:
        raise BoardError(NO_MASTER, f"{path} holds {len(master)} bytes, not {MASTER_BYTES}")
    return master


class GatewayClient:
    """The gateway's device API (docs/api.md): read a device, enroll one with the operator token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._token = token

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return json.loads(resp.read())

    def device(self, dev_id: bytes) -> dict[str, Any] | None:
        """Return the device's registry entry, None when it is not enrolled."""
        try:
            return self._call("GET", "/v1/devices/" + dev_id.hex())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise BoardError(GATEWAY_UNREACHABLE, f"GET device: {_reason(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BoardError(GATEWAY_UNREACHABLE, f"no answer from {self.url}: {exc}") from None

    def enroll(self, public_key: bytes, metadata: dict[str, Any]) -> dict[str, Any]:
        """Enroll public_key; return the answer ({device_id, index}); raise ENROLL_REFUSED."""
        body = {"public_key": public_key.hex(), "metadata": metadata}
        try:
            return self._call("POST", "/v1/devices", body)
        except urllib.error.HTTPError as exc:
            raise BoardError(ENROLL_REFUSED, f"the gateway refused: {_reason(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BoardError(GATEWAY_UNREACHABLE, f"no answer from {self.url}: {exc}") from None


def _reason(exc: urllib.error.HTTPError) -> str:
    """Return "<status> <code>: <message>" of an API error answer."""
    try:
        err = json.loads(exc.read())
        return f"{exc.code} {err.get('code')}: {err.get('message')}"
    except (ValueError, OSError, AttributeError):
        return f"{exc.code} {exc.reason}"


@dataclass
class Outcome:
    """What provision did: the device id and the changes made ([] = it was provisioned)."""

    device_id: str
    changes: list[str] = field(default_factory=list)


def provision(
    link: BoardLink,
    gateway: GatewayClient,
    master: bytes,
    metadata: dict[str, Any],
    release_key: bytes | None = None,
) -> Outcome:
    """Bring the board on link to enrolled-with-its-link-key (and release_key, the 32-byte OTA
    release public key, when given: docs/ota.md); return what changed.

    The board's key is made first if it has none (its own firmware code, radio on). Raises
    BoardError: BAD_ATTESTATION, KEY_CONFLICT (the gateway holds another key for this id or
    revoked it), ENROLL_REFUSED, GATEWAY_UNREACHABLE, VERIFY_FAILED (the key did not read back).
    """
    ident = read_identity(link, create=True)
    verify_attestation(ident)
    assert ident.public_key is not None and ident.device_id is not None
    out = Outcome(ident.device_id.hex())
    known = gateway.device(ident.device_id)
    if known is not None and known.get("public_key") != ident.public_key.hex():
        raise BoardError(KEY_CONFLICT, f"the gateway holds another key for {out.device_id}")
    if known is not None and known.get("status") != "active":
        raise BoardError(KEY_CONFLICT, f"device {out.device_id} is {known.get('status')}")
    if known is None:
        meta = dict(metadata, mac=ident.mac.hex(), firmware_hash=ident.firmware_hash.hex())
        meta["attestation"] = ident.attestation.hex() if ident.attestation else None
        answer = gateway.enroll(ident.public_key, meta)
        out.changes.append(f"enrolled at log index {answer.get('index')}")
    key = derive_link_key(master, ident.device_id)
    want = link_key_id(key)
    if ident.link_key_id != want:
        got = link.exec_json(_INSTALL.format(key=key.hex()))
        if got.get("link_key_id") != want.hex():
            raise BoardError(VERIFY_FAILED, "the link key did not read back on the board")
        out.changes.append("link key installed")
    if release_key is not None and ident.release_key != release_key:
        got = link.exec_json(_INSTALL_RELEASE.format(key=release_key.hex()))
        if got.get("release_key") != release_key.hex():
            raise BoardError(VERIFY_FAILED, "the release key did not read back on the board")
        out.changes.append(f"release key {release_key.hex()[:16]}... installed")
    return out
