"""Property tests of the gateway decoder: only typed errors, and no altered or forged record passes."""

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import wire
from gateway.errors import SignatureError, WireError

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "tests" / "vectors" / "records.json").read_text()
)
SIGNED = [
    (bytes.fromhex(v["hex"]), bytes.fromhex(VECTORS["keys"][v["key"]]["public_key"]))
    for v in VECTORS["positive"]
    if v["signed"]
]


def _accepts(raw: bytes, public_key: bytes) -> bool:
    """Return True if raw decodes and verifies; any other exception than the typed ones fails."""
    try:
        rec = wire.decode_record(raw)
        wire.verify_signature(rec, public_key)
    except (WireError, SignatureError):
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=320))
def test_random_bytes_raise_only_typed_errors(raw):
    assert not _accepts(raw, SIGNED[0][1])


@st.composite
def mutated(draw):
    """Return (original, mutated, key) for a signed vector with a random edit applied."""
    raw, pk = draw(st.sampled_from(SIGNED))
    buf = bytearray(raw)
    op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append", "splice"]))
    if op == "flip":
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] ^= 1 << draw(st.integers(0, 7))
    elif op == "set":
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] = draw(st.integers(0, 255))
    elif op == "insert":
        i = draw(st.integers(0, len(buf)))
        buf[i:i] = draw(st.binary(min_size=1, max_size=8))
    elif op == "delete":
        i = draw(st.integers(0, len(buf) - 1))
        del buf[i : i + draw(st.integers(1, 8))]
    elif op == "truncate":
        del buf[draw(st.integers(0, len(buf) - 1)) :]
    elif op == "append":
        buf += draw(st.binary(min_size=1, max_size=80))
    else:
        other, _ = draw(st.sampled_from(SIGNED))
        cut = draw(st.integers(0, min(len(buf), len(other))))
        buf = bytearray(buf[:cut] + other[cut:])
    return raw, bytes(buf), pk


@settings(max_examples=1500, deadline=None)
@given(mutated())
def test_no_altered_record_is_accepted(case):
    _, changed, pk = case
    # A splice can reproduce another genuine record of the same key; nothing else may pass.
    assert _accepts(changed, pk) == ((changed, pk) in SIGNED)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SIGNED), st.binary(min_size=64, max_size=64))
def test_no_forged_signature_is_accepted(case, signature):
    raw, pk = case
    forged = raw[:-64] + signature
    assert _accepts(forged, pk) == (forged == raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SIGNED), st.binary(min_size=32, max_size=32))
def test_other_keys_do_not_verify(case, key):
    raw, pk = case
    assert _accepts(raw, key) == (key == pk)
