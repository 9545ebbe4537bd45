"""The add-checkpoint response matrix of C2SP tlog-witness, through the witness's HTTP app.

Checkpoints and consistency proofs come from a real gateway Ledger; each status is the one the
spec prescribes (docs/witness.md, Response matrix).
"""

from __future__ import annotations

import base64
import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ledger.merkle import EMPTY_ROOT
from gateway.ledger.note import NoteSigner, format_checkpoint, sign_note
from gateway.publish.witness_server import build_app
from gateway.publish.witness_service import MAX_REQUEST_BYTES, WitnessService
from tests.gateway.publish.helpers import ORIGIN, Log, body, make_witness

with warnings.catch_warnings():  # Starlette 1.10 warns that its TestClient still uses httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SIZE_TYPE = "text/x.tlog.size"


@pytest.fixture
def log_signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def log(tmp_path: Path, log_signer: NoteSigner) -> Log:
    return Log(tmp_path / "log.db", log_signer)


@pytest.fixture
def witness(tmp_path: Path, log_signer: NoteSigner) -> Iterator[WitnessService]:
    service = make_witness(tmp_path, log_signer.vkey)
    yield service
    service.state.close()


@pytest.fixture
def client(witness: WitnessService) -> TestClient:
    return TestClient(build_app(witness))


def post(client: TestClient, data: bytes):  # noqa: ANN201 - httpx.Response
    return client.post("/add-checkpoint", content=data)


def test_first_checkpoint_with_old_0_and_then_consistent_growth(client: TestClient, log: Log):
    first = log.grow(5)
    r = post(client, body(0, [], first))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("\u2014 witness.example/w1 ") and r.text.endswith("\n")
    second = log.grow(7)
    r = post(client, body(5, log.proof(5, 12), second))
    assert r.status_code == 200
    # the same checkpoint again (old == size, same root): cosigned again
    assert post(client, body(12, [], second)).status_code == 200


def test_conflict_answers_the_latest_cosigned_size(client: TestClient, log: Log) -> None:
    note = log.grow(4)
    assert post(client, body(0, [], note)).status_code == 200
    newer = log.grow(4)
    r = post(client, body(0, [], newer))  # the client does not know the witness's size
    assert r.status_code == 409
    assert r.headers["content-type"] == SIZE_TYPE
    assert r.text == "4\n"
    r = post(client, body(2, log.proof(2, 8), newer))
    assert (r.status_code, r.text) == (409, "4\n")


def test_bad_proofs_are_422(client: TestClient, log: Log, tmp_path: Path, log_signer) -> None:
    assert post(client, body(0, [], log.grow(3))).status_code == 200
    note = log.grow(5)
    good = log.proof(3, 8)
    flipped = [bytes([good[0][0] ^ 1]) + good[0][1:]] + good[1:]
    assert post(client, body(3, flipped, note)).status_code == 422
    assert post(client, body(3, good[:-1], note)).status_code == 422
    assert post(client, body(3, [], note)).status_code == 422
    # a fork: the same key signs another tree of size 8; no proof from our 3 reaches it
    fork = Log(tmp_path / "fork.db", log_signer, tag=b"fork")
    fork.grow(3)
    fork_note = fork.grow(5)
    assert post(client, body(3, fork.proof(3, 8), fork_note)).status_code == 422
    # equal sizes with another root
    assert post(client, body(3, [], fork.checkpoint_at(3))).status_code == 422
    assert post(client, body(3, good, note)).status_code == 200


def test_old_zero_needs_an_empty_proof_and_size_zero_the_empty_root(
    client: TestClient, log: Log, log_signer: NoteSigner
) -> None:
    note = log.grow(2)
    assert post(client, body(0, [hashlib.sha256(b"x").digest()], note)).status_code == 422
    empty = sign_note(format_checkpoint(ORIGIN, 0, EMPTY_ROOT), [log_signer])
    assert post(client, body(0, [], empty)).status_code == 200
    bad_empty = sign_note(format_checkpoint(ORIGIN, 0, b"\x01" * 32), [log_signer])
    assert post(client, body(0, [], bad_empty)).status_code == 422
    assert post(client, body(0, [], note)).status_code == 200  # 0 -> 2 after a size-0 cosign


