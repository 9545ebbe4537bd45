"""`edgeseal audit`: a changed byte anywhere (entry, stored hash, checkpoint) is found and located."""

import shutil
import sqlite3

import pytest

from gateway.cli import main
from gateway.ledger.audit import audit
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_PARTICIPANT_TX
from gateway.ledger.merkle import HASH_SIZE
from gateway.ledger.note import NoteSigner
from gateway.ledger.store import Ledger
from gateway.ledger.tiles import tile_position_node
from tests.gateway.ledger.helpers import Device

SIGNER = NoteSigner.from_skey(NoteSigner.generate("audit.example/log").skey)


def build(path: str) -> None:
    """A log of enrollments, hash-chained device records (some unsigned), txs and events."""
    ledger = Ledger.open(path, SIGNER, max_batch_entries=9)
    devices = [Device(i) for i in range(3)]
    ledger.append([d.enrollment() for d in devices])
    for round_ in range(4):
        for d in devices:
            ledger.append(d.records(4, sign_every=3))
        ledger.append([(KIND_PARTICIPANT_TX, b'{"round":%d}' % round_)])
        ledger.append([(KIND_CONTRACT_EVENT, b"event-%d" % round_)])
    ledger.integrate()
    ledger.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("audit") / "ledger.db")
    build(path)
    conn = sqlite3.connect(path)
    entries = conn.execute("SELECT COUNT(*) FROM entry").fetchone()[0]
    tiles = conn.execute(
        "SELECT level, idx, length(hashes) FROM tile ORDER BY level, idx"
    ).fetchall()
    sizes = [s for (s,) in conn.execute("SELECT size FROM checkpoint ORDER BY size")]
    conn.close()
    return path, entries, tiles, sizes


N_ENTRIES = 3 + 4 * (3 * 4 + 2)  # see build()
# Every stored hash of that log: its tiles are (0, 0) with 2n - popcount(n) hashes.
N_HASHES = 2 * N_ENTRIES - bin(N_ENTRIES).count("1")


def tampered(pristine, tmp_path, sql: str, args: tuple = ()) -> str:
    path = str(tmp_path / "t.db")
    shutil.copy(pristine[0], path)
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()
    return path


def flip_byte(blob: bytes, pos: int) -> bytes:
    b = bytearray(blob)
    b[pos] ^= 0x20
    return bytes(b)


def test_pristine_log_passes(pristine):
    path, entries, tiles, sizes = pristine
    assert entries == N_ENTRIES and tiles == [(0, 0, N_HASHES * HASH_SIZE)]
    report = audit(path, SIGNER.vkey)
    assert report.ok, [str(f) for f in report.findings]
    assert (report.entries, report.tree_size, report.devices) == (N_ENTRIES, N_ENTRIES, 3)
    assert report.device_records == 48 and report.checkpoints == len(sizes) > 5
    # The fixture's transaction and event entries are placeholder bytes, not contract entries,
    # so the CLI audits the ledger layer only (the contract replay: tests/gateway/test_cli.py).
    assert main(["audit", "--db", path, "--vkey", SIGNER.vkey, "--ledger-only"]) == 0
    assert main(["audit", "--db", path, "--vkey", SIGNER.vkey]) == 1


@pytest.mark.parametrize("index", range(N_ENTRIES))
def test_changed_byte_in_any_entry_is_found(pristine, tmp_path, index):
    conn = sqlite3.connect(pristine[0])
    data = conn.execute("SELECT data FROM entry WHERE idx = ?", (index,)).fetchone()[0]
    conn.close()
    pos = (index * 37) % len(data)
    path = tampered(
        pristine, tmp_path, "UPDATE entry SET data = ? WHERE idx = ?", (flip_byte(data, pos), index)
    )
    report = audit(path, SIGNER.vkey)
    assert not report.ok
    assert report.first_bad_index == index


@pytest.mark.parametrize("position", range(N_HASHES))
def test_changed_byte_in_any_stored_hash_is_found(pristine, tmp_path, position):
    conn = sqlite3.connect(pristine[0])
    blob = conn.execute("SELECT hashes FROM tile WHERE level = 0 AND idx = 0").fetchone()[0]
    conn.close()
    byte = position * HASH_SIZE + (position % HASH_SIZE)
    path = tampered(
        pristine,
        tmp_path,
        "UPDATE tile SET hashes = ? WHERE level = 0 AND idx = 0",
        (flip_byte(blob, byte),),
    )
    report = audit(path, SIGNER.vkey)
    level, index = tile_position_node(0, 0, position)
    assert not report.ok
    assert report.first_bad_index == index << level
    assert any(f.code == "bad-node-hash" for f in report.findings)


