"""The node: SIP messages through dialog actors, events journaled before the
packet is released, timers from the node's clock, recovery from the journal,
a standby mirroring from records, and `show`/`status` answers."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from actors.node import Node
from gateway.config.model import Config, SipSettings
from gateway.sip import state as sip_state
from gateway.sip import state_fold as sip_fold
from journal.replay import replay
from tests.test_sip_alg import IN, OUT, invite, request_out, response, sdp, PH2

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def send(node: Node, ctx, data: bytes, key: str = "a1234"):
    done = threading.Event()
    out = []
    node.handle_alg(SimpleNamespace(key=key), lambda o: (out.append(o), done.set()), ctx, data)
    assert done.wait(5), "the packet was never released"
    return out[0]


def wait_for(pred, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def lone(tmp_path):
    clock = Clock()
    node = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    node.start()
    yield node, clock
    node.stop()


def test_call_through_node_is_journaled_then_released(lone, tmp_path):
    node, clock = lone
    assert node.status()["role"] == "active"
    send(node, OUT, invite())
    # released only after the writer appended the step's events
    assert node.journal.head > 0
    send(node, IN, response(200, "OK", body=sdp(PH2, 62002)))
    send(node, OUT, request_out("ACK", 1, "z9hG4bK2"))
    (call,) = node.show("calls")
    assert call["phase"] == "confirmed" and call["private"] == "5.5.5.1"
    assert node.show("pinholes")
    # replaying the journal gives exactly the live state
    state, last = replay(node.journal, sip_fold.apply, sip_state.EMPTY)
    assert state == node.sip and last == node.journal.head


def test_bye_tears_down_five_seconds_later_by_the_node_clock(lone):
    node, clock = lone
    send(node, OUT, invite())
    send(node, IN, response(200, "OK", body=sdp(PH2, 62002)))
    send(node, OUT, request_out("BYE", 2, "z9hG4bK3"))
    send(node, IN, response(200, "OK", method="BYE", cseq=2, branch="z9hG4bK3"))
    clock.t += 4.0
    node.timers.fire_due()
    time.sleep(0.1)
    assert len(node.show("calls")) == 1          # not yet: 5 s after the BYE
    clock.t += 1.5
    node.timers.fire_due()
    wait_for(lambda: not node.show("calls"))
    assert not node.show("pinholes")
    assert node.directory.count("entity") == 0


def test_dropped_message_changes_nothing(lone):
    node, _ = lone
    head = node.journal.head
    out = send(node, OUT, b"INVITE garbage\r\n\r\n")
    assert "malformed" in out.reason
    assert node.journal.head == head and not node.show("calls")


def test_restarted_node_recovers_calls_from_its_journal(tmp_path):
    clock = Clock()
    a = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    a.start()
    send(a, OUT, invite())
    live = a.sip
    a.stop()
    b = Node("gw-a", CFG, str(tmp_path / "j"), clock=clock, fsync=False, timer_thread=False)
    try:
        assert b.sip == live and len(b.show("calls")) == 1
        assert b.directory.count("entity") >= 1      # entity actors mirrored from state
    finally:
        b.stop()


def test_standby_mirrors_records_and_does_not_forward(tmp_path, lone):
    node, clock = lone
    send(node, OUT, invite())
    send(node, IN, response(200, "OK", body=sdp(PH2, 62002)))
    standby = Node("gw-b", CFG, str(tmp_path / "s"), clock=clock, fsync=False, timer_thread=False)
    try:
        standby.start(role="standby")
        frames = node.journal.read_frames(1, 1000)
        standby.on_records(standby.journal.append_frames(frames))
        assert standby.sip == node.sip
        assert standby.show("calls") == node.show("calls")
        out = send(standby, OUT, request_out("BYE", 2, "z9hG4bK3"))
        assert out.reason == "standby: not forwarding"
    finally:
        standby.stop()


def test_failover_without_standby_keeps_the_active_role(lone):
    node, _ = lone
    res = node.failover(timeout=1.0)
    assert res["ok"] is False and node.status()["role"] == "active" and node.forwarding


def test_steady_media_is_reported_once_per_refresh_and_its_last_time_when_quiet(tmp_path):
    node = Node("gw-a", CFG, str(tmp_path / "j"), fsync=False, timer_thread=False, media_refresh=10.0)
    try:
        c = node.coalesce_media
        # First traffic and every pinhole use pass at once.
        assert c([("g1", "p1", 100.0), ("g2", None, 100.1)]) == [("g1", "p1", 100.0), ("g2", None, 100.1)]
        # Steady traffic within the refresh interval is held back ...
        assert c([("g1", None, 100.2), ("g2", None, 100.3)]) == []
        assert c([("g1", "p2", 100.4), ("g2", None, 105.0)]) == [("g1", "p2", 100.4)]
        # ... and passed again a refresh interval after the last report.
        assert c([("g1", None, 110.5), ("g2", None, 110.2)]) == [("g1", None, 110.5), ("g2", None, 110.2)]
        assert c([("g1", None, 110.7)]) == []
        # g1 falls quiet: its held-back last time goes to the ALG (exact deadline).
        assert c([]) == [("g1", None, 110.7)]
        assert c([]) == []
        # A quiet channel's next packet is reported at once.
        assert c([("g1", None, 111.0)]) == [("g1", None, 111.0)]
    finally:
        node.stop()


def _answered_call(node: Node) -> tuple[list[str], dict[str, str]]:
    """A call with a voice channel each way: its groups, and a media pinhole of each."""
    send(node, OUT, invite())
    send(node, IN, response(200, "OK", body=sdp(PH2, 62002)))
    (call,) = node.sip.calls.values()
    groups = [g.group for g in call.groups]
    used = {g: next(p.id for p in call.pinholes if p.group == g) for g in groups}
    return groups, used


def test_a_call_s_media_reports_of_one_drain_are_one_step_and_one_record(lone, tmp_path):
    """Both voice channels' first traffic in one drain: one turn of the
    call's actor, one journal record (each channel's MediaSeen and its used
    pinhole's close, in report order), the pinholes gone from the datapath's
    view, and the state that the same reports in two drains leave."""
    node, clock = lone
    groups, used = _answered_call(node)
    assert len(groups) == 2
    head = node.journal.head
    clock.t += 1
    node.report_media([(g, used[g], clock.t) for g in groups])
    wait_for(lambda: node.journal.head > head)
    assert node.quiesce(5)
    (rec,) = node.journal.read(head + 1, node.journal.head)
    evs = rec.events()
    assert [e.TYPE for e in evs] == ["sip.media_seen", "sip.pinhole_closed"] * 2
    assert [e.group for e in evs[::2]] == groups and [e.pinhole for e in evs[1::2]] == [used[g] for g in groups]
    assert not {p["id"] for p in node.show("pinholes")} & set(used.values())

    other_clock = Clock()
    other = Node("gw-a", CFG, str(tmp_path / "other"), clock=other_clock, fsync=False, timer_thread=False)
    other.start()
    try:
        assert _answered_call(other) == (groups, used)
        base = other.journal.head
        other_clock.t += 1
        for g in groups:                        # a drain each
            other.report_media([(g, used[g], other_clock.t)])
            assert other.quiesce(5)
        assert other.journal.head == base + 2
        assert other.state == node.state and other.show("calls") == node.show("calls")
    finally:
        other.stop()


def test_without_a_refresh_every_media_report_passes(lone):
    node, _clock = lone
    batch = [("g1", None, 1.0), ("g1", None, 1.1)]
    assert node.media_refresh == 0 and node.coalesce_media(batch) == batch


def test_media_refresh_is_a_quarter_of_the_shortest_inactivity_timeout():
    assert Node.media_refresh_for(CFG) == 30.0                       # 120 s defaults, capped
    short = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=(),
                   sip=SipSettings(media_inactivity_timeout=8))
    assert Node.media_refresh_for(short) == 2.0


def test_diverged_journal_is_cut_and_the_entities_follow(lone):
    """Rejoining as standby with records the active never had: they are cut,
    the state is refolded, and no actor is left for an entity that is gone."""
    node, _ = lone
    send(node, OUT, invite())
    assert node.show("calls") and node.directory.count("entity") >= 1
    node.on_trigger("diverged", 0)
    assert node.journal.head == 0 and not node.show("calls")
    wait_for(lambda: node.directory.count("entity") == 0)
