"""Hostile traffic cannot make the H.323 ALG hold state without bound:
Setups that never connect and RAS requests never answered end with their
timers, and one source has a capped number of either at a time."""

from __future__ import annotations

import random

from gateway.h323.ras import parse_ras
from gateway.h323.alg import DEFAULT_SETTINGS, H323Context, on_timer, step
from gateway.h323.state import EMPTY, H323State, fold

from h323_bounds import frames

F = frames()
SETUP, CONNECT, ARQ, RRQ, RCF = F[6], F[18], F[63], F[61], F[62]
GUID = bytes.fromhex("c0fef93ecd9ed6119ab2000476222017")
GK = ("17.2.0.161", 1719)


def _counts(s: H323State) -> dict:
    return {f: len(getattr(s, f)) for f in H323State.__dataclass_fields__}


def _setup_with(guid: bytes) -> bytes:
    i = SETUP.index(GUID)
    return SETUP[:i] + guid + SETUP[i + 16:]


ARQ_GUID = bytes.fromhex("004091fb7289f911802a050403020100")


def _arq_with(seq: int, guid: bytes) -> bytes:
    """The corpus ARQ with another requestSeqNum (octets 2-3, the value
    less one: INTEGER (1..65535), X.691 12.2.5) and callIdentifier."""
    i = ARQ.index(ARQ_GUID)
    m = ARQ[:2] + (seq - 1).to_bytes(2, "big") + ARQ[4:i] + guid + ARQ[i + 16:]
    return m


def _steady_state():
    """A registration and a connected call, there before the flood and
    after it."""
    ep = ("17.2.0.124", 2034)
    s = step(EMPTY, H323Context("ras", "none", ep, GK), RRQ, 0.0).state
    s = step(s, H323Context("ras", "none", GK, ep), RCF, 0.1).state
    a, b = ("10.1.3.143", 32803), ("10.1.6.18", 1720)
    s = step(s, H323Context("q931", "none", a, b), SETUP, 0.2).state
    s = step(s, H323Context("q931", "none", b, a), CONNECT, 0.3).state
    assert len(s.calls) == 1 and len(s.registrations) == 1 and not s.setups_by_source
    return s


def _expire_all(s: H323State, now: float) -> H323State:
    keys = [f"h323-call/{k}" for k in s.calls] + [f"h323-ras/{r}/{q}" for r, q in s.ras]
    for k in keys:
        res = on_timer(s, k, now)
        assert fold(res.events, s) == res.state
        s = res.state
    return s


def test_arq_edit_is_what_it_says():
    m = parse_ras(_arq_with(4661, bytes(range(16))))
    assert m.seq == 4661 and m.fields["callIdentifier"]["guid"] == bytes(range(16))


def test_flood_of_setups_and_arqs_leaves_nothing_behind():
    rnd = random.Random(7)
    s0 = _steady_state()
    before = _counts(s0)
    s = s0
    dropped = {"setup": 0, "arq": 0}
    sources = [f"198.51.100.{i}" for i in range(1, 5)]
    now = 10.0
    for n in range(2000):
        src = (sources[n % len(sources)], 20000 + n)
        res = step(s, H323Context("q931", "none", src, ("10.1.6.18", 1720)),
                   _setup_with(rnd.randbytes(16)), now)
        if res.verdict == "drop":
            assert "already in setup" in res.reason
            dropped["setup"] += 1
        s = res.state
    for n in range(2000):
        src = (sources[n % len(sources)], 1719)
        res = step(s, H323Context("ras", "none", src, GK), _arq_with(rnd.randint(1, 65535), rnd.randbytes(16)),
                   now)
        if res.verdict == "drop":
            assert "await an answer" in res.reason
            dropped["arq"] += 1
        s = res.state
    st = DEFAULT_SETTINGS
    assert max(s.setups_by_source.values()) == st.max_setups_per_source
    assert max(s.ras_by_source.values()) <= st.max_ras_per_source
    assert len(s.calls) == 1 + len(sources) * st.max_setups_per_source
    assert dropped["setup"] == 2000 - len(sources) * st.max_setups_per_source
    assert dropped["arq"] > 0

    # Before the setup timeout the calls stand; after it and the RAS
    # timeout every count is back where it was, the state equal to it.
    assert _expire_all(s, now + st.setup_timeout - 1).calls == s.calls
    after = _expire_all(s, now + max(st.setup_timeout, st.ras_transaction_timeout))
    assert _counts(after) == before
    assert after == s0


def test_connect_ends_the_setup_bound():
    """A connected call no longer counts against its source, nor ends at
    the setup timeout."""
    a, b = ("10.1.3.143", 32803), ("10.1.6.18", 1720)
    s = step(EMPTY, H323Context("q931", "none", a, b), SETUP, 0.0).state
    assert dict(s.setups_by_source) == {"10.1.3.143": 1}
    s = step(s, H323Context("q931", "none", b, a), CONNECT, 1.0).state
    assert not s.setups_by_source
    (key,) = s.calls
    assert key in on_timer(s, f"h323-call/{key}", DEFAULT_SETTINGS.setup_timeout + 5).state.calls


def test_unanswered_setup_ends_at_the_setup_timeout():
    a, b = ("10.1.3.143", 32803), ("10.1.6.18", 1720)
    res = step(EMPTY, H323Context("q931", "none", a, b), SETUP, 0.0)
    (key,) = res.state.calls
    (timer,) = res.timers
    assert timer.deadline == DEFAULT_SETTINGS.setup_timeout
    out = on_timer(res.state, timer.key, timer.deadline)
    assert not out.state.calls and not out.state.setups_by_source and not out.state.call_refs
    assert "setup timeout" in out.logs[0]
