"""For random sequences of SIP messages, timers and media reports through a
live node: the live state == replay(journal) == the state of a standby node
that received the journal frames (the standby's own fold path, on_records)."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

from hypothesis import HealthCheck, event, given, settings, strategies as st

from actors.node import MediaReport, Node
from gateway import domain
from gateway.config.model import Config
from journal.replay import replay
from test_node import Clock
from test_sip_alg_replay import MESSAGES

CFG = Config(zones={}, interfaces={}, addresses={}, policies=(), routes=())
_dirs = itertools.count()

ops = st.lists(st.one_of(
    st.tuples(st.just("msg"), st.integers(0, len(MESSAGES) - 1), st.floats(0, 200)),
    st.tuples(st.just("timer"), st.integers(0, 20), st.floats(0, 5000)),
    st.tuples(st.just("media"), st.integers(0, 20), st.floats(0, 100)),
), max_size=15)


def _send(node: Node, ctx, data: bytes) -> None:
    done = threading.Event()
    node.handle_alg(SimpleNamespace(key="k"), lambda _o: done.set(), ctx, data)
    assert done.wait(5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_live_equals_replay_equals_standby(tmp_path, sequence):
    base = tmp_path / f"run{next(_dirs)}"
    clock = Clock()
    live = Node("gw-a", CFG, str(base / "a"), clock=clock, fsync=False, timer_thread=False)
    standby = Node("gw-b", CFG, str(base / "b"), clock=clock, fsync=False, timer_thread=False)
    try:
        live.start()
        standby.start(role="standby")
        _send(live, *MESSAGES[0])              # every run starts with a call
        for kind, n, dt in sequence:
            clock.t += dt
            if kind == "msg":
                ctx, data = MESSAGES[n]
                _send(live, ctx, data)
            elif kind == "timer":
                live.timers.fire_due()
            else:
                groups = sorted(live.sip.group_index)
                if groups:
                    g = groups[n % len(groups)]
                    live._entity(f"call/{live.sip.group_index[g]}").tell(MediaReport("sip", g, None, clock.t))
            assert live.quiesce(5)
        frames = live.journal.read_frames(1, 1_000_000)
        if frames:
            standby.on_records(standby.journal.append_frames(frames))
        replayed, last = replay(live.journal, domain.apply, domain.EMPTY)
        assert last == live.journal.head
        assert replayed == live.state
        assert standby.state == live.state
        assert standby.show("calls") == live.show("calls")
        event(f"events journaled: {min(live.journal.head, 20) // 5 * 5}+")
    finally:
        live.stop()
        standby.stop()
