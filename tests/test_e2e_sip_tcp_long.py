"""End to end: SIPp calls over TCP whose INVITE carries an SDP of over 4 KiB
(many media attributes), so that each INVITE spans several TCP segments,
through the gatewayd pair in the namespace lab, on the manual's "Incoming
Call with MIP" example (ch. 2), both ways: the private phone calling the
public proxy (the INVITE's Via, Contact, o= and c= name the private address
and must leave rewritten) and a public phone calling the MIP (the Request-URI
rewritten into the private address, one octet longer).

Checked per run: every call completes with media both ways; tshark, on the
untrust segment, reassembles one INVITE per call with the long SDP and no
private address in it or anywhere in the SIP text; no malformed packet and
no TCP analysis problem on either segment (tests/test_e2e_sip_tcp.py).

Needs root, ip netns, nft, SIPp, tcpdump and tshark; skipped with the reason
otherwise."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

import test_e2e_calls as e2e
from ops.lab import sipp
from ops.lab.plan import CallPlan, suggest_call
from test_e2e_sip_tcp import EXAMPLE, _check_segments, _tshark

pytestmark = pytest.mark.netns

PADDING = 5000          # octets of extra SDP: an INVITE of about 5.6 KB, four segments


@pytest.fixture
def lab(tmp_path):
    with e2e.lab_of(tmp_path, "tl") as make:
        yield lambda: make(EXAMPLE)


def _calls(plan, cfg) -> list[tuple[str, CallPlan]]:
    hosts = {h.label: h for h in plan.hosts}
    outgoing = CallPlan(hosts["phone1"], hosts["proxy"], hosts["proxy"].address.ip)
    return [("outgoing", outgoing), ("mip", suggest_call(plan, cfg))]


def test_long_invites_over_tcp_through_the_pair(lab, tmp_path) -> None:
    cfg, plan, _state = lab()
    private, egress = e2e._nat_view(cfg, plan)
    calls = 3
    for name, call in _calls(plan, cfg):
        run_dir = tmp_path / name
        run_dir.mkdir()
        caps = e2e.Captures(plan, run_dir, "udp or tcp")
        try:
            r = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=calls, rate=3,
                               duration_ms=1000, per_call_media_port=True, transport="tcp",
                               sdp_padding=PADDING)
        finally:
            caps.stop()
        e2e._assert_calls(r, calls)
        _check_segments(cfg, plan, caps, calls)
        for br in egress:
            rows = _tshark(caps.files[br], 'sip.Method == "INVITE" && !tcp.analysis.retransmission',
                           "sip.Content-Length", "sdp.connection_info.address", "sip.Via")
            assert len(rows) == calls, (name, rows)
            for length, addrs, via in rows:
                assert int(length) > 4096, (name, length)
                for a in (addrs.split(",") + [via]):
                    for word in a.replace(":", " ").replace(";", " ").split():
                        try:
                            ip = IPv4Address(word)
                        except ValueError:
                            continue
                        assert not any(ip in n for n in private), (name, br, a)
