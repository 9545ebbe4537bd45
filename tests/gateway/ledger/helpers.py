"""Test helpers: numbered devices and their reading chains (tests/support's chain builder)."""

from gateway.ledger.entries import KIND_DEVICE_RECORD, enrollment_entry
from tests.support import READING, ChainDevice


class Device(ChainDevice):
    """A simulated board n: key SHA-256("device-<n>"); readings from seq 1 at t = 1.7e9 + seq."""

    def __init__(self, n: int) -> None:
        super().__init__(str(n), tag=b"device-", seq=1, boot=3, time_s=1_700_000_001)

    def enrollment(self) -> tuple[int, bytes]:
        """Return the (kind, payload) enrollment entry of this device."""
        return enrollment_entry(self.device_id, self.public_key, {"board": "esp32", "n": 1})

    def record(self, value: int, signed: bool) -> bytes:
        """Return the next reading record (temperature = value) and advance the chain."""
        return self.emit(READING, [(1, 0, value)], signed=signed)

    def records(self, count: int, sign_every: int = 1) -> list[tuple[int, bytes]]:
        """Return `count` record entries; every sign_every-th (and the last) is signed."""
        return [(KIND_DEVICE_RECORD, r) for _, r in self.readings(count, sign_every=sign_every)]