def test_unknown_origin_is_404_and_untrusted_or_bad_signatures_403(
    client: TestClient, log: Log, log_signer: NoteSigner
) -> None:
    other = NoteSigner.generate("other.example/log")
    text = format_checkpoint("other.example/log", 1, hashlib.sha256(b"l").digest())
    assert post(client, body(0, [], sign_note(text, [other]))).status_code == 404
    # the right origin, signed only by another key of the same name: no trusted signature
    impostor = NoteSigner.generate(ORIGIN)
    note = log.grow(1)
    forged = sign_note(note.decode().split("\n\n")[0] + "\n", [impostor])
    assert post(client, body(0, [], forged)).status_code == 403
    # a trusted key's line whose signature fails
    text, sigline = note.decode().rsplit("\n\n", 1)
    name, b64 = sigline[2:].rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    bad = f"{text}\n\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n".encode()
    assert post(client, body(0, [], bad)).status_code == 403
    # an unknown key's signature beside the trusted one is ignored
    both = sign_note(note.decode().split("\n\n")[0] + "\n", [impostor, log_signer])
    assert post(client, body(0, [], both)).status_code == 200


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"old 0\n",  # no empty line, no checkpoint
        b"old 00\n\nx",
        b"old -1\n\nx",
        b"old 1e3\n\nx",
        b"old 99999999999999999999\n\nx",
        b"old 9223372036854775808\n\nx",
        b"new 0\n\nx",
        b"old  0\n\nx",
        b"old 0\nnot-base64!\n\nx",
        b"old 0\n" + base64.b64encode(b"short") + b"\n\nx",
        b"old 0\n\xff\n\nx",
        b"old 0\n\nnot a note",
        b"old 0\n\norigin\n\xff\n\n\xe2\x80\x94 k AAAA\n",  # a note that is not UTF-8
    ],
)
def test_malformed_requests_are_400(client: TestClient, data: bytes) -> None:
    r = post(client, data)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/plain")


def test_structural_400s_with_a_real_checkpoint(client: TestClient, log: Log) -> None:
    note = log.grow(3)
    assert post(client, body(4, [], note)).status_code == 400  # old size > checkpoint size
    h = hashlib.sha256(b"h").digest()
    assert post(client, body(1, [h] * 64, note)).status_code == 400  # > 63 proof lines
    assert post(client, body(1, [h] * 63, note)).status_code == 409  # 63 parse; size is 0
    assert post(client, body(0, [], note.replace(b"\n3\n", b"\n03\n"))).status_code in (400, 403)


def test_size_limit_method_and_unknown_routes(client: TestClient, log: Log) -> None:
    r = post(client, b"old 0\n\n" + b"x" * MAX_REQUEST_BYTES)
    assert r.status_code == 413
    assert client.get("/add-checkpoint").status_code == 405
    assert client.put("/add-checkpoint", content=b"old 0\n\n").status_code == 405
    assert client.get("/nothing-here").status_code == 404
    assert client.post("/sign-subtree", content=b"subtree 0 1\n").status_code == 404  # OPTIONAL
    # the spec names no request content type: a client's choice does not matter
    note = log.grow(1)
    headers = {"content-type": "application/octet-stream"}
    r = client.post("/add-checkpoint", content=body(0, [], note), headers=headers)
    assert r.status_code == 200


def test_monitoring_checkpoint_is_404_until_cosigned(
    client: TestClient, log: Log, witness: WitnessService
) -> None:
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    assert client.get(f"/{origin_hash}/checkpoint").status_code == 404
    assert client.get(f"/{'0' * 64}/checkpoint").status_code == 404
    note = log.grow(3)
    cosig = post(client, body(0, [], note)).text
    r = client.get(f"/{origin_hash}/checkpoint")
    assert r.status_code == 200
    assert r.content == note + cosig.encode()  # the log's verified signature, then ours
