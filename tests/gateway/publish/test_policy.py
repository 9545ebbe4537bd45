"""The witness policy (C2SP tlog-policy): parsing, hostile files, and the quorum check."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.ledger.note import NoteSigner, sign_note
from gateway.publish.cosignature import CosignatureSigner
from gateway.publish.policy import MAX_POLICY_BYTES, PolicyError, load_policy, parse_policy

LOG = NoteSigner.generate("example.com/log")
OTHER_LOG = NoteSigner.generate("example.com/other")
W = [CosignatureSigner(NoteSigner.generate(f"w{i}.example")) for i in range(4)]
TEXT = "example.com/log\n7\n" + base64.b64encode(bytes(range(32))).decode() + "\n"


def policy_text(quorum: str = "g", k: str = "2") -> str:
    lines = [f"log {LOG.vkey}"]
    lines += [f"witness W{i} {w.vkey} http://127.0.0.1:{9000 + i}" for i, w in enumerate(W[:3])]
    lines += [f"group g {k} W0 W1 W2", f"quorum {quorum}"]
    return "\n".join(lines) + "\n"


def cosigned(*which: int, note: bytes | None = None) -> bytes:
    base = note if note is not None else sign_note(TEXT, [LOG])
    return base + b"".join(W[i].cosign(TEXT, 1_700_000_000 + i).encode() for i in which)


def test_a_full_policy_parses() -> None:
    text = "# comment\n\n \tlog " + LOG.vkey + "\n" + policy_text().split("\n", 1)[1]
    policy = parse_policy(text)
    assert [w.name for w in policy.witnesses] == ["W0", "W1", "W2"]
    assert policy.witnesses[0].url == "http://127.0.0.1:9000"
    assert policy.groups[0].k == 2 and policy.quorum == "g" and policy.required == 2
    assert parse_policy("quorum none\n").required == 0


def test_nested_groups_and_keywords() -> None:
    lines = [f"witness X{i} {w.vkey}" for i, w in enumerate(W)]
    lines += ["group xa all X0 X1", "group xb any X2 X3", "group both all xa xb", "quorum both"]
    policy = parse_policy("\n".join(lines))
    assert policy.required == 3
    note = sign_note(TEXT, [LOG])
    assert policy.check(cosigned(0, 1, 3, note=note)).ok
    assert not policy.check(cosigned(0, 2, 3, note=note)).ok  # xa needs both X0 and X1


def test_quorum_counts_only_valid_cosignatures() -> None:
    policy = parse_policy(policy_text())
    result = policy.check(cosigned(0, 2))
    assert result.ok and result.cosigned_by == ["W0", "W2"] and result.summary == "2/2"
    short = policy.check(cosigned(1))  # k - 1 cosignatures
    assert not short.ok and short.summary == "1/2 (short)"
    # a cosignature over another checkpoint text does not count, and is reported invalid
    other = TEXT.replace("\n7\n", "\n8\n")
    forged = sign_note(TEXT, [LOG]) + W[0].cosign(other, 5).encode() + W[1].cosign(TEXT, 5).encode()
    bad = policy.check(forged)
    assert not bad.ok and bad.invalid == ["W0"] and bad.cosigned_by == ["W1"]
    # a witness of another policy counts as an unknown line, never towards the quorum
    stranger = policy.check(cosigned(0) + W[3].cosign(TEXT, 9).encode())
    assert not stranger.ok and stranger.unknown_lines == 1


def test_the_log_signature_is_checked_when_the_policy_lists_logs() -> None:
    policy = parse_policy(policy_text())
    note = sign_note(TEXT.replace("example.com/log", "example.com/other"), [OTHER_LOG])
    assert not policy.check(note).ok
    assert not policy.check(b"not a note").ok
    assert policy.check(cosigned(0, 1)).log_origin == "example.com/log"


HOSTILE = {
    "unknown keyword": ("logs x\nquorum none\n", "bad-line", 1),
    "log without key": ("log\nquorum none\n", "bad-line", 1),
    "bad log vkey": ("log abc+123+xyz\nquorum none\n", "bad-vkey", 1),
    "witness with a log key": (f"witness a {LOG.vkey}\nquorum a\n", "bad-vkey", 1),
    "log with a witness key": (f"log {W[0].vkey}\nquorum none\n", "bad-vkey", 1),
    "bad url": (f"witness a {W[0].vkey} ftp://x\nquorum a\n", "bad-url", 1),
    "too many fields": (f"witness a {W[0].vkey} http://x y\nquorum a\n", "bad-line", 1),
    "duplicate log": (f"log {LOG.vkey}\nlog {LOG.vkey}\nquorum none\n", "duplicate-log", 2),
    "duplicate witness key": (
        f"witness a {W[0].vkey}\nwitness b {W[0].vkey}\nquorum a\n",
        "duplicate-witness",
        2,
    ),
    "duplicate name": (
        f"witness a {W[0].vkey}\nwitness a {W[1].vkey}\nquorum a\n",
        "duplicate-name",
        2,
    ),
    "none defined": (f"witness none {W[0].vkey}\nquorum none\n", "reserved-name", 1),
    "none as member": (
        f"witness a {W[0].vkey}\ngroup g any a none\nquorum g\n",
        "reserved-name",
        2,
    ),
    "unknown member": (f"witness a {W[0].vkey}\ngroup g any a b\nquorum g\n", "unknown-member", 2),
    "forward reference": (
        f"group g any a\nwitness a {W[0].vkey}\nquorum g\n",
        "forward-reference",
        1,
    ),
    "self cycle": (f"witness a {W[0].vkey}\ngroup g any a g\nquorum g\n", "cycle", 2),
    "two-group cycle": (
        f"witness a {W[0].vkey}\ngroup g any a h\ngroup h any g\nquorum g\n",
        "cycle",
        2,
    ),
    "k zero": (f"witness a {W[0].vkey}\ngroup g 0 a\nquorum g\n", "bad-threshold", 2),
    "k above n": (f"witness a {W[0].vkey}\ngroup g 2 a\nquorum g\n", "bad-threshold", 2),
    "k leading zero": (f"witness a {W[0].vkey}\ngroup g 01 a\nquorum g\n", "bad-threshold", 2),
    "k negative": (f"witness a {W[0].vkey}\ngroup g -1 a\nquorum g\n", "bad-threshold", 2),
    "k huge": (f"witness a {W[0].vkey}\ngroup g {'9' * 5000} a\nquorum g\n", "bad-threshold", 2),
    "duplicate member": (
        f"witness a {W[0].vkey}\ngroup g any a a\nquorum g\n",
        "duplicate-member",
        2,
    ),
    "empty group": (f"witness a {W[0].vkey}\ngroup g any\nquorum a\n", "bad-line", 2),
    "no quorum": (f"witness a {W[0].vkey}\n", "no-quorum", None),
    "two quorums": ("quorum none\nquorum none\n", "duplicate-quorum", 2),
    "quorum unknown": ("quorum nobody\n", "unknown-member", 1),
    "carriage return": ("quorum none\r\n", "bad-character", 1),
    "nul byte": ("# x\n#\x00\nquorum none\n", "bad-character", 2),
    "delete byte": ("quorum none\n\x7f\n", "bad-character", 2),
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_hostile_policies_get_typed_errors_with_line_numbers(what: str) -> None:
    text, code, line = HOSTILE[what]
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert info.value.code == code, info.value
    if line is not None:
        assert info.value.message.startswith(f"line {line}:"), info.value.message


def test_names_are_opaque_octets_and_files_are_bounded(tmp_path: Path) -> None:
    # a Kelvin sign is not "K" (tlog-policy, Character set); non-UTF-8 octets are allowed too
    data = f"witness \u212a {W[0].vkey}\n".encode() + b"witness \xff " + W[1].vkey.encode()
    policy = parse_policy(data + b"\ngroup g all \xe2\x84\xaa \xff\nquorum g\n")
    assert policy.required == 2
    with pytest.raises(PolicyError) as info:
        parse_policy(data + b"\nquorum K\n")
    assert info.value.code == "unknown-member"
    big = tmp_path / "big.txt"
    big.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(PolicyError, match="too-large"):
        load_policy(str(big))
    with pytest.raises(PolicyError, match="unreadable"):
        load_policy(str(tmp_path / "missing.txt"))
