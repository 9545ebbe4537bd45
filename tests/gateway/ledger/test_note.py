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

# Go's second example key (note_test.go, TestOpen) and its signature of the same text.
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)

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
    opened = note.open_note(GO_NOTE, [verifier])
    assert opened.text == GO_TEXT
    assert [(s.name, s.key_id.hex()) for s in opened.verified] == [("PeterNeumann", "c74f20a3")]
    assert opened.unknown == ()
    assert opened.signed_by(verifier)


def _sig(line: str) -> note.NoteSignature:
    """Return the NoteSignature of one Go signature line."""
    return note.parse_note((GO_TEXT + "\n" + line).encode())[1][0]


def _go(*lines: str) -> bytes:
    return (GO_TEXT + "\n" + "".join(lines)).encode()


def test_go_open_vectors_with_two_signers():
    """Go's TestOpen (golang.org/x/mod/sumdb/note/note_test.go), case by case."""
    peter_v = note.NoteVerifier.from_vkey(GO_VKEY)
    enoch_v = note.NoteVerifier.from_vkey(ENOCH_VKEY)
    assert enoch_v.key_id.hex() == "af0cfe78"
    peter, enoch = _sig(PETER_SIG), _sig(ENOCH_SIG)
    # One signature verified, one by an unknown key.
    opened = note.open_note(_go(PETER_SIG, ENOCH_SIG), [peter_v])
    assert (opened.text, opened.verified, opened.unknown) == (GO_TEXT, (peter,), (enoch,))
    assert opened.signed_by(peter_v) and not opened.signed_by(enoch_v)
    # Both verified, in note order.
    opened = note.open_note(_go(PETER_SIG, ENOCH_SIG), [enoch_v, peter_v])
    assert (opened.verified, opened.unknown) == ((peter, enoch), ())
    # Neither known: unknown-key, and the error carries the note with both signatures.
    with pytest.raises(note.UnverifiedNoteError, match="unknown-key") as info:
        note.open_note(_go(PETER_SIG, ENOCH_SIG), [])
    assert info.value.code == "unknown-key"
    assert isinstance(info.value, ProofError)
    assert (info.value.note.text, info.value.note.verified) == (GO_TEXT, ())
    assert info.value.note.unknown == (peter, enoch)
    # Too many signatures (Go: more than 100 is malformed), known or not.
    for verifiers in ([peter_v], []):
        with pytest.raises(ProofError, match="bad-note"):
            note.open_note(_go(PETER_SIG * 101), verifiers)
    assert note.open_note(_go(PETER_SIG * 100), [peter_v]).verified == (peter,)
    # A known key whose signature fails.
    with pytest.raises(ProofError, match="bad-signature: signature by PeterNeumann\\+c74f20a3"):
        note.open_note(_go(PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]), [peter_v])
    # Repeated lines: one known key counts once (later lines by it are not even checked);
    # identical unknown lines are kept once, different ones by one unknown key each.
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    opened = note.open_note(_go(PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, enoch_abcd), [peter_v])
    assert opened.verified == (peter,)
    assert opened.unknown == (enoch, _sig(enoch_abcd))
    peter_abcd = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    assert note.open_note(_go(PETER_SIG, peter_abcd), [peter_v]).verified == (peter,)
    with pytest.raises(ProofError, match="bad-signature"):
        note.open_note(_go(peter_abcd, PETER_SIG), [peter_v])  # the first line by a key counts
    # Go's malformed messages.
    for bad in [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name")[:-1],
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ]:
        with pytest.raises(ProofError, match="bad-note"):
            note.open_note(bad.encode(), [peter_v])
    with pytest.raises(ProofError, match="bad-note"):
        note.open_note(b"\xff" + _go(PETER_SIG), [peter_v])


def test_duplicate_verifiers_are_refused_when_they_sign():
    """Go: two verifiers with one name and key id are "ambiguous" once a signature names them."""
    peter_v = note.NoteVerifier.from_vkey(GO_VKEY)
    enoch_v = note.NoteVerifier.from_vkey(ENOCH_VKEY)
    with pytest.raises(ProofError, match="duplicate-verifier: ambiguous key EnochRoot\\+af0cfe78"):
        note.open_note(_go(ENOCH_SIG), [enoch_v, peter_v, enoch_v])
    # The very same verifier listed twice is just as ambiguous (Go: VerifierList(v, v)).
    for verifiers in ([peter_v, peter_v], [peter_v, note.NoteVerifier.from_vkey(GO_VKEY)]):
        with pytest.raises(ProofError, match="duplicate-verifier") as info:
            note.open_note(GO_NOTE, verifiers)
        assert info.value.code == "duplicate-verifier"
        with pytest.raises(ProofError, match="duplicate-verifier"):
            note.open_note(_go(ENOCH_SIG, PETER_SIG), verifiers)  # after an unknown signature
    # Go's "unused duplicated verifier": no signature names it, no error.
    opened = note.open_note(_go(PETER_SIG), [enoch_v, peter_v, enoch_v])
    assert opened.verified == (_sig(PETER_SIG),)
    # Two different public keys sharing a name and a key id are just as ambiguous.
    twin = note.NoteVerifier("PeterNeumann", bytes(32))
    twin.key_id = peter_v.key_id  # as if the 32-bit key ids collided
    with pytest.raises(ProofError, match="duplicate-verifier"):
        note.open_note(_go(PETER_SIG), [twin, peter_v])
    # A generator of verifiers is read once.
    opened = note.open_note(_go(PETER_SIG, ENOCH_SIG), (v for v in [peter_v, enoch_v]))
    assert len(opened.verified) == 2


def test_bit_flips_in_a_two_signer_note_are_refused_or_harmless():
    """Every single-bit flip of a note signed by two known keys is refused, unless it renames
    one signature line (key name or key id): that line becomes unknown and the other key still
    authenticates the same text."""
    peter_v = note.NoteVerifier.from_vkey(GO_VKEY)
    enoch_v = note.NoteVerifier.from_vkey(ENOCH_VKEY)
    good = _go(PETER_SIG, ENOCH_SIG)
    renamed = 0
    for i in range(len(good)):
        for bit in range(8):
            flipped = bytearray(good)
            flipped[i] ^= 1 << bit
            try:
                opened = note.open_note(bytes(flipped), [peter_v, enoch_v])
            except ProofError:
                continue
            assert opened.text == GO_TEXT, (i, bit)
            assert len(opened.verified) == 1 and len(opened.unknown) == 1, (i, bit)
            renamed += 1
    assert renamed > 0  # flips in a key name or key id do rename a line


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
    opened = note.open_note(extra, [verifier])
    assert opened.text == GO_TEXT
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert [(s.name, s.key_id) for s in opened.unknown] == [(other.name, other.key_id)]


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
        # sizes over a signed 64-bit integer (Go's tlog.ParseTree), and one int() refuses to
        # parse at all (over 4300 digits): a typed error, not a ValueError
        "o\n9223372036854775808\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n",
        "o\n" + "9" * 5000 + "\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n",
        "o\n\u0661\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n",  # an Arabic-Indic digit one
    ]:
        with pytest.raises(ProofError, match="bad-checkpoint"):
            note.parse_checkpoint(bad)
    top = "o\n9223372036854775807\n" + C2SP_CHECKPOINT.split("\n")[2] + "\n"
    assert note.parse_checkpoint(top).size == 2**63 - 1
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
