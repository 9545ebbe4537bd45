"""Tests of tools/ed25519_prf.py (the HMAC-SHA256-nonce signer, a measured alternative): valid, deterministic Ed25519.

Runs under CPython (pytest: PyNaCl and the firmware's verify check every signature, hmac the
nonce) and in the MicroPython VM (node tools/mpvm.mjs --filter test_ed25519_prf: the firmware's
verify, the VM's own hashlib.sha256). The variant is not RFC 8032's nonce, so no RFC vector
applies to its signatures; what must hold is that every verifier accepts them.
"""

import hashlib
import sys

from firmware import ed25519

try:
    from tools import ed25519_prf
except ImportError:  # a board runs the firmware's tests without tools/
    ed25519_prf = None

IN_MICROPYTHON = sys.implementation.name == "micropython"
IN_VM = IN_MICROPYTHON and sys.platform == "webassembly"

VM_SKIP = {}
if IN_MICROPYTHON:
    VM_SKIP["test_nonce_is_hmac_sha256_of_the_prefix"] = "CPython's hmac module"
    VM_SKIP["test_many_keys_verify_with_pynacl"] = "PyNaCl is CPython only"
if ed25519_prf is None:
    for _name in (
        "test_signatures_verify_and_are_deterministic",
        "test_lehmer_inversion_signs_the_same",
        "test_the_nonce_is_not_rfc8032s",
        "test_a_changed_message_or_signature_is_rejected",
        "test_stays_within_the_allocation_goal",
    ):
        VM_SKIP[_name] = "needs tools/"

_L = 2**252 + 27742317777372353535851937790883648493
# Message lengths around every SHA-512 block boundary of k = SHA-512(R || A || M) (64 bytes of R
# and A before M; a block holds 111 bytes before its length field) and the board's bodies.
_LENGTHS = (0, 1, 46, 47, 48, 63, 64, 100, 111, 175, 176, 177, 239, 240, 300)
# The goal (issue 12 item 5): bytes allocated per signature, VM, collector off. Met by the
# variant with Lehmer's inversion (this test's messages: 139,440-147,136 B; over 60 other key and
# message pairs per body size the largest was 150,448 B, docs/firmware-runtime.md).
ALLOC_GOAL_BYTES = 150_000
# The variant with the firmware's Euclid inversion: over the goal (152,160-158,240 B here, up to
# 163,440 B over 60 pairs: [r]B ~120 KB and the inversion ~25-29 KB leave no room). why this
# number: the counts are exact, so the margin only absorbs a different VM build.
PLAIN_ALLOC_BUDGET_BYTES = 165_000
# Keys in the VM test. why: a VM signature takes ~3 ms and a verify ~14 ms; a few keys over every
# length keep the test to a few seconds; the 200 keys of the PyNaCl test run under CPython.
_VM_KEYS = 3
_HOST_KEYS = 200


def _seed(i):
    """Return the i-th deterministic 32-byte test seed (the VM has no os.urandom)."""
    return hashlib.sha256(b"edgeseal-ed25519-prf-" + str(i).encode()).digest()


def _message(i, n):
    """Return a deterministic n-byte message depending on i."""
    return bytes((j * 31 + i * 7 + n) & 0xFF for j in range(n))


def test_signatures_verify_and_are_deterministic():
    keys = _VM_KEYS if IN_MICROPYTHON else 12
    for i in range(keys):
        seed = _seed(i)
        key = ed25519_prf.SigningKey(seed)
        assert key.public_key == ed25519.SigningKey(seed).public_key
        seen = set()
        for n in _LENGTHS:
            msg = _message(i, n)
            sig = key.sign(msg)
            assert len(sig) == 64
            assert int.from_bytes(sig[32:], "little") < _L
            assert ed25519.verify(key.public_key, msg, sig), (i, n)
            assert key.sign(msg) == sig  # deterministic: same key and message, same signature
            assert ed25519_prf.SigningKey(seed).sign(msg) == sig  # not state of the key object
            seen.add(sig[:32])
        assert len(seen) == len(_LENGTHS)  # a different message, a different R


