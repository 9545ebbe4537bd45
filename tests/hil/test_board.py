"""On a board (`make hil PORT=/dev/ttyUSB0`, or PORT=stand-in): the board-side checks on the real
`bluetooth`, `esp32` and `machine` modules, and the numbers; with EDGESEAL_HIL_RADIO=1 also the
gateway's real bleak central over the radio (notification throughput, command round trip).

Selected by -m hil with --port; skipped everywhere else (tests/conftest.py). The report is printed
and written to build/hil-report.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hil.conftest import STAND_IN
from tests.hil.hil import DEFAULT_PROFILE, REPORT, format_report, run_board_side

pytestmark = pytest.mark.hil
RADIO = os.environ.get("EDGESEAL_HIL_RADIO") == "1"
SCAN_TIMEOUT_S = 30.0
RTT_SAMPLES = 9


def test_the_board_side_checks_pass_and_report(hil_port: str) -> None:
    profile = os.environ.get("EDGESEAL_HIL_PROFILE")  # make hil BOARD=boards/X.json
    res = run_board_side(hil_port, Path(profile) if profile else DEFAULT_PROFILE)
    radio = asyncio.run(_radio(res["device_id"])) if RADIO and hil_port != STAND_IN else None
    report = format_report(res, radio)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(report)
    print("\n" + report)
    assert res["failed"] == [], res["failed"]
    assert {"machine", "nvs", "ble", "boot", "sign", "steady"} <= set(res["passed"])


async def _radio(device_id_hex: str) -> dict[str, Any]:
    """Upload the board's records with the gateway's real central (bleak) and time it; the link
    key is derived from $EDGESEAL_DATA_DIR/link.key (run `edgeseal board provision` first and
    reset the board, so the firmware runs and advertises)."""
    from bleak import BleakScanner

    from gateway.ble import protocol as p
    from gateway.ble.auth import LINK_KEY_FILE, LinkKeys
    from gateway.ble.link import BleLink, Connection

    dev_id = bytes.fromhex(device_id_hex)
    data_dir = Path(os.environ.get("EDGESEAL_DATA_DIR", "/var/lib/edgeseal"))
    keys = LinkKeys((data_dir / LINK_KEY_FILE).read_bytes())

    class Keep:
        """A Collector that keeps everything on the board: this measures, it does not collect."""

        def device_for_prefix(self, id_prefix: bytes) -> bytes | None:
            return dev_id if dev_id.startswith(id_prefix) else None

        def last_committed_seq(self, device_id: bytes) -> int | None:
            return None

        async def deliver(self, device_id: bytes, records: list[bytes]) -> int | None:
            return None

    link = BleLink(Keep(), link_keys=keys)

    def ours(_device: Any, adv: Any) -> bool:
        advert = p.parse_manufacturer_data(adv.manufacturer_data)
        return advert is not None and advert.id_prefix == dev_id[: p.ID_PREFIX_BYTES]

    device = await BleakScanner.find_device_by_filter(ours, timeout=SCAN_TIMEOUT_S)
    assert device is not None, "the board does not advertise: provision it and reset it"
    async with Connection(link, device, dev_id) as conn:
        records: list[bytes] = []
        t = time.perf_counter()
        await conn.round(conn.info.first_seq or 0, records)
        elapsed = time.perf_counter() - t
        rtts = []
        already = conn.info.last_acked_seq or 0  # re-acking it changes nothing on the board
        for _ in range(RTT_SAMPLES):
            t = time.perf_counter()
            await conn.request(p.encode_ack(already), p.CMD_ACK)  # the STATUS, whatever it says
            rtts.append((time.perf_counter() - t) * 1000)
        total = sum(len(r) for r in records)
        return {
            "records": len(records), "bytes": total, "mtu": conn.mtu,
            "throughput_bps": total / elapsed if elapsed > 0 else 0.0,
            "rtt_ms": statistics.median(rtts),
        }  # fmt: skip
