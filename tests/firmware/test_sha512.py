"""Tests of firmware.sha512 (pure path) against FIPS 180 examples, hashlib (CPython), pinned digests (VM); and of tools/sha512_limbs.py."""

import binascii

from firmware import sha512 as sha512_mod
from firmware.sha512 import SHA512, sha512

try:
    import hashlib

    _HOST_SHA512 = getattr(hashlib, "sha512", None)  # MicroPython's hashlib has only sha256
except ImportError:
    _HOST_SHA512 = None

VM_SKIP = {"test_one_million_a": "7,813 blocks of pure SHA-512: CPython only, per the test plan"}

# FIPS 180-2 appendix C / NIST CSRC SHA-512 examples.
_FIPS = (
    (
        b"",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    (
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",  # 448 bits
        "204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
        "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",  # 896 bits
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
    ),
)

# First 32 bytes (hex) of SHA-512 over the concatenated digests of _pattern(n), n = 0..300,
# computed with CPython's hashlib: pins every padding case (incl. the 111/112-byte boundary) in the VM.
_ALL_LENGTHS_DIGEST = "404431b1c0eac12729b20176c61b0e1c561b6b20d2ecbb7ee1126c361943d724"


def _hex(b):
    return binascii.hexlify(b).decode()


def _pattern(n):
    """Return n deterministic bytes (i * 7 + 3) & 0xFF."""
    return bytes([(i * 7 + 3) & 0xFF for i in range(n)])


def test_pure_path_is_default():
    assert sha512_mod.USE_HASHLIB is False


def test_fips_examples():
    for msg, want in _FIPS:
        assert _hex(sha512(msg)) == want
        assert SHA512(msg).hexdigest() == want


def test_digest_length_and_types():
    d = sha512(b"x")
    assert isinstance(d, bytes) and len(d) == 64
    assert sha512(bytearray(b"abc")) == sha512(b"abc")
    assert sha512(memoryview(b"zabc")[1:]) == sha512(b"abc")


def test_every_length_0_to_300():
    acc = SHA512()
    for n in range(301):
        msg = _pattern(n)
        d = sha512(msg)
        if _HOST_SHA512 is not None:
            assert d == _HOST_SHA512(msg).digest(), n
        acc.update(d)
    assert _hex(acc.digest())[:64] == _ALL_LENGTHS_DIGEST


def test_incremental_updates_match_one_shot():
    msg = _pattern(700)
    want = sha512(msg)
    for step in (1, 7, 63, 111, 112, 127, 128, 129, 300):
        h = SHA512()
        for i in range(0, len(msg), step):
            h.update(msg[i : i + step])
        assert h.digest() == want, step
    h = SHA512(msg[:5])
    h.update(b"")
    h.update(msg[5:])
    assert h.digest() == want


def test_digest_does_not_change_state_and_copy_is_independent():
    h = SHA512(b"ab")
    first = h.digest()
    assert h.digest() == first
    c = h.copy()
    h.update(b"c")
    assert h.digest() == sha512(b"abc")
    assert c.digest() == first
    c.update(b"x")
    assert c.digest() == sha512(b"abx")


def test_one_million_a():
    h = SHA512()
    chunk = b"a" * 1000
    for _ in range(1000):
        h.update(chunk)
    assert h.hexdigest() == (
        "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"
    )


def test_hashlib_flag_only_changes_the_backend():
    if _HOST_SHA512 is None:
        return  # MicroPython: no hashlib.sha512 to delegate to; the flag must stay off there
    old = sha512_mod.USE_HASHLIB
    try:
        sha512_mod.USE_HASHLIB = True
        fast = sha512_mod.sha512(b"abc")
    finally:
        sha512_mod.USE_HASHLIB = old
    assert fast == SHA512(b"abc").digest()


def test_the_limb_variant_gives_the_same_digests():
    # tools/sha512_limbs.py, the measured low-garbage alternative (docs/firmware-runtime.md, "Signer:
    # garbage per signature"): same digests at every block boundary, one-shot and incremental.
    try:
        from tools.sha512_limbs import SHA512 as LimbSHA512
    except ImportError:  # a board runs the firmware's tests without tools/
        return
    for msg, want in _FIPS:
        assert _hex(LimbSHA512(msg).digest()) == want
    for n in (0, 1, 111, 112, 127, 128, 129, 239, 240, 256, 300):
        msg = _pattern(n)
        assert LimbSHA512(msg).digest() == sha512(msg), n
    msg = _pattern(300)
    h = LimbSHA512()
    for i in range(0, len(msg), 61):
        h.update(msg[i : i + 61])
    assert h.digest() == sha512(msg)
