"""Command authentication of BLE protocol v2 (docs/ble-protocol.md, Authenticated commands).

Every control write is `command || counter u8 || tag 12`, where
tag = HMAC-SHA256(link_key, DOMAIN || device_id || nonce || counter || command)[0:12], nonce is the
16 random bytes the board drew when the connection opened (published in Info) and counter is
strictly increasing within the connection. A tag therefore holds for one board, one connection
and one position in it: a captured write is useless on any other connection, and refused as a
replay on its own. HMAC-SHA256 over the port's native hashlib.sha256 (no hmac module on
MicroPython): two short hashes, no big temporaries.
"""

import hashlib
import struct

from micropython import const

_DOMAIN = const(
    b"edgeseal/v2/cmd"
)  # 15 bytes: separates command tags from any other use of the key
_LINK_KEY_BYTES = const(32)
_NONCE_BYTES = const(16)
_COUNTER_BYTES = const(1)
# why 12: the longest write (SEND_FROM, 7 bytes) + counter + tag fits the 20 bytes of one ATT
# write at the default MTU 23, so no stack needs long (prepare/execute) writes; a 96-bit tag
# (as HMAC-SHA1-96 in IPsec) cannot be forged online: each try is a BLE round trip and the board
# drops a central that has not authenticated after AUTH_TIMEOUT_MS (~1,000 tries per connection).
TAG_BYTES = const(12)
_TRAILER_BYTES = const(13)  # counter + tag after the command
_BLOCK_BYTES = const(64)  # SHA-256 block size (HMAC pads the key to it)

# check() results: OK, or why the write was refused (the peripheral counts each refusal). Constants
# no other firmware module reads are private: a private const() takes no RAM on a board
# (firmware/peripheral.py keeps copies of _NONCE_BYTES and _TRAILER_BYTES, pinned by
# tests/firmware/test_cmdauth.py; AUTH_OK and TAG_BYTES stay public for tools/bench_cmdauth.py).
AUTH_OK = const(0)
_AUTH_NO_KEY = const(1)  # no link key installed: every command is refused
_AUTH_SHORT = const(2)  # too short to carry a command, a counter and a tag
_AUTH_BAD_TAG = const(3)  # the tag does not match (wrong key, nonce, counter or bytes)
_AUTH_REPLAY = const(4)  # the counter is not above the last accepted one of this connection
_AUTH_NO_SESSION = const(5)  # no connection is open (no nonce drawn)


def _pad(key, byte):
    """Return the 64-byte HMAC pad of key (<= 64 bytes) XORed with byte."""
    out = bytearray(_BLOCK_BYTES)
    for i in range(_BLOCK_BYTES):
        out[i] = (key[i] if i < len(key) else 0) ^ byte
    return bytes(out)


def equal_ct(a, b, n):
    """Return True when the first n bytes of a and b are equal; the time does not depend on where
    they differ (precondition: both hold at least n bytes)."""
    diff = 0
    for i in range(n):
        diff |= a[i] ^ b[i]
    return diff == 0


class CommandAuth:
    """Checks the control writes of one board, one connection at a time.

    link_key: the board's 32-byte link key (keystore.load_link_key), or None when none is
    installed (then check() refuses everything). dev_id: the 16-byte device id.
    """

    def __init__(self, link_key, dev_id):
        if len(dev_id) != 16:
            raise ValueError("device id must be 16 bytes")
        if link_key is not None and len(link_key) != _LINK_KEY_BYTES:
            raise ValueError("link key must be 32 bytes")
        self._dev_id = bytes(dev_id)
        self._ipad = None if link_key is None else _pad(link_key, 0x36)
        self._opad = None if link_key is None else _pad(link_key, 0x5C)
        self.nonce = bytes(_NONCE_BYTES)  # the current connection's nonce (Info shows it)
        self._open = False
        self._last_counter = 0

    @property
    def has_key(self):
        """True when a link key is installed."""
        return self._ipad is not None

    def new_session(self, nonce):
        """Start a connection with nonce (16 fresh random bytes); returns nothing. The counter
        starts over: the first command of the connection carries a counter >= 1 (so a connection
        takes at most 255 commands; the gateway sends fewer than 10)."""
        if len(nonce) != _NONCE_BYTES:
            raise ValueError("nonce must be 16 bytes")
        self.nonce = bytes(nonce)
        self._open = True
        self._last_counter = 0

    def end_session(self):
        """Forget the connection (after a disconnect): nothing is accepted until new_session()."""
        self._open = False

    def tag(self, nonce, counter, command):
        """Return the full 32-byte HMAC-SHA256 of a command (bytes-like) with counter (u8) under
        nonce (16 bytes); the wire carries its first 16 bytes. Precondition: has_key."""
        h = hashlib.sha256(self._ipad)
        h.update(_DOMAIN)
        h.update(self._dev_id)
        h.update(nonce)
        h.update(struct.pack(">B", counter))
        h.update(command)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return h.digest()

    def check(self, write):
        """Return AUTH_OK when write (bytes-like) carries a command whose tag holds for this
        connection and whose counter is new, and then accept that counter; else the AUTH_* reason,
        and nothing changes. The command is write[:len(write) - _TRAILER_BYTES]."""
        if self._ipad is None:
            return _AUTH_NO_KEY
        if not self._open:
            return _AUTH_NO_SESSION
        n = len(write) - _TRAILER_BYTES
        if n < 1:
            return _AUTH_SHORT
        mv = memoryview(write)
        counter = write[n]
        full = self.tag(self.nonce, counter, mv[:n])
        if not equal_ct(full, mv[n + _COUNTER_BYTES :], TAG_BYTES):
            return _AUTH_BAD_TAG
        if counter <= self._last_counter:  # after the tag: only the gateway learns about replays
            return _AUTH_REPLAY
        self._last_counter = counter
        return AUTH_OK
