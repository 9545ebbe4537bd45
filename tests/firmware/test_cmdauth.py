"""Authenticated commands (BLE protocol v2): firmware.cmdauth against the shared vectors, and the
peripheral's use of it (nonce per connection, counters, replays, no key, TIME_SYNC bounds)."""

from firmware import cmdauth, peripheral, wire
from firmware.peripheral import Peripheral
from tests.firmware.test_peripheral import (
    LINK_KEY,
    STOP,
    Gateway,
    Urandom,
    ack,
    bluetooth,
    rig,
    seal,
    send_from,
    time_sync,
)
from tests.firmware.test_sampler import Node, SimLoop
from tests.firmware.vectors import W, check_copies, load, private_const, unhex

VM_SKIP = {}
V = load("ble.json")["auth"]
TIME_SYNC_MAX_STEP_S = private_const(peripheral, "_TIME_SYNC_MAX_STEP_S", 120)
# check()'s refusal reasons (firmware/cmdauth.py)
TRAILER_BYTES = private_const(cmdauth, "_TRAILER_BYTES", 13)  # counter + tag
AUTH_NO_KEY = private_const(cmdauth, "_AUTH_NO_KEY", 1)
AUTH_NO_SESSION = private_const(cmdauth, "_AUTH_NO_SESSION", 5)
_REASONS = {"bad-tag": private_const(cmdauth, "_AUTH_BAD_TAG", 3),
            "replay": private_const(cmdauth, "_AUTH_REPLAY", 4),
            "short": private_const(cmdauth, "_AUTH_SHORT", 2)}  # fmt: skip


def _auth():
    """Return a CommandAuth with the vectors' link key, in a session under their nonce."""
    a = cmdauth.CommandAuth(unhex(V["link_key"]), unhex(V["device_id"]))
    a.new_session(unhex(V["nonce"]))
    return a


def test_positive_vectors_in_order_on_one_connection():
    a = _auth()
    for vec in V["writes"]:
        w = unhex(vec["hex"])
        assert a.check(w) == cmdauth.AUTH_OK, vec["name"]
        assert w[: len(w) - TRAILER_BYTES] == unhex(vec["command"])
        tag = a.tag(unhex(V["nonce"]), vec["counter"], unhex(vec["command"]))
        assert tag[: cmdauth.TAG_BYTES] == w[len(w) - cmdauth.TAG_BYTES :]


def test_negative_vectors_are_refused_with_their_reason():
    writes = [unhex(v["hex"]) for v in V["writes"]]
    for vec in V["bad"]:
        a = _auth()
        for i in vec["before"]:
            assert a.check(writes[i]) == cmdauth.AUTH_OK
        assert a.check(unhex(vec["hex"])) == _REASONS[vec["reason"]], vec["name"]
        # a refusal changes nothing: the next fresh write is still accepted
        nxt = len(vec["before"])
        assert a.check(writes[nxt]) == cmdauth.AUTH_OK, vec["name"]


def test_no_key_and_no_session_refuse_everything():
    w = unhex(V["writes"][0]["hex"])
    a = cmdauth.CommandAuth(None, unhex(V["device_id"]))
    a.new_session(unhex(V["nonce"]))
    assert not a.has_key and a.check(w) == AUTH_NO_KEY
    b = cmdauth.CommandAuth(unhex(V["link_key"]), unhex(V["device_id"]))
    assert b.check(w) == AUTH_NO_SESSION
    b.new_session(unhex(V["nonce"]))
    b.end_session()
    assert b.check(w) == AUTH_NO_SESSION


def test_equal_ct():
    assert cmdauth.equal_ct(b"abcdef", b"abcdeX", 5)
    assert not cmdauth.equal_ct(b"abcdef", b"Xbcdef", 5)