def test_changed_byte_in_any_checkpoint_is_found(pristine, tmp_path):
    for size in pristine[3]:
        conn = sqlite3.connect(pristine[0])
        note = conn.execute("SELECT note FROM checkpoint WHERE size = ?", (size,)).fetchone()[0]
        conn.close()
        for pos in (0, len(note) // 2, len(note) - 10):
            path = tampered(
                pristine,
                tmp_path,
                "UPDATE checkpoint SET note = ? WHERE size = ?",
                (flip_byte(note, pos), size),
            )
            report = audit(path, SIGNER.vkey)
            assert not report.ok, (size, pos)
            assert any(f.checkpoint_size == size for f in report.findings)


@pytest.mark.parametrize(
    "sql, code",
    [
        ("DELETE FROM entry WHERE idx = 17", "missing-entry"),
        ("DELETE FROM entry WHERE idx = (SELECT MAX(idx) FROM entry)", "missing-entry"),
        ("DELETE FROM tile", "missing-tile"),
        ("UPDATE tile SET hashes = hashes || zeroblob(32)", "bad-tile-length"),
        ("INSERT INTO tile VALUES (0, 1, zeroblob(32))", "unexpected-tile"),
        ("UPDATE meta SET value = value - 1 WHERE key = 'tree_size'", "bad-checkpoint"),
        (
            "DELETE FROM checkpoint WHERE size = (SELECT MAX(size) FROM checkpoint)",
            "bad-checkpoint",
        ),
        ("UPDATE entry SET data = X'09' WHERE idx = 30", "bad-entry-kind"),
    ],
)
def test_structural_tampering_is_found(pristine, tmp_path, sql, code):
    report = audit(tampered(pristine, tmp_path, sql), SIGNER.vkey)
    assert not report.ok
    assert code in {f.code for f in report.findings}, [str(f) for f in report.findings]


def test_wrong_or_swapped_key_is_found(pristine, tmp_path, capsys):
    other = NoteSigner.generate("audit.example/log")
    report = audit(pristine[0], other.vkey)
    assert {"vkey-mismatch", "unknown-key"} <= {f.code for f in report.findings}
    # Someone with write access re-keys the file: the stored vkey no longer matches ours.
    path = tampered(
        pristine, tmp_path, "UPDATE meta SET value = ? WHERE key = 'vkey'", (other.vkey,)
    )
    assert not audit(path, SIGNER.vkey).ok
    assert main(["audit", "--db", path]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_device_rules(tmp_path):
    path = str(tmp_path / "d.db")
    ledger = Ledger.open(path, SIGNER)
    enrolled, stranger, lazy = Device(1), Device(2), Device(3)
    ledger.append([enrolled.enrollment(), lazy.enrollment()])
    ledger.append(enrolled.records(3))
    ledger.append(stranger.records(2))  # never enrolled: index 5
    ledger.append([(0x01, lazy.record(1, signed=False))])  # never closed by a signed one
    ledger.append([enrolled.enrollment()])  # enrolled twice
    ledger.integrate()
    ledger.close()
    report = audit(path, SIGNER.vkey)
    codes = {(f.index, f.code) for f in report.findings}
    assert (5, "not-enrolled") in codes
    assert (7, "unsigned-tail") in codes
    assert (8, "duplicate-enrollment") in codes
    assert report.first_bad_index == 5


def test_cli_names_first_bad_index(pristine, tmp_path, capsys):
    conn = sqlite3.connect(pristine[0])
    data = conn.execute("SELECT data FROM entry WHERE idx = 33").fetchone()[0]
    conn.close()
    path = tampered(
        pristine,
        tmp_path,
        "UPDATE entry SET data = ? WHERE idx = 33",
        (flip_byte(data, len(data) - 1),),
    )
    assert main(["audit", "--db", path, "--vkey", SIGNER.vkey]) == 1
    assert "first bad index 33" in capsys.readouterr().out
    assert main(["audit", "--db", str(tmp_path / "missing.db")]) == 1


def test_cli_keygen_and_vkey(tmp_path, capsys):
    key = str(tmp_path / "gw.key")
    assert main(["keygen", "--key", key, "--origin", "farm.example/gw"]) == 0
    vkey = capsys.readouterr().out.strip()
    assert vkey.startswith("farm.example/gw+")
    assert main(["vkey", "--key", key]) == 0
    assert capsys.readouterr().out.strip() == vkey
    assert main(["keygen", "--key", key]) == 2
    db = str(tmp_path / "l.db")
    from gateway.ledger.note import load_signer

    Ledger.open(db, load_signer(key)).close()
    assert main(["vkey", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == vkey
