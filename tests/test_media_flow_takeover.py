"""The newest negotiation takes its exact media flow from an older call
(gateway/datapath/media_takeover.py ``claimed``): media flows as phones reuse
them.

The manual's "Incoming Call with MIP" example: phone2 1.1.1.4 calls phone1
10.1.1.3 behind MIP 1.1.1.5 twice, both parties announcing RTP port 6000
each time (a MIP keeps the port). The second call's media is then exactly
the first call's flow (the same 5-tuple): its packets matched the first
call's session and never met the second call's pinholes, riding the first
call (its media activity, its kernel flows) until the first call ended. Now
the second call's answer ends the first call's session with a logged reason
and the next packet becomes the second call's."""

from __future__ import annotations

import logging
import sys
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hypothesis import given, settings, strategies as st  # noqa: E402

from actors.algs import SipAdapter  # noqa: E402
from gateway.datapath import Alg, Forward  # noqa: E402
from gateway.packet import build_udp  # noqa: E402
from gateway.sip.alg import EMPTY, step  # noqa: E402
from test_sip_mip_media_port import CALLER, HOST, MIP, _invite, _mip_datapath, _ok  # noqa: E402

IN, OUT = "ethernet3", "ethernet1"
FAR_RTP = (CALLER, 6000)
PHONE_RTP = (HOST, 6000)


def _sip(dp, st, src, dst, data, ingress, now):
    """One SIP message through the datapath and the SIP ALG, as the node
    runs it: the ALG's state after it and the datapath's final outcome."""
    out = dp.process(build_udp(src, dst, 5060, 5060, data), ingress, now)
    if not isinstance(out, Alg):
        return st, out
    r = step(st, SipAdapter.context(out, dp.engine), out.payload, now)
    assert r.verdict == "forward", r.logs
    final = dp.finish_alg(out, r.verdict, r.data, r.route_to, SipAdapter.for_datapath(r.pinholes_open),
                          r.pinholes_close, now)
    return r.state, final


def _call(dp, st, n, now):
    """Call ``n``: the INVITE from phone2 and phone1's 200 OK; the answer's
    final outcome."""
    st, _ = _sip(dp, st, CALLER, MIP, _invite(n), IN, now)
    return _sip(dp, st, HOST, CALLER, _ok(n), OUT, now + 0.1)


def _rtp(dp, src, dst, ingress, now):
    return dp.process(build_udp(src[0], dst[0], src[1], dst[1], b"\x80" + bytes(171)), ingress, now)


def _media(dp):
    return [s for s in dp.sessions if s.kind == "media"]


def _key(src, dst):
    return (17, int(IPv4Address(src[0])), src[1], int(IPv4Address(dst[0])), dst[1])


def test_the_newest_call_takes_the_exact_flow_of_an_older_live_call():
    dp = _mip_datapath()
    st, first = _call(dp, EMPTY, 1, 1.0)
    assert isinstance(first, Forward) and first.note == ""
    # The first call's media both ways: one session, the first call's.
    assert _rtp(dp, FAR_RTP, (MIP, 6000), IN, 2.0).path == "fast-pinhole"
    assert _rtp(dp, PHONE_RTP, FAR_RTP, OUT, 2.1).path == "fast-session"
    (old,) = _media(dp)
    first_call = old.call
    dp.drain_activity()
    # The kernel forwards it (media offload: both directions).
    old.offloaded = 3
    woke = []
    dp.offload_wake = lambda: woke.append(True)
    # The second call negotiates exactly that flow: its answer ends the
    # first call's session, and says so.
    st, answer = _call(dp, st, 2, 3.0)
    assert isinstance(answer, Forward)
    assert old.removed and not _media(dp)
    # Its kernel flows are taken out at once (the offload woken).
    assert dp.offload_gone == [old] and woke
    assert answer.note.startswith("media flow taken over by call ") and f"session {old.id} of call " \
        f"{first_call} ended (udp 1.1.1.4:6000 -> 1.1.1.5:6000" in answer.note
    # The next packets are the second call's, both ways, through its pinhole
    # (before: "fast-session" on the first call's session).
    assert _rtp(dp, FAR_RTP, (MIP, 6000), IN, 4.0).path == "fast-pinhole"
    (new,) = _media(dp)
    assert new.call != first_call and new.call in answer.note
    assert _rtp(dp, PHONE_RTP, FAR_RTP, OUT, 4.1).path == "fast-session"
    assert dp.sessions.lookup(_key(PHONE_RTP, FAR_RTP))[0] is new
    # The second call's voice channels see the media; the first's do not.
    seen = {group for group, _pid, _t in dp.drain_activity()}
    assert new.group in seen and old.group not in seen


def test_a_call_on_other_ports_leaves_the_older_flow_alone():
    dp = _mip_datapath()
    st, _ = _call(dp, EMPTY, 1, 1.0)
    _rtp(dp, FAR_RTP, (MIP, 6000), IN, 2.0)
    (old,) = _media(dp)
    # The second call's far party announces another port: another flow.
    invite = _invite(2).replace(b"m=audio 6000", b"m=audio 7000")
    st, _ = _sip(dp, st, CALLER, MIP, invite, IN, 3.0)
    st, answer = _sip(dp, st, HOST, CALLER, _ok(2), OUT, 3.1)
    assert isinstance(answer, Forward) and answer.note == ""
    assert not old.removed and _media(dp) == [old]
    assert _rtp(dp, FAR_RTP, (MIP, 6000), IN, 4.0).path == "fast-session"


