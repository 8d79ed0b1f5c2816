"""End to end: MGCP through the gatewayd pair in the namespace lab, against a
real media gateway (osmo-mgw), for both examples of manual chapter 3.

A call agent (the address book's, the destination of the MGCP-CA policies)
controls osmo-mgw on a media gateway host through the gateway: AUEP, CRCX
without SDP, CRCX with SDP, MDCX with the far RTP end's descriptor. osmo-mgw
bridges the call's two connections, so RTP flows both ways between the media
gateway and the far end; the call's pinholes are read from the active node's
control socket (``gwctl show pinholes``); DLCX closes them.

* "Media Gateway in Subscribers' Homes": the subscribers' IADs share one
  subnet, so, as the manual says, media between them never crosses the
  gateway; the signalling (call agent in trust_ca, IADs in
  untrust_subscriber) does, and is what is tested through it.
* "ISP-Hosted Service": the call agent is behind MIP 3.3.3.101 and the far end
  (sf_gw) behind ``nat src``: the media gateway's segment is captured with
  tshark and neither private address may appear there; after DLCX RTP must
  no longer pass.

Then the same with a graceful failover and with a SIGKILL of the active node
in the middle of the call: RTP resumes, an MDCX and the DLCXs succeed on the
new active (its state was replicated), and the pinholes close.

Needs root, ip netns, osmo-mgw, tshark and netfilterqueue; skipped with the
reason otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.lab import netns
from ops.lab.mgcp import OSMO_MGW, run_call

import lab_requirements as lab

pytestmark = pytest.mark.netns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBSCRIBERS = "ch3-media-gateway-in-subscribers-homes"
ISP = "ch3-isp-hosted-service"
LABS = {SUBSCRIBERS: "mgsub", ISP: "mgisp"}


WHY = lab.missing(lab.file(OSMO_MGW, "osmo-mgw"), lab.tools("tshark", "iptables", "ss"), lab.netfilterqueue)


@pytest.fixture(scope="module", params=[SUBSCRIBERS, ISP])
def lab(request):
    if WHY:
        pytest.skip(WHY)
    from gateway.config import load_file
    from ops.lab import gateway_starter
    from ops.lab.plan import build_plan

    example = request.param
    name = LABS[example]
    path = EXAMPLES / f"{example}.cfg"
    plan = build_plan(load_file(path), lab=name)
    netns.up(plan, starter=gateway_starter.NAME, config=str(path))
    try:
        yield example, name
    finally:
        netns.down(name)


def _both_ways(r: dict) -> bool:
    return (r["far_sent"] > 0 and r["local_sent"] > 0
            and r["local_received"] >= 0.8 * r["far_sent"]
            and r["far_received"] >= 0.8 * r["local_sent"])


# Pinholes of the test call per lab (mgsub: subscribers' homes, mgisp: ISP-hosted).
PINHOLES = {"mgsub": 4, "mgisp": 6}


def _check_common(rep) -> None:
    assert rep.error is None, rep.error
    names = [s["name"] for s in rep.steps]
    assert names[:4] == ["AUEP", "CRCX without SDP", "CRCX with SDP", "MDCX"]
    assert names[-2:] == ["DLCX", "DLCX"]
    # osmo-mgw answers 200 to AUEP/CRCX/MDCX and 250 (connection deleted) to DLCX.
    assert all(s["code"] == (250 if s["name"] == "DLCX" else 200) for s in rep.steps), rep.steps
    # RTP and RTCP of each connection's local and remote descriptors, but for
    # descriptors in the zone their message goes to: media to those never
    # crosses the gateway (connection B's remote is the media gateway itself;
    # in the subscribers' homes the far IAD shares its segment), so no pinhole
    # opens for them (actors/algs.py far_side_of).
    assert rep.pinholes == PINHOLES[rep.lab]
    assert rep.pinholes_after_delete == 0
    assert _both_ways(rep.rtp), rep.rtp


@pytest.mark.parametrize("failover", [None, "graceful", "crash"])
def test_mgcp_call_through_the_pair(lab, failover) -> None:
    example, name = lab
    # RFC 3435 3.2.2: a call id is 1-32 hex digits.
    rep = run_call(name, failover=failover, call_id={None: "E2E0", "graceful": "E2E1", "crash": "E2E2"}[failover])
    _check_common(rep)
    if example == SUBSCRIBERS:
        assert rep.notes and "does not cross the gateway" in rep.notes[0]
        assert rep.parties["mgw"]["ip"] == "2.2.2.101" and rep.parties["far"]["ip"] == "2.2.2.102"
        # Route mode: nothing to hide, no capture; media stays on the segment.
        assert rep.private == [] and rep.rtp_after_delete is None
        if failover is None:
            assert rep.media_through_gateway == 0
    else:
        assert rep.parties["ca"]["ip"] == "10.1.1.101" and rep.parties["mgw"]["ip"] == "3.3.3.110"
        assert rep.parties["far"]["ip"] == "2.2.2.201"
        # sf_gw's descriptor was translated to a public pair of ethernet6's address.
        assert rep.far_public is not None and rep.far_public.startswith("3.3.3.10:")
        assert sorted(rep.private) == ["10.1.1.101", "2.2.2.201"]
        assert rep.mgcp_frames >= 10
        assert rep.leaks == {"10.1.1.101": 0, "2.2.2.201": 0}
        # After DLCX the pinholes are gone and the gateway passes no media.
        assert rep.rtp_after_delete is not None
        assert rep.rtp_after_delete["local_received"] == 0 and rep.rtp_after_delete["far_received"] == 0
        if failover is None:
            assert rep.media_through_gateway >= 2 * 20
    if failover is not None:
        assert rep.failover is not None and rep.failover["crash"] == (failover == "crash")
        # The new active knows the call: its pinholes, media, and an MDCX
        # moving the far end that only a replicated ALG state lets through.
        assert rep.pinholes_after_failover == PINHOLES[rep.lab]
        assert _both_ways(rep.rtp_after_failover), rep.rtp_after_failover
        assert _both_ways(rep.rtp_after_mdcx), rep.rtp_after_mdcx
        assert [s["name"] for s in rep.steps].count("MDCX") == 2
    assert rep.ok
