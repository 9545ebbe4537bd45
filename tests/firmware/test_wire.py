"""Firmware wire format v1 against the shared vectors: the encoder rebuilds every positive record."""

from firmware import wire
from tests.firmware.vectors import W, check_copies, firmware_sources, load, source_consts, unhex

V = load("records.json")


def _value(v):
    return unhex(v) if isinstance(v, str) else v


def _build(fields):
    b = wire.RecordBuilder(unhex(fields["device_id"]))
    b.begin(
        fields["kind"],
        fields["seq"],
        fields["boot"],
        fields["time_s"],
        unhex(fields["prev_hash"]),
        fields["flags"],
    )
    for t, c, v in fields["values"]:
        b.add(t, c, _value(v))
    return b.finish()


def _expect_error(fn, code):
    try:
        fn()
    except wire.WireError as e:
        assert e.code == code, (e.code, code)
        return
    raise AssertionError("no WireError, expected " + code)


def test_builder_reproduces_every_positive_body():
    for vec in V["positive"]:
        raw = unhex(vec["hex"])
        body = _build(vec["fields"])
        assert raw[: len(body)] == body, vec["name"]
        assert len(raw) == len(body) + (64 if vec["signed"] else 0), vec["name"]
        assert wire.record_hash(raw) == unhex(vec["record_hash"]), vec["name"]


def test_signer_reproduces_every_signed_record():
    from firmware import ed25519

    keys = {}
    for vec in V["positive"]:
        if not vec["signed"]:
            continue
        name = vec["key"]
        if name not in keys:
            keys[name] = ed25519.SigningKey(unhex(V["keys"][name]["seed"]))
        assert wire.sign(_build(vec["fields"]), keys[name]) == unhex(vec["hex"]), vec["name"]


def test_parse_returns_the_fields_of_every_positive_vector():
    for vec in V["positive"]:
        f = vec["fields"]
        kind, flags, dev, seq, boot, time_s, prev, values, body_len, signed = wire.parse(
            unhex(vec["hex"])
        )
        assert (kind, flags, seq, boot, time_s) == (
            f["kind"],
            f["flags"],
            f["seq"],
            f["boot"],
            f["time_s"],
        )
        assert dev == unhex(f["device_id"]) and prev == unhex(f["prev_hash"])
        assert values == [(t, c, _value(v)) for t, c, v in f["values"]], vec["name"]
        assert signed == vec["signed"]


def test_device_id_and_genesis_match_the_vector_keys():
    for k in V["keys"].values():
        dev = wire.device_id(unhex(k["public_key"]))
        assert dev == unhex(k["device_id"])
        assert wire.genesis_hash(dev) == unhex(k["genesis_hash"])


def test_structural_negative_vectors_are_rejected_with_their_code():
    n = 0
    for vec in V["negative"]:
        if vec["error"] != "WireError":
            continue
        raw = unhex(vec["hex"])
        _expect_error(lambda raw=raw: wire.parse(raw), vec["code"])
        n += 1
    assert n >= 10


def test_signature_negative_vectors_fail_firmware_verify():
    from firmware import ed25519

    n = 0
    for vec in V["negative"]:
        if vec["error"] != "SignatureError" or vec["code"] == "unsigned":
            continue
        raw = unhex(vec["hex"])
        body_len = wire.parse(raw)[8]
        pk = unhex(V["keys"][vec["key"]]["public_key"])
        assert not ed25519.verify(pk, raw[:body_len], raw[body_len:]), vec["name"]
        n += 1
    assert n >= 3


