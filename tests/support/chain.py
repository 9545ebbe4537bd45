"""One builder of wire-format v1 record chains (docs/wire-format.md) for tests and benchmarks.

Built on the encoder of tools/gen_vectors.py, the independent third encoder that writes
tests/vectors/: it shares no code with firmware/ or gateway/, so records built here test the
gateway rather than echo it. (tests/gateway/simboard.py is the other way round on purpose: it
builds records with the real firmware encoder and signer.)

    dev = ChainDevice("logger")                      # key = SHA-256(TEST_KEY_TAG || name)
    r1 = dev.emit(READING, [(1, 0, 2575)], signed=False)
    r2 = dev.emit(HEARTBEAT)                         # signed: authenticates r1 through prev_hash
    journal = dev.readings(100, sign_every=10)       # [(seq, record bytes)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nacl.signing import SigningKey

from tools.gen_vectors import (
    READING,
    TIME_SYNCED,
    Value,
    device_id,
    genesis_hash,
    pack_body,
    record_hash,
    seal,
    seed_for,
)

TEST_KEY_TAG = b"edgeseal test device "  # distinct from the vector keys' tag
CH_TEMPERATURE = 1


def temperature(i: int) -> list[Value]:
    """Return the default values of the i-th reading: temperature ch0 = 20.00 degC + i/100."""
    return [(CH_TEMPERATURE, 0, 2000 + i)]


def signed_at(i: int, count: int, sign_every: int, upload: int | None = None) -> bool:
    """Return whether record i (0-based) of count is signed, as a board signs an upload.

    Every sign_every-th record is signed, and so is the one closing an upload: the last of every
    `upload` records when upload is given, else the last of the chain.
    """
    closes = (i + 1) % upload == 0 if upload else i == count - 1
    return (i + 1) % sign_every == 0 or closes


class ChainDevice:
    """A device key and its hash chain: every record chains onto the previous one's hash.

    The key is Ed25519 from seed (default SHA-256(tag || name)); device_id and the genesis
    prev_hash follow docs/wire-format.md. seq, boot, time_s and flags are what the next record
    gets unless emit() is told otherwise; after each record seq steps by seq_step (gaps are legal)
    and time_s by time_step.
    """

    def __init__(
        self,
        name: str,
        *,
        tag: bytes = TEST_KEY_TAG,
        seed: bytes | None = None,
        seq: int = 0,
        seq_step: int = 1,
        boot: int = 1,
        time_s: int = 1_795_000_000,
        time_step: int = 1,
        flags: int = TIME_SYNCED,
    ) -> None:
        self.name = name
        self.seed = seed_for(name, tag) if seed is None else seed
        self.key = SigningKey(self.seed)
        self.public_key = bytes(self.key.verify_key)
        self.device_id = device_id(self.public_key)
        self.head = genesis_hash(self.device_id)  # prev_hash of the next record
        self.seq, self.seq_step = seq, seq_step
        self.boot = boot
        self.time_s, self.time_step = time_s, time_step
        self.flags = flags

    def emit(
        self,
        kind: int,
        values: Sequence[Value] = (),
        *,
        signed: bool = True,
        seq: int | None = None,
        boot: int | None = None,
        time_s: int | None = None,
        flags: int | None = None,
        signer: SigningKey | None = None,
        advance: bool = True,
    ) -> bytes:
        """Return the next record (body, then a signature if signed) chained onto head.

        Fields left None take the device's current ones. signer signs instead of the device key
        (a wrong-key record). advance=False leaves the chain where it was (a one-off record);
        otherwise head becomes this record's hash and seq/time_s step on from the values used.
        No validation: out-of-range values and kind-rule violations are encoded as given.
        """
        seq = self.seq if seq is None else seq
        time_s = self.time_s if time_s is None else time_s
        body = pack_body(
            kind,
            self.flags if flags is None else flags,
            self.device_id,
            seq,
            self.boot if boot is None else boot,
            time_s,
            self.head,
            values,
        )
        if advance:
            self.head = record_hash(body)
            self.seq = seq + self.seq_step
            self.time_s = time_s + self.time_step
        return seal(body, signer or self.key, signed)

    def readings(
        self,
        count: int,
        values: Callable[[int], Sequence[Value]] = temperature,
        *,
        sign_every: int = 1,
        upload: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """Return count chained readings as [(seq, record)]; values(i) gives the i-th's values.

        Signed per signed_at(i, count, sign_every, upload): every sign_every-th and the last
        (of every upload of `upload` records, if given).
        """
        out = []
        for i in range(count):
            seq = self.seq
            signed = signed_at(i, count, sign_every, upload)
            out.append((seq, self.emit(READING, values(i), signed=signed)))
        return out
