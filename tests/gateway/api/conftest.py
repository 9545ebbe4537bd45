"""Fixtures of the API tests: `api`, a TestClient on the app of a started service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.api.helpers import Api, open_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """Yield an Api on a freshly started service (tests.gateway.node.helpers.make_settings)."""
    yield from open_api(tmp_path)
