"""Fixtures of the anchoring tests: the run's anvil (tests/support/anvil.py), a fresh contract."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from gateway.anchor.chain import AnchorChain, connect, deploy
from tests.support.anvil import CHAIN_ID, DEV_KEY, Anvil, anvil_session  # noqa: F401


@pytest.fixture
def account() -> LocalAccount:
    """Return anvil's first funded dev account."""
    return Account.from_key(DEV_KEY)


@pytest.fixture
def chain(anvil_session: Anvil, account: LocalAccount) -> AnchorChain:  # noqa: F811
    """Return a client of a freshly deployed EdgesealAnchor (one per test: no shared heads)."""
    address, _tx, _gas = deploy(connect(anvil_session.url), account)
    return AnchorChain(anvil_session.url, address, account, CHAIN_ID)
