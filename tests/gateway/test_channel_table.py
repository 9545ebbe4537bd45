"""The channel registry and the event codes: docs/wire-format.md is the one spec, and the gateway
(gateway.wire), the firmware (firmware.wire) and the shared vectors must agree with it exactly."""

import json
import re
import struct
from pathlib import Path

import pytest

from firmware import channels as fw_channels
from firmware import record as fw_record
from firmware import wire as fw_wire
from gateway import wire

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "wire-format.md").read_text()
WIDTH_BYTES = {"i32": 4, "b16": 16, "b32": 32}


def _doc_channels() -> list[tuple[int, str, str, int, str, int | None, int | None]]:
    """Return the rows of the Values table: (id, name, unit, scale, width, min, max)."""
    section = DOC.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| id ", "|--")):
            continue
        m = re.fullmatch(
            r"\| (\d+) \| ([a-z_0-9]+) \| (\S+) \| (-?\d+) \| (i32|b16|b32) \| (-?\d+|-) \| (-?\d+|-) \|",
            line,
        )
        assert m, f"unparsed registry row {line!r}"
        id_, name, unit, scale, width, lo, hi = m.groups()
        rows.append(
            (
                int(id_),
                name,
                unit,
                int(scale),
                width,
                None if lo == "-" else int(lo),
                None if hi == "-" else int(hi),
            )
        )
    return rows


def _doc_event_codes() -> tuple[dict[str, int], int]:
    """Return ({NAME: code}, highest reserved code) from the event code list of Values."""
    m = re.search(
        r"^Event codes \(`event_code` values\): (.*?)\. Codes up to (\d+) ", DOC, re.M | re.S
    )
    assert m, "no event code list in docs/wire-format.md"
    listing = re.sub(r"\s*\([^)]*\)", "", " ".join(m[1].split()))  # drop the event_arg notes
    codes = {}
    for item in listing.split(", "):
        code = re.fullmatch(r"(\d+) ([a-z]+(?: [a-z]+)*)", item)
        assert code, f"unparsed event code {item!r}"
        codes[code[2].replace(" ", "_").upper()] = int(code[1])
    return codes, int(m[2])


CHANNELS = _doc_channels()
EVENT_CODES, MAX_EVENT_CODE = _doc_event_codes()


def test_the_doc_parses_to_a_dense_registry():
    assert [c[0] for c in CHANNELS] == list(range(1, len(CHANNELS) + 1))
    assert len(CHANNELS) == 27
    assert list(EVENT_CODES.values()) == list(range(1, len(EVENT_CODES) + 1))
    assert len(EVENT_CODES) == 7
    event_code = next(c for c in CHANNELS if c[1] == "event_code")
    assert (event_code[5], event_code[6]) == (1, MAX_EVENT_CODE)


def test_gateway_table_and_names_match_the_doc():
    assert [tuple(c) for c in wire.CHANNELS.values()] == CHANNELS
    assert {c.name: c.value for c in wire.Ch} == {name.upper(): id_ for id_, name, *_ in CHANNELS}
    assert all(wire.CHANNELS[c].id is c for c in wire.Ch)  # rows are keyed by the names
    assert {e.name: e.value for e in wire.Ev} == EVENT_CODES
    for id_, _name, _unit, _scale, width, lo, hi in CHANNELS:
        if width == "i32":
            assert wire.i32_range(id_) == (lo, hi)
        else:
            with pytest.raises(ValueError):
                wire.i32_range(id_)


def test_firmware_constants_match_the_doc():
    # firmware/wire.py's registry values are private constants (no name in a board's RAM);
    # CPython keeps them as module attributes
    ch_consts = {k[4:]: v for k, v in vars(fw_wire).items() if k.startswith("_CH_")}
    assert ch_consts == {name.upper(): id_ for id_, name, *_ in CHANNELS}
    ev_consts = {k[4:]: v for k, v in vars(fw_wire).items() if k.startswith("_EV_")}
    assert ev_consts == EVENT_CODES
    want = {id_: (WIDTH_BYTES[width], lo, hi) for id_, _n, _u, _s, width, lo, hi in CHANNELS}
    table = fw_record._CHANNELS  # ">Bii" rows (width, min, max) by type id; a byte payload: 0, 0
    assert len(table) == 9 * len(CHANNELS) == 9 * fw_record._N_CHANNELS
    got = {}
    for id_ in range(1, len(CHANNELS) + 1):
        width, lo, hi = struct.unpack_from(">Bii", table, 9 * (id_ - 1))
        got[id_] = (width, lo, hi) if width == 4 else (width, None, None)
        assert width == 4 or (lo, hi) == (0, 0)
    assert got == want
    names = {name: id_ for id_, name, *_ in CHANNELS}
    assert {n: names[n] for n in fw_channels.CHANNEL_TYPES} == fw_channels.CHANNEL_TYPES


def test_record_kinds_match_the_doc():
    kinds = dict(re.findall(r"^\| (\d) ([a-z ]+) \| ", DOC.split("\n## Rules per kind\n")[1], re.M))
    names = {int(k): v.replace(" ", "_") for k, v in kinds.items()}
    assert names == wire.KIND_NAMES
    fw_kinds = {v: k[6:].lower() for k, v in vars(fw_wire).items() if k.startswith("_KIND_")}
    assert fw_kinds == names


def test_shared_vectors_carry_the_doc_table():
    vectors = json.loads((ROOT / "tests" / "vectors" / "records.json").read_text())
    fields = ("id", "name", "unit", "scale", "width", "min", "max")
    assert [tuple(c[f] for f in fields) for c in vectors["channels"]] == CHANNELS


def test_break_reasons_match_the_doc():
    bullet = DOC.split("\n## Chain segments\n")[1].split("- `held_seq`")[0]
    reasons = {
        name: int(code) for code, name in re.findall(r"(\d) ([a-z]+(?:-[a-z]+)?)\s+\(", bullet)
    }
    assert list(reasons.values()) == list(range(1, len(reasons) + 1)) and len(reasons) == 4
    assert {b.name.lower().replace("_", "-"): b.value for b in wire.Brk} == reasons
    fw = {k[5:].lower().replace("_", "-"): v for k, v in vars(fw_wire).items() if k[:5] == "_BRK_"}
    assert fw == reasons
    rng = next(c for c in CHANNELS if c[1] == "break_reason")
    assert (rng[5], rng[6]) == (1, 255)
