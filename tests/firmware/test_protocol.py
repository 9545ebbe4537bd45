"""BLE protocol codec (firmware/protocol.py) against every vector of tests/vectors/ble.json."""

import struct

from firmware import protocol
from tests.firmware.vectors import P, check_copies, load, private_const, unhex

V = load("ble.json")
R = load("records.json")


def _record(name):
    for vec in R["positive"]:
        if vec["name"] == name:
            return unhex(vec["hex"])
    raise AssertionError("no record vector " + name)


def _key_a():
    """Return (device id, public key) of vector key "a", read from the first Info vector."""
    raw = unhex(V["info"][0]["hex"])
    return raw[1:17], raw[17:49]


def _reassemble(frames):
    """Independent decoder: return the records carried by CHUNK frames (ble.json rules)."""
    out = []
    cur = None
    for f in frames:
        assert f[0] == 1
        msg, index, count = f[1], f[2], f[3]
        if index == 0:
            cur = [msg, count, bytearray(f[4:])]
        else:
            assert cur is not None and cur[0] == msg and cur[1] == count
            cur[2] += f[4:]
        if index == count - 1:
            out.append(bytes(cur[2]))
            cur = None
    return out


def test_uuids_match_vectors():
    u = V["uuids"]
    assert u["service"] == P.SERVICE_UUID
    assert u["info"] == P.INFO_UUID
    assert u["data"] == P.DATA_UUID
    assert u["control"] == P.CONTROL_UUID
    assert V["company_id"] == private_const(protocol, "_COMPANY_ID", 0xFFFF)


def test_uuid_little_endian():
    le = protocol.uuid_bytes_le(P.SERVICE_UUID)
    assert le[0] == 0x00 and le[15] == 0xED and len(le) == 16


def test_advertising_vectors():
    dev_id, _ = _key_a()
    adv = protocol.Advertising(dev_id)
    for vec in V["advertising"]:
        assert vec["key"] == "a"
        payload = bytes(adv.payload(vec["pending"]))
        assert payload == unhex(vec["adv"]), vec["pending"]
        assert len(payload) <= 31
        assert adv.scan_response == unhex(vec["scan_response"])


def test_info_vectors():
    dev_id, pk = _key_a()
    for vec in V["info"]:
        f = vec["fields"]
        enc = protocol.InfoEncoder(dev_id, pk, tuple(f["firmware"]), f["board"])
        out = enc.encode(
            f["journal_depth"],
            f["first_seq"],
            f["last_seq"],
            f["last_acked_seq"],
            f["boot"],
            f["time_s"],
            f["flags"],
            unhex(f["nonce"]),
        )
        assert bytes(out) == unhex(vec["hex"])


def test_info_none_seqs_from_minus_one():
    dev_id, pk = _key_a()
    vec = V["info"][1]
    f = vec["fields"]
    enc = protocol.InfoEncoder(dev_id, pk, tuple(f["firmware"]), f["board"])
    out = enc.encode(0, -1, -1, None, f["boot"], f["time_s"], 0, unhex(f["nonce"]))
    assert bytes(out) == unhex(vec["hex"])


def test_info_rejects_long_board_name():
    dev_id, pk = _key_a()
    try:
        protocol.InfoEncoder(dev_id, pk, (0, 1, 0), "x" * 33)
    except ValueError:
        return
    raise AssertionError("33-byte board name accepted")


def test_chunk_vectors():
    fr = protocol.Framer()
    for vec in V["chunks"]:
        record = _record(vec["record"])
        got = [bytes(f) for f in fr.chunks(record, vec["msg"], vec["mtu"])]
        want = [unhex(h) for h in vec["frames"]]
        assert got == want, (vec["record"], vec["mtu"])
        assert len(got) == protocol.chunk_count(len(record), vec["mtu"])
        for f in got:
            assert len(f) <= vec["mtu"] - 3
        assert _reassemble(got) == [record]


def test_chunks_every_mtu_and_size():
    fr = protocol.Framer()
    for mtu in (23, 24, 50, 100, 185, 247, 512):
        for n in (1, 16, 17, 100, 239, 240):
            record = bytes([(i * 7) & 0xFF for i in range(n)])
            frames = [bytes(f) for f in fr.chunks(record, 3, mtu)]
            assert _reassemble(frames) == [record]
            for f in frames:
                assert len(f) <= mtu - 3
    assert protocol.chunk_count(240, 23) == 15
    assert protocol.chunk_count(240, 247) == 1


