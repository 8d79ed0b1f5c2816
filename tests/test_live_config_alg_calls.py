"""A configuration applied to a running pair ends the H.323 and MGCP calls
whose signalling the new policy no longer permits (gateway/rematch.py: an
H.323 call goes with its Q.931 connection's policy session, an MGCP call
with the policy session between its media gateway and the call agent), on
both nodes through the journal; calls the new policy still permits carry on
untouched."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

from actors.live_config import LiveConfig
from actors.node import Node
from gateway import domain
from gateway.config import parse_text
from gateway import rematch
from gateway.datapath import Alg, Datapath, Forward
from gateway.mgcp.state import EMPTY as MGCP_EMPTY, Call as MgcpCall, durable
from gateway.packet import build_udp
from journal.replay import replay
from test_h323_datapath import CONNECT, GUID, MIP1, OLC1, PHONE1, PHONE2, ROOT, SETUP, conn_out
from test_mgcp_roles import CA, CALL, CFG as MGCP_CFG, GW, crlf

H323_CFG = (ROOT / "examples" / "ch1-outgoing-calls-with-nat.cfg").read_text()
# Without the policy the H.323 call's Q.931 connection was opened under.
H323_DENY = H323_CFG.replace("set policy from trust to untrust IP_Phone1 IP_Phone2 h.323 permit\n", "")
H323_MORE = H323_CFG.replace("save\n", "set address untrust other 2.2.2.9/32\nsave\n")
# The gateway's datagrams to the call agent no longer permitted (the session
# the RSIP opened, from untrust_subscriber to trust_ca).
MGCP_DENY = MGCP_CFG.replace(
    "set policy from untrust_subscriber to trust_ca SubscriberSubNet call_agent1 mgcp-ua permit\n", "")
MGCP_MORE = MGCP_CFG + "set address trust_ca call_agent2 10.1.1.102 255.255.255.255\n"


class Pair:
    """An active node with a datapath (packets in, ALG outcomes through the
    node) and a standby fed with the active's journal."""

    def __init__(self, tmp_path, text: str) -> None:
        self.now = 1000.0
        cfg = parse_text(text, "test.cfg")
        self.dp = Datapath(cfg)
        clock = lambda: self.now  # noqa: E731
        self.a = Node("gw-a", cfg, str(tmp_path / "a"), datapath=self.dp, clock=clock, fsync=False,
                      timer_thread=False)
        self.b = Node("gw-b", parse_text(text, "test.cfg"), str(tmp_path / "b"), clock=clock, fsync=False,
                      timer_thread=False)
        self.live = LiveConfig(self.a, cfg, "test.cfg", clock=clock)
        self.live_b = LiveConfig(self.b, parse_text(text, "test.cfg"), "test.cfg", clock=clock)
        self.a.start()
        self.b.start(role="standby")

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    def send(self, buf: bytes, ingress: str, now: float):
        self.now = now
        with self.a.dp_lock:
            out = self.dp.process(buf, ingress, now)
        if isinstance(out, Alg):
            box, done = [], threading.Event()
            self.a.handle_alg(out, lambda final: (box.append(final), done.set()))
            assert done.wait(10)
            out = box[0]
        return out

    def replicate(self) -> None:
        frames = self.a.journal.read_frames(self.b.journal.head + 1, 1_000_000)
        if frames:
            self.b.on_records(self.b.journal.append_frames(frames))

    def apply(self, text: str, name: str) -> dict:
        self.a.quiesce()
        return self.live.apply(text, name, "tester")

    def types_after_apply(self) -> list[str]:
        types = [t for r in self.a.journal.read(1) for t, _p in r.entries()]
        return types[types.index("config.applied"):]


def _h323_call(p: Pair) -> str:
    q931 = conn_out(p, (PHONE1, 32803), (PHONE2, 1720), MIP1)
    q931.open(1000.0)
    assert isinstance(q931.data("a", SETUP, 1000.1), Forward)
    assert isinstance(q931.data("b", CONNECT, 1000.2), Forward)
    h245 = conn_out(p, (PHONE1, 40000), (PHONE2, 1232), MIP1)
    h245.open(1000.3)
    assert isinstance(h245.data("a", OLC1, 1000.4), Forward)
    p.a.quiesce()
    key = GUID.hex()
    assert p.a.state.h323.calls[key].pinholes
    return key


