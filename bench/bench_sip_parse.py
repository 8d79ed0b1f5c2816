"""SIP parse + NAT rewrite throughput, per message kind, on one core.

For each message (INVITE with SDP, 200 OK with SDP, ACK, BYE): parse, then
rewrite the private address of Via / Contact / SDP o= c= and the m= ports
(Content-Length fixed by rewrite_message); and the parse alone. Then the
framing of a TCP stream (frame_stream) of one and of two messages. A baseline
measured in the same run -- ``bytes.split(b"\\r\\n")`` over the same message --
is printed beside each, so that the ratios say something on a noisy, shared
machine.

Run: .venv/bin/python bench/bench_sip_parse.py [seconds-per-case]"""

from __future__ import annotations

import sys
import time

from gateway.sip import frame_stream, parse_message, rewrite_message
from gateway.span import Edit

PUBLIC = "198.51.100.77"

SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\ns=-\r\n"
       b"c=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0 8 101\r\n"
       b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")
COMMON = (b"Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n"
          b"To: <sip:bob@example.org>%s\r\nCall-ID: a84b4c76e66710@192.168.1.20\r\n"
          b"CSeq: %s\r\nContact: <sip:alice@192.168.1.20:5060>\r\n"
          b"User-Agent: bench/1.0\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n")


def _msg(start: bytes, to_tag: bytes, cseq: bytes, body: bytes) -> bytes:
    head = (start + b"\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK776asdhds;rport\r\n"
            + COMMON % (to_tag, cseq))
    if body:
        head += b"Content-Type: application/sdp\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


CASES = {
    "INVITE+SDP": _msg(b"INVITE sip:bob@203.0.113.5 SIP/2.0", b"", b"314159 INVITE", SDP),
    "200 OK+SDP": _msg(b"SIP/2.0 200 OK", b";tag=a6c85cf", b"314159 INVITE", SDP),
    "ACK": _msg(b"ACK sip:bob@203.0.113.5 SIP/2.0", b";tag=a6c85cf", b"314159 ACK", b""),
    "BYE": _msg(b"BYE sip:bob@203.0.113.5 SIP/2.0", b";tag=a6c85cf", b"314160 BYE", b""),
}

_NAT_FIELDS = frozenset({"via", "contact", "call-id", "from"})


def parse_and_rewrite(data: bytes) -> bytes:
    msg = parse_message(data)
    edits = [Edit.replace(r.host, PUBLIC) for r in msg.addresses if r.field in _NAT_FIELDS]
    sdp = msg.sdp
    if sdp is not None:
        if sdp.origin_addr is not None:
            edits.append(Edit.replace(sdp.origin_addr, PUBLIC))
        if sdp.session_conn is not None:
            edits.append(Edit.replace(sdp.session_conn.addr, PUBLIC))
        for m in sdp.media:
            edits.append(Edit.replace(m.port_span, b"40000"))
            if m.conn is not None:
                edits.append(Edit.replace(m.conn.addr, PUBLIC))
    return rewrite_message(data, msg, edits)


def baseline(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def rate(fn, data: bytes, seconds: float) -> float:
    n = 0
    batch = 200
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(batch):
            fn(data)
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def main(argv: list[str]) -> int:
    seconds = float(argv[1]) if len(argv) > 1 else 1.0
    # Sanity: the rewritten INVITE parses back with a true Content-Length.
    out = parse_message(parse_and_rewrite(CASES["INVITE+SDP"]))
    assert out.content_length == len(out.body) and out.sdp.session_conn.addr.text == PUBLIC
    print(f"{'message':<12} {'parse+rewrite/s':>16} {'split/s':>12} {'ratio':>8} {'us/msg':>8} "
          f"{'parse/s':>10} {'ratio':>8} {'us':>6}")
    worst = None
    for name, data in CASES.items():
        r = rate(parse_and_rewrite, data, seconds)
        b = rate(baseline, data, seconds / 4)
        p = rate(parse_message, data, seconds / 2)
        print(f"{name:<12} {r:>16,.0f} {b:>12,.0f} {r / b:>8.4f} {1e6 / r:>8.1f} "
              f"{p:>10,.0f} {p / b:>8.4f} {1e6 / p:>6.1f}")
        if name == "INVITE+SDP":
            worst = r
    # SIP over TCP adds the framing of the stream (Content-Length, RFC 3261
    # 18.3) before the parse: one INVITE with SDP per segment, and one INVITE
    # with SDP and one ACK in the same segment.
    invite = CASES["INVITE+SDP"]
    for label, data in (("frame 1 msg", invite), ("frame 2 msgs", invite + CASES["ACK"])):
        f = rate(frame_stream, data, seconds / 4)
        print(f"{label:<12} {f:>16,.0f} segments/s {1e6 / f:>8.1f} us")
    target = 50_000
    print(f"INVITE+SDP target {target:,}/s: {'met' if worst >= target else 'NOT met'} ({worst:,.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
