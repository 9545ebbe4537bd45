"""Benchmark: average current and battery life of each power profile, from VM-measured awake times.

Two halves in one file. Inside the MicroPython VM (`node tools/mpvm.mjs --run tools/bench_power.py`)
it builds the cold-chain logger (boards/cold-chain-logger.json, faked DS18B20 + SHT3x) and times
the CPU work of one unsigned sample, one signed sample, a heartbeat, a deep-sleep wake (build_board
resuming from RTC memory) and an upload of a window's records (connect, Info, SEND_FROM, ACK),
plus one Ed25519 signature as the yardstick, and prints a `RESULT key=value ...` line. On the host
(`python3 tools/bench_power.py`, or tools/bench.py) it runs that, converts VM time to chip time by
the signature yardstick (the ESP32 signs in ~0.9 s, docs/power.md), adds the radio time the
advertising and connection parameters imply, and combines both with the datasheet currents
(docs/power.md, Currents) into the average current of each profile and the life on a 2,000 mAh
cell; the baseline is the same board always awake (no power object). Estimates, not measurements
of a board: docs/power.md says what is measured and what is assumed.
"""

# ruff: noqa: UP031  (half of this file runs on MicroPython: one formatting style throughout)

import sys
import time

try:
    ARGS = ARGV[1:]  # noqa: F821  (set by tools/mpvm.mjs)
except NameError:
    ARGS = sys.argv[1:]

MICROPYTHON = sys.implementation.name == "micropython"

# ---- the model's constants (docs/power.md cites each) --------------------------------------
CELL_MAH = 2000
GOAL_MONTHS = 6
HOURS_PER_MONTH = 730.0
# why: the DESIGN/firmware-runtime figure, upper end: the yardstick that turns VM ms into ESP32 ms
ESP32_SIGN_MS = 900.0
# why: CPU work scales with the clock: the C3 runs at 160 MHz, the ESP32 at 240 MHz (assumed
# equal work per clock; the C3's RISC-V core is not faster per MHz than the LX6 on this code)
CLOCK_SCALE = {"esp32": 1.0, "esp32c3": 1.5}
# Currents in mA, per chip: CPU running (modem-sleep, radio off, CPU busy), idle (CPU waiting in
# the FreeRTOS idle task with BLE on, the state MicroPython's 20 ms poll loop is in), BLE TX at
# 0 dBm and RX while the radio is on, light sleep, deep sleep.
CURRENTS_MA = {
    # ESP32 Series Datasheet v3.5, 3.7 Table 6 "Power Consumption by Power Modes" (modem-sleep
    # 240 MHz dual-core 30-68 mA: 50 used; 80 MHz 20-31 mA: idle taken as 25; light-sleep 0.8 mA;
    # deep-sleep RTC timer + RTC memory 10 uA) and 5.x Table 15 RF power consumption (BT/BLE
    # TX 0 dBm 130 mA, RX 95-100 mA: 100 used)
    "esp32": {"cpu": 50.0, "idle": 25.0, "tx": 130.0, "rx": 100.0, "light": 0.8, "deep": 0.010},
    # ESP32-C3 Series Datasheet, 5.6 Current Consumption (light-sleep 130 uA, deep-sleep 5 uA;
    # modem-sleep at 160 MHz 20-28 mA: 27 running, 20 idle, in line with independent
    # measurements of 26.8 / 20.1 mA); RF currents assumed as the ESP32's Table 15 BLE figures
    "esp32c3": {"cpu": 27.0, "idle": 20.0, "tx": 130.0, "rx": 100.0, "light": 0.130, "deep": 0.005},
}
# Fixed times a VM cannot measure (ms), stated: DS18B20 12-bit conversion tCONV max 750 ms
# (Maxim DS18B20 datasheet), SHT3x high-repeatability measurement 15 ms (Sensirion SHT3x-DIS
# datasheet, Table 4); a deep-sleep wake's ROM + bootloader + MicroPython start + BLE activation
# before main.py's Python runs, assumed 400 ms at CPU current (ESP-IDF image verification and
# NimBLE init dominate; measure with a scope on the target to replace it).
DS18B20_CONV_MS = 750.0
SHT3X_MS = 15.0
WAKE_FIXED_MS = 400.0
# Radio: an advertising event sends ADV_IND on 3 channels (47 bytes at 1 Mbit/s = 376 us each)
# plus ~150 us ramp-up each, and listens ~200 us per channel for a scan request.
ADV_TX_MS = 3 * (0.376 + 0.150)
ADV_RX_MS = 3 * 0.200
# A connection as BlueZ on a Pi runs it (gateway/ble/link.py): ~2 s from connect to the ACK's
# STATUS (discovery, Info read, subscribe, TIME_SYNC, SEND_FROM, ACK round trips), connection
# interval 30 ms: each event ~0.3 ms of radio (RX + TX of empty PDUs) plus the data itself at
# 8 us per byte (1 Mbit/s) with 20 % link-layer overhead.
CONN_S = 2.0
CONN_INTERVAL_MS = 30.0
CONN_EVENT_RADIO_MS = 0.3
US_PER_BYTE = 8 * 1.2


