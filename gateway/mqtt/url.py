"""The MQTT bridge's broker URL (mqtt://user:pass@host:port, mqtts://...) and topic prefix.

Imports nothing but gateway.errors, so gateway.config can check a configured URL cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from gateway.errors import StartupRefused

SCHEME_PORTS = {"mqtt": 1883, "mqtts": 8883}  # IANA: 1883 plain, 8883 MQTT over TLS
# why: MQTT 3.1.1 2.2.3/1.5.3 limit a topic to 65535 UTF-8 bytes; the prefix leaves room for the
# device and contract parts of every topic built on it.
MAX_PREFIX_BYTES = 512
MAX_URL_CHARS = 2048  # why: bounds what a hostile config value can make the parser walk


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed broker URL: where to connect, whether with TLS, and the credentials (if any)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never logged

    def display(self) -> str:
        """Return the URL without credentials (for logs and the cursor's destination key)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def _bad(message: str) -> StartupRefused:
    return StartupRefused("bad-mqtt-url", message)


def parse_broker_url(url: str) -> BrokerUrl:
    """Return the BrokerUrl of `mqtt://[user[:pass]@]host[:port]` or `mqtts://...`.

    Raises StartupRefused("bad-mqtt-url") for any other scheme, a missing host, a bad port, a
    path, query or fragment, or control characters. User and password are percent-decoded.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise _bad(f"the MQTT URL must be a string of 1..{MAX_URL_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise _bad("the MQTT URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _bad(f"the MQTT URL does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEME_PORTS:
        raise _bad(f"the MQTT URL scheme must be mqtt or mqtts, not {parts.scheme!r}")
    if not parts.hostname:
        raise _bad("the MQTT URL names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _bad("the MQTT URL must not carry a path, query or fragment")
    if port == 0:
        raise _bad("the MQTT URL port must be 1..65535")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerUrl(
        host=parts.hostname,
        port=port or SCHEME_PORTS[scheme],
        tls=scheme == "mqtts",
        username=username,
        password=password,
    )


def check_topic_prefix(prefix: str) -> str:
    """Return prefix if it can start every topic the bridge publishes; raise
    StartupRefused("bad-mqtt-topic-prefix") if it is empty, starts or ends with '/', has an empty
    level, holds a wildcard ('+', '#', MQTT 3.1.1 4.7.1), NUL, or exceeds MAX_PREFIX_BYTES."""
    code = "bad-mqtt-topic-prefix"
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise StartupRefused(code, "the topic prefix must be levels joined by '/', none empty")
    if any(c in prefix for c in "+#\x00"):
        raise StartupRefused(code, "the topic prefix must not contain '+', '#' or NUL")
    try:
        size = len(prefix.encode("utf-8"))
    except UnicodeEncodeError:
        raise StartupRefused(code, "the topic prefix is not valid UTF-8") from None
    if size > MAX_PREFIX_BYTES:
        raise StartupRefused(code, f"the topic prefix exceeds {MAX_PREFIX_BYTES} bytes")
    return prefix
