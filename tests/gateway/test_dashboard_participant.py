"""The dashboard as a participant (gateway/web/participant.js) in headless Chromium against the
real gateway: a key made in the browser (WebCrypto Ed25519, non-extractable, kept in IndexedDB)
signs transactions built from the page's form; accepted ones appear in the log with the browser's
key as signer, rejected ones show the contract's error code, and a body with no canonical form is
refused before anything is sent. The fixture follows tests/gateway/test_dashboard.py (gateway in a
thread on a free loopback port, Debian's Chromium through Playwright), on an empty log."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.txformat import decode_tx
from tests.gateway.node.helpers import PARKING_PARAMS
from tests.gateway.test_dashboard import _require_browser, chromium, serving

# Generous: a loaded 2-core machine runs Chromium beside the gateway and other tests.
WAIT_MS = 90_000
START_DEADLINE_S = 120


@pytest.fixture(scope="module")
def gateway() -> Iterator[dict[str, Any]]:
    """Run the real gateway (node + API) in a thread over an empty data dir; yield its URL."""
    _require_browser()
    from gateway.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="edgeseal-part-"))
    settings = Settings(
        data_dir=tmp / "data",
        ble=False,
        operator_token="participant-test-operator-token",
        batch_interval_ms=100,
        log_level="warning",
    )
    try:
        with serving(settings, START_DEADLINE_S) as gw:
            yield gw
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(gateway: dict[str, Any]) -> Iterator[Any]:
    """Yield a headless Chromium (Debian's) with a fresh persistent profile."""
    with chromium() as context:
        yield context


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # a 422 answer is logged by Chromium as a failed resource load: expected here
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and "status of 422" not in m.text else None
        ),
    )
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#participant[data-ready='1']")
    return page, errors


def _submit(page: Any, contract: str, action: str, args: Any) -> Any:
    """Fill the participant form, press Sign and submit; return the result box once shown."""
    page.select_option("#p-contract", contract)
    page.select_option("#p-action", action)
    page.fill("#p-args", args if isinstance(args, str) else json.dumps(args))
    page.evaluate("document.querySelector('#p-result').replaceChildren()")
    page.click("#p-submit")
    box = page.locator("#p-result [data-outcome]")
    box.wait_for()
    return box


def _wait_registered_text(page: Any, text: str) -> None:
    """Wait until the registration line contains text (it updates on the page's poll)."""
    page.wait_for_function(
        "t => (document.querySelector('[data-testid=participant-registered]').textContent || '')"
        ".includes(t)",
        arg=text,
    )


def _wait_integrated(client: Any, index: int) -> dict[str, Any]:
    """Return GET /v1/entries/{index} once a checkpoint covers it."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        entry = client.get(f"/v1/entries/{index}").json()
        if entry.get("integrated"):
            return entry
        assert time.monotonic() < deadline, f"entry {index} not integrated"
        time.sleep(0.05)


def test_browser_key_signs_accepted_and_rejected_transactions(
    gateway: dict[str, Any], browser: Any
) -> None:
    client = gateway["client"]
    page, errors = _open(browser, gateway["base"] + "/ui/#participant")
    pk = page.get_attribute("[data-testid=participant-key]", "data-public-key") or ""
    assert len(pk) == 64 and all(c in "0123456789abcdef" for c in pk)
    key = page.evaluate(
        """async () => {
          const m = await import('/ui/participant.js');
          const k = await m.loadOrCreateKeys();
          return {alg: k.privateKey.algorithm.name, extractable: k.privateKey.extractable,
                  usages: k.privateKey.usages};
        }"""
    )
    assert key == {"alg": "Ed25519", "extractable": False, "usages": ["sign"]}
    _wait_registered_text(page, "first operator")

    # accepted: the first participant registers itself as operator (the bootstrap registration)
    reg = {"public_key": pk, "name": "browser", "roles": ["operator", "parking_operator"]}
    box = _submit(page, "engine", "register", reg)
    assert box.get_attribute("data-outcome") == "accepted", box.text_content()
    index = int(box.get_attribute("data-index") or "-1")
    assert "participant-registered" in (box.text_content() or "")
    entry = _wait_integrated(client, index)
    assert entry["kind"] == "participant-tx"
    assert entry["decoded"]["signers"] == [pk]
    assert entry["decoded"]["body"]["args"] == reg
    # the gateway's own decoder checks the browser's signature over the canonical body
    import base64

    tx = decode_tx(base64.b64decode(entry["base64"])[1:])
    assert tx.participant == pk and tx.action == "register"
    assert client.get(f"/v1/transactions/{tx.tx_hash}").json()["index"] == index
    _wait_registered_text(page, "Registered as browser")

    # accepted: the browser's operator creates a car park; its actions are offered once listed
    create = {"id": "browser-park", "type": "parking", "params": PARKING_PARAMS}
    box = _submit(page, "engine", "create", create)
    assert box.get_attribute("data-outcome") == "accepted", box.text_content()
    page.wait_for_selector("#p-contract option[value='browser-park']", state="attached")
    page.select_option("#p-contract", "browser-park")
    actions = page.eval_on_selector_all("#p-action option", "os => os.map(o => o.value)")
    assert actions == ["open-wallet", "top-up", "set-limit", "pay-session", "tick"]

    # rejected by the contract (the key lacks the driver role): its error code, nothing appended
    size = client.get("/v1/gateway").json()["sequenced_size"]
    box = _submit(page, "browser-park", "open-wallet", {"vehicle": "ab" * 16, "limit_minor": 500})
    assert box.get_attribute("data-outcome") == "rejected"
    assert box.get_attribute("data-code") == "role-required"
    assert "422 role-required" in (box.text_content() or "")
    # rejected by the engine: registering twice
    box = _submit(page, "engine", "register", reg)
    assert box.get_attribute("data-code") == "participant-exists"
    # no canonical form (a float): refused in the page, never sent
    box = _submit(page, "browser-park", "top-up", '{"vehicle": "ab", "amount_minor": 1.5}')
    assert box.get_attribute("data-code") == "tx-float"
    assert "not sent" in (box.text_content() or "")
    assert client.get("/v1/gateway").json()["sequenced_size"] == size

    # the key survives a reload (IndexedDB), and keeps signing with increasing nonces
    page.reload()
    page.wait_for_selector("#participant[data-ready='1']")
    assert page.get_attribute("[data-testid=participant-key]", "data-public-key") == pk
    box = _submit(page, "browser-park", "tick", {})
    assert box.get_attribute("data-outcome") == "accepted", box.text_content()
    assert not errors, errors
    page.close()
