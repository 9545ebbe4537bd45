"""The dashboard (gateway/web/, docs/dashboard.md) in headless Chromium against the real gateway.

The gateway app runs under uvicorn in a thread on a free loopback port, over a data dir whose log
holds the five use-case scenarios of tests/gateway/contracts (each a real signed history:
participants, enrolled boards, signed records, transactions and the engine's events). Debian's
Chromium, driven by Playwright, opens the page and checks that the fleet, the ledger and every
use case render, that a live change shows up by polling, and that a fetched proof bundle verifies
in the browser while a tampered one does not (with WebCrypto, and with the pure-JS fallback the
page uses where WebCrypto is missing). Skips without /usr/bin/chromium, unless CI is set.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from tests.gateway.replica.helpers import prepare_log, scenario_entries

CHROMIUM = os.environ.get("EDGESEAL_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path(os.environ.get("EDGESEAL_DASHBOARD_SCREENSHOT", "/tmp/dashboard.png"))
TOKEN = "dashboard-test-operator-token"
# Chromium runs as root in CI containers: no sandbox there; nothing may reach the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Generous: a loaded 2-core CI machine runs this beside the rest of the suite, and the pure-JS
# crypto path verifies a bundle with Ed25519 in plain JavaScript.
WAIT_MS = 90_000
TEST_CLIENT_ADDRESS = "127.0.0.2"


def _require_browser() -> Any:
    """Return playwright.sync_api; skip (or fail under CI) when Chromium or Playwright is missing."""
    reason = None
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        reason = f"{CHROMIUM} is missing: apt-get install chromium (make deps-system)"
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        reason = reason or "playwright is not installed (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"dashboard test cannot run in CI: {reason}")
        pytest.skip(reason)
    return sync_api


# ---- the gateway under test ------------------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _serve(settings: Any, sock: socket.socket, holder: dict[str, Any]) -> None:
    """Run the service and its HTTP API on sock until holder["server"].should_exit (as
    `edgeseal serve` does, gateway/cli.py)."""
    import uvicorn

    from gateway.api import create_app
    from gateway.node import Node

    service = await asyncio.to_thread(Node, settings)
    await service.start()
    config = uvicorn.Config(create_app(service), log_config=None, access_log=False, lifespan="off")
    server = holder["server"] = uvicorn.Server(config)
    try:
        await server.serve(sockets=[sock])
    finally:
        await service.stop()


@contextlib.contextmanager
def serving(settings: Any, start_deadline_s: float = 120) -> Iterator[dict[str, Any]]:
    """Run the real gateway (node + API) for settings in a thread on a free loopback port; yield
    {"base": URL, "client": httpx.Client} once /healthz answers, and stop it afterwards."""
    import httpx

    sock = _free_socket()
    holder: dict[str, Any] = {}
    thread = threading.Thread(
        target=asyncio.run, args=(_serve(settings, sock, holder),), daemon=True
    )
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # the test's own reads come from another loopback address: the read limit is per address,
    # and they must not spend the budget of the browser under test (a person's dashboard is
    # alone on its address)
    transport = httpx.HTTPTransport(local_address=TEST_CLIENT_ADDRESS)
    client = httpx.Client(base_url=base, timeout=60, transport=transport)
    deadline = time.monotonic() + start_deadline_s
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    break
            assert thread.is_alive(), "the gateway thread exited"
            assert time.monotonic() < deadline, f"the gateway did not start in {start_deadline_s} s"
            time.sleep(0.05)
        yield {"base": base, "client": client, "deadline": deadline}
    finally:
        if "server" in holder:
            holder["server"].should_exit = True
        thread.join(timeout=20)
        client.close()
        sock.close()


@contextlib.contextmanager
def chromium(**options: Any) -> Iterator[Any]:
    """Yield a headless Chromium (Debian's, never a downloaded one) with a fresh persistent
    profile (IndexedDB kept across page loads, as for a user); options go to
    launch_persistent_context."""
    sync_api = _require_browser()
    profile = tempfile.mkdtemp(prefix="edgeseal-chromium-")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway() -> Iterator[dict[str, Any]]:
    """Run the real gateway (service + API) in a thread over a prepared data dir; yield its URL."""
    _require_browser()
    from gateway.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="edgeseal-dash-"))
    data_dir = tmp / "data"
    prepare_log(data_dir, scenario_entries())  # sequenced; the node integrates it at start
    settings = Settings(
        data_dir=data_dir,
        ble=False,
        operator_token=TOKEN,
        batch_interval_ms=200,
        log_level="warning",
    )
    try:
        with serving(settings) as gw:
            client = gw["client"]
            # the service integrates the prepared log after it opens: wait until every
            # sequenced entry is in the tree, so the page and the test read one settled state
            while True:
                info = client.get("/v1/gateway").json()
                if info["tree_size"] > 0 and info["tree_size"] == info["sequenced_size"]:
                    break
                assert time.monotonic() < gw["deadline"], f"log not integrated in time: {info}"
                time.sleep(0.05)
            yield gw
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(gateway: dict[str, Any]) -> Iterator[Any]:
    """Yield a headless Chromium with a fresh profile."""
    with chromium(viewport={"width": 1280, "height": 900}) as context:
        yield context


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    """Open url in a new page; return it and the list collecting page errors."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return page, errors


def _wait_text(page: Any, selector: str, text: str) -> None:
    """Wait (up to WAIT_MS) until the element at selector contains text; a view renders after
    its data arrives, so an immediate read races the page."""
    page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)",
        arg=[selector, text],
    )


