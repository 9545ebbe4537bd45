"""The shared chain builder: it rebuilds the wire vectors and its chains pass the gateway."""

import json
from pathlib import Path

import pytest

from gateway import wire
from gateway.errors import SignatureError
from tests.support import EVENT, HEARTBEAT, READING, ChainDevice, signed_at
from tools.gen_vectors import VECTOR_KEY_TAG

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "records.json"


def test_rebuilds_every_positive_vector() -> None:
    """Given the fields of a positive vector, emit() writes the vector's bytes."""
    doc = json.loads(VECTORS.read_text())
    for v in doc["positive"]:
        f = v["fields"]
        dev = ChainDevice(v["key"], tag=VECTOR_KEY_TAG)
        assert dev.device_id.hex() == f["device_id"]
        dev.head = bytes.fromhex(f["prev_hash"])
        values = [(t, c, bytes.fromhex(x) if isinstance(x, str) else x) for t, c, x in f["values"]]
        fields = {k: f[k] for k in ("seq", "boot", "time_s", "flags")}
        raw = dev.emit(f["kind"], values, signed=v["signed"], **fields)
        assert raw.hex() == v["hex"], v["name"]
        assert dev.head.hex() == v["record_hash"]


@pytest.mark.parametrize(("sign_every", "upload"), [(1, None), (3, None), (4, 5), (100, 10)])
def test_readings_are_a_chain_the_gateway_accepts(sign_every: int, upload: int | None) -> None:
    """Every record decodes; the chain from genesis is authentic once its last record is signed."""
    dev = ChainDevice("chain", seq=7, seq_step=3, boot=2, time_s=1000, time_step=60)
    journal = dev.readings(20, sign_every=sign_every, upload=upload)
    journal.append((dev.seq, dev.emit(HEARTBEAT, signed=False)))
    journal.append((dev.seq, dev.emit(EVENT, [(21, 0, 4), (22, 0, -3)], boot=3, flags=0)))
    chain = wire.DeviceChain(dev.device_id, dev.public_key)
    accepted = []
    signed = [signed_at(i, 20, sign_every, upload) for i in range(20)] + [False, True]
    for i, (seq, raw) in enumerate(journal):
        rec = wire.decode_record(raw)
        assert rec.seq == seq == 7 + 3 * i and rec.time_s == 1000 + 60 * i
        assert (rec.signature is not None) == signed[i]
        accepted += chain.push(rec)
    assert len(accepted) == len(journal)
    assert [r.kind for r in accepted[-3:]] == [READING, HEARTBEAT, EVENT]
    assert accepted[-1].boot == 3 and accepted[-2].boot == 2


def test_one_off_records_leave_the_chain_and_a_foreign_signer_fails() -> None:
    """advance=False keeps head/seq/time; signer= signs with another key (a wrong-key record)."""
    dev, other = ChainDevice("one-off"), ChainDevice("other")
    state = (dev.head, dev.seq, dev.time_s)
    forged = dev.emit(READING, [(1, 0, 1)], signer=other.key, advance=False)
    assert (dev.head, dev.seq, dev.time_s) == state
    chain = wire.DeviceChain(dev.device_id, dev.public_key)
    with pytest.raises(SignatureError):
        chain.push(wire.decode_record(forged))
    assert len(chain.push(wire.decode_record(dev.emit(READING, [(1, 0, 1)])))) == 1


def test_signed_at() -> None:
    """Every sign_every-th record, and the one closing the chain or each upload."""
    assert [signed_at(i, 7, 3) for i in range(7)] == [0, 0, 1, 0, 0, 1, 1]
    assert [signed_at(i, 7, 100, upload=2) for i in range(7)] == [0, 1, 0, 1, 0, 1, 0]
