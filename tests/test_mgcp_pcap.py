"""Every MGCP datagram of the capture corpus (mgcp.pcap: RSIP, RQNT, AUEP,
NTFY, 510 errors, retransmissions, probes from scanners) through the ALG's
step in capture order with the capture's timestamps, timers fired as they
fall due: every message is classified (forward, or drop with a reason) and
nothing raises. The table is printed (pytest -s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.mgcp.alg import EMPTY, MgcpContext, on_timer, step
from gateway.mgcp.state import durable, fold

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap"
PCAP = CORPUS / "mgcp.pcap"

# Commands only a gateway sends (RFC 3435 2.3: NTFY, RSIP); the others are
# the call agent's (DLCX is both: decided by who is known as a gateway).
GATEWAY_VERBS = (b"NTFY", b"RSIP")


def _datagrams():
    scapy = pytest.importorskip("scapy.all")
    if not PCAP.exists():
        pytest.skip(f"corpus capture {PCAP} not present")
    out = []
    for pkt in scapy.rdpcap(str(PCAP)):
        if scapy.UDP in pkt and scapy.IP in pkt:
            ip, udp = pkt[scapy.IP], pkt[scapy.UDP]
            if 2427 in (udp.sport, udp.dport) or 2727 in (udp.sport, udp.dport):
                out.append((float(pkt.time), (ip.src, udp.sport), (ip.dst, udp.dport), bytes(udp.payload)))
    return out


def _role(src, dst, data: bytes, gateways: set) -> str:
    """The capture's peers all use port 2427, so the role the datapath would
    take from the destination port is taken from what each address sends: a
    sender of NTFY/RSIP is a gateway, so is the receiver of any other command;
    a response comes from the other role than its command's sender."""
    head = data[:4]
    if head in GATEWAY_VERBS:
        gateways.add(src[0])
        return "gateway"
    if head.isalpha() and src[0] not in gateways:
        gateways.add(dst[0])
    return "gateway" if src[0] in gateways else "call-agent"


def test_every_capture_message_is_classified():
    rows = []
    state, events = EMPTY, []
    timers: dict[str, float] = {}
    gateways: set[str] = set()
    for ts, src, dst, data in _datagrams():
        for key in sorted(k for k, d in timers.items() if d <= ts):
            if timers.get(key, ts + 1) <= ts:
                del timers[key]
                r = on_timer(state, key, ts)
                state = r.state
                events += r.events
                timers.update({t.key: t.deadline for t in r.timers if t.deadline is not None})
        ctx = MgcpContext("none", src, dst, role=_role(src, dst, data, gateways))
        r = step(state, ctx, data, ts)
        assert r.verdict in ("forward", "drop")
        assert r.verdict == "forward" or r.reason
        state = r.state
        events += r.events
        for t in r.timers:
            if t.deadline is None:
                timers.pop(t.key, None)
            else:
                timers[t.key] = t.deadline
        first = data.split(b"\n", 1)[0].split(b"\r", 1)[0].decode("latin-1")
        rows.append((ts, f"{src[0]}:{src[1]}", ctx.role, first[:44], r.verdict, r.reason))
    assert rows, "no MGCP datagram in the capture"
    assert durable(state) == fold(events)
    print()
    print(f"{'time':>18}  {'source':<21} {'role':<10} {'message':<44} verdict")
    for ts, src, role, first, verdict, reason in rows:
        print(f"{ts:18.6f}  {src:<21} {role:<10} {first:<44} {verdict}{': ' + reason if reason else ''}")
    verdicts = {(r[3].split()[0], r[4]) for r in rows}
    # The handshake of the capture passes: RSIP and its 200, RQNT/AUEP of
    # the call agent with their answers, the gateway's 510 answers.
    assert ("RSIP", "forward") in verdicts and ("200", "forward") in verdicts
    assert ("RQNT", "forward") in verdicts and ("AUEP", "forward") in verdicts
    assert ("510", "forward") in verdicts
    # Cisco's wildcard NTFY keep-alive (*@vg224) is refused: RFC 3435 lets a
    # Notify name one endpoint only; its 200 then answers no command.
    assert ("NTFY", "drop") in verdicts
