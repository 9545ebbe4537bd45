"""Tests of the contract engine and the five use-case contracts (docs/contracts.md)."""