def test_chunks_reject_bad_input():
    fr = protocol.Framer()
    for record, mtu in ((b"", 247), (bytes(241), 247), (bytes(10), 22)):
        try:
            list(fr.chunks(record, 0, mtu))
        except ValueError:
            continue
        raise AssertionError("accepted size %d mtu %d" % (len(record), mtu))


def test_end_and_status_vectors():
    fr = protocol.Framer()
    want = {}
    for vec in V["frames"]:
        want[vec["name"]] = unhex(vec["hex"])
    assert bytes(fr.end(P.END_ALL_SENT, 0x33, 12)) == want["end-all-sent"]
    assert bytes(fr.end(P.END_LIMIT, 0x2D, 12)) == want["end-limit"]
    assert bytes(fr.end(P.END_EMPTY, -1, 0)) == want["end-empty"]
    assert bytes(fr.end(P.END_EMPTY, None, 0)) == want["end-empty"]
    ok = fr.status(P.CMD_ACK, P.ST_OK, 0)
    assert bytes(ok) == want["status-ack-ok"]
    bad = fr.status(0x7F, P.ST_BAD_COMMAND, 0)
    assert bytes(bad) == want["status-bad-command"]


def test_frame_vectors_decode_by_type():
    for vec in V["frames"]:
        raw = unhex(vec["hex"])
        if raw[0] == private_const(protocol, "_FRAME_END", 0x02):
            assert len(raw) == private_const(protocol, "_END_FRAME_BYTES", 10)
            struct.unpack(">BBII", raw)
        else:
            assert raw[0] == private_const(protocol, "_FRAME_STATUS", 0x03)
            assert len(raw) == private_const(protocol, "_STATUS_FRAME_BYTES", 7)


def test_command_vectors():
    want = {
        "send-from": (P.CMD_SEND_FROM, 0x28, 0),
        "send-from-limit": (P.CMD_SEND_FROM, 0x28, 5),
        "ack": (P.CMD_ACK, 0x33, 0),
        "time-sync": (P.CMD_TIME_SYNC, 1795000000, 0),
        "stop": (private_const(protocol, "_CMD_STOP", 0x04), 0, 0),
    }
    seen = 0
    for vec in V["commands"]:
        got = protocol.parse_command(unhex(vec["hex"]))
        assert got == want[vec["name"]], vec["name"]
        seen += 1
    assert seen == len(want)


def test_bad_command_vectors():
    for vec in V["bad_commands"]:
        raw = unhex(vec["hex"])
        try:
            protocol.parse_command(raw)
        except protocol.CommandError as e:
            assert e.status == vec["status"], vec["name"]
            assert e.opcode == (raw[0] if raw else 0)
            continue
        raise AssertionError("accepted " + vec["name"])


def test_every_truncation_and_extension_of_good_commands_is_refused():
    for vec in V["commands"]:
        raw = unhex(vec["hex"])
        for n in range(len(raw)):
            try:
                protocol.parse_command(raw[:n])
            except protocol.CommandError as e:
                assert e.status == P.ST_BAD_COMMAND
            else:
                raise AssertionError("accepted truncated " + vec["name"])
        try:
            protocol.parse_command(raw + b"\x00")
        except protocol.CommandError as e:
            assert e.status == P.ST_BAD_COMMAND
        else:
            raise AssertionError("accepted extended " + vec["name"])


def test_commands_fit_the_control_buffer():
    for vec in V["commands"] + V["bad_commands"] + V["auth"]["writes"]:
        assert len(unhex(vec["hex"])) <= P.CONTROL_BUFFER_BYTES
        assert len(unhex(vec["hex"])) <= 20  # one write at the default MTU 23
    max_write = private_const(protocol, "_MAX_WRITE_BYTES", 20)
    command = private_const(protocol, "_MAX_COMMAND_BYTES", 7)
    assert max_write == command + private_const(protocol, "_AUTH_TRAILER_BYTES", 13)


def test_private_copies_of_protocol_constants_match():
    # protocol's constants are private (no name in RAM): firmware/peripheral.py keeps its own
    # copies (`_ST_OK = const(0)`), each of which must be protocol.py's value under the same name
    assert P.CMD_ACK == 0x02 and P.ST_UNAUTHENTICATED == 4 and P.PREFERRED_MTU == 247
    assert check_copies("firmware/protocol.py", protocol) >= 20
