"""The witness logs file: C2SP tlog-policy `log <vkey> [<url>]` lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ledger.note import NoteSigner
from gateway.publish.witness_logs import LogsFileError, load_logs, parse_logs


def test_log_lines_comments_blank_and_policy_lines() -> None:
    a, b = NoteSigner.generate("a.example/log"), NoteSigner.generate("b.example/log")
    a2 = NoteSigner.generate("a.example/log")  # a second key of the same log
    text = (
        "# witnessed logs\n\n"
        f"log {a.vkey}\n"
        f"\tlog  {b.vkey}   https://b.example/log/\n"
        f"log {a2.vkey}\n"
        f"witness w1 {NoteSigner.generate('w.example').vkey}\n"
        "quorum w1\n"
    )
    logs = parse_logs(text)
    assert set(logs) == {"a.example/log", "b.example/log"}
    assert [v.public_key for v in logs["a.example/log"].verifiers] == [a.public_key, a2.public_key]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("log", "bad-line"),
        ("logs x", "bad-line"),
        ("log not-a-vkey", "bad-vkey"),
        ("log a+b+c d e", "bad-line"),
    ],
)
def test_bad_lines_are_refused(line: str, code: str) -> None:
    with pytest.raises(LogsFileError) as info:
        parse_logs(line + "\n")
    assert info.value.code == code


def test_a_key_listed_twice_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    a = NoteSigner.generate("a.example/log")
    with pytest.raises(LogsFileError) as info:
        parse_logs(f"log {a.vkey}\nlog {a.vkey}\n")
    assert info.value.code == "duplicate-log"
    with pytest.raises(LogsFileError) as info:
        load_logs(str(tmp_path / "missing"))
    assert info.value.code == "unreadable"
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(LogsFileError):
        load_logs(str(tmp_path / "bin"))