def test_each_connection_gets_a_fresh_nonce_and_old_writes_die_with_it():
    node, per, loop, gw, ble = rig(3)
    gw.connect()
    first = gw.info["nonce"]
    captured = seal(LINK_KEY, gw.info["device_id"], first, 1, ack(node.journal.last_seq))
    gw.disconnect()
    loop.run_for(100)
    gw.connect()
    assert gw.info["nonce"] != first and len(gw.info["nonce"]) == 16
    depth = node.sampler.depth
    assert gw.command(captured, sealed=False)[1] == 4  # replayed on a new connection
    assert node.sampler.depth == depth and per.auth_rejections == 1
    loop.close()


def test_a_replay_on_the_same_connection_is_refused_and_counted():
    node, per, loop, gw, ble = rig(3)
    gw.connect()
    records, end = gw.upload(0)
    gw.counter += 1
    w = seal(LINK_KEY, gw.info["device_id"], gw.info["nonce"], gw.counter, ack(1))
    assert gw.command(w, sealed=False)[1] == 0
    depth = node.sampler.depth
    assert gw.command(w, sealed=False)[1] == 4  # the same bytes again: stale counter
    lower = seal(LINK_KEY, gw.info["device_id"], gw.info["nonce"], 1, ack(end[1]))
    assert gw.command(lower, sealed=False)[1] == 4  # a lower counter, valid tag
    assert node.sampler.depth == depth and per.auth_rejections == 2
    assert gw.command(ack(end[1]))[1] == 0  # the real gateway goes on (counter above)
    loop.close()


def test_a_board_without_a_link_key_refuses_every_command_and_keeps_its_records():
    node = Node()
    for _ in range(3):
        node.sampler.sample_once()
        node.clock.now_ms += 1000
    ble = bluetooth.BLE(0, node.clock)
    per = Peripheral(ble, node.sampler, "x", (0, 1, 0), uuid=bluetooth.UUID, urandom=Urandom())
    loop = SimLoop(node.clock)
    loop.spawn(per.run())
    loop.run_for(30)
    gw = Gateway(ble, loop)
    gw.connect()
    for cmd in (send_from(0), ack(node.journal.last_seq), time_sync(1795000000), STOP):
        assert gw.command(cmd)[1] == 4
    assert node.sampler.depth == 3 and not node.sampler.time.synced
    assert gw.records == [] and per.auth_rejections == 4
    loop.close()


def test_time_sync_first_sets_then_moves_at_most_the_step_once_per_connection():
    node, per, loop, gw, ble = rig(1)
    gw.connect()
    assert gw.command(time_sync(1795000000)) == (3, 0, 1795000000)  # first: sets
    assert gw.command(time_sync(1795000000 + 5))[1] == 3  # a second one on this connection: busy
    gw.disconnect()
    loop.run_for(100)
    gw.connect()
    now = node.sampler.time.now()[0]
    st = gw.command(time_sync(now + 100000))  # far ahead: moves by the bound only
    assert (
        st[1] == 0
        and st[2] - now <= TIME_SYNC_MAX_STEP_S + 1
        and st[2] - now >= TIME_SYNC_MAX_STEP_S - 1
    )
    assert per.time_sync_clamps == 1
    loop.close()


def test_time_sync_events_are_rate_bound():
    node, per, loop, gw, ble = rig(0)
    events = node.sampler.events
    for i in range(6):
        gw.connect()
        assert gw.command(time_sync(1795000000 + 7 * i))[1] == 0
        gw.disconnect()
        loop.run_for(100)
    # the first sync journals an event; the next five (within a minute) are summed, not journaled
    assert node.sampler.events - events == 1 and node.sampler.time_sync_events_deferred == 5
    kinds = [wire.parse(r)[0] for _, r in node.journal.iter_from(0)]
    assert kinds.count(W.KIND_EVENT) == 1
    loop.close()


def test_private_copies_of_cmdauth_constants_match():
    # firmware/peripheral.py keeps copies (_NONCE_BYTES, _TRAILER_BYTES) under the same names
    assert check_copies("firmware/cmdauth.py", cmdauth) >= 2
