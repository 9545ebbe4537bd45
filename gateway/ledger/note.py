"""C2SP signed notes and tlog checkpoints with Ed25519 keys, and the gateway's key file.

Formats (c2sp.org/signed-note, c2sp.org/tlog-checkpoint; the same as Go's
golang.org/x/mod/sumdb/note, so its verifiers accept our notes):

- note: text ending in "\\n", a blank line, then signature lines
  "\u2014 <key name> <base64(key id (4 bytes, big-endian) || Ed25519 signature (64 bytes))>\\n";
  the signature covers the text including its final newline.
- key id = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4].
- verifier key (vkey): "<name>+<key id, 8 lowercase hex>+<base64(0x01 || public key)>".
- signer key (skey, our key file): "PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>".
- checkpoint text: "<origin>\\n<tree size, decimal>\\n<base64 root hash>\\n" followed by
  optional non-empty extension lines; the log signs it with a key whose name is the origin.

Verification failures raise ProofError (codes "bad-note", "bad-signature", "unknown-key",
"duplicate-verifier", "bad-checkpoint", "bad-vkey"); key file problems raise KeyFileError.
`open_note` follows Go's note.Open: it reports which known keys signed and which signatures
are by unknown keys (OpenedNote).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from gateway.bounds import MAX_INT64
from gateway.errors import ProofError
from gateway.files import create_exclusive
from gateway.ledger.merkle import HASH_SIZE

ALG_ED25519 = 0x01  # c2sp.org/signed-note signature type for Ed25519
SIG_PREFIX = "\u2014 "  # em dash, space
KEY_FILE_MODE = 0o600
DEFAULT_ORIGIN_PREFIX = "edgeseal.example/gateway/"
# why: Go's note.Open refuses more than 100 signatures; we accept the same at most.
MAX_NOTE_SIGNATURES = 100


class KeyFileError(RuntimeError):
    """The gateway key file is missing, malformed or readable by others than its owner."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Return the bytes of canonical standard base64 `text`; raises ValueError otherwise."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if _b64(raw) != text:
        raise ValueError("non-canonical base64")
    return raw


