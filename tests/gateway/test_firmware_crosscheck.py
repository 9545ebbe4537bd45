"""The firmware's pure-Python Ed25519 against PyNaCl (libsodium) and pycryptodome: same bytes, same verdicts."""

import random
import time

import nacl.exceptions
import nacl.signing
from Crypto.Signature import eddsa

from firmware import ed25519, sha512

PAIRS = 1000
_L = 2**252 + 27742317777372353535851937790883648493


def _pairs(count, rng_seed=8032):
    """Return count reproducible random (seed, message) pairs; messages 0..300 bytes."""
    rng = random.Random(rng_seed)
    return [(rng.randbytes(32), rng.randbytes(rng.randrange(0, 301))) for _ in range(count)]


def _nacl_ok(public, msg, sig):
    try:
        nacl.signing.VerifyKey(public).verify(msg, sig)
        return True
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False


def test_pure_sha512_is_in_use():
    assert sha512.USE_HASHLIB is False


def test_1000_random_keys_and_messages():
    started = time.perf_counter()
    for seed, msg in _pairs(PAIRS):
        key = ed25519.SigningKey(seed)
        sig = key.sign(msg)
        ref = nacl.signing.SigningKey(seed)
        assert key.public_key == bytes(ref.verify_key), seed.hex()
        assert sig == ref.sign(msg).signature, seed.hex()
        assert nacl.signing.VerifyKey(key.public_key).verify(msg, sig) == msg
        eddsa.new(eddsa.import_public_key(key.public_key), "rfc8032").verify(msg, sig)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, f"cross-check took {elapsed:.1f} s"


def test_verify_policy_agrees_with_libsodium():
    """Firmware verify() and libsodium give the same verdict on valid and hostile inputs."""
    seed, msg = _pairs(1, rng_seed=7)[0]
    key = ed25519.SigningKey(seed)
    sig = key.sign(msg)
    A = key.public_key
    R, S = sig[:32], int.from_bytes(sig[32:], "little")
    p = 2**255 - 19
    small_order = [
        bytes.fromhex(h)
        for h in (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        )
    ]
    # The trivial forgery that the cofactorless equation alone would accept under A = identity.
    r = 4242
    forged = ed25519._encode(ed25519._base_mul(r)) + r.to_bytes(32, "little")
    cases = [
        ("valid", A, msg, sig, True),
        ("S + L", A, msg, R + (S + _L).to_bytes(32, "little"), False),
        ("flipped msg", A, msg + b"x", sig, False),
        ("non-canonical A (p + 1)", (p + 1).to_bytes(32, "little"), msg, sig, False),
        ("non-canonical R (p + 1)", A, msg, (p + 1).to_bytes(32, "little") + sig[32:], False),
    ]
    for i, enc in enumerate(small_order):
        cases.append((f"small-order A #{i}, trivial forgery", enc, msg, forged, False))
        cases.append((f"small-order R #{i}", A, msg, enc + sig[32:], False))
    for name, pub, m, s, want in cases:
        assert ed25519.verify(pub, m, s) is want, name
        assert _nacl_ok(pub, m, s) is want, name


def test_pycryptodome_does_not_apply_the_small_order_rule():
    """Pins a known gap: pycryptodome accepts the trivial forgery under the identity key.

    So pycryptodome is only a second opinion on valid signatures; the gateway's verdicts must
    come from PyNaCl (libsodium), whose rules the firmware's verify() mirrors. If this starts
    failing, pycryptodome has adopted the rule and the note in firmware/ed25519.py can say so.
    """
    r = 4242
    forged = ed25519._encode(ed25519._base_mul(r)) + r.to_bytes(32, "little")
    identity = bytes.fromhex("01" + "00" * 31)
    eddsa.new(eddsa.import_public_key(identity), "rfc8032").verify(b"anything", forged)
    assert not ed25519.verify(identity, b"anything", forged)
    assert not _nacl_ok(identity, b"anything", forged)
