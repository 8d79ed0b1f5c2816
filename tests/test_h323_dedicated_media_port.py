"""H.323 media through a MIP keeps its port, also when another call of the
same host holds it.

The ALG keeps an embedded port when it is free on the public address and
takes another one when a different call holds it: right where hosts share
the address (interface NAT, DIP), but a MIP is one host's (manual ch. 1
"Outgoing Calls with NAT": IP_Phone1 10.1.1.5 leaves as MIP 1.1.1.5), so
the port is the one that host announces again, on a new call, for the same
flow. The newest negotiation takes it; the older call's pinholes to it
close with a logged reason."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway.h323.alg import H323Context, step  # noqa: E402
from gateway.h323.h245 import parse_h245  # noqa: E402
from gateway.h323.q931 import parse_call_signal  # noqa: E402
from gateway.h323.state import EMPTY  # noqa: E402
from test_h323_alg import ALERTING, CONNECT, OLC_ACK, PROCEEDING, SETUP, _check, _readdress  # noqa: E402


def call(s, n: int, dedicated: bool, public: str):
    """Call ``n`` from IP_Phone1 10.1.1.5 (leaving as ``public``) to 2.2.2.5,
    up to its OLCAck naming RTP 10.1.1.5:5000."""
    setup = _readdress(SETUP, parse_call_signal, {"sourceCallSignalAddress": ("10.1.1.5", 32800 + n),
                                                  "destCallSignalAddress": ("2.2.2.5", 1720)})
    cid = parse_call_signal(setup).call_identifier()
    setup = setup.replace(cid, bytes([n]) * len(cid))
    out = H323Context("q931", "outbound", ("10.1.1.5", 32800 + n), ("2.2.2.5", 1720),
                      nat_src=(public, 32800 + n), dedicated=dedicated)
    res = step(s, out, setup, 100.0 + n)
    s = _check(res, s)
    inbound = H323Context("q931", "inbound", ("2.2.2.5", 1720), (public, 32800 + n),
                          nat_dst=("10.1.1.5", 32800 + n), conn=out.connection(), dedicated=dedicated)
    for frame in (PROCEEDING, ALERTING, _readdress(CONNECT, parse_call_signal, {"h245Address": ("2.2.2.5", 1230 + n)})):
        s = _check(step(s, inbound, frame, 100.5 + n), s)
    ack = _readdress(OLC_ACK, parse_h245, {("10.1.3.143", 5000): ("10.1.1.5", 5000),
                                           ("10.1.3.143", 5001): ("10.1.1.5", 5001)})
    hctx = H323Context("h245", "outbound", ("10.1.1.5", 40000 + n), ("2.2.2.5", 1230 + n),
                       nat_src=(public, 40000 + n), dedicated=dedicated)
    res = step(s, hctx, ack, 101.0 + n)
    return res, _check(res, s)


def test_second_call_of_a_mip_host_takes_its_media_port_over():
    r1, s = call(EMPTY, 1, True, "1.1.1.5")
    (k1,) = s.calls
    r2, s = call(s, 2, True, "1.1.1.5")
    (k2,) = set(s.calls) - {k1}
    assert [a.span.text for a in parse_h245(r2.data).addresses] == ["1.1.1.5:5000", "1.1.1.5:5001"]
    assert {(p.dst, p.to) for p in r2.pinholes_open} == {(("1.1.1.5", 5000), ("10.1.1.5", 5000)),
                                                         (("1.1.1.5", 5001), ("10.1.1.5", 5001))}
    assert set(r2.pinholes_close) == {p.id for p in r1.pinholes_open}
    assert not [p for p in s.calls[k1].pinholes.values() if p.dst[0] == "1.1.1.5"]
    assert s.ports_in_use[("1.1.1.5", 5000)] == k2
    assert any("1.1.1.5:5000" in line and "taken over" in line for line in r2.logs)


def test_shared_address_still_moves_the_second_call_to_another_port():
    # Interface NAT (not dedicated): the second call gets a port of its own.
    r1, s = call(EMPTY, 1, False, "1.1.1.1")
    r2, s = call(s, 2, False, "1.1.1.1")
    ports = [int(a.span.text.split(":")[1]) for a in parse_h245(r2.data).addresses]
    assert 5000 not in ports and 5001 not in ports
    assert not r2.pinholes_close
