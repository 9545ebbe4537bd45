"""Tests of firmware.ed25519: RFC 8032 7.1 vectors, the verification policy, and agreement with the naive signer."""

import binascii
import json

from firmware import ed25519, ed25519_extra
from firmware.sha512 import sha512

try:
    from tools import ed25519_naive
except ImportError:  # the VM copies tools/ only with `node tools/mpvm.mjs --copy tools`
    ed25519_naive = None

VM_SKIP = {}
if ed25519_naive is None:
    VM_SKIP["test_matches_naive_signer"] = "needs tools/: node tools/mpvm.mjs --copy tools"
    VM_SKIP["test_naive_verify_shows_why_small_order_keys_are_rejected"] = "needs tools/"

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493

# The 8 points of order dividing 8 (canonical encodings): identity, order 2, two of order 4,
# four of order 8.
SMALL_ORDER = (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
)


def _unhex(s):
    return binascii.unhexlify(s)


def _vectors():
    """Return the RFC 8032 7.1 vectors as (name, seed, public, msg, sig) byte tuples."""
    path = "tests/vectors/rfc8032.json"  # relative to the repo root (the VM's working directory)
    try:
        open(path).close()
    except OSError:  # pytest started elsewhere: use the path next to this file
        path = __file__.rsplit("/", 2)[0] + "/vectors/rfc8032.json"
    with open(path) as f:
        doc = json.load(f)
    out = []
    for v in doc["vectors"]:
        out.append(
            (
                v["name"],
                _unhex(v["secret_key"]),
                _unhex(v["public_key"]),
                _unhex(v["message"]),
                _unhex(v["signature"]),
            )
        )
    return out


def _flip(b, byte_index, bit):
    out = bytearray(b)
    out[byte_index] ^= 1 << bit
    return bytes(out)


def _seeds(count):
    """Return count deterministic pseudo-random (seed, message) pairs (the VM has no os.urandom)."""
    out = []
    state = b"edgeseal-ed25519-test"
    for i in range(count):
        state = sha512(state)
        out.append((state[:32], state[32 : 32 + (i * 13) % 33]))
    return out


def test_vectors_file_has_all_rfc8032_tests():
    names = [v[0] for v in _vectors()]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]


def test_rfc8032_public_keys_and_signatures_exact():
    for name, seed, public, msg, sig in _vectors():
        key = ed25519.SigningKey(seed)
        assert key.public_key == public, name
        assert key.sign(msg) == sig, name


def test_rfc8032_signatures_verify():
    for name, _seed, public, msg, sig in _vectors():
        assert ed25519.verify(public, msg, sig) is True, name
        assert ed25519.verify(bytearray(public), bytearray(msg), bytearray(sig)), name


def test_bit_flips_rejected():
    name, _seed, public, msg, sig = _vectors()[2]  # TEST 3, a 2-byte message
    for i in (0, 17, 31, 32, 45, 62, 63):
        for bit in (0, 3, 7):
            assert not ed25519.verify(public, msg, _flip(sig, i, bit)), (name, i, bit)
    for i in range(len(msg)):
        assert not ed25519.verify(public, _flip(msg, i, 5), sig)
    assert not ed25519.verify(public, msg + b"\x00", sig)
    assert not ed25519.verify(public, msg[:-1], sig)
    for i in (0, 16, 31):
        assert not ed25519.verify(_flip(public, i, 1), msg, sig)


def test_wrong_lengths_rejected():
    _name, _seed, public, msg, sig = _vectors()[0]
    assert not ed25519.verify(public[:31], msg, sig)
    assert not ed25519.verify(public + b"\x00", msg, sig)
    assert not ed25519.verify(public, msg, sig[:63])
    assert not ed25519.verify(public, msg, sig + b"\x00")


def test_non_canonical_s_rejected():
    for name, _seed, public, msg, sig in _vectors():
        s = int.from_bytes(sig[32:], "little")
        assert s < _L
        for bad in (s + _L, s + 2 * _L, _L, 2**256 - 1):
            if bad < 2**256:
                forged = sig[:32] + bad.to_bytes(32, "little")
                assert not ed25519.verify(public, msg, forged), name


def test_non_canonical_encodings_rejected():
    # y in [p, 2**255): the non-canonical twins of y = 0..18, with both sign bits.
    for y in range(_P, 2**255):
        for sign in (0, 1):
            enc = (y | (sign << 255)).to_bytes(32, "little")
            assert ed25519_extra._decode(enc) is None, (y - _P, sign)
    # "Negative zero": x == 0 with the sign bit set (identity and the order-2 point).
    assert ed25519_extra._decode(_unhex(SMALL_ORDER[0][:-2] + "80")) is None
    assert ed25519_extra._decode(_unhex(SMALL_ORDER[1][:-2] + "ff")) is None
    # A non-canonical A or R can never verify: replace R / A of a valid signature.
    _name, _seed, public, msg, sig = _vectors()[1]
    twin = (_P + 1).to_bytes(32, "little")  # non-canonical identity
    assert not ed25519.verify(twin, msg, sig)
    assert not ed25519.verify(public, msg, twin + sig[32:])


def test_not_on_curve_rejected():
    # y = 2: (y^2 - 1) / (d y^2 + 1) is not a square mod p.
    enc = (2).to_bytes(32, "little")
    assert ed25519_extra._decode(enc) is None
    _name, _seed, public, msg, sig = _vectors()[0]
    assert not ed25519.verify(enc, msg, sig)
    assert not ed25519.verify(public, msg, enc + sig[32:])


