"""The OpenAPI schema says what the API really answers, and schemathesis holds the API to it.

schemathesis (a dev dependency, pinned in pyproject.toml) generates requests from the schema,
valid and invalid, for every operation, sends them to the real gateway under uvicorn on a
loopback port, and checks each response: never a 5xx, a documented status, content type,
headers and body schema; invalid data refused. Admin operations are also sent with no token and
a wrong one, which must never succeed. The run is bounded: at least MIN_REQUESTS and about
MAX_REQUESTS requests, and it stops generating after TIME_BUDGET_S.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from gateway.api.limits import RateLimits, TokenBuckets
from gateway.api.routes.log import EntryKind
from gateway.ledger.entries import KIND_NAMES
from gateway.node import Node
from tests.gateway.api.helpers import TOKEN, Api, LiveGateway
from tests.gateway.node.helpers import World

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import checks as st_checks  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

# why: issue 14 asks for a run of at least MIN_REQUESTS; operations without input have no
# invalid examples, so ~80% of the examples asked for are sent: a round of MAX_REQUESTS asked
# sends ~2,000 (about 40 valid and 40 invalid per operation), ~30 s on loopback on this 2-core
# machine, and rounds go on until MIN_REQUESTS were sent. The time budget is 4x that, so a
# loaded CI machine still completes the run.
MIN_REQUESTS = 2000
MAX_REQUESTS = 2600
TIME_BUDGET_S = 150.0
# the statuses that refuse invalid data: typed 4xx only (docs/api.md, Errors)
REFUSALS = [400, 401, 404, 405, 408, 409, 413, 429]
ADMIN_OPERATIONS = {"POST /v1/devices", "POST /v1/devices/{device_id}/revoke"}
CONFIG = {
    "checks": {
        "negative_data_rejection": {"expected-statuses": REFUSALS},
        # valid by the schema is not valid for the log: an index past its end, a small-order
        # key, an unknown contract are typed 400/404/409 by design
        "positive_data_acceptance": {"enabled": False},
    }
}


def test_entry_kinds_of_the_schema_are_the_ledger_kinds() -> None:
    assert set(get_args(EntryKind)) == set(KIND_NAMES.values())


def test_the_schema_declares_typed_errors_and_no_validation_422(api: Api) -> None:
    schema = api.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(schema)
    assert set(schema["components"]["schemas"]) >= {"ErrorBody", "ErrorDetail"}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            label = f"{method.upper()} {path}"
            answers = op["responses"]
            for status in ("400", "413", "429"):
                assert answers[status]["content"]["application/json"]["schema"] == error_ref, label
            if label == "POST /v1/transactions":
                assert "422" in answers  # a valid transaction the contracts reject
            else:
                assert "422" not in answers, label
            if label in ADMIN_OPERATIONS:
                assert "401" in answers and op["security"] == [{"HTTPBearer": []}], label
            else:
                assert "security" not in op, label
    assert "404" in schema["paths"]["/v1/entries/{index}"]["get"]["responses"]
    assert "409" in schema["paths"]["/v1/bundle/{index}"]["get"]["responses"]


async def seed(node: Node) -> None:
    """Give the log something to serve: participants, a parking contract, bays, a session."""
    world = World()
    await world.setup(node)
    bay = world.bays[0]
    await node.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now)])


def probe_auth(case: Any, base: str) -> list[int]:
    """Return the statuses of the admin case sent with no token and with a wrong one."""
    statuses = [case.call(base_url=base).status_code]
    wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
    statuses.append(case.call(base_url=base, headers=wrong).status_code)
    return statuses


class Run:
    """What the schemathesis run saw: statuses per operation, failed checks, unauthorised 2xx."""

    def __init__(self, base: str, deadline: float) -> None:
        self.base = base
        self.deadline = deadline
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.failures: list[str] = []
        self.unauthorised_2xx: list[str] = []

    def exercise(self, op: Any, mode: GenerationMode, max_examples: int) -> None:
        """Send up to max_examples generated requests of op in mode and check each response
        (nothing once the deadline has passed)."""
        admin = op.label in ADMIN_OPERATIONS
        token = {"Authorization": f"Bearer {TOKEN}"} if admin else None

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            if time.monotonic() > self.deadline:
                return
            response = case.call(base_url=self.base, headers=token)
            self.statuses[(op.label, response.status_code)] += 1
            try:
                case.validate_response(
                    response, excluded_checks=[st_checks.positive_data_acceptance]
                )
            except BaseException as exc:  # schemathesis raises a group of failures
                self.failures.append(f"{op.label} {response.status_code}: {exc}"[:600])
            if admin:
                for status in probe_auth(case, self.base):
                    self.statuses[(op.label + " (bad token)", status)] += 1
                    if 200 <= status < 300:
                        self.unauthorised_2xx.append(f"{op.label}: {status}")

        with contextlib.suppress(Unsatisfiable):  # no invalid request of an input-less operation
            run()


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_every_response_conforms(tmp_path: Path) -> None:
    roomy = RateLimits(read_rate_per_s=1e6, read_burst=10**6)  # the limits have their own tests
    roomy.addresses = roomy.participants = TokenBuckets(1e6, 10**6)
    with LiveGateway(tmp_path, limits=roomy, setup=seed) as gw:
        schema = schemathesis.openapi.from_url(
            gw.base + "/openapi.json", config=SchemathesisConfig.from_dict(CONFIG)
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        per_run = MAX_REQUESTS // (2 * len(operations))
        seen = Run(gw.base, time.monotonic() + TIME_BUDGET_S)
        # rounds until MIN_REQUESTS were sent: how many examples a round sends depends on how
        # many operations take no input, which changes as routes are added
        while sum(seen.statuses.values()) < MIN_REQUESTS and time.monotonic() < seen.deadline:
            for op in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    seen.exercise(op, mode, per_run)
    total = sum(seen.statuses.values())
    assert {k: n for k, n in seen.statuses.items() if k[1] >= 500} == {}
    assert seen.unauthorised_2xx == []
    assert seen.failures == [], "\n".join(seen.failures[:10])
    assert total >= MIN_REQUESTS, total  # the time budget did not cut the run short
    assert any(200 <= status < 300 for (_, status) in seen.statuses)
