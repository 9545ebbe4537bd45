"""Gateway BLE codec against every vector of tests/vectors/ble.json, plus reassembler properties."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ble import auth
from gateway.ble import protocol as p
from gateway.errors import StartupRefused, WireError

ROOT = Path(__file__).resolve().parents[3]
BLE = json.loads((ROOT / "tests" / "vectors" / "ble.json").read_text())
RECORDS = json.loads((ROOT / "tests" / "vectors" / "records.json").read_text())
KEYS = RECORDS["keys"]
RECORD_HEX = {v["name"]: v["hex"] for v in RECORDS["positive"]}


def test_uuids_and_company_id_match_the_vectors():
    assert BLE["uuids"] == {
        "service": p.SERVICE_UUID,
        "info": p.INFO_UUID,
        "data": p.DATA_UUID,
        "control": p.CONTROL_UUID,
    }
    assert BLE["company_id"] == p.COMPANY_ID


@pytest.mark.parametrize("vec", BLE["advertising"], ids=lambda v: f"pending-{v['pending']}")
def test_advertising_vector(vec):
    dev_id = bytes.fromhex(KEYS[vec["key"]]["device_id"])
    adv = bytes.fromhex(vec["adv"])
    assert len(adv) <= 31
    got = p.parse_advertising(adv)
    assert got == p.Advert(dev_id[:4], min(vec["pending"], 0xFFFF))
    ad = p.parse_ad_structures(adv)
    assert p.service_uuids_in(ad) == [p.SERVICE_UUID]
    # bleak hands manufacturer data as {company id: payload without the id}
    assert p.parse_manufacturer_data(p.manufacturer_data_in(ad)) == got
    assert p.encode_advertising(dev_id, vec["pending"]) == adv
    sr = bytes.fromhex(vec["scan_response"])
    assert p.local_name_in(p.parse_ad_structures(sr)) == "es-" + dev_id[:4].hex()
    assert p.encode_scan_response(dev_id) == sr


def test_advertising_rejects_foreign_and_malformed_data():
    assert p.parse_manufacturer_data({0x004C: b"\x02\x15"}) is None
    with pytest.raises(WireError) as e:
        p.parse_manufacturer_data({p.COMPANY_ID: b"\x01\x02\x03"})
    assert e.value.code == "ble-bad-advert"
    with pytest.raises(WireError) as e:
        p.parse_ad_structures(b"\x05\xff\x01")
    assert e.value.code == "ble-bad-advert"
    assert p.parse_advertising(b"\x02\x01\x06") is None


@pytest.mark.parametrize("vec", BLE["info"], ids=lambda v: v["fields"]["board"] or "empty")
def test_info_vector(vec):
    f = vec["fields"]
    info = p.decode_info(bytes.fromhex(vec["hex"]))
    key = KEYS[vec["key"]]
    assert info.device_id.hex() == key["device_id"]
    assert info.public_key.hex() == key["public_key"]
    assert list(info.firmware) == f["firmware"]
    assert info.journal_depth == f["journal_depth"]

    def seq(v):
        return None if v == 0xFFFFFFFF else v

    assert info.first_seq == seq(f["first_seq"])
    assert info.last_seq == seq(f["last_seq"])
    assert info.last_acked_seq == seq(f["last_acked_seq"])
    assert (info.boot, info.time_s, info.flags, info.board) == (
        f["boot"],
        f["time_s"],
        f["flags"],
        f["board"],
    )
    assert info.time_synced == bool(f["flags"] & 1)
    assert p.encode_info(info).hex() == vec["hex"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b + b"x",
        lambda b: b"\x01" + b[1:],  # a v1 board: no nonce, no authenticated commands
        lambda b: b[:93] + b"\x21" + b[94:],
        lambda b: b[:40],
    ],
    ids=["short-board", "long", "version", "board-len", "truncated"],
)
def test_info_negative(mutate):
    good = bytes.fromhex(BLE["info"][0]["hex"])
    with pytest.raises(WireError) as e:
        p.decode_info(mutate(good))
    assert e.value.code == "ble-bad-info"


@pytest.mark.parametrize(
    "vec", BLE["chunks"], ids=lambda v: f"{v['record']}-mtu{v['mtu']}-msg{v['msg']}"
)
def test_chunk_vector_reassembles_and_encodes(vec):
    record = bytes.fromhex(RECORD_HEX[vec["record"]])
    frames = [bytes.fromhex(f) for f in vec["frames"]]
    assert all(len(f) <= vec["mtu"] - 3 for f in frames)
    r = p.Reassembler()
    out = []
    for f in frames:
        chunk = p.decode_frame(f)
        assert isinstance(chunk, p.Chunk) and chunk.msg == vec["msg"]
        got = r.feed(chunk)
        if got is not None:
            out.append(got)
    assert out == [record]
    assert (r.dropped_records, r.dropped_chunks) == (0, 0)
    assert p.encode_chunks(record, vec["msg"], vec["mtu"]) == frames


def test_chunk_mismatch_drops_the_record_and_counts_it():
    vec = next(v for v in BLE["chunks"] if v["mtu"] == 23 and len(v["frames"]) > 3)
    frames = [p.decode_frame(bytes.fromhex(f)) for f in vec["frames"]]
    r = p.Reassembler()
    assert r.feed(frames[0]) is None
    assert r.feed(frames[2]) is None  # index 1 lost: drops the record, chunk 2 is an orphan
    assert (r.dropped_records, r.dropped_chunks) == (1, 1)
    # the resend completes normally
    out = [r.feed(f) for f in frames]
    assert out[-1] == bytes.fromhex(RECORD_HEX[vec["record"]])


@pytest.mark.parametrize("vec", BLE["frames"], ids=lambda v: v["name"])
def test_end_and_status_vectors(vec):
    frame = p.decode_frame(bytes.fromhex(vec["hex"]))
    expected = {
        "end-all-sent": p.End(p.END_ALL_SENT, 51, 12),
        "end-limit": p.End(p.END_MAX_RECORDS, 45, 12),
        "end-empty": p.End(p.END_JOURNAL_EMPTY, None, 0),
        "status-ack-ok": p.Status(p.CMD_ACK, p.STATUS_OK, 0),
        "status-bad-command": p.Status(0x7F, p.STATUS_BAD_COMMAND, 0),
    }[vec["name"]]
    assert frame == expected
    if isinstance(frame, p.End):
        assert (
            p.encode_end(frame.reason, frame.last_sent_seq, frame.journal_depth).hex() == vec["hex"]
        )
    else:
        assert isinstance(frame, p.Status)
        assert p.encode_status(frame.command, frame.status, frame.arg).hex() == vec["hex"]


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", "ble-empty-frame"),
        (b"\x09\x00", "ble-unknown-frame"),
        (b"\x01\x00\x00\x01", "ble-bad-frame"),
        (b"\x01\x00\x02\x02x", "ble-bad-frame"),
        (b"\x01\x00\x00\x00x", "ble-bad-frame"),
        (b"\x02\x00", "ble-bad-frame"),
        (b"\x03\x02\x00\x00\x00\x00\x00\x00", "ble-bad-frame"),
    ],
)
def test_bad_frames(data, code):
    with pytest.raises(WireError) as e:
        p.decode_frame(data)
    assert e.value.code == code


@pytest.mark.parametrize("vec", BLE["commands"], ids=lambda v: v["name"])
def test_command_vectors(vec):
    want = bytes.fromhex(vec["hex"])
    encoded = {
        "send-from": p.encode_send_from(40),
        "send-from-limit": p.encode_send_from(40, 5),
        "ack": p.encode_ack(51),
        "time-sync": p.encode_time_sync(1795000000),
        "stop": p.encode_stop(),
    }[vec["name"]]
    assert encoded == want
    op, _ = p.decode_command(want)
    assert op == want[0]


@pytest.mark.parametrize("vec", BLE["bad_commands"], ids=lambda v: v["name"])
def test_bad_command_vectors(vec):
    with pytest.raises(WireError) as e:
        p.decode_command(bytes.fromhex(vec["hex"]))
    assert e.value.code == "ble-bad-command"


_records = st.lists(st.binary(min_size=1, max_size=240), min_size=1, max_size=12)
# Junk that is not a well-formed CHUNK: a forged chunk with the right msg/index could of course
# splice bytes into a record; that is for the record's signature to catch, not the framing.
_junk = st.one_of(
    st.binary(max_size=8).map(lambda b: bytes([0x09]) + b),
    st.binary(max_size=12).map(lambda b: b"\x02" + b),
    st.binary(max_size=12).map(lambda b: b"\x03" + b),
    st.binary(max_size=4).map(lambda b: b"\x01\x00\x00\x00" + b),
    st.just(b""),
)
_noise = st.lists(
    st.tuples(st.sampled_from(["drop", "dup", "swap", "junk"]), st.integers(0, 10_000), _junk),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_records, st.sampled_from([23, 27, 64, 185, 247]), st.integers(0, 255), _noise)
def test_reassembler_only_yields_sent_records_and_only_raises_wire_error(records, mtu, msg0, noise):
    frames = []
    for i, rec in enumerate(records):
        frames += p.encode_chunks(rec, (msg0 + i) % 256, mtu)
    for op, pos, junk in noise:
        if not frames:
            break
        k = pos % len(frames)
        if op == "drop":
            del frames[k]
        elif op == "dup":
            frames.insert(k, frames[k])
        elif op == "swap" and k + 1 < len(frames):
            frames[k], frames[k + 1] = frames[k + 1], frames[k]
        elif op == "junk":
            frames.insert(k, junk)
    r = p.Reassembler()
    out = []
    for f in frames:
        try:
            frame = p.decode_frame(f)
            if isinstance(frame, p.Chunk):
                got = r.feed(frame)
                if got is not None:
                    out.append(got)
        except WireError:
            pass
    sent = set(records)
    assert all(rec in sent for rec in out)
    if not noise:
        assert out == records


def test_reassembler_rejects_an_oversized_record_and_recovers():
    r = p.Reassembler()
    piece = bytes(200)
    assert r.feed(p.Chunk(1, 0, 3, piece)) is None
    with pytest.raises(WireError) as e:
        r.feed(p.Chunk(1, 1, 3, piece))
    assert e.value.code == "ble-record-too-large"
    assert not r.in_progress
    assert r.feed(p.Chunk(2, 0, 1, b"ok")) == b"ok"


# ---- authenticated commands (v2) ---------------------------------------------------------------
AUTH = BLE["auth"]


def test_link_key_derivation_matches_the_vectors():
    master = bytes.fromhex(AUTH["master"])
    assert auth.derive_link_key(master, bytes.fromhex(AUTH["device_id"])).hex() == AUTH["link_key"]
    assert AUTH["device_id"] == KEYS[AUTH["key"]]["device_id"]


def test_sealer_writes_the_vector_commands_in_order():
    key, dev = bytes.fromhex(AUTH["link_key"]), bytes.fromhex(AUTH["device_id"])
    sealer = auth.Sealer(key, dev, bytes.fromhex(AUTH["nonce"]))
    for vec in AUTH["writes"]:
        assert sealer.seal(bytes.fromhex(vec["command"])).hex() == vec["hex"], vec["name"]
        assert sealer.counter == vec["counter"]
        assert len(bytes.fromhex(vec["hex"])) <= 20  # one ATT write at the default MTU 23


@pytest.mark.parametrize("vec", AUTH["bad"], ids=lambda v: v["name"])
def test_negative_auth_vectors(vec):
    key, dev = bytes.fromhex(AUTH["link_key"]), bytes.fromhex(AUTH["device_id"])
    nonce = bytes.fromhex(AUTH["nonce"])
    last = 0
    for i in vec["before"]:
        reason, _, last = auth.check_write(
            key, dev, nonce, last, bytes.fromhex(AUTH["writes"][i]["hex"])
        )
        assert reason == "ok"
    assert auth.check_write(key, dev, nonce, last, bytes.fromhex(vec["hex"]))[0] == vec["reason"]


def test_master_secret_file_is_made_once_with_mode_0600(tmp_path):
    path = tmp_path / auth.LINK_KEY_FILE
    master = auth.load_or_create_master(path)
    assert len(master) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert auth.load_or_create_master(path) == master
    path.write_bytes(b"short")
    with pytest.raises(StartupRefused) as e:
        auth.load_or_create_master(path)
    assert e.value.code == "bad-link-key"


def test_the_counter_stops_at_255():
    sealer = auth.Sealer(bytes(32), bytes(16), bytes(16))
    sealer.counter = 255
    with pytest.raises(WireError) as e:
        sealer.seal(b"\x04")
    assert e.value.code == "ble-counter-exhausted"
