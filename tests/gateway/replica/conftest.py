"""Fixtures of the replica tests: the run's anvil (tests/support/anvil.py), for the anchor checks."""

from tests.support.anvil import anvil_session  # noqa: F401