def test_small_order_points_detected():
    for h in SMALL_ORDER:
        pt = ed25519_extra._decode(_unhex(h))
        assert pt is not None, h
        assert ed25519_extra._is_small_order(pt), h
    for _name, _seed, public, _msg, sig in _vectors():
        assert not ed25519_extra._is_small_order(ed25519_extra._decode(public))
        assert not ed25519_extra._is_small_order(ed25519_extra._decode(sig[:32]))


def _trivial_forgery(r):
    """Return sig = (encode([r]B), r): valid for ANY message under the identity as public key."""
    R = ed25519._encode(ed25519._base_mul(r))
    return R + r.to_bytes(32, "little")


def test_small_order_public_keys_rejected():
    forged = _trivial_forgery(12345)
    for h in SMALL_ORDER:
        A = _unhex(h)
        for msg in (b"", b"pay 100 to mallory"):
            assert not ed25519.verify(A, msg, forged), h


def test_small_order_r_rejected():
    _name, _seed, public, msg, _sig = _vectors()[0]
    for h in SMALL_ORDER:
        for s in (0, 1, 7):
            assert not ed25519.verify(public, msg, _unhex(h) + s.to_bytes(32, "little")), h


def test_naive_verify_shows_why_small_order_keys_are_rejected():
    # Without the small-order rule the cofactorless equation accepts the trivial forgery.
    identity = _unhex(SMALL_ORDER[0])
    forged = _trivial_forgery(99)
    assert ed25519_naive.verify(identity, b"anything at all", forged)
    assert not ed25519.verify(identity, b"anything at all", forged)


def test_matches_naive_signer():
    for seed, msg in _seeds(4):
        fast = ed25519.SigningKey(seed)
        slow = ed25519_naive.SigningKey(seed)
        assert fast.public_key == slow.public_key
        sig = fast.sign(msg)
        assert sig == slow.sign(msg)
        assert ed25519_naive.verify(fast.public_key, msg, sig)


def test_random_keys_sign_and_verify():
    for seed, msg in _seeds(6):
        key = ed25519.SigningKey(seed)
        sig = key.sign(msg)
        assert len(sig) == 64 and len(key.public_key) == 32
        assert key.sign(msg) == sig  # deterministic
        assert ed25519.verify(key.public_key, msg, sig)
        assert not ed25519.verify(key.public_key, msg + b"!", sig)


def test_base_mul_matches_generic_multiplication():
    B = (ed25519_extra._BX, ed25519_extra._BY, 1, ed25519_extra._BX * ed25519_extra._BY % _P)
    for s in (0, 1, 2, 7, 8, 9, 15, 16, 17, 255, 2**16 + 3, _L - 1, 2**252, 2**253 - 1):
        want = ed25519._encode(ed25519_extra._mul(s, B))
        assert ed25519._encode(ed25519._base_mul(s)) == want, s


def test_base_mul_returns_a_reduced_consistent_extended_point():
    # _base_mul keeps T unreduced between additions and reads halved table entries; what it
    # returns must still be an extended point with coordinates in [0, p) and T/Z = x*y.
    for s in (1, 8, 9, 2**16 + 3, _L - 1, 2**253 - 1):
        X, Y, Z, T = ed25519._base_mul(s)
        assert all(0 <= v < _P for v in (X, Y, Z, T)), s
        assert X * Y % _P == T * Z % _P, s
        assert Z % _P != 0, s


def test_curve_constants():
    d = ed25519_extra._D
    assert (d * 121666 + 121665) % _P == 0
    assert 2 * d % _P == ed25519_extra._D2
    assert ed25519_extra._SQRT_M1 * ed25519_extra._SQRT_M1 % _P == _P - 1
    x = ed25519_extra._BX
    y = ed25519_extra._BY
    assert (y * y - x * x - 1 - d * x * x % _P * y * y) % _P == 0
    assert y * 5 % _P == 4
    B = (x, y, 1, x * y % _P)
    assert ed25519_extra._mul(_L, B)[0] % _P == 0  # [L]B is the identity
    assert ed25519._P == _P and ed25519._L == _L


def test_table_layout():
    ypx, ymx, t2d = ed25519_extra._table()
    assert len(ypx) == len(ymx) == len(t2d) == 128
    # Entry 8*j + m - 1 is m * 2**(16 j) * B in (y+x, y-x, 2dxy) form.
    for j, m in ((0, 1), (0, 8), (5, 3), (15, 8)):
        n = 8 * j + m - 1
        x = (ypx[n] - ymx[n]) * ed25519._inv(2) % _P
        y = (ypx[n] + ymx[n]) * ed25519._inv(2) % _P
        enc = (y | ((x & 1) << 255)).to_bytes(32, "little")
        assert enc == ed25519._encode(ed25519._base_mul(m << (16 * j))), (j, m)
        assert t2d[n] == 2 * ed25519_extra._D * x % _P * y % _P


def test_generate_seed_uses_the_given_randomness():
    calls = []

    def fake_urandom(n):
        calls.append(n)
        return bytes(range(n))

    seed = ed25519.generate_seed(fake_urandom)
    assert seed == bytes(range(32)) and calls == [32]
    ed25519.SigningKey(seed)
    try:
        ed25519.generate_seed(lambda n: b"short")
        raise AssertionError("short randomness accepted")
    except ValueError:
        pass


def test_bad_seed_length_rejected():
    for bad in (b"", b"\x00" * 31, b"\x00" * 33, b"\x00" * 64):
        try:
            ed25519.SigningKey(bad)
            raise AssertionError("accepted a %d-byte seed" % len(bad))
        except ValueError:
            pass
