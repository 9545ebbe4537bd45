"""A battery board (advertising windows, firmware/power.py) on the virtual radio: the link
connects inside its windows, collects every record, and does not count it lost while it sleeps."""

import asyncio
import dataclasses

from firmware import board as fw_board
from gateway.ble.link import BleLink
from tests.gateway.ble.helpers import TEST_KEYS, TEST_LINK, WAIT_S, MemoryCollector, run, wait_until
from tools.sim.fleet import VirtualFleet

# why: windows short enough that a test sees several, long enough for a loaded machine's
# scan + connect to start inside one (an upload in progress keeps the window open)
WINDOW_S = 1.5
EVERY_S = 4.0


def test_a_duty_cycled_board_uploads_everything_in_its_windows(tmp_path):
    profile = fw_board.load("boards/cold-chain-logger.json")
    assert profile["power"]["sleep"] == "light"  # the shipped battery profile
    profile["power"] = dict(
        profile["power"], advertise_window_s=WINDOW_S, advertise_every_s=EVERY_S
    )
    config = dataclasses.replace(TEST_LINK, sleepy_period_s=EVERY_S, scan_watchdog_s=1.0)

    async def scenario():
        fleet = VirtualFleet(
            [profile], str(tmp_path), sample_interval_s=0.3, heartbeat_interval_s=2,
            sign_every_n=4, keep_power=True,
        )  # fmt: skip
        (vb,) = await fleet.start()
        b = vb.board
        assert b.duty is not None
        col = MemoryCollector({vb.device_id: vb.public_key})
        assert fleet.central is not None
        link = BleLink(col, fleet.central.backends, config, link_keys=TEST_KEYS)
        stop = asyncio.Event()
        task = asyncio.create_task(link.run(stop))
        asleep_seen = []
        try:
            # several windows: between them the board does not advertise, and the link neither
            # restarts its scanner over the silence nor counts the board as lost
            def progressed():
                if not b.peripheral._advertising and b.peripheral._conn is None:
                    asleep_seen.append(link.overdue())
                return b.duty.windows >= 4 and link.stats.uploads_ok >= 2

            await wait_until(progressed, WAIT_S * 2, "several windows and uploads")
            restarts = link.stats.scanner_restarts
            # everything journaled by now arrives and is acked in later windows, the board running
            target = b.journal.last_seq
            await wait_until(
                lambda: (
                    (col.last_committed_seq(vb.device_id) or -1) >= target
                    and b.sampler.acked_seq >= target
                ),
                WAIT_S,
                "every record journaled so far committed and acked",
            )
        finally:
            stop.set()
            await task
            await fleet.stop()
        recs = col.committed[vb.device_id]
        seqs = [r.seq for r in recs]
        # every record once, in order, none missing: one boot, so the seqs are consecutive
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[-1] >= target
        assert recs[0].kind == 3  # from the boot event on
        assert any(r.kind == 1 for r in recs)
        assert asleep_seen and all(x == [] for x in asleep_seen)  # asleep is not lost
        assert restarts == 0  # the silence between windows is not a stuck scanner
        assert link.stats.dropped_chunks == 0 and link.stats.bad_frames == 0

    run(scenario(), 240)


def test_overdue_needs_periods_of_silence():
    now = [1000.0]
    link = BleLink(
        MemoryCollector({}), None, dataclasses.replace(TEST_LINK, sleepy_period_s=900),
        clock=lambda: now[0],
    )  # fmt: skip
    link.seen_s[b"\x01\x02\x03\x04"] = now[0]
    now[0] += 1800  # asleep through two windows: not lost yet (quiet_s = 900 + watchdog)
    assert link.overdue() == []
    now[0] += 2 * (900 + TEST_LINK.scan_watchdog_s)
    assert link.overdue() == [b"\x01\x02\x03\x04"]