# ---- VM half ----------------------------------------------------------------------------------
def _timer():
    if MICROPYTHON:
        try:
            import js

            perf = js.performance
            return lambda: perf.now()
        except ImportError:
            return lambda: time.ticks_us() / 1000  # pyright: ignore[reportAttributeAccessIssue]
    return lambda: time.perf_counter() * 1000


def measure(n_samples=32):
    """Run in the VM: time the board's work items; print and return the RESULT dict (ms)."""
    from firmware import app, board, power
    from firmware.keystore import install_link_key
    from firmware.peripheral import ADV_INTERVAL_US
    from tests.firmware.simflash import SimFlash
    from tests.firmware.test_app import _buses, _urandom
    from tests.firmware.test_peripheral import LINK_KEY, Gateway, ack
    from tests.firmware.test_sampler import SimClock, SimLoop

    try:
        import bluetooth
        import esp32
        import machine
    except ImportError:
        from tests.shims import bluetooth, esp32, machine

    now = _timer()
    profile = board.load("boards/cold-chain-logger.json")
    # a deep-sleep profile, whatever the file says: the wake below must resume from RTC memory
    profile["power"] = {"sleep": "deep", "advertise_window_s": 5, "advertise_every_s": 1800}
    fs = SimFlash(seed=7)
    store = {}
    clock = SimClock()
    install_link_key(fs, esp32.NVS("edgeseal", store), LINK_KEY)
    machine.power_on()
    wall = [1700000000000]
    machine.set_sleep_hook(lambda ms: clock.block_ms(ms))
    sleeper = power.Sleeper(machine, lambda: wall[0] + clock.now_ms)
    ble = bluetooth.BLE(1, clock)
    b = app.build_board(
        profile, ble, fs, esp32.NVS("edgeseal", store), _buses(4000), clock, _urandom,
        uuid=bluetooth.UUID, sleeper=sleeper,
    )  # fmt: skip
    s = b.sampler
    s.event(5, 0)  # something in the journal before timing (first-append paths)
    unsigned, signed = [], []
    for _ in range(n_samples):
        before = s.signatures
        t0 = now()
        s.sample_once()
        dt = now() - t0
        (signed if s.signatures > before else unsigned).append(dt)
        clock.block_ms(60000)
    beats, signs = [], []
    for i in range(5):
        t0 = now()
        s.heartbeat()
        beats.append(now() - t0)
        t0 = now()
        s.signer.sign(bytes([i]) * 100)
        signs.append(now() - t0)
    # uploads of one window's worth (15 readings + the closing heartbeat), the journal emptied first
    gw_loop = SimLoop(clock)
    gw = Gateway(ble, gw_loop, 247)
    b.peripheral.windowed = False
    b.peripheral._advertise()
    gw_loop.spawn(b.peripheral.run())
    gw.connect()
    recs, end = gw.upload(0)
    gw.command(ack(end[1]))
    gw.disconnect()
    uploads = []
    for _ in range(3):
        for _ in range(15):
            s.sample_once()
            clock.block_ms(60000)
        b.peripheral._advertise()
        t0 = now()
        gw.connect()
        recs, end = gw.upload(0)
        gw.command(ack(end[1]))
        gw.disconnect()
        uploads.append(now() - t0)
    up_bytes = sum(len(r) for r in recs)
    up_records = len(recs)
    b.stop()
    gw_loop.close()
    # deep-sleep wakes: the state a sleep leaves in RTC memory, then build_board resuming it
    wakes = []
    woke = True
    for i in range(3):
        sleeper.save(power.pack(b, 60000, sleeper.wall_ms(), (0, 0, 0)))
        machine.set_reset_cause(machine.DEEPSLEEP_RESET)
        fs.remount()
        ble2 = bluetooth.BLE(2 + i, clock)
        t0 = now()
        b = app.build_board(
            profile, ble2, fs, esp32.NVS("edgeseal", store), _buses(10), clock, _urandom,
            uuid=bluetooth.UUID, sleeper=sleeper,
        )  # fmt: skip
        wakes.append(now() - t0)
        woke = woke and b.woke
        b.stop()
    machine.set_sleep_hook(None)
    machine.power_on()
    # minimum of repeats: the host is shared, and extra time is other processes, not the board
    sample, sign = min(unsigned), min(signs)
    r = {
        "sample_ms": sample, "sample_signed_ms": min(signed) if signed else sample + sign,
        "heartbeat_ms": min(beats), "sign_ms": sign, "upload_ms": min(uploads),
        "upload_bytes": up_bytes, "upload_records": up_records, "wake_ms": min(wakes),
        "woke": int(woke),
        "sign_every_n": s.sign_every_n, "adv_interval_us": ADV_INTERVAL_US,
    }  # fmt: skip
    print("RESULT " + " ".join("%s=%s" % (k, r[k]) for k in sorted(r)))
    return r