def _index_of(client: Any, kind: str, pred: Any) -> int:
    """Return the log index of the first integrated entry of kind whose decoded view matches."""
    since = 0
    while True:
        res = client.get("/v1/entries", params={"since": since, "limit": 1000, "kind": kind}).json()
        for e in res["entries"]:
            if e["integrated"] and pred(e["decoded"]):
                return e["index"]
        if not res["entries"] or res["next"] in (None, since):
            raise AssertionError(f"no {kind} entry matches")
        since = res["next"]


def _verify(page: Any, index: int | None = None, text: str | None = None) -> tuple[str, Any]:
    """Fetch bundle `index` (or paste `text`), press Verify; return (verdict, result locator)."""
    result = page.locator("#verify-result")
    if index is not None:
        page.fill("#bundle-index", str(index))
        page.click("#fetch-bundle")
        page.wait_for_function(
            "i => document.querySelector('#bundle-text').value.includes('\"index\":' + i + ',')",
            arg=index,
        )
    if text is not None:
        page.fill("#bundle-text", text)
    page.click("#verify-btn")
    verdict = result.locator("[data-verdict]")
    verdict.wait_for()
    return verdict.get_attribute("data-verdict") or "", result


def _canonical(bundle: Any) -> str:
    """Return the bundle's canonical text (gateway.bundle.encode_bundle): only the check under
    test fails, not the canonical-form one."""
    return json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tamper_entry(bundle_text: str) -> str:
    """Return the bundle with one bit of the entry bytes flipped."""
    bundle = json.loads(bundle_text)
    raw = bytearray(base64.b64decode(bundle["entry"]["base64"]))
    raw[len(raw) // 2] ^= 0x01
    bundle["entry"]["base64"] = base64.b64encode(bytes(raw)).decode()
    return _canonical(bundle)


# ---- the test ----------------------------------------------------------------------------------


def test_dashboard_renders_and_verifies(gateway: dict[str, Any], browser: Any) -> None:
    client = gateway["client"]
    gw = client.get("/v1/gateway").json()
    devices = client.get("/v1/devices").json()["devices"]
    page, errors = _open(browser, gateway["base"] + "/ui/")

    # header, fleet and ledger numbers come from the API
    page.wait_for_function(
        "n => document.querySelector('[data-testid=tree-size]').textContent === n",
        arg=f"{gw['tree_size']:,}",
    )
    _wait_text(page, "#origin", gw["origin"])
    _wait_text(page, "[data-testid=device-count]", str(len(devices)))
    page.locator("[data-testid=devices] tbody tr").nth(len(devices) - 1).wait_for()
    assert page.locator("[data-testid=devices] tbody tr").count() == len(devices)
    _wait_text(page, "[data-testid=checkpoint]", gw["origin"])
    assert page.input_value("#vkey") == gw["vkey"]

    # the five use cases show their state
    agri = page.locator("#agri article")
    agri.locator("[data-testid=lots] tbody tr").first.wait_for()
    # the trace tree is fetched after the lots table renders: wait for it, never count early
    agri.locator("[data-testid=trace] .badge", has_text="BREACHED").first.wait_for()
    agri.locator("[data-testid=trace] li[data-lot]").nth(1).wait_for()
    agri.get_by_role("button", name="Show the trace tree of lot L3").click()
    agri.locator("[data-testid=trace] h4", has_text="Trace of lot L3").wait_for()
    agri.locator("[data-testid=trace] .badge", has_text="RECALLED").first.wait_for()
    _wait_text(page, "#fishfarm [data-testid=score]", "%")
    # the risk history is recomputed in the browser from the signed samples, checked against
    # the contract's stats
    _wait_text(page, "#fishfarm [data-testid=score-source]", "matches the contract's stats ✓")
    _wait_text(page, "#fishfarm [data-testid=chart-dissolved_oxygen]", "22 signed samples")
    page.locator("#collateral [data-testid=collateral-alarms] tbody tr").first.wait_for()
    _wait_text(page, "#collateral", "released")
    _wait_text(page, "#energy [data-testid=settlement]", "0 ✓ zero-sum")
    page.locator("#parking [data-testid=sessions] tbody tr").nth(1).wait_for()
    _wait_text(page, "#parking [data-testid=sessions]", "charged")

    # live: a device enrolled through the API appears without a reload (polling)
    key = SigningKey(b"\x07" * 32)
    res = client.post(
        "/v1/devices",
        json={"public_key": bytes(key.verify_key).hex(), "metadata": {"profile": "pond-monitor"}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert res.status_code == 201, res.text
    page.wait_for_function(
        "n => document.querySelector('[data-testid=device-count]').textContent === n",
        arg=str(len(devices) + 1),
    )

    # verify bundles in the browser: an event (its causes proven too) and a transaction
    breach = _index_of(client, "contract-event", lambda d: d.get("type") == "breach")
    verdict, result = _verify(page, breach)
    assert verdict == "pass", result.text_content()
    assert result.locator("li[data-ok=false]").count() == 0
    text = result.text_content() or ""
    for check in ("checkpoint signature", "inclusion proof", "cause: entry", "device signature"):
        assert check in text, check
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    good = page.input_value("#bundle-text")
    assert good == client.get(f"/v1/bundle/{breach}").text  # the served bytes, verbatim
    # the same bundle in another serialisation: only the canonical-form check fails
    verdict, result = _verify(page, text=json.dumps(json.loads(good), indent=2))
    assert verdict == "fail"
    failed = result.locator("li[data-ok=false]")
    assert failed.count() == 1 and "canonical form" in (failed.text_content() or "")
    verdict, result = _verify(page, text=good[:-1] + ',"note":"proven"}')
    assert verdict == "fail"
    assert result.locator("li[data-ok=false]", has_text="bundle format").count() == 1
    verdict, result = _verify(page, text=_tamper_entry(good))
    assert verdict == "fail"
    assert result.locator("li[data-ok=false]", has_text="inclusion proof").count() == 1
    bundle = json.loads(good)
    sig_line = bundle["checkpoint"].rstrip("\n").rsplit("\n", 1)[1]
    sig = base64.b64decode(sig_line.rsplit(" ", 1)[1])
    forged = sig[:10] + bytes((sig[10] ^ 0x01,)) + sig[11:]
    bundle["checkpoint"] = bundle["checkpoint"].replace(
        sig_line, sig_line.rsplit(" ", 1)[0] + " " + base64.b64encode(forged).decode()
    )
    tampered_cp = _canonical(bundle)
    verdict, result = _verify(page, text=tampered_cp)
    assert verdict == "fail"
    assert result.locator("li[data-ok=false]", has_text="checkpoint signature").count() >= 1
    assert not errors, errors
    page.close()


def test_dashboard_verifies_without_webcrypto(gateway: dict[str, Any], browser: Any) -> None:
    """?crypto=js: SHA-256/512 and Ed25519 in plain JS, as over http from another machine."""
    client = gateway["client"]
    page, errors = _open(browser, gateway["base"] + "/ui/?crypto=js")
    page.wait_for_function("document.querySelector('#engines').textContent.includes('JS')")
    assert page.text_content("#engines") == "SHA-2 via JS, Ed25519 via JS"
    handover = _index_of(
        client, "participant-tx", lambda d: d.get("body", {}).get("action") == "handover"
    )
    verdict, result = _verify(page, handover)
    assert verdict == "pass", result.text_content()
    assert result.locator("li[data-ok=true]", has_text="cosigner 1").count() == 1
    bundle = json.loads(page.input_value("#bundle-text"))
    raw = bytearray(base64.b64decode(bundle["entry"]["base64"]))
    raw[1 + 64 + 5] ^= 0x40  # a bit of the cosigner's signature
    bundle["entry"]["base64"] = base64.b64encode(bytes(raw)).decode()
    verdict, result = _verify(page, text=_canonical(bundle))
    assert verdict == "fail"
    assert result.locator("li[data-ok=false]", has_text="cosigner 1").count() == 1

    # the JS Ed25519 applies the signature policy (docs/wire-format.md): RFC 8032 test 1 passes;
    # a small-order key and a non-canonical S are refused
    checks = page.evaluate(JS_POLICY_CHECKS)
    assert checks == {
        "rfc8032_1": True,
        "flipped": "bad-signature",
        "small_order_key": "bad-public-key",
        "non_canonical_s": "non-canonical-signature",
    }
    assert not errors, errors
    page.close()


# RFC 8032 7.1 test 1 (empty message), then the policy's refusals, through the page's verify.js.
JS_POLICY_CHECKS = """async () => {
  const V = window.edgeseal.verify;
  const pk = V.unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const sig = V.unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    + "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  const msg = new Uint8Array(0);
  const flipped = sig.slice(); flipped[0] ^= 1;
  const order2 = V.unhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
  const bigS = sig.slice(); bigS[63] |= 0xf0;
  return {
    rfc8032_1: (await V.ed25519Verify(pk, msg, sig)).ok,
    flipped: (await V.ed25519Verify(pk, msg, flipped)).code,
    small_order_key: (await V.ed25519Verify(order2, msg, sig)).code,
    non_canonical_s: (await V.ed25519Verify(pk, msg, bigS)).code,
  };
}"""


# A checkpoint cosigned by witnesses (format 3), checked by the page's verify.js against a
# 2-of-3 witness policy: verified with the policy, "not checked" (null) without, refused short
# of the quorum, with a flipped cosignature bit, or with a cosigner the policy does not name.
JS_WITNESS_CHECKS = """async (a) => {
  const V = window.edgeseal.verify;
  const policy = await V.parsePolicy(a.policy);
  const run = async (note, p) => (await V.checkWitnesses(note, 3, a.gw, p)).ok;
  return {
    quorum: await run(a.note, policy),
    no_policy: await run(a.note, null),
    short: await run(a.short, policy),
    flipped: await run(a.flipped, policy),
    stranger: await run(a.stranger, policy),
    v2_with_cosignatures: (await V.checkWitnesses(a.note, 2, a.gw, null)).ok,
  };
}"""


def test_dashboard_checks_witness_cosignatures(gateway: dict[str, Any], browser: Any) -> None:
    from gateway.ledger.note import NoteSigner, sign_note
    from gateway.publish.cosignature import CosignatureSigner

    log = NoteSigner.generate("edgeseal.example/gateway/js")
    witnesses = [CosignatureSigner(NoteSigner.generate(f"w{i}.example")) for i in range(4)]
    text = "edgeseal.example/gateway/js\n9\n" + base64.b64encode(bytes(32)).decode() + "\n"
    signed = sign_note(text, [log]).decode()
    cosig = [w.cosign(text, 1_700_000_000 + i) for i, w in enumerate(witnesses)]
    name, sig = cosig[1].rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    policy = "".join(f"witness W{i} {w.vkey}\n" for i, w in enumerate(witnesses[:3]))
    args = {
        "gw": log.name,
        "policy": policy + "group g 2 W0 W1 W2\nquorum g\n",
        "note": signed + cosig[0] + cosig[1],
        "short": signed + cosig[0],
        "flipped": signed + cosig[0] + f"{name} {base64.b64encode(bytes(raw)).decode()}\n",
        "stranger": signed + cosig[0] + cosig[1] + cosig[3],
    }
    page, errors = _open(browser, gateway["base"] + "/ui/?crypto=js")
    assert page.evaluate(JS_WITNESS_CHECKS, args) == {
        "quorum": True,
        "no_policy": None,
        "short": False,
        "flipped": False,
        "stranger": False,
        "v2_with_cosignatures": False,
    }
    assert not errors, errors
    page.close()
