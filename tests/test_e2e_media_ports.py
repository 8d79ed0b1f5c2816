"""End to end: media ports as phones use them, SIPp through the gatewayd
pair in the namespace lab.

* Every call announces the same RTP port (SIPp's ``-mp``: one media socket
  for every call), placed from a socket of its own per call (``-t un``) and
  over a TCP connection per call (``-t tn``), 30 calls at 5/s and 400 at
  40/s, to the phone behind the MIP of "Incoming Call with MIP": the MIP
  keeps the phone's port, so every call's media is the one flow (both SIPp
  ends on port 6000: the same 5-tuple for every call), which each call takes
  from the older one when its answer opens its pinholes (the gateway logs
  "media flow taken over by call ..."). Before,
  each call's media was translated to a port of its own and met the first
  call's flow on the inside: 178 of 2,114 RTP packets passed.
* One phone calling again and again, reusing its RTP port within 5 s of the
  previous BYE (the previous call's session still lingers), through the
  interface's shared address (Incoming DIP): the newer call takes the flow
  over (gateway/datapath/media_takeover.py).

Every call must complete and >= 95% of the RTP pass both ways.
Needs root, ip netns, nft, SIPp; skipped with the reason otherwise."""

from __future__ import annotations

import pytest

from ops.lab import sipp
from ops.lab.plan import suggest_call

from test_e2e_calls import EXAMPLES, _assert_calls, lab_of

pytestmark = pytest.mark.netns


@pytest.fixture
def lab(tmp_path):
    with lab_of(tmp_path, "m") as make:
        yield lambda example: make(EXAMPLES / f"{example}.cfg")


def test_calls_that_all_announce_one_rtp_port_through_a_mip(lab) -> None:
    cfg, plan, _state = lab("ch2-incoming-call-with-mip")
    call = suggest_call(plan, cfg)
    # One lab for the four runs: each run also meets the sessions the runs
    # before it left lingering (BYE + 5 s), as a later call would.
    for transport, calls, rate in (("udp-per-call", 30, 5.0), ("tcp", 30, 5.0),
                                   ("udp-per-call", 400, 40.0), ("tcp", 400, 40.0)):
        r = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=calls, rate=rate,
                           duration_ms=1000, transport=transport)
        _assert_calls(r, calls)


def test_a_phone_reusing_its_rtp_port_within_5_s_of_the_bye(lab) -> None:
    cfg, plan, _state = lab("ch2-incoming-call-interface-dip")
    call = suggest_call(plan, cfg)
    # A call every 2 s held 1 s: each call starts 1 s after the previous
    # BYE, with the same RTP port on both phones.
    r = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=4, rate=0.5,
                       duration_ms=1000)
    _assert_calls(r, 4)