def test_the_worker_logs_the_takeover_with_the_held_packet_s_verdict(caplog):
    from actors.ingest_packets import PacketPath

    class Verdicts:
        def __init__(self):
            self.accepted = []

        def accept(self, pkt, data, mark):
            self.accepted.append(pkt)

    handler = PacketPath.__new__(PacketPath)
    handler._held = {7: ("pkt", 1.0, "sip")}
    handler._latency_sum, handler._latency_n = 0.0, 0
    handler.clock = lambda: 1.5
    handler.verdicts, handler.counters = Verdicts(), {"accepted": 0}
    with caplog.at_level(logging.INFO, logger="voip_alg.ingest"):
        handler._give(7, Forward(b"x", "policy", "media flow taken over by call b: session 3 of call a ended"))
    assert handler.verdicts.accepted == ["pkt"]
    assert "sip ALG: media flow taken over by call b: session 3 of call a ended" in caplog.text


def test_signalling_through_a_via_pinhole_keeps_the_pinhole_s_policy():
    # finish_alg's part after the pinholes (its own method since the
    # takeover): a SIP message through a Via/Contact pinhole (manual ch. 2,
    # Figure 9) makes its session under the policy that opened the pinhole.
    from gateway.sip.state import Pinhole
    dp = _mip_datapath()
    dp.install_pinholes([Pinhole("s#p1", "s", "", "signalling", "udp", "inbound", (MIP, 5062), (HOST, 5060))])
    dp.pinholes.get("s#p1").policy_id = 2
    out = dp.process(build_udp(CALLER, MIP, 5060, 5062, _invite(9)), IN, 1.0)
    assert isinstance(out, Alg) and out.pinhole == "s#p1"
    final = dp.finish_alg(out, "forward", out.payload, None, (), (), 1.0)
    assert isinstance(final, Forward) and final.path == "fast-pinhole" and final.note == ""
    sess = dp.sessions.lookup(_key((CALLER, 5060), (MIP, 5062)))[0]
    assert sess.kind == "signalling" and sess.policy_id == 2 and sess.pinhole == "s#p1"


# -- a property: the newest negotiation's media is its own ----------------------

FLOWS = ((6000, 6000), (6002, 6002))          # (phone2's port, phone1's port)


def _ports(data: bytes, port: int) -> bytes:
    return data.replace(b"m=audio 6000", b"m=audio %d" % port)


def _bye(n: int) -> tuple[bytes, bytes]:
    """Phone2's BYE of call ``n`` and phone1's 200 OK to it."""
    def msg(first: str) -> bytes:
        head = [first, f"Via: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bKbye{n}",
                f"From: <sip:phone2@{CALLER}>;tag=f{n}", f"To: <sip:phone1@{MIP}>;tag=t{n}",
                f"Call-ID: c{n}@{CALLER}", "CSeq: 2 BYE", "Content-Length: 0", "", ""]
        return "\r\n".join(head).encode()
    return msg(f"BYE sip:phone1@{MIP}:5060 SIP/2.0"), msg("SIP/2.0 200 OK")


_OPS = st.lists(st.one_of(
    st.tuples(st.just("call"), st.integers(0, len(FLOWS) - 1)),
    st.tuples(st.just("rtp"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("bye"), st.integers(0, 7))), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_the_newest_live_call_on_a_flow_carries_its_media(ops):
    """Calls between the same two phones on a few port pairs, media either
    way, BYEs in any order (an ended call's sessions linger: no timer runs
    here): a packet on a flow whose newest answered call is live is
    forwarded on that call's own session."""
    dp, st_ = _mip_datapath(), EMPTY
    calls: list[tuple[int, bool]] = []            # (flow index, live) per call, in order
    now = 1.0
    for op in ops:
        now += 0.05
        if op[0] == "call":
            n = len(calls) + 1
            far, phone = FLOWS[op[1]]
            st_, _ = _sip(dp, st_, CALLER, MIP, _ports(_invite(n), far), IN, now)
            st_, answer = _sip(dp, st_, HOST, CALLER, _ports(_ok(n), phone), OUT, now)
            assert isinstance(answer, Forward)
            calls.append((op[1], True))
        elif op[0] == "bye" and calls:
            i = op[1] % len(calls)
            if calls[i][1]:
                bye, ok = _bye(i + 1)
                st_, out = _sip(dp, st_, CALLER, MIP, bye, IN, now)
                assert isinstance(out, Forward), out
                st_, out = _sip(dp, st_, HOST, CALLER, ok, OUT, now)
                calls[i] = (calls[i][0], False)
        elif op[0] == "rtp" and calls:
            flow, _live = calls[op[1] % len(calls)]
            far, phone = FLOWS[flow]
            if op[2]:
                src, dst, ingress = (CALLER, far), (MIP, phone), IN
            else:
                src, dst, ingress = (HOST, phone), (CALLER, far), OUT
            out = _rtp(dp, src, dst, ingress, now)
            newest = max(i for i, (f, _l) in enumerate(calls) if f == flow)
            if calls[newest][1]:
                assert isinstance(out, Forward), out
                sess = dp.sessions.lookup(_key(src, dst))[0]
                assert sess.call == f"c{newest + 1}@{CALLER};f{newest + 1}", (sess.call, calls)
