"""GET /v1/bundle/{index} serves a bundle's canonical bytes, verbatim (docs/api.md, Proof bundle):
what a client saves verifies through the strict bytes path, for every kind the parking world
logs (enrollments, transactions, signed records, events with causes)."""

from __future__ import annotations

from gateway.bundle import encode_bundle, verify_bundle_bytes
from tests.gateway.api.helpers import Api
from tests.gateway.node.helpers import World


def test_the_api_serves_canonical_bundle_bytes(api: Api) -> None:
    world = World()
    api.run(world.setup(api.service))
    bay = world.bays[0]
    api.run(api.service.sequencer.deliver(bay.device_id, [world.arrival(bay, world.now + 60)]))
    api.run(api.service.sequencer.deliver(bay.device_id, [world.departure(bay, world.now + 7200)]))
    info = api.wait_integrated()
    kinds: set[str] = set()
    for index in range(info["tree_size"]):
        res = api.get(f"/v1/bundle/{index}")
        assert res.status_code == 200, res.text
        assert res.headers["content-type"] == "application/json"
        assert res.content == encode_bundle(res.json())
        verified = verify_bundle_bytes(res.content, info["vkey"])
        assert verified.index == index
        kinds.add(verified.kind)
        if verified.causes:
            kinds.add("event with causes")
    assert kinds >= {
        "device-enrollment",
        "participant-tx",
        "device-record",
        "contract-event",
        "event with causes",
    }
