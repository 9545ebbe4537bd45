"""Test support shared by the suites and the benchmarks: one record-chain builder (chain.py)."""

from tests.support.chain import TEST_KEY_TAG, ChainDevice, signed_at, temperature
from tools.gen_vectors import EVENT, HEARTBEAT, KEY_ROTATION, READING, TIME_SYNCED, Value

__all__ = [
    "EVENT",
    "HEARTBEAT",
    "KEY_ROTATION",
    "READING",
    "TEST_KEY_TAG",
    "TIME_SYNCED",
    "ChainDevice",
    "Value",
    "signed_at",
    "temperature",
]
