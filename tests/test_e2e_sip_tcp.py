"""End to end: SIPp calls with SIP over TCP (one connection per call) and RTP
through the gatewayd pair in the namespace lab, on the manual's "Incoming Call
with MIP" example (ch. 2): the callee sits behind a MIP, so the ALG rewrites
its private address (10.1.1.3, eight characters) into the MIP (1.1.1.5,
seven) and every rewritten message changes length. The connection then only
stays coherent if the gateway moves sequence numbers, acknowledgements and
SACK edges (ARCHITECTURE.md "SIP over TCP and sequence adjustment").

Checked: every call completes and its media flows both ways; the SIP text
leaving by the untrust side names no private address; the callee's byte
stream really changed length across the gateway (the adjustment was needed);
tshark finds no malformed packet and no TCP analysis problem on either
segment; then the same with a graceful failover, and with a SIGKILL of the
active, in the middle of the calls, the connections carrying on through the
new active with the adjustments it rebuilt from the journal: every call
completes, its BYE answered.

Needs root, ip netns, nft, SIPp, tcpdump and tshark; skipped with the reason
otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import test_e2e_calls as e2e
from ops.lab import gateway_starter as gs
from ops.lab import sipp
from ops.lab.plan import Plan, suggest_call

pytestmark = pytest.mark.netns

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ch2-incoming-call-with-mip.cfg"
WHY = e2e.WHY
# Every flag tshark's TCP analysis raises for a broken stream: a segment
# missing before one seen (lost_segment), acknowledged but never seen
# (ack_lost_segment), out of order, a bad window... Not counted: window
# updates, and the peers' own retransmissions and the duplicate ACKs that
# answer them. Those come from the gateway's delay, not its numbering: the
# ALG answers a segment in a few milliseconds, and Linux's tail loss probe
# (RFC 8985 §7) fires after about twice a veth's tiny smoothed RTT, so a
# callee repeats its 200 before the caller's ACK is back. (Under plain
# routing the same calls show no flag at all.) A retransmission the gateway
# let through wrongly numbered would show as one of the flags counted.
TCP_PROBLEMS = ("(tcp.analysis.flags && !tcp.analysis.window_update"
                " && !tcp.analysis.retransmission && !tcp.analysis.spurious_retransmission"
                " && !tcp.analysis.fast_retransmission && !tcp.analysis.duplicate_ack)")


def _tshark(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", "tcp.desegment_tcp_streams:TRUE",
           "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [ln.split("\t") for ln in out.stdout.splitlines() if ln.strip()]


def _tcp_problems(pcap: Path, *, crashed: bool = False) -> list[str]:
    """TCP analysis problems. After a SIGKILL of the active, the segments it
    held for the ALG die with it (they never reach the far side: a crash is a
    loss, and the peer retransmits): on each connection, at most one
    "previous segment not captured" per direction is that loss, not a
    numbering fault. Anything else, or more than that, still counts."""
    rows = _tshark(pcap, TCP_PROBLEMS, "frame.number", "tcp.stream", "tcp.srcport",
                   "tcp.analysis.lost_segment", "_ws.col.Info")
    out, lost_seen = [], set()
    for frame, stream, sport, lost, info in rows:
        if crashed and lost and "Previous segment not captured" in info and (stream, sport) not in lost_seen:
            lost_seen.add((stream, sport))
            continue
        out.append("\t".join((frame, stream, info)))
    return out


def _malformed(pcap: Path) -> list[str]:
    return ["\t".join(r) for r in _tshark(pcap, "_ws.malformed", "frame.number", "_ws.col.Info")]


def _sip_octets_from(pcap: Path, port: int = sipp.SIP_PORT) -> int:
    """Octets of TCP payload sent from the SIP port (the callee's side of
    every connection), retransmissions counted once."""
    rows = _tshark(pcap, f"tcp.srcport == {port} && tcp.len > 0 && !tcp.analysis.retransmission",
                   "tcp.len")
    return sum(int(r[0]) for r in rows)


def _sip_requests(pcap: Path) -> dict[str, int]:
    got: dict[str, int] = {}
    for (method,) in _tshark(pcap, "tcp && sip.Method && !tcp.analysis.retransmission"
                                   " && !tcp.analysis.spurious_retransmission", "sip.Method"):
        got[method] = got.get(method, 0) + 1
    return got


@pytest.fixture
def lab(tmp_path):
    with e2e.lab_of(tmp_path, "t") as make:
        yield lambda: make(EXAMPLE)


def _check_segments(cfg, plan: Plan, caps: e2e.Captures, calls: int, *, crashed: bool = False) -> None:
    private, egress = e2e._nat_view(cfg, plan)
    assert private and egress
    for br, f in caps.files.items():
        assert _malformed(f) == [], f"malformed packets on {br}"
        assert _tcp_problems(f, crashed=crashed) == [], f"TCP analysis problems on {br}"
    for br in egress:
        assert e2e._private_leaks(caps.files[br], private) == [], f"private address on {br}"
    # The calls' signalling went over TCP on both sides: an INVITE, an ACK
    # and a BYE per call (SIPp sends no retransmissions over TCP).
    for br, f in caps.files.items():
        req = _sip_requests(f)
        if req:
            assert req == {"INVITE": calls, "ACK": calls, "BYE": calls}, (br, req)
    # The callee's side of the connections changed length across the gateway
    # (its address rewritten into the MIP): the adjustment was exercised.
    sent = {br: _sip_octets_from(f) for br, f in caps.files.items()}
    seen = sorted(n for n in sent.values() if n)
    assert len(seen) == 2 and seen[0] != seen[1], sent


def test_tcp_calls_through_the_pair(lab, tmp_path) -> None:
    cfg, plan, state = lab()
    call = suggest_call(plan, cfg)
    calls = 4
    caps = e2e.Captures(plan, tmp_path, "udp or tcp")
    try:
        r = sipp.run_calls(call.caller, call.callee, dial=call.dial, calls=calls, rate=4,
                           duration_ms=1500, per_call_media_port=True, transport="tcp")
        e2e._assert_calls(r, calls)
        assert r.transport == "tcp"
        assert e2e._wait_no_pinholes(state) == []
    finally:
        caps.stop()
    st = gs.node_status(state)[gs.active_role(state)]
    assert st["counters"]["sip_forwarded"] >= calls * 4, st["counters"]
    _check_segments(cfg, plan, caps, calls)


@pytest.mark.parametrize("crash", [False, True], ids=["failover", "sigkill"])
def test_tcp_calls_survive_failover(lab, tmp_path, crash) -> None:
    cfg, plan, state = lab()
    call = suggest_call(plan, cfg)
    calls, rate, hold_ms = 6, 3.0, 4000
    caps = e2e.Captures(plan, tmp_path, "udp or tcp")
    try:
        run = gs.calls_with_failover(state, call.caller, call.callee, call.dial, calls=calls,
                                     rate=rate, duration_ms=hold_ms,
                                     failover_at=(calls / rate + hold_ms / 1000) / 2,
                                     crash=crash, transport="tcp")
    finally:
        caps.stop()
    assert run.failover is not None, run.failover_error
    assert run.failover.to_role != run.failover.from_role
    assert run.calls_after_failover, run
    r = run.calls
    # Every call completes: its BYE went over its connection through the new
    # active and was answered.
    assert r.calls_attempted == calls and r.calls_completed == calls and r.calls_failed == 0, r
    assert run.rtp_before.both_ways(0.95), run.rtp_before
    # RTP goes on through the new active once it took over.
    assert run.failover.seconds <= e2e.TAKEOVER_BOUND_S, run.failover
    assert run.rtp_after.both_ways(0.8 if crash else 0.9), run.rtp_after
    st = gs.node_status(state)[run.failover.to_role]
    assert st["role"] == "active"
    # Every BYE and its 200 went through the new active.
    assert st["counters"]["sip_forwarded"] >= 2 * calls, st["counters"]
    assert e2e._wait_no_pinholes(state) == []
    _check_segments(cfg, plan, caps, calls, crashed=crash)
