"""A witness cosignature checked by an independent reading of C2SP tlog-cosignature.

The check below builds the key id and the signed message from the spec text alone and verifies
with PyNaCl; it shares no code with gateway.publish.cosignature.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from gateway.errors import ProofError
from gateway.ledger.note import NoteSigner
from gateway.publish.cosignature import CosignatureVerifier
from tests.gateway.publish.helpers import ORIGIN, Log, body, make_witness


def independent_check(vkey: str, checkpoint_note: bytes, line: str) -> int:
    """Return the timestamp of a valid cosignature/v1 line; assert on anything else.

    Spec: key id = SHA-256(<name> || "\\n" || 0x04 || 32-byte key)[:4]; the line is
    "— <name> base64(key id || u64 BE timestamp || 64-byte Ed25519 signature)"; the message is
    "cosignature/v1\\n" "time <ts>\\n" then the checkpoint body with its final newline.
    """
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key_data = base64.b64decode(key_b64)
    assert key_data[0] == 0x04 and len(key_data) == 33
    public_key = key_data[1:]
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public_key).digest()[:4]
    assert key_id.hex() == key_id_hex
    assert line.startswith("\u2014 " + name + " ") and line.endswith("\n")
    blob = base64.b64decode(line[len("\u2014 " + name + " ") : -1])
    assert len(blob) == 4 + 8 + 64 and blob[:4] == key_id
    timestamp = struct.unpack(">Q", blob[4:12])[0]
    checkpoint_body = checkpoint_note.decode().split("\n\n")[0] + "\n"
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + checkpoint_body.encode()
    VerifyKey(public_key).verify(message, blob[12:])  # raises if bad
    return timestamp


def test_a_witness_cosignature_verifies_by_the_spec(tmp_path: Path) -> None:
    log_signer = NoteSigner.generate(ORIGIN)
    log = Log(tmp_path / "log.db", log_signer)
    witness = make_witness(tmp_path, log_signer.vkey)
    note = log.grow(9)
    before = int(time.time())
    lines = witness.add_checkpoint(body(0, [], note))
    ts = independent_check(witness.signer.vkey, note, lines)
    assert before <= ts <= int(time.time()) + 1 and ts != 0
    # our own verifier (for the gateway's witness client) agrees
    checkpoint_text = note.decode().split("\n\n")[0] + "\n"
    verifier = CosignatureVerifier.from_vkey(witness.signer.vkey)
    assert verifier.verify(checkpoint_text, lines) == ts
    with pytest.raises(ProofError):
        verifier.verify(checkpoint_text.replace("9", "8", 1), lines)
    witness.state.close()


def test_the_witness_vkey_is_type_0x04_and_not_the_note_key_id() -> None:
    from gateway.publish.cosignature import CosignatureSigner

    signer = NoteSigner.generate("witness.example/w2")
    cosigner = CosignatureSigner(signer)
    assert cosigner.key_id != signer.key_id  # 0x04 vs the log's 0x01
    assert base64.b64decode(cosigner.vkey.split("+", 2)[2])[0] == 0x04
    with pytest.raises(ProofError):
        CosignatureVerifier.from_vkey(signer.vkey)  # a 0x01 note key is not a cosigner key