# ---- host half: the estimate -----------------------------------------------------------------
def _profiles():
    """Return [(label, chip, sample_s, heartbeat_s, sleep, window_s, every_s)] to estimate."""
    import json
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "boards", "cold-chain-logger.json")) as f:
        p = json.load(f)
    pw = p.get("power") or {}
    chip, sample_s, hb_s = p["chip"], p["sample_interval_s"], p["heartbeat_interval_s"]
    w, e = pw.get("advertise_window_s", 8), pw.get("advertise_every_s", p["upload_interval_s"])
    out = [
        ("always awake (no power object)", chip, sample_s, hb_s, "none", 0, 0),
        ("windows only, no sleep", chip, sample_s, hb_s, "none", w, e),
        ("light sleep + windows", chip, sample_s, hb_s, "light", w, e),
        ("deep sleep + windows", chip, sample_s, hb_s, "deep", w, e),
        ("cold-chain-logger.json as shipped", chip, sample_s, hb_s, pw.get("sleep", "none"), w, e),
        ("deep sleep, 1 reading / 15 min", chip, 900, hb_s, "deep", w, e),
        ("same on an ESP32 (light)", "esp32", sample_s, hb_s, "light", w, e),
    ]
    return out


def estimate(m, chip, sample_s, heartbeat_s, sleep, window_s, every_s):
    """Return (average mA, {part: mA}) of one profile from the VM measurements m (ms; and the
    firmware's advertising interval, adv_interval_us)."""
    cur = CURRENTS_MA[chip]
    adv_interval_ms = m["adv_interval_us"] / 1000.0
    k = ESP32_SIGN_MS / m["sign_ms"] * CLOCK_SCALE[chip]  # VM ms -> chip ms
    n = m["sign_every_n"]
    # a signed sample is an unsigned one plus a signature (both best-of-repeats in the VM)
    cpu_sample = (m["sample_ms"] + m["sign_ms"] / n) * k
    period_s = 3600.0  # account per hour
    samples = period_s / sample_s
    beats = period_s / heartbeat_s
    parts = {}
    # CPU work (mA * s per hour -> mA average)
    cpu_ms = samples * cpu_sample + beats * m["heartbeat_ms"] * k
    conv_ms = samples * (DS18B20_CONV_MS + SHT3X_MS)
    if sleep == "none":
        # awake all the time: the CPU idles between work, advertising all the time unless windowed
        parts["cpu work"] = cpu_ms / 1000 * (cur["cpu"] - cur["idle"]) / period_s
        parts["idle awake"] = cur["idle"]
    else:
        parts["cpu work"] = cpu_ms / 1000 * cur["cpu"] / period_s
        parts["sensor waits (light sleep)"] = conv_ms / 1000 * cur["light"] / period_s
    windows = period_s / every_s if every_s else 0.0
    uploads = windows if every_s else period_s / 900.0  # always-on: a gateway visit / 15 min
    adv_s = windows * window_s if every_s else period_s
    if sleep != "none":
        parts["windows awake (idle)"] = adv_s * cur["idle"] / period_s
    events = adv_s * 1000.0 / adv_interval_ms
    parts["advertising radio"] = (
        events * (ADV_TX_MS * (cur["tx"] - cur["idle"]) + ADV_RX_MS * (cur["rx"] - cur["idle"]))
        / 1000.0 / period_s
    )  # fmt: skip
    # one upload carries what accumulated since the last: scale the measured upload by records
    gap_s = every_s or 900.0
    per_upload = gap_s / sample_s + gap_s / heartbeat_s
    scale = per_upload / m["upload_records"]
    radio_ms = (
        CONN_S * 1000 / CONN_INTERVAL_MS * CONN_EVENT_RADIO_MS
        + m["upload_bytes"] * scale * US_PER_BYTE / 1000
    )
    conn_cpu_s = m["upload_ms"] * scale * k / 1000
    parts["upload connections"] = uploads * (
        conn_cpu_s * (cur["cpu"] - cur["idle"]) + radio_ms / 1000 * (cur["tx"] - cur["idle"])
    ) / period_s  # fmt: skip
    if sleep == "deep":
        wakes = samples  # every wait between samples is a deep sleep (>= DEEP_MIN_MS)
        wake_ms = WAKE_FIXED_MS + m["wake_ms"] * k
        parts["deep-sleep wakes (boot)"] = wakes * wake_ms / 1000 * cur["cpu"] / period_s
        asleep_s = period_s - (cpu_ms + wakes * wake_ms) / 1000 - adv_s
        parts["asleep"] = max(asleep_s, 0) * cur["deep"] / period_s
    elif sleep == "light":
        asleep_s = period_s - (cpu_ms + conv_ms) / 1000 - adv_s
        parts["asleep"] = max(asleep_s, 0) * cur["light"] / period_s
    return sum(parts.values()), parts