def test_builder_refuses_what_the_decoder_would_reject():
    b = wire.RecordBuilder(bytes(16))
    b.begin(W.KIND_READING, 1, 1, 1, bytes(32))
    _expect_error(lambda: b.add(W.CH_HUMIDITY, 0, 10001), "value-overflow")
    _expect_error(lambda: b.add(200, 0, 1), "unknown-channel")
    _expect_error(lambda: b.add(W.CH_VEHICLE_COMMITMENT, 0, b"short"), "value-overflow")
    b.add(W.CH_TEMPERATURE, 0, 2000)
    _expect_error(lambda: b.add(W.CH_TEMPERATURE, 0, 2100), "duplicate-channel")
    for ch in range(1, 16):
        b.add(W.CH_TEMPERATURE, ch, ch)
    _expect_error(lambda: b.add(W.CH_HUMIDITY, 0, 1), "too-many-values")
    b.begin(W.KIND_READING, 1, 1, 1, bytes(32))
    _expect_error(b.finish, "kind-rules")
    b.begin(W.KIND_EVENT, 1, 1, 1, bytes(32))
    b.add(W.CH_EVENT_ARG, 0, 5)
    _expect_error(b.finish, "kind-rules")
    _expect_error(lambda: b.begin(W.KIND_READING, 1, 1, 1, bytes(32), 0x80), "reserved-flags")
    _expect_error(lambda: b.begin(9, 1, 1, 1, bytes(32)), "bad-kind")


def test_builder_output_is_not_aliased_to_its_buffer():
    b = wire.RecordBuilder(bytes(16))
    b.begin(W.KIND_READING, 1, 1, 1, bytes(32))
    b.add(W.CH_TEMPERATURE, 0, 1)
    first = b.finish()
    b.begin(W.KIND_READING, 2, 1, 1, bytes(32))
    b.add(W.CH_TEMPERATURE, 0, 2)
    second = b.finish()
    assert first != second and wire.parse(first)[3] == 1 and wire.parse(second)[3] == 2


def test_chain_vectors_link_by_record_hash_as_the_board_builds_them():
    by_name = {}
    for vec in V["chains"]:
        by_name[vec["name"]] = vec
    ok = by_name["chain-signed-successor"]
    recs = [unhex(h) for h in ok["records"]]
    dev = wire.parse(recs[0])[2]
    assert dev == unhex(V["keys"][ok["key"]]["device_id"])
    prev = wire.genesis_hash(dev)
    for raw in recs:
        parsed = wire.parse(raw)
        assert parsed[6] == prev
        prev = wire.record_hash(raw, parsed[8])
    brk = [unhex(h) for h in by_name["chain-break"]["records"]]
    assert wire.parse(brk[1])[6] != wire.record_hash(brk[0])
    rep = [unhex(h) for h in by_name["replayed-seq"]["records"]]
    assert wire.parse(rep[1])[6] == wire.record_hash(rep[0])  # linked, yet the seq repeats
    assert wire.parse(rep[1])[3] <= wire.parse(rep[0])[3]


def test_private_copies_of_registry_constants_match_wire():
    # wire's constants are private (no name in RAM): a firmware module keeps its own copy of those
    # it needs, `_CH_X = const(...)` under the same name; each must be wire.py's value
    assert W.CH_HELD_SEQ == 27 and W.KIND_CHAIN_SEGMENT == 5 and W.MAX_RECORD_BYTES == 240
    assert check_copies("firmware/wire.py", wire) >= 30


def _names_read(text, prefix):
    """Return the attribute names read as prefix + name in source text (wire.X for "wire.")."""
    out = []
    at = text.find(prefix)
    while at >= 0:
        end = at + len(prefix)
        while end < len(text) and (text[end].isalpha() or text[end].isdigit() or text[end] == "_"):
            end += 1
        if not at or not (text[at - 1].isalpha() or text[at - 1] == "_"):  # not onewire.X
            out.append(text[at + len(prefix) : end])
        at = text.find(prefix, at + 1)
    return out


def test_firmware_reads_no_private_constant_by_its_public_name():
    # wire's and protocol's constants have no name on a board (wire.CH_X is there for host code
    # only): a firmware module that read one would pass under CPython and fail on the board.
    for path, prefix in (("firmware/wire.py", "wire."), ("firmware/protocol.py", "protocol.")):
        hidden = [name[1:] for name in source_consts(path)]
        for other in firmware_sources():
            if other == path:
                continue
            with open(other) as f:
                text = f.read()
            for name in _names_read(text, prefix):
                assert name not in hidden, (other, prefix + name)
            for name in hidden:
                assert "import " + name + "\n" not in text, (other, name)