def valid_key_name(name: str) -> bool:
    """Return True if `name` is a legal note key name: non-empty, no spaces, no '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte C2SP key id SHA-256(name || 0x0A || 0x01 || public_key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes((ALG_ED25519,)) + public_key).digest()[:4]


class NoteVerifier:
    """An Ed25519 note verifier, built from a C2SP vkey string."""

    def __init__(self, name: str, public_key: bytes) -> None:
        if not valid_key_name(name):
            raise ProofError("bad-vkey", f"invalid key name {name!r}")
        if len(public_key) != 32:
            raise ProofError("bad-vkey", "Ed25519 public key must be 32 bytes")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = key_id(name, self.public_key)
        self._key = nacl.signing.VerifyKey(self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Return the verifier for "<name>+<hex key id>+<base64(0x01 || key)>"; ProofError if bad."""
        parts = vkey.strip().split("+", 2)  # base64 key data may hold "+"
        if len(parts) != 3:
            raise ProofError("bad-vkey", "a vkey is name+keyid+key")
        name, hex_id, data = parts
        try:
            raw = _unb64(data)
        except (ValueError, binascii.Error):
            raise ProofError("bad-vkey", "vkey key data is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise ProofError("bad-vkey", "vkey is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if hex_id != verifier.key_id.hex():
            raise ProofError("bad-vkey", "vkey key id does not match its name and key")
        return verifier

    @property
    def vkey(self) -> str:
        """Return this key in C2SP vkey form."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes((ALG_ED25519,)) + self.public_key)}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return True if `signature` (64 bytes) is this key's Ed25519 signature of `text`."""
        try:
            self._key.verify(text, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True


class NoteSigner:
    """An Ed25519 note signer: a key name and a 32-byte seed (RFC 8032)."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not valid_key_name(name):
            raise KeyFileError(f"invalid key name {name!r}")
        if len(seed) != 32:
            raise KeyFileError("Ed25519 seed must be 32 bytes")
        self.name = name
        self._signing_key = nacl.signing.SigningKey(bytes(seed))
        self.public_key = bytes(self._signing_key.verify_key)
        self.key_id = key_id(name, self.public_key)

    @classmethod
    def generate(cls, name: str | None = None) -> NoteSigner:
        """Return a signer with a fresh random key; name defaults to default_origin(key)."""
        seed = os.urandom(32)
        if name is None:
            name = default_origin(bytes(nacl.signing.SigningKey(seed).verify_key))
        return cls(name, seed)

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Return the signer of "PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>"."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise KeyFileError("not a PRIVATE+KEY signer key")
        name, hex_id, data = parts[2:]
        try:
            raw = _unb64(data)
        except (ValueError, binascii.Error):
            raise KeyFileError("signer key data is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyFileError("signer key is not an Ed25519 key")
        signer = cls(name, raw[1:])
        if hex_id != signer.key_id.hex():
            raise KeyFileError("signer key id does not match its name and key")
        return signer

    @property
    def skey(self) -> str:
        """Return the private key in signer-key form (keep it secret)."""
        seed = bytes(self._signing_key)
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64(bytes((ALG_ED25519,)) + seed)}"

    @property
    def vkey(self) -> str:
        """Return the matching verifier key in C2SP vkey form (safe to publish)."""
        return self.verifier().vkey

    def verifier(self) -> NoteVerifier:
        """Return the NoteVerifier of this signer's public key."""
        return NoteVerifier(self.name, self.public_key)

    def sign(self, text: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `text`."""
        return self._signing_key.sign(text).signature


def _check_text(text: str) -> None:
    """Raise ProofError("bad-note") unless `text` is legal note text (C2SP signed-note)."""
    if not text.endswith("\n"):
        raise ProofError("bad-note", "note text must end with a newline")
    for ch in text:
        if ord(ch) < 0x20 and ch != "\n":
            raise ProofError("bad-note", "note text contains a control character")


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """Return the signed note: `text`, a blank line, one signature line per signer (UTF-8)."""
    _check_text(text)
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    raw = text.encode("utf-8")
    lines = [f"{SIG_PREFIX}{s.name} {_b64(s.key_id + s.sign(raw))}\n" for s in signers]
    return (text + "\n" + "".join(lines)).encode("utf-8")


@dataclass(frozen=True)
class NoteSignature:
    """One parsed signature line: key name, key id and signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


def parse_note(note: bytes) -> tuple[str, list[NoteSignature]]:
    """Return (text, signatures) of a signed note without verifying; ProofError if malformed."""
    try:
        msg = note.decode("utf-8")
    except UnicodeDecodeError:
        raise ProofError("bad-note", "note is not UTF-8") from None
    for ch in msg:
        if ord(ch) < 0x20 and ch != "\n":
            raise ProofError("bad-note", "note contains a control character")
    split = msg.rfind("\n\n")
    if split < 0:
        raise ProofError("bad-note", "note has no signature block")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block.endswith("\n"):
        raise ProofError("bad-note", "signature block must end with a newline")
    sigs: list[NoteSignature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise ProofError("bad-note", "signature line must start with an em dash and space")
        fields = line[len(SIG_PREFIX) :].split(" ")
        if len(fields) != 2 or not valid_key_name(fields[0]):
            raise ProofError("bad-note", "malformed signature line")
        try:
            raw = _unb64(fields[1])
        except (ValueError, binascii.Error):
            raise ProofError("bad-note", "signature is not base64") from None
        if len(raw) < 5:
            raise ProofError("bad-note", "signature is too short")
        sigs.append(NoteSignature(fields[0], raw[:4], raw[4:]))
        if len(sigs) > MAX_NOTE_SIGNATURES:
            raise ProofError("bad-note", "too many signatures")
    return text, sigs


@dataclass(frozen=True)
class OpenedNote:
    """A note opened against known verifiers (Go's note.Note): text and signatures, in note order.

    `verified` holds one signature per known key that signed (each verified); `unknown` holds the
    signatures by keys not among the verifiers, unchecked, identical lines kept once.
    """

    text: str
    verified: tuple[NoteSignature, ...]
    unknown: tuple[NoteSignature, ...] = ()

    def signed_by(self, verifier: NoteVerifier) -> bool:
        """Return True if a verified signature is by verifier's key (its name and key id)."""
        return any(s.name == verifier.name and s.key_id == verifier.key_id for s in self.verified)


class UnverifiedNoteError(ProofError):
    """ProofError("unknown-key"): a well-formed note that no known key signed (Go's
    UnverifiedNoteError); `note` is the opened note, with every signature in `unknown`."""

    def __init__(self, note: OpenedNote) -> None:
        super().__init__("unknown-key", "note is not signed by a known key")
        self.note = note


def open_note(note: bytes, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Return the OpenedNote if a known key signed it and no known key's signature fails.

    Follows Go's golang.org/x/mod/sumdb/note Open with a VerifierList: a signature by a key not
    among `verifiers` goes to `unknown`; of several lines by one known key only the first is
    verified and kept, the rest are ignored. Raises ProofError: "bad-note" if malformed,
    "duplicate-verifier" if a signature names a key (name, key id) that two verifiers share (Go:
    "ambiguous key"; an unused duplicate is no error), "bad-signature" if a known key's signature
    fails, and UnverifiedNoteError ("unknown-key") if no known key signed.
    """
    text, sigs = parse_note(note)
    known: dict[tuple[str, bytes], list[NoteVerifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), []).append(v)
    raw = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unknown: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        key = (sig.name, sig.key_id)
        matches = known.get(key)
        if matches is None:
            if sig not in unknown:
                unknown.append(sig)
            continue
        if len(matches) > 1:
            raise ProofError(
                "duplicate-verifier", f"ambiguous key {sig.name}+{sig.key_id.hex()}: two verifiers"
            )
        if key in seen:
            continue
        seen.add(key)
        if not matches[0].verify(raw, sig.signature):
            raise ProofError(
                "bad-signature", f"signature by {sig.name}+{sig.key_id.hex()} does not verify"
            )
        verified.append(sig)
    opened = OpenedNote(text, tuple(verified), tuple(unknown))
    if not verified:
        raise UnverifiedNoteError(opened)
    return opened


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog checkpoint: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """Return the checkpoint note text (c2sp.org/tlog-checkpoint)."""
        return format_checkpoint(self.origin, self.size, self.root, self.extensions)


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """Return checkpoint text "<origin>\\n<size>\\n<base64 root>\\n[<extension>\\n...]".

    Raises ValueError for an empty origin, a negative size, a root that is not 32 bytes or
    an extension line that is empty or holds a newline or control character.
    """
    if not origin or "\n" in origin:
        raise ValueError("origin must be one non-empty line")
    if size < 0:
        raise ValueError("tree size must be >= 0")
    if len(root) != HASH_SIZE:
        raise ValueError("root hash must be 32 bytes")
    for line in extensions:
        if not line or any(ord(c) < 0x20 for c in line):
            raise ValueError(f"bad checkpoint extension line {line!r}")
    text = f"{origin}\n{size}\n{_b64(root)}\n" + "".join(f"{x}\n" for x in extensions)
    _check_text(text)
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Return the Checkpoint in note text; raises ProofError("bad-checkpoint") if malformed.

    The tree size is canonical decimal of at most MAX_INT64 (Go's tlog.ParseTree: a signed
    64-bit size; SQLite stores the same range).
    """
    if not text.endswith("\n"):
        raise ProofError("bad-checkpoint", "checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise ProofError("bad-checkpoint", "checkpoint needs >= 3 non-empty lines")
    origin, size_text, root_text = lines[:3]
    # The length test first: int() of thousands of digits is slow or raises ValueError.
    if (
        not 0 < len(size_text) <= len(str(MAX_INT64))
        or not size_text.isascii()
        or not size_text.isdigit()
        or str(int(size_text)) != size_text
    ):
        raise ProofError("bad-checkpoint", "tree size is not canonical decimal")
    if int(size_text) > MAX_INT64:
        raise ProofError("bad-checkpoint", f"tree size is over {MAX_INT64}")
    try:
        root_hash = _unb64(root_text)
    except (ValueError, binascii.Error):
        raise ProofError("bad-checkpoint", "root hash is not base64") from None
    if len(root_hash) != HASH_SIZE:
        raise ProofError("bad-checkpoint", "root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root_hash, tuple(lines[3:]))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """Return the signed checkpoint note; the signer's key name must equal the origin."""
    if signer.name != checkpoint.origin:
        raise ValueError("the log's key name must match the checkpoint origin")
    return sign_note(checkpoint.text(), [signer])


def verify_checkpoint(note: bytes, verifier: NoteVerifier) -> Checkpoint:
    """Return the Checkpoint of a signed note checked with the log's verifier.

    Raises ProofError if the signature fails, the origin is not the key name, or the text
    is not a checkpoint (c2sp.org/tlog-checkpoint).
    """
    checkpoint = parse_checkpoint(open_note(note, [verifier]).text)
    if checkpoint.origin != verifier.name:
        raise ProofError("bad-checkpoint", "checkpoint origin does not match the log key name")
    return checkpoint


def default_origin(public_key: bytes) -> str:
    """Return "edgeseal.example/gateway/<first 8 hex of SHA-256(public key)>"."""
    return DEFAULT_ORIGIN_PREFIX + hashlib.sha256(public_key).hexdigest()[:8]


def load_signer(path: str) -> NoteSigner:
    """Return the signer stored at `path`; KeyFileError if missing, malformed or not 0600."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyFileError(f"key file {path} is readable by others; chmod 600 it")
    with open(path, encoding="ascii") as f:
        return NoteSigner.from_skey(f.read())


def create_signer(path: str, origin: str | None = None) -> NoteSigner:
    """Return a new signer after writing it to `path` with mode 0600 (never overwrites).

    Raises KeyFileError if `path` already exists.
    """
    signer = NoteSigner.generate(origin)
    try:
        create_exclusive(path, (signer.skey + "\n").encode("ascii"), KEY_FILE_MODE)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists") from None
    return signer


def load_or_create_signer(path: str, origin: str | None = None) -> NoteSigner:
    """Return the signer at `path`, generating it (mode 0600) on first start.

    `origin` names a new key (default default_origin(public key)); for an existing key it
    must match the stored name or KeyFileError is raised.
    """
    if os.path.exists(path):
        signer = load_signer(path)
        if origin is not None and origin != signer.name:
            raise KeyFileError(f"key file {path} is for origin {signer.name!r}, not {origin!r}")
        return signer
    return create_signer(path, origin)