def test_an_h323_call_whose_q931_connection_is_denied_ends_on_both_nodes(tmp_path):
    p = Pair(tmp_path, H323_CFG)
    try:
        key = _h323_call(p)
        p.replicate()
        kept = p.apply(H323_MORE, "more.cfg")              # still permitted: carries on
        assert kept["calls_ended"] == [] and kept["sessions_removed"] == 0
        assert key in p.a.state.h323.calls

        res = p.apply(H323_DENY, "deny.cfg")
        [ended] = res["calls_ended"]
        assert ended["alg"] == "h323" and ended["call"] == key
        assert ended["reason"].startswith(f"its Q.931 connection {PHONE1}:32803-{PHONE2}:1720: ")
        assert res["sessions_removed"] >= 1
        assert key not in p.a.state.h323.calls
        assert not [h for h in p.a.show("pinholes") if h["call"] == key]
        assert not [s for s in p.dp.sessions if s.kind == "media" and s.call == key]
        assert p.a.directory.get(("entity", f"h323-call/{key}")) is None
        types = p.types_after_apply()
        assert "h323.pinhole_closed" in types and types[-1] == "h323.call_ended"
        # RTCP to the public address the OLC announced no longer passes.
        rtcp = p.send(build_udp(PHONE2, MIP1, 2007, 5001, b"\x81" * 20), "ethernet3", 1003.0)
        assert not isinstance(rtcp, Forward)

        p.replicate()
        assert key not in p.b.state.h323.calls and p.b.state == p.a.state
        live = p.a.state
    finally:
        p.stop()
    replayed, _ = replay(str(tmp_path / "a"), domain.apply, domain.EMPTY)
    assert replayed == live


def _mgcp_call(p: Pair) -> str:
    now = 100.0
    for src, dst, text in CALL[:10]:                      # up to the MDCX's answer
        now += 0.05
        iface = "ethernet4" if src == CA else "ethernet3"
        out = p.send(build_udp(src[0], dst[0], src[1], dst[1], crlf(text)), iface, now)
        assert isinstance(out, Forward), (text, out)
    p.a.quiesce()
    assert p.a.state.mgcp.calls[(GW[0], "A1")].pinholes
    return f"{GW[0]}/A1"


def test_mgcp_calls_of_a_gateway_whose_signalling_is_denied_end_on_both_nodes(tmp_path):
    p = Pair(tmp_path, MGCP_CFG)
    try:
        key = _mgcp_call(p)
        p.replicate()
        kept = p.apply(MGCP_MORE, "more.cfg")
        assert kept["calls_ended"] == [] and (GW[0], "A1") in p.a.state.mgcp.calls

        res = p.apply(MGCP_DENY, "deny.cfg")
        [ended] = res["calls_ended"]
        assert ended["alg"] == "mgcp" and ended["call"] == key
        assert ended["reason"].startswith(f"its MGCP {GW[0]}:{GW[1]} -> {CA[0]}:{CA[1]}: ")
        assert res["sessions_removed"] == 1
        assert (GW[0], "A1") not in p.a.state.mgcp.calls
        assert not [h for h in p.a.show("pinholes") if h["call"].startswith(f"mgcp-call/{key}")]
        assert not [s for s in p.dp.sessions if s.kind == "media"]
        types = p.types_after_apply()
        assert "mgcp.pinhole_closed" in types and types[-1] == "mgcp.call_ended"
        # The gateway's next datagram to the call agent meets the new policy.
        ntfy = p.send(build_udp(GW[0], CA[0], GW[1], CA[1],
                                crlf("NTFY 504 aaln/1@[2.2.2.25] MGCP 1.0\nX: 1\nO: L/hu\n")), "ethernet3", 200.0)
        assert not isinstance(ntfy, Forward)

        p.replicate()
        assert (GW[0], "A1") not in p.b.state.mgcp.calls
        # The flood counters are the active's soft state (no event carries them).
        live = replace(p.a.state, mgcp=durable(p.a.state.mgcp))
        assert p.b.state == live
    finally:
        p.stop()
    replayed, _ = replay(str(tmp_path / "a"), domain.apply, domain.EMPTY)
    assert replayed == live


def test_a_call_of_another_gateway_or_connection_carries_on(tmp_path):
    """Only the calls the denied sessions carried end: an MGCP call keyed by
    another gateway's address stays (judged by its own signalling)."""
    calls = MGCP_EMPTY.calls.set(("2.2.2.25", "A1"), MgcpCall("2.2.2.25", "A1", 0.0, 9e9))
    calls = calls.set(("2.2.2.26", "B1"), MgcpCall("2.2.2.26", "B1", 0.0, 9e9))
    st = replace(MGCP_EMPTY, calls=calls)
    sess = SimpleNamespace(alg="mgcp", kind="policy", fwd_key=(17, 0x0202021A, 2427, 0x0A010165, 2427),
                           fwd_rewrite=None)
    assert rematch.mgcp_calls_denied(st, None, [(sess, "no policy")]) == [
        ("2.2.2.26/B1", "its MGCP 2.2.2.26:2427 -> 10.1.1.101:2427: no policy")]
    other = SimpleNamespace(alg="h323", kind="policy", fwd_key=(6, 0x0A010105, 32803, 0x02020205, 1720),
                            fwd_rewrite=None)
    assert rematch.mgcp_calls_denied(st, None, [(other, "no policy")]) == []
