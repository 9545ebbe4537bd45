"""RFC 8032 section 7.1 vectors (tests/vectors/rfc8032.json) against the gateway's libraries: PyNaCl and pycryptodome."""

import json
import os

import nacl.exceptions
import nacl.signing
import pytest
from Crypto.Signature import eddsa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "tests", "vectors", "rfc8032.json")


def _load():
    with open(VECTORS) as f:
        doc = json.load(f)
    assert "RFC 8032" in doc["source"]
    return [
        pytest.param(
            bytes.fromhex(v["secret_key"]),
            bytes.fromhex(v["public_key"]),
            bytes.fromhex(v["message"]),
            bytes.fromhex(v["signature"]),
            id=v["name"],
        )
        for v in doc["vectors"]
    ]


def test_file_holds_the_five_rfc_tests():
    with open(VECTORS) as f:
        names = [v["name"] for v in json.load(f)["vectors"]]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]


@pytest.mark.parametrize("seed,public,msg,sig", _load())
def test_pynacl(seed, public, msg, sig):
    key = nacl.signing.SigningKey(seed)
    assert bytes(key.verify_key) == public
    assert key.sign(msg).signature == sig
    assert nacl.signing.VerifyKey(public).verify(msg, sig) == msg
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(public).verify(msg + b"\x00", sig)


@pytest.mark.parametrize("seed,public,msg,sig", _load())
def test_pycryptodome(seed, public, msg, sig):
    key = eddsa.import_private_key(seed)
    assert key.public_key().export_key(format="raw") == public
    assert eddsa.new(key, "rfc8032").sign(msg) == sig
    verifier = eddsa.new(eddsa.import_public_key(public), "rfc8032")
    verifier.verify(msg, sig)
    with pytest.raises(ValueError):
        verifier.verify(msg + b"\x00", sig)
