"""C2SP signed notes, checkpoints and key files (gateway.ledger.note), against published vectors."""

import os
import stat

import pytest

from gateway.errors import ProofError
from gateway.ledger import note

# The example key and note of Go's golang.org/x/mod/sumdb/note (note_test.go): Ed25519 is
# deterministic, so signing the same text with the same key must give the same bytes.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()

# The example of c2sp.org/tlog-checkpoint (its key is not published: parse only).
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_go_reference_vector_byte_for_byte():
    signer = note.NoteSigner.from_skey(GO_SKEY)
    assert signer.vkey == GO_VKEY
    assert signer.skey == GO_SKEY
    assert signer.key_id.hex() == "c74f20a3"
    assert note.sign_note(GO_TEXT, [signer]) == GO_NOTE
    verifier = note.NoteVerifier.from_vkey(GO_VKEY)
    assert note.open_note(GO_NOTE, [verifier]) == GO_TEXT


def test_tampered_notes_are_rejected():
    verifier = note.NoteVerifier.from_vkey(GO_VKEY)
    with pytest.raises(ProofError, match="bad-signature"):
        note.open_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), [verifier])
    other = note.NoteSigner.generate("PeterNeumann")
    with pytest.raises(ProofError, match="unknown-key"):
        note.open_note(GO_NOTE, [other.verifier()])
    for bad in [
        GO_NOTE[:-1],  # no final newline
        GO_NOTE.replace(b"\n\n", b"\n"),  # no blank line
        GO_NOTE.replace("\u2014".encode(), b"-"),
        GO_NOTE.replace(b"PeterNeumann x", b"Peter Neumann x"),
        GO_NOTE.replace(b"If", b"I\x01f"),
        b"\xff" + GO_NOTE,
    ]:
        with pytest.raises(ProofError):
            note.open_note(bad, [verifier])
    # Unknown signatures are ignored (C2SP signed-note), a known one still verifies.
    extra = note.sign_note(GO_TEXT, [other, note.NoteSigner.from_skey(GO_SKEY)])
    assert note.open_note(extra, [verifier]) == GO_TEXT


def test_vkey_manglings_are_rejected():
    assert note.NoteVerifier.from_vkey(GO_VKEY).vkey == GO_VKEY
    b = bytearray(GO_VKEY.encode())
    for i in range(len(b)):
        b[i] ^= 0x01
        try:
            mangled = b.decode()
        except UnicodeDecodeError:
            mangled = None
        if mangled is not None:
            with pytest.raises(ProofError):
                note.NoteVerifier.from_vkey(mangled)
        b[i] ^= 0x01
    for bad in ["", "PeterNeumann", "PeterNeumann+c74f20a3", "x+y+z+w", GO_VKEY + "A"]:
        with pytest.raises(ProofError):
            note.NoteVerifier.from_vkey(bad)


def test_checkpoint_round_trip_and_strict_parsing():
    cp = note.parse_checkpoint(C2SP_CHECKPOINT)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.text() == C2SP_CHECKPOINT
    signer = note.NoteSigner.generate()
    cp = note.Checkpoint(signer.name, 7, bytes(range(32)), ("state 1234", "x"))
    signed = note.sign_checkpoint(cp, signer)
    assert note.verify_checkpoint(signed, signer.verifier()) == cp
    for bad in [
        "o\n7\n",
        "o\n07\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n",
        "o\n-1\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n",
        "o\n1\nAAAA\n",
        "o\n1\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n\nx\n",
        C2SP_CHECKPOINT[:-1],
    ]:
        with pytest.raises(ProofError, match="bad-checkpoint"):
            note.parse_checkpoint(bad)
    with pytest.raises(ValueError):
        note.format_checkpoint("o", 1, bytes(32), [""])
    # A checkpoint signed by a key whose name is not the origin is refused.
    other = note.NoteSigner.generate("other.example/log")
    forged = note.sign_note(cp.text(), [other])
    with pytest.raises(ProofError, match="bad-checkpoint"):
        note.verify_checkpoint(forged, other.verifier())


def test_key_file_is_0600_and_reloads(tmp_path):
    path = str(tmp_path / "gateway.key")
    signer = note.load_or_create_signer(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert signer.name.startswith(note.DEFAULT_ORIGIN_PREFIX)
    again = note.load_or_create_signer(path)
    assert again.vkey == signer.vkey
    with pytest.raises(note.KeyFileError):
        note.create_signer(path)
    with pytest.raises(note.KeyFileError):
        note.load_or_create_signer(path, origin="someone.else/log")
    os.chmod(path, 0o644)
    with pytest.raises(note.KeyFileError, match="readable by others"):
        note.load_signer(path)
    named = note.load_or_create_signer(str(tmp_path / "named.key"), origin="farm.example/gw1")
    assert named.name == "farm.example/gw1"
    assert named.vkey.startswith("farm.example/gw1+")
