"""`edgeseal audit`: a changed byte anywhere (entry, stored hash, checkpoint) is found and located."""

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from gateway.cli import main
from gateway.ledger.audit import MAX_PUBLISHED_NOTE_BYTES, audit
from gateway.ledger.entries import KIND_CONTRACT_EVENT, KIND_PARTICIPANT_TX
from gateway.ledger.merkle import HASH_SIZE
from gateway.ledger.note import (
    Checkpoint,
    NoteSigner,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
)
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


# ---- damaged files: a FAILED report naming the problem, never a traceback (issue 14, item 7)


def _garbage(path, base):
    with open(path, "wb") as f:
        f.write(bytes((i * 151 + 7) % 256 for i in range(8192)))


def _empty(path, base):
    open(path, "wb").close()


def _truncated(path, base):
    with open(base, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _directory(path, base):
    os.mkdir(path)


def _sql(sql, args=()):
    def damage(path, base):
        shutil.copy(base, path)
        conn = sqlite3.connect(path)
        if args:
            conn.execute(sql, args)
        else:
            conn.executescript(sql)
        conn.commit()
        conn.close()

    return damage


DEEP_JSON = b"[" * 5000 + b"]" * 5000
LAST = "(SELECT MAX(idx) FROM entry)"
DAMAGED = {
    "garbage bytes": (_garbage, "unreadable: cannot open ledger: file is not a database"),
    "empty file": (_empty, "bad-meta: no meta table"),
    "truncated file": (_truncated, "unreadable: cannot open ledger: database disk image"),
    "a directory": (_directory, "unreadable: cannot open ledger"),
    "vkey stored as a blob": (
        _sql("UPDATE meta SET value = X'FF00' WHERE key = 'vkey'"),
        "vkey-mismatch: the vkey stored in the ledger is unusable: it is b'\\xff\\x00', not text",
    ),
    "vkey mangled": (
        _sql("UPDATE meta SET value = substr(value, 1, 30) WHERE key = 'vkey'"),
        "vkey-mismatch: the vkey stored in the ledger is unusable: vkey key data is not base64",
    ),
    "tree size as text": (
        _sql("UPDATE meta SET value = 'many' WHERE key = 'tree_size'"),
        "bad-meta: tree_size must be an integer",
    ),
    "checkpoint note not UTF-8": (
        _sql("UPDATE checkpoint SET note = X'FFFE' || note WHERE size = 11"),
        "checkpoint size 11: bad-note: note is not UTF-8",
    ),
    "checkpoint note as text": (
        _sql("UPDATE checkpoint SET note = CAST(note AS TEXT) WHERE size = 11"),
        "checkpoint size 11: not-a-blob: note is stored as text",
    ),
    "checkpoint note null": (
        _sql(
            "CREATE TABLE c2 AS SELECT * FROM checkpoint; DROP TABLE checkpoint;"
            "ALTER TABLE c2 RENAME TO checkpoint; UPDATE checkpoint SET note = NULL WHERE size = 11"
        ),
        "checkpoint size 11: not-a-blob: note is stored as null",
    ),
    "checkpoint of a huge size": (
        _sql(
            "UPDATE checkpoint SET note = CAST(replace(CAST(note AS TEXT), char(10) || '11' "
            "|| char(10), char(10) || '" + "9" * 5000 + "' || char(10)) AS BLOB) WHERE size = 11"
        ),
        "checkpoint size 11: bad-signature",
    ),
    "entry stored as text": (
        _sql("UPDATE entry SET data = CAST(data AS TEXT) WHERE idx = 5"),
        "index 5: not-a-blob: entry is stored as text, not as a BLOB",
    ),
    "entry stored as not-UTF-8 text": (
        _sql("UPDATE entry SET data = CAST(X'01FFFE01' AS TEXT) WHERE idx = 5"),
        "index 5: not-a-blob: entry is stored as text",
    ),
    "entry stored as an integer": (
        _sql("UPDATE entry SET data = 12345 WHERE idx = 5"),
        "index 5: not-a-blob: entry is stored as integer",
    ),
    "tile stored as text": (
        _sql("UPDATE tile SET hashes = CAST(hashes AS TEXT)"),
        "index 0: not-a-blob: tile (0, 0) is stored as text",
    ),
    "tile of a huge level": (
        _sql("INSERT INTO tile VALUES (4611686018427387904, 1, x'00')"),
        "unexpected-tile: tile (4611686018427387904, 1) is beyond the tree size",
    ),
    "JSON event nested 5000 deep": (
        _sql(f"UPDATE entry SET data = ? WHERE idx = {LAST}", (b"\x03" + DEEP_JSON,)),
        "root-mismatch",
    ),
    "enrollment metadata nested 5000 deep": (
        _sql(
            "UPDATE entry SET data = ? WHERE idx = 0",
            (b"\x04\x01" + bytes(48) + b'{"a":' + DEEP_JSON + b"}",),
        ),
        "index 0: bad-node-hash",
    ),
    "transaction nested 5000 deep": (
        _sql(
            f"UPDATE entry SET data = ? WHERE idx = {LAST}", (b"\x02\x01" + bytes(64) + DEEP_JSON,)
        ),
        "root-mismatch",
    ),
}


@pytest.mark.parametrize("case", DAMAGED)
@pytest.mark.parametrize("ledger_only", [False, True])
def test_damaged_files_give_a_failed_report_not_a_traceback(
    pristine, tmp_path, capsys, case, ledger_only
):
    damage, reason = DAMAGED[case]
    path = str(tmp_path / "damaged.db")
    damage(path, pristine[0])
    argv = ["audit", "--db", path, "--vkey", SIGNER.vkey] + ["--ledger-only"] * ledger_only
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err == "" and "Traceback" not in out
    assert "audit: FAILED" in out and reason in out, out
    assert "audit-error" not in out, out  # a named problem, not the last-resort guard
    assert all(line.isprintable() for line in out.splitlines()), out
    assert not audit(path, SIGNER.vkey).ok


def test_a_deep_transaction_is_rejected_by_the_replay_not_a_crash(tmp_path, capsys):
    """The contract replay parses transactions: one nested 5000 deep is refused before the
    recursive parser sees it (gateway.bounds.MAX_JSON_DEPTH) and becomes a rejection."""
    from gateway.contracts.tx import decode_tx
    from gateway.errors import TxError

    deep_tx = b"\x01" + bytes(64) + DEEP_JSON
    with pytest.raises(TxError, match="tx-malformed: body is nested deeper than 32"):
        decode_tx(deep_tx)
    path = str(tmp_path / "deep.db")
    with Ledger.open(path, SIGNER) as led:
        led.append([(KIND_PARTICIPANT_TX, deep_tx)])
        led.integrate()
    assert main(["audit", "--db", path, "--vkey", SIGNER.vkey]) == 0  # its rejection is pending
    out = capsys.readouterr().out
    assert "Traceback" not in out and "audit: OK" in out


def test_a_damaged_file_fails_in_a_subprocess_with_nothing_on_stderr(tmp_path):
    path = tmp_path / "garbage.db"
    _garbage(str(path), None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert "audit: FAILED" in done.stdout and "file is not a database" in done.stdout


def test_argument_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        main(["audit"])  # no --db
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["audit", "--db", "x.db", "--checkpoint"])  # --checkpoint without a file
    assert info.value.code == 2


# ---- published checkpoints: --checkpoint FILE (issue 14, item 13)


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.fixture()
def history(tmp_path):
    """A ledger integrated 4 times; a copy of the database after the 2nd integration; the
    four checkpoint notes as published files."""
    path = str(tmp_path / "ledger.db")
    old = str(tmp_path / "old.db")
    device = Device(7)
    notes = []
    ledger = Ledger.open(path, SIGNER)
    ledger.append([device.enrollment()])
    for round_ in range(4):
        ledger.append(device.records(3))
        notes.append(ledger.integrate())
        if round_ == 1:  # a backup taken now (SQLite's backup API: the WAL included)
            src, dst = sqlite3.connect(path), sqlite3.connect(old)
            src.backup(dst)
            src.close()
            dst.close()
    ledger.close()
    files = [_write(tmp_path / f"cp{i}.note", n) for i, n in enumerate(notes)]
    return path, old, files, notes


def test_published_checkpoints_that_the_ledger_extends_pass(history, capsys):
    path, _, files, notes = history
    report = audit(path, SIGNER.vkey, files)
    assert report.ok, [str(f) for f in report.findings]
    assert [(c.name, c.size, c.ok) for c in report.published] == [
        (f, s, True) for f, s in zip(files, (4, 7, 10, 13), strict=True)
    ]
    argv = ["audit", "--db", path, "--vkey", SIGNER.vkey]
    assert main(argv + [arg for f in files for arg in ("--checkpoint", f)]) == 0
    out = capsys.readouterr().out
    for f, size in zip(files, (4, 7, 10, 13), strict=True):
        assert f"audit: published checkpoint {f} (size {size}): OK" in out
    assert "4 published checkpoints" in out
    # A copy cosigned by a witness is the same checkpoint (same text, same log signature).
    witness = NoteSigner.generate("witness.example/w1")
    text = notes[1].decode().split("\n\n")[0] + "\n"
    cosigned = notes[1] + sign_note(text, [witness]).split(b"\n\n")[1]
    assert audit(path, SIGNER.vkey, [_write(files[1] + ".cosigned", cosigned)]).ok


def test_a_rolled_back_ledger_fails_against_a_newer_published_checkpoint(history, capsys):
    path, old, files, _ = history
    assert audit(old, SIGNER.vkey).ok  # from the inside, an older prefix looks healthy
    assert audit(old, SIGNER.vkey, files[:2]).ok
    report = audit(old, SIGNER.vkey, files)
    assert [c.ok for c in report.published] == [True, True, False, False]
    assert {(f.published, f.code) for f in report.findings} == {
        (files[2], "ledger-behind-checkpoint"),
        (files[3], "ledger-behind-checkpoint"),
    }
    assert main(["audit", "--db", old, "--vkey", SIGNER.vkey, "--checkpoint", files[3]]) == 1
    out = capsys.readouterr().out
    assert (
        f"audit: published checkpoint {files[3]} (size 13): FAILED: ledger-behind-checkpoint" in out
    )


def test_a_rolled_back_and_regrown_ledger_is_a_fork(history):
    """Rolled back to size 7, then other entries up to size 13: the published checkpoints of
    sizes 10 and 13 are not prefixes of the new tree (RFC 9162 2.1.4)."""
    _, old, files, _ = history
    other = Device(9)
    ledger = Ledger.open(old, SIGNER)
    ledger.append([other.enrollment()] + other.records(2))
    ledger.integrate()  # a second checkpoint of size 10
    ledger.append(other.records(3))
    ledger.integrate()
    ledger.close()
    assert audit(old, SIGNER.vkey).ok  # from the inside, a healthy log
    report = audit(old, SIGNER.vkey, files)
    assert [c.ok for c in report.published] == [True, True, False, False]
    for published in files[2:]:
        codes = {f.code for f in report.findings if f.published == published}
        assert {"ledger-fork", "root-mismatch", "checkpoint-differs"} == codes, report.findings


def test_a_deleted_checkpoint_fails_when_its_note_is_given(history, capsys):
    path, _, files, _ = history
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM checkpoint WHERE size = 7")
    conn.commit()
    conn.close()
    assert audit(path, SIGNER.vkey).ok  # checkpoints are per batch: a gap proves nothing
    report = audit(path, SIGNER.vkey, files)
    assert [(f.published, f.code, f.checkpoint_size) for f in report.findings] == [
        (files[1], "missing-checkpoint", 7)
    ]
    assert main(["audit", "--db", path, "--vkey", SIGNER.vkey, "--checkpoint", files[1]]) == 1
    out = capsys.readouterr().out
    assert "published checkpoint" in out and "missing-checkpoint" in out


def test_a_published_checkpoint_signed_by_another_key_fails(history, tmp_path):
    path, _, files, notes = history
    other = NoteSigner.generate(SIGNER.name)  # same origin, another key
    forged = sign_checkpoint(parse_checkpoint(notes[2].decode().split("\n\n")[0] + "\n"), other)
    report = audit(path, SIGNER.vkey, [_write(tmp_path / "forged.note", forged)])
    assert [(f.code, f.published) for f in report.findings] == [
        ("unknown-key", str(tmp_path / "forged.note"))
    ]
    assert report.published[0].checked and not report.published[0].ok
    # Without --vkey the stored key checks it, with the same result.
    assert not audit(path, None, [str(tmp_path / "forged.note")]).ok


def test_a_second_checkpoint_for_one_size_is_found(history, tmp_path):
    """The log key signed another text for size 10 (here: an extension line): equivocation."""
    path, _, files, notes = history
    cp = parse_checkpoint(notes[2].decode().split("\n\n")[0] + "\n")
    other = Checkpoint(cp.origin, cp.size, cp.root, ("edgeseal-state " + "00" * 32,))
    report = audit(path, SIGNER.vkey, [_write(tmp_path / "x.note", sign_checkpoint(other, SIGNER))])
    assert [f.code for f in report.findings] == ["checkpoint-differs"]


def test_unusable_published_files_fail_by_name(pristine, tmp_path, capsys):
    path = pristine[0]
    bad = {
        "missing": str(tmp_path / "missing.note"),
        "dir": str(tmp_path),
        "garbage": _write(tmp_path / "garbage.note", b"\xff\x00" * 100),
        "big": _write(tmp_path / "big.note", b"a" * (MAX_PUBLISHED_NOTE_BYTES + 1)),
        "text": _write(tmp_path / "text.note", b"hello\n"),
    }
    report = audit(path, SIGNER.vkey, list(bad.values()))
    codes = {f.published: f.code for f in report.findings}
    assert codes == {
        bad["missing"]: "unreadable",
        bad["dir"]: "unreadable",
        bad["garbage"]: "bad-note",
        bad["big"]: "too-large",
        bad["text"]: "bad-note",
    }
    argv = ["audit", "--db", path, "--vkey", SIGNER.vkey, "--ledger-only"]
    assert main(argv + ["--checkpoint", bad["missing"]]) == 1
    assert f"published checkpoint {bad['missing']}: FAILED: unreadable" in capsys.readouterr().out
    # The ledger itself unreadable: the published checkpoint is named, not checked.
    garbage_db = _write(tmp_path / "g.db", b"\x00" * 4096)
    report = audit(garbage_db, SIGNER.vkey, [bad["text"]])
    assert not report.ok and not report.published[0].checked
    assert main(["audit", "--db", garbage_db, "--checkpoint", bad["text"]]) == 1
    assert f"published checkpoint {bad['text']}: not checked" in capsys.readouterr().out


def test_the_gateways_own_checkpoint_file_is_a_published_checkpoint(tmp_path, capsys):
    """data_dir/checkpoint (gateway/ledger/trusted.py) holds one signed note: --checkpoint takes
    it as it is, and it finds the ledger restored from an older backup."""
    trusted_mod = pytest.importorskip("gateway.ledger.trusted")
    path, backup, cp_file = (str(tmp_path / n) for n in ("ledger.db", "backup.db", "checkpoint"))
    device = Device(4)
    trusted = trusted_mod.TrustedCheckpoint(cp_file, path)
    ledger = Ledger.open(path, SIGNER, trusted=trusted)
    ledger.append([device.enrollment()] + device.records(3))
    ledger.integrate()
    src, dst = sqlite3.connect(path), sqlite3.connect(backup)
    src.backup(dst)
    src.close()
    dst.close()
    ledger.append(device.records(2))
    ledger.integrate()
    ledger.close()
    argv = ["audit", "--vkey", SIGNER.vkey, "--checkpoint", cp_file]
    assert main([*argv, "--db", path]) == 0
    assert f"published checkpoint {cp_file} (size 6): OK" in capsys.readouterr().out
    assert main([*argv, "--db", backup]) == 1
    assert "FAILED: ledger-behind-checkpoint" in capsys.readouterr().out
