"""The SIP ALG's own events through the journal: for random, well-formed
sequences of them, the live fold (gateway.sip.state_fold.apply as each event is
emitted) equals the replay of the journal, whatever the group-commit batching,
and every event reads back equal."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip import events as ev
from gateway.sip.state import EMPTY
from gateway.sip.state_fold import apply
from journal.replay import history, replay
from journal.store import Journal

IPS = ["10.1.1.5", "10.1.1.6", "192.0.2.10", "198.51.100.7"]
ips = st.sampled_from(IPS)
ports = st.integers(1024, 65534)
times = st.floats(0, 1e6, allow_nan=False)
short = st.text("abcdef0123456789", min_size=1, max_size=8)


@st.composite
def sip_histories(draw) -> list[ev.Event]:
    """Events in an order the ALG could emit them: call events only for calls
    that were started and not yet ended."""
    out: list[ev.Event] = []
    live: list[str] = []
    n = 0
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["start", "start", "call", "call", "call", "end", "reg", "protect"]))
        if kind == "start" or (kind in ("call", "end") and not live):
            n += 1
            key = f"call{n}@{draw(short)}"
            live.append(key)
            out.append(ev.CallStarted(key, key.split("@")[0], f"pub-{n}", draw(short),
                                      draw(st.sampled_from(["outbound", "inbound", "none"])),
                                      draw(st.none() | ips), draw(st.none() | ips), "trust", "untrust",
                                      draw(times), draw(times)))
        elif kind == "call":
            key = draw(st.sampled_from(live))
            out.append(draw(st.one_of(
                st.builds(ev.CallActivity, st.just(key), times, times, st.none() | st.integers(90, 3600)),
                st.builds(ev.TransactionSeen, st.just(key), short, st.integers(1, 2**31),
                          st.sampled_from(["INVITE", "ACK", "BYE"]), st.sampled_from("ab"), ips, ips),
                st.builds(ev.BindingAdded, st.just(key), ips, ports, ips, ports, st.booleans()),
                st.builds(ev.CallAnswered, st.just(key), short, times, times, times),
                st.builds(ev.MediaBound, st.just(key), short, st.sampled_from("ab"), st.integers(0, 3),
                          ips, ports, ports, st.none() | ips, st.none() | ports, st.none() | times),
                st.builds(ev.MediaSeen, st.just(key), short, times, times),
                st.builds(ev.PinholeOpened, st.just(key), short, short, st.just("media"), st.just("udp"),
                          st.sampled_from(["inbound", "outbound"]), ips, ports, st.none() | ips,
                          st.none() | ports, st.none() | ips, st.none() | ports, st.none() | times),
                st.builds(ev.PinholeClosed, st.just(key), short, st.just("bye")),
                st.builds(ev.CallTerminating, st.just(key), st.just("BYE"), times),
            )))
        elif kind == "end":
            key = draw(st.sampled_from(live))
            live.remove(key)
            out.append(ev.CallEnded(key, draw(st.sampled_from(["bye", "timeout"]))))
        elif kind == "reg":
            out.append(draw(st.one_of(
                st.builds(ev.RegistrationBound, ips, ports, ips, ports, short, st.none() | times, st.booleans()),
                st.builds(ev.RegistrationRemoved, ips, ports, st.just("expired")))))
        else:
            out.append(draw(st.one_of(st.builds(ev.ProtectDenyAdded, ips, ips, times),
                                      st.builds(ev.ProtectDenyExpired, ips, ips))))
    return out


@settings(max_examples=50, deadline=None)
@given(history_=sip_histories(), cuts=st.lists(st.integers(1, 8), max_size=40), data=st.data())
def test_sip_replay_equals_live_fold(history_, cuts, data):
    with tempfile.TemporaryDirectory() as d:
        live = [EMPTY]
        with Journal.open(d, fsync=False, segment_bytes=4096) as j:
            i, sizes = 0, iter(cuts)
            while i < len(history_):
                batch = history_[i:i + next(sizes, 5)]
                j.append_batch([(e, 1000.0 + i + k) for k, e in enumerate(batch)], epoch=1)
                for e in batch:
                    live.append(apply(live[-1], e))
                i += len(batch)
            assert [r.event() for r in j.read()] == history_
        n = len(history_)
        assert replay(d, apply, EMPTY) == (live[n], n)
        target = data.draw(st.integers(0, n))
        assert replay(d, apply, EMPTY, until_seq=target) == (live[target], target)
        # One call's stream is exactly that call's events, versions 1..k.
        key = next((e.key for e in history_ if isinstance(e, ev.CallStarted)), None)
        if key is not None:
            recs = history(d, ev.call_stream(key))
            assert [r.event() for r in recs] == [e for e in history_ if e.stream == ev.call_stream(key)]
            assert [r.version for r in recs] == list(range(1, len(recs) + 1))