def _run_vm(quick):
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["node", "tools/mpvm.mjs", "--run", "tools/bench_power.py"]
    if quick:
        cmd.append("--quick")
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    line = None
    for ln in proc.stdout.splitlines():
        if ln.startswith("RESULT "):
            line = ln
    if proc.returncode != 0 or line is None:
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return None
    print(line)
    return {k: float(v) for k, v in (item.split("=", 1) for item in line.split()[1:])}


def main(argv=None):
    """Measure in the VM and print each profile's estimate; returns 0 when the VM run worked."""
    args = sys.argv[1:] if argv is None else list(argv)
    m = _run_vm("--quick" in args)
    if m is None:
        print("bench_power: the VM run failed")
        return 1
    k = ESP32_SIGN_MS / m["sign_ms"]
    print(
        "VM (2-core x86 host) ms: sample %.1f, signed sample %.1f, heartbeat %.1f, sign %.1f,"
        " upload of %d records / %d bytes %.1f, deep-sleep wake (build_board) %.1f"
        % (m["sample_ms"], m["sample_signed_ms"], m["heartbeat_ms"], m["sign_ms"],
           m["upload_records"], m["upload_bytes"], m["upload_ms"], m["wake_ms"])
    )  # fmt: skip
    print("VM -> ESP32 factor %.1f (ESP32 sign %.0f ms / VM sign); ESP32-C3 x%.1f more"
          % (k, ESP32_SIGN_MS, CLOCK_SCALE["esp32c3"]))  # fmt: skip
    base = None
    print()
    print("%-36s %-8s %6s %5s %-6s %8s %10s %9s" % (
        "profile", "chip", "sample", "every", "sleep", "avg mA", "life days", "vs awake"))  # fmt: skip
    shipped = None
    for label, chip, sample_s, hb_s, sleep, window_s, every_s in _profiles():
        avg, parts = estimate(m, chip, sample_s, hb_s, sleep, window_s, every_s)
        days = CELL_MAH / avg / 24
        if base is None:
            base = avg
        print("%-36s %-8s %5ds %4ds %-6s %8.3f %10.0f %8.1fx" % (
            label, chip, sample_s, every_s, sleep, avg, days, base / avg))  # fmt: skip
        if label.startswith("cold-chain-logger.json"):
            shipped = (avg, days, parts)
        elif "--parts" in args:
            print("    " + ", ".join("%s %.4f" % kv for kv in sorted(parts.items())))
    if shipped is not None:
        avg, days, parts = shipped
        months = days * 24 / HOURS_PER_MONTH
        print()
        print("cold-chain logger as shipped, 1 reading/min: %.3f mA average -> %.0f days = %.1f"
              " months on %d mAh; goal %d months: ratio %.2f (%s)"
              % (avg, days, months, CELL_MAH, GOAL_MONTHS, months / GOAL_MONTHS,
                 "met" if months >= GOAL_MONTHS else "NOT met"))  # fmt: skip
        for name, ma in sorted(parts.items(), key=lambda kv: -kv[1]):
            print("  %-30s %8.4f mA" % (name, ma))
    return 0


if __name__ == "__main__":
    if MICROPYTHON:
        measure(16 if "--quick" in ARGS else 32)
    else:
        raise SystemExit(main())
