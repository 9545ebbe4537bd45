"""Tests of the transparency ledger (gateway/ledger)."""