def test_lehmer_inversion_signs_the_same():
    for i in range(2):
        seed = _seed(i)
        plain = ed25519_prf.SigningKey(seed)
        lehmer = ed25519_prf.SigningKey(seed, lehmer=True)
        for n in (0, 64, 100, 176):
            msg = _message(i, n)
            assert lehmer.sign(msg) == plain.sign(msg)
    p = ed25519._P
    for z in (1, 2, p - 1, 2**254 + 12345, 0x1234567890ABCDEF * 2**190 + 99):
        assert ed25519_prf.inv_lehmer(z, p) == ed25519._inv(z)


def test_the_nonce_is_not_rfc8032s():
    # Same key, same S equation, but r (and so R) differs: the variant really replaced step 2.
    seed = _seed(0)
    msg = _message(0, 100)
    sig = ed25519_prf.SigningKey(seed).sign(msg)
    rfc = ed25519.SigningKey(seed).sign(msg)
    assert sig[:32] != rfc[:32]
    assert ed25519.verify(ed25519.SigningKey(seed).public_key, msg, rfc)


def test_a_changed_message_or_signature_is_rejected():
    key = ed25519_prf.SigningKey(_seed(5))
    msg = _message(5, 100)
    sig = key.sign(msg)
    assert not ed25519.verify(key.public_key, msg + b"\x00", sig)
    assert not ed25519.verify(key.public_key, msg[:-1], sig)
    for pos in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[pos] ^= 0x01
        assert not ed25519.verify(key.public_key, msg, bytes(bad))
    other = ed25519_prf.SigningKey(_seed(6))
    assert not ed25519.verify(other.public_key, msg, sig)


def test_nonce_is_hmac_sha256_of_the_prefix():
    import hmac

    for i in range(4):
        key = ed25519_prf.SigningKey(_seed(i))
        prefix = hashlib.sha512(_seed(i)).digest()[32:]  # RFC 8032 5.1.6 step 1
        for n in (0, 100, 176):
            msg = _message(i, n)
            t0 = hmac.new(prefix, b"\x00" + msg, hashlib.sha256).digest()
            t1 = hmac.new(prefix, b"\x01" + msg, hashlib.sha256).digest()
            r = int.from_bytes(t0 + t1, "little") % _L
            assert key.nonce(msg) == r


def test_many_keys_verify_with_pynacl():
    import nacl.exceptions
    import nacl.signing

    for i in range(_HOST_KEYS):
        seed = _seed(1000 + i)
        key = ed25519_prf.SigningKey(seed)
        nacl_key = nacl.signing.SigningKey(seed)
        assert key.public_key == bytes(nacl_key.verify_key)
        vk = nacl.signing.VerifyKey(key.public_key)
        n = _LENGTHS[i % len(_LENGTHS)]
        msg = _message(i, n)
        sig = key.sign(msg)
        assert vk.verify(msg, sig) == msg  # raises BadSignatureError if libsodium refuses it
        assert sig != nacl_key.sign(msg).signature  # a valid signature, not RFC 8032's bytes
        try:
            vk.verify(msg + b"!", sig)
        except nacl.exceptions.BadSignatureError:
            pass
        else:
            raise AssertionError("libsodium accepted a signature of another message")


def test_stays_within_the_allocation_goal():
    # Allocation counts are exact in the pinned VM (tests/firmware/test_ed25519_alloc.py), so the
    # experiment's claim can be a test; only meaningful there (CPython frees by reference count).
    if not IN_VM:
        return
    import gc

    for lehmer, budget in ((False, PLAIN_ALLOC_BUDGET_BYTES), (True, ALLOC_GOAL_BYTES)):
        key = ed25519_prf.SigningKey(_seed(0), lehmer=lehmer)
        for n in (64, 100, 176):
            msg = _message(0, n)
            key.sign(msg)  # warm-up: the fixed-base table exists before the count
            gc.disable()
            try:
                before = gc.mem_alloc()
                key.sign(msg)
                got = gc.mem_alloc() - before
            finally:
                gc.enable()
            assert got <= budget, (lehmer, n, got, budget)
