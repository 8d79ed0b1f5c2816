"""H.323 media through a MIP keeps its port, also when another call of the
same host holds it (gateway/h323/alg_run.py ``_outbound``, the context's
``dedicated``).

The ALG keeps an embedded port when it is free on the public address and
takes another one when a different call holds it: right where hosts share
the address (interface NAT, DIP). A MIP is one host's (manual ch. 1
"Outgoing Calls with NAT": IP_Phone1 10.1.1.5 leaves as MIP 1.1.1.5), so
the port is the one that host announces again, on its next call, for the
same flow: moved, every call after the first met the first call's flow on
the inside. Both calls keep the port; the newest pinhole to it answers
(gateway/datapath/pinholes.py), as for SIP (tests/test_sip_mip_media_port.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from actors.algs import H323Adapter  # noqa: E402
from gateway.config import load_file  # noqa: E402
from gateway.datapath import Datapath  # noqa: E402
from gateway.h323.alg import H323Context, step  # noqa: E402
from gateway.h323.h245 import parse_h245  # noqa: E402
from gateway.h323.q931 import parse_call_signal  # noqa: E402
from gateway.h323.state import EMPTY, fold  # noqa: E402
from test_h323_alg import ALERTING, CONNECT, OLC_ACK, PROCEEDING, SETUP, _check, _readdress  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ch1-outgoing-calls-with-nat.cfg"


def call(s, n: int, dedicated: bool, public: str):
    """Call ``n`` from IP_Phone1 10.1.1.5 (leaving as ``public``) to 2.2.2.5,
    up to its OLCAck naming RTP 10.1.1.5:5000: the OLCAck's step, the state
    after it and every event of the call."""
    setup = _readdress(SETUP, parse_call_signal, {"sourceCallSignalAddress": ("10.1.1.5", 32800 + n),
                                                  "destCallSignalAddress": ("2.2.2.5", 1720)})
    cid = parse_call_signal(setup).call_identifier()
    setup = setup.replace(cid, bytes([n]) * len(cid))
    out = H323Context("q931", "outbound", ("10.1.1.5", 32800 + n), ("2.2.2.5", 1720),
                      nat_src=(public, 32800 + n), dedicated=dedicated)
    events = []
    res = step(s, out, setup, 100.0 + n)
    s = _check(res, s)
    events += res.events
    inbound = H323Context("q931", "inbound", ("2.2.2.5", 1720), (public, 32800 + n),
                          nat_dst=("10.1.1.5", 32800 + n), conn=out.connection(), dedicated=dedicated)
    for frame in (PROCEEDING, ALERTING, _readdress(CONNECT, parse_call_signal, {"h245Address": ("2.2.2.5", 1230 + n)})):
        res = step(s, inbound, frame, 100.5 + n)
        s = _check(res, s)
        events += res.events
    ack = _readdress(OLC_ACK, parse_h245, {("10.1.3.143", 5000): ("10.1.1.5", 5000),
                                           ("10.1.3.143", 5001): ("10.1.1.5", 5001)})
    hctx = H323Context("h245", "outbound", ("10.1.1.5", 40000 + n), ("2.2.2.5", 1230 + n),
                       nat_src=(public, 40000 + n), dedicated=dedicated)
    res = step(s, hctx, ack, 101.0 + n)
    return res, _check(res, s), events + list(res.events)


def _media_holes(res):
    return {(p.dst, p.to) for p in res.pinholes_open}


def test_every_call_of_a_mip_host_keeps_its_media_port():
    r1, s, ev1 = call(EMPTY, 1, True, "1.1.1.5")
    (k1,) = s.calls
    r2, s, ev2 = call(s, 2, True, "1.1.1.5")
    (k2,) = set(s.calls) - {k1}
    kept = {(("1.1.1.5", 5000), ("10.1.1.5", 5000)), (("1.1.1.5", 5001), ("10.1.1.5", 5001))}
    for r in (r1, r2):
        assert [a.span.text for a in parse_h245(r.data).addresses] == ["1.1.1.5:5000", "1.1.1.5:5001"]
        assert _media_holes(r) == kept
    # The older call keeps its pinholes: the newest one to the shared
    # destination answers (a phone that reuses its port sends for the newest
    # negotiation), and the older call's still serve when the newer ends.
    assert not r2.pinholes_close
    assert {(p.dst, p.to) for p in s.calls[k1].pinholes.values() if p.dst[0] == "1.1.1.5"} == kept
    assert s.ports_in_use[("1.1.1.5", 5000)] == k2
    # A standby folding the journal gets the same state.
    assert fold(ev1 + ev2) == s


def test_a_shared_address_still_moves_the_second_call_to_another_port():
    # Interface NAT (not dedicated): the second call gets a port of its own.
    r1, s, _ = call(EMPTY, 1, False, "1.1.1.1")
    r2, s, _ = call(s, 2, False, "1.1.1.1")
    ports = [int(a.span.text.split(":")[1]) for a in parse_h245(r2.data).addresses]
    assert 5000 not in ports and 5001 not in ports
    assert not r2.pinholes_close


def _outcome(nat_src):
    """What the datapath hands the adapter for an H.245 message of IP_Phone1."""
    return SimpleNamespace(channel="h245", direction="outbound", src=("10.1.1.5", 40001),
                           dst=("2.2.2.5", 1231), nat_src=nat_src, nat_dst=None, conn="", segment=None)


def test_the_h323_context_is_dedicated_for_a_mip_source_only():
    engine = Datapath(load_file(EXAMPLE)).engine
    ctx = H323Adapter.context(_outcome(("1.1.1.5", 40001)), engine).ctx
    assert ctx.dedicated is True
    # The interface's own address is shared by every host behind it.
    assert H323Adapter.context(_outcome(("1.1.1.1", 40001)), engine).ctx.dedicated is False
    assert H323Adapter.context(_outcome(None), engine).ctx.dedicated is False
    assert H323Adapter.context(_outcome(("1.1.1.5", 40001))).ctx.dedicated is False
