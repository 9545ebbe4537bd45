"""Board side of `make hil`: runs ON the board (MicroPython), on the port's real `bluetooth`,
`esp32` and `machine` modules, no shims. Precompiled to .mpy by tests/hil/hil.py and deployed
beside the firmware; small on purpose (the board compiles nothing).

main() checks the port modules the firmware relies on, boots the deployed firmware's Board
(no sensors: what is measured is the firmware, not the attached hardware), times signatures and
measures the free heap after boot and at steady state; prints one line "HIL-RESULT <json>".
It uses the board's real NVS and journal: run it on a test board.
"""

import binascii
import gc
import json
import os
import time

SIGNATURES = 3  # signatures timed (mean reported)
STEADY_ROUNDS = 20  # samples + heartbeats before the steady-state heap is read
_NS = "es_hil"  # a scratch NVS namespace: the firmware's "edgeseal" one is not touched by checks


def _check_machine(res):
    import machine

    uid = machine.unique_id()
    res["mac"] = binascii.hexlify(uid).decode()
    assert len(uid) == 6, "machine.unique_id() is not 6 bytes"
    assert machine.freq() > 0


def _check_nvs(res):
    import esp32

    nvs = esp32.NVS(_NS)
    nvs.set_blob("blob", b"edgeseal-hil")
    nvs.set_i32("n", -7)
    nvs.commit()
    buf = bytearray(16)
    assert nvs.get_blob("blob", buf) == 12 and bytes(buf[:12]) == b"edgeseal-hil"
    assert nvs.get_i32("n") == -7
    nvs.erase_key("blob")
    nvs.erase_key("n")
    nvs.commit()
    try:
        nvs.get_i32("n")
        raise AssertionError("an erased NVS key still reads")
    except OSError:
        pass


def _check_ble(res, ble):
    assert ble.active(True), "BLE did not become active"
    ble.gap_advertise(100000, b"\x02\x01\x06")
    ble.gap_advertise(None)


def _boot(res, ble):
    """Build the firmware's Board as main.py does (no sensors); return it."""
    import esp32

    from firmware import app
    from firmware.fs import VfsFS
    from firmware.runtime import NVS_NAMESPACE, PROFILE_PATH, RealClock

    profile = app.load_profile(PROFILE_PATH)
    t = time.ticks_ms()
    board = app.build_board(
        profile, ble, VfsFS(), esp32.NVS(NVS_NAMESPACE), {}, RealClock(), os.urandom, sources=[]
    )
    res["boot_ms"] = time.ticks_diff(time.ticks_ms(), t)
    app.unload_boot_modules()
    gc.collect()
    res["heap_after_boot"] = gc.mem_free()
    res["device_id"] = binascii.hexlify(board.dev_id).decode()
    return board


def _sign_time(res, board):
    msg = bytes(64)
    signer = board.sampler.signer
    t = time.ticks_us()
    for _ in range(SIGNATURES):
        signer.sign(msg)
    res["sign_ms"] = time.ticks_diff(time.ticks_us(), t) // SIGNATURES // 1000


def _steady(res, board):
    s = board.sampler
    for _ in range(STEADY_ROUNDS):
        s.sample_once()
        s.heartbeat()
    gc.collect()
    res["heap_steady"] = gc.mem_free()
    res["records"] = board.journal.last_seq


def main():
    """Run every check and measurement; print "HIL-RESULT <json>" (passed, failed, numbers)."""
    gc.collect()
    res = {"heap_at_start": gc.mem_free(), "passed": [], "failed": []}
    import bluetooth

    ble = bluetooth.BLE()
    board = None
    for name, step in (
        ("machine", lambda: _check_machine(res)),
        ("nvs", lambda: _check_nvs(res)),
        ("ble", lambda: _check_ble(res, ble)),
        ("boot", lambda: _boot(res, ble)),
    ):
        try:
            out = step()
            if name == "boot":
                board = out
            res["passed"].append(name)
        except Exception as e:  # report every failure, keep going
            res["failed"].append(name + ": " + repr(e))
    if board is not None:
        for name, fn in (("sign", _sign_time), ("steady", _steady)):
            try:
                fn(res, board)
                res["passed"].append(name)
            except Exception as e:
                res["failed"].append(name + ": " + repr(e))
        board.stop()
    print("HIL-RESULT " + json.dumps(res))
