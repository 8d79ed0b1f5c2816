"""Fuzzing with a bounded budget: mutations of the corpus H.323 messages
(byte flips, length determinants set high, truncations, inserted octets)
through the RAS, Q.931/H.225.0 and H.245 parsers and the ALG's step. Every
input gives a result or RemoteProtocolError (the ALG: a verdict) within
50 ms of CPU and a bounded peak of allocations; the process's resident
high-water mark grows by little over many inputs. The longer campaign
is bench/fuzz_h323.py."""

from __future__ import annotations

import random
import resource

from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.errors import RemoteProtocolError
from gateway.h323.alg import H323Context, step
from gateway.h323.h245 import parse_h245
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.state import EMPTY, fold

from h323_bounds import check_bounded, frames, mutate, with_tpkt_length

F = frames()
RAS = [F[n] for n in range(59, 76) if n in F and n not in (65, 66)]
Q931 = [F[n] for n in (6, 10, 14, 18, 50, 66) if n in F and F[n][:1] == b"\x03"]
H245 = [F[n] for n in (25, 27, 29, 30, 34, 36, 38, 39, 41, 42)]
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mutated(data, corpus, tpkt: bool) -> bytes:
    m = mutate(data.draw(st.sampled_from(corpus)), lambda lo, hi: data.draw(st.integers(lo, hi)))
    return with_tpkt_length(m) if tpkt and data.draw(st.booleans()) else m


def test_corpus_lists_are_what_they_say():
    assert len(RAS) == 15 and len(Q931) >= 5 and len(H245) == 10
    assert all(parse_h245(m) for m in H245)


@FUZZ
@given(st.data())
def test_ras_parser_bounded(data):
    check_bounded(parse_ras, _mutated(data, RAS, False))


@FUZZ
@given(st.data())
def test_call_signal_parser_bounded(data):
    check_bounded(parse_call_signal, _mutated(data, Q931, True))


@FUZZ
@given(st.data())
def test_h245_parser_bounded(data):
    check_bounded(parse_h245, _mutated(data, H245, True))


def _state_with_call():
    a, b = ("10.1.3.143", 32803), ("10.1.6.18", 1720)
    s = step(EMPTY, H323Context("q931", "none", a, b), F[6], 1.0).state
    return step(s, H323Context("q931", "none", b, a), F[18], 1.1).state


STATE = _state_with_call()
CHANNELS = {
    "ras": (RAS, H323Context("ras", "outbound", ("17.2.0.124", 2034), ("17.2.0.161", 1719),
                             nat_src=("1.1.1.12", 2034))),
    "q931": (Q931, H323Context("q931", "none", ("10.1.6.18", 1720), ("10.1.3.143", 32803))),
    "h245": (H245, H323Context("h245", "inbound", ("10.1.6.18", 1232), ("1.1.1.5", 32804),
                               nat_dst=("10.1.3.143", 32804))),
}


@FUZZ
@given(st.data(), st.sampled_from(sorted(CHANNELS)))
def test_alg_step_bounded(data, channel):
    corpus, ctx = CHANNELS[channel]
    m = _mutated(data, corpus, channel != "ras")
    res = check_bounded(lambda d: step(STATE, ctx, d, 2.0), m)
    assert res.verdict in ("forward", "drop")
    assert fold(res.events, STATE) == res.state
    if res.verdict == "forward":
        assert len(res.data) == len(m)


def test_resident_memory_bounded_over_many_inputs():
    """3000 mutated messages through the three parsers: the process's
    resident high-water mark (pycrate is pure Python, so this is all of its
    memory) rises by less than 64 MB. A high-water mark set earlier by
    other tests can hide growth below it, never make this fail."""
    rnd = random.Random(5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(3000):
        corpus, parse, tpkt = ((RAS, parse_ras, False), (Q931, parse_call_signal, True),
                               (H245, parse_h245, True))[i % 3]
        m = mutate(rnd.choice(corpus), rnd.randint)
        try:
            parse(with_tpkt_length(m) if tpkt else m)
        except RemoteProtocolError:
            pass
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 64 * 1024, f"maxrss grew {grown_kb} kB"
