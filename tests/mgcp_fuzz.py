"""Inputs and checks for fuzzing the MGCP parser and ALG step, shared by
tests/test_mgcp_fuzz.py (a bounded budget in CI) and bench/fuzz_mgcp.py
(the long campaign).

Seeds: the manual's Table 3 messages, responses with SDP, piggy-backed
datagrams, and (when the corpus is present) every MGCP payload of
../shared/corpus/pcap/mgcp.pcap. Mutations: bit flips, byte insert, delete,
repeat of a slice, "interesting" tokens, and long runs of spaces, tabs or
digits (up to 64 KiB, the largest UDP payload) at any position.

The rule checked on every input: ``parse_datagram`` returns messages or
raises RemoteProtocolError; ``step`` returns a Result (it never raises on
wire input); each within the CPU time budget."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

from gateway.config.model import MgcpSettings
from gateway.errors import RemoteProtocolError
from gateway.mgcp.alg import EMPTY, MgcpContext, step
from gateway.mgcp.message import parse_datagram
from gateway.mgcp.roles import EITHER

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pcap" / "mgcp.pcap"
MAX_RUN = 65536
BUDGET_S = 0.05           # CPU seconds per input (time.thread_time: this thread only)

_SDP = ("v=0\no=- 25678 753849 IN IP4 128.96.41.1\ns=-\nc=IN IP4 128.96.41.1\nt=0 0\n"
        "m=audio 3456 RTP/AVP 0\na=rtcp:3457 IN IP4 128.96.41.1\n")
_TEXTS = [
    "CRCX 1205 aaln/1@gw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nL: p:10, a:PCMU\nM: sendrecv\n"
    "X: 0123456789AD\nR: L/hd\nS: L/rg\nN: ca@[10.1.1.101]:2727\nK: 6-8, 12\n\n" + _SDP,
    "MDCX 1210 aaln/1@[2.2.2.25] MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\nM: recvonly\n\n" + _SDP,
    "DLCX 9310 aaln/1@rgw-25.att.net MGCP 1.0\nC: A3C47F21456789F0\nI: FDE234C8\nE: 900 - Hardware error\n"
    "P: PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48\n",
    "RQNT 1205 aaln/1@rgw-25.att.net MGCP 1.0\nN: ca-new@callagent-ca.att.net\nX: 0123456789AA\n"
    "R: L/hd(A, E(S(L/dl),R(L/oc,L/hu,D/[0-9#*T](D))))\nD: (0T|00T|xx|91xxxxxxxxxx|9011x.T)\nS:\nT: G/ft\n",
    "NTFY 2002 aaln/1@rgw-25.att.net MGCP 1.0\nN: ca@ca1.att.net:5678\nX: 0123456789AC\nO: L/hd,D/9,D/1\n",
    "AUEP 1200 *@rgw-25.att.net MGCP 1.0\nF: A, R,D,S,X,N,I,T,O\n",
    "AUCX 3003 aaln/1@rgw-25.att.net MGCP 1.0\nI: 32F345E2\nF: C,N,L,M,LC,P\n",
    "RSIP 5200 aaln/*@rg2-25.att.net MGCP 1.0\nRM: graceful\nRD: 300\n",
    "EPCF 2012 wxx/T2@mynet.com MGCP 1.0\nB: e:mu\nZ: aaln/1@[2.2.2.25], aaln/2@[2.2.2.25]\n",
    "200 1205 OK\nI: FDE234C8\n\n" + _SDP + "\n" + _SDP.replace("3456", "4000"),
    "200 1200 OK\nI: 1, 2,3\nZ2: aaln/3@gw\n",
    "510 1 /pkg Protocol Error\n",
    "000 1205\n",
    "200 1210 OK\n.\nNTFY 2003 aaln/1@gw MGCP 1.0\nX: 1\nO: L/hu\n",
]
SEED_TEXTS = [t.replace("\n", "\r\n").encode() for t in _TEXTS] + [_TEXTS[0].encode(), _TEXTS[4].encode()]
TOKENS = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b"-", b"@", b"[", b"]", b"/", b"*", b"$", b".",
          b"\r\n.\r\n", b"\r\n\r\n", b"\x00", b"\xff", b"\xb2", b"\xb9", b"0", b"9", b"1234567890",
          b"99999999999999999999", b"MGCP 1.0", b"K: ", b"C: ", b"I: ", b"N: ", b"RM: ", b"Z: ",
          b"c=IN IP4 ", b"m=audio ", b"a=rtcp:", b"1.2.3.4", b"[1.2.3.4]", b"000 ", b"200 "]


def _capture_payloads() -> list[bytes]:
    """MGCP payloads of the corpus capture (pcap records read directly: the
    helper must not need scapy)."""
    if not CORPUS.exists():
        return []
    data = CORPUS.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    out, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        off = {1: 14, 113: 16, 101: 0}.get(linktype)
        if off is None or len(frame) < off + 28:
            continue
        if linktype == 1 and frame[12:14] != b"\x08\x00":
            continue
        ip = frame[off:]
        if ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
        if {sport, dport} & {2427, 2727}:
            out.append(bytes(ip[ihl + 8:]))
    return out


SEEDS = SEED_TEXTS + _capture_payloads()


def mutate(rng: random.Random, data: bytes, max_run: int = MAX_RUN) -> bytes:
    """One to four random mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        pos = rng.randint(0, len(buf))
        if kind < 0.2 and buf:
            p = rng.randrange(len(buf))
            buf[p] ^= 1 << rng.randrange(8)
        elif kind < 0.4:
            buf[pos:pos] = rng.choice(TOKENS)
        elif kind < 0.5:
            del buf[pos:pos + rng.randint(1, 16)]
        elif kind < 0.6 and buf:
            a = rng.randrange(len(buf))
            piece = bytes(buf[a:a + rng.randint(1, 64)])
            buf[pos:pos] = piece * rng.randint(2, max(2, min(200, max_run // max(1, len(piece)))))
        elif kind < 0.8:
            # A long run of blanks or digits: where a backtracking pattern
            # would show its cost.
            run = rng.choice([b" ", b"\t", b" \t", b"0", b"9", b"1"])
            n = min(max_run, rng.choice([64, 1024, 8192, max_run]))
            buf[pos:pos] = run * (n // len(run))
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf[:MAX_RUN + 4096])


def pathological(kind: str, n: int) -> bytes:
    """Inputs built to be slow if any pattern were super-linear: ``n`` bytes
    of one run at a place where the grammar reads blanks or digits."""
    runs = {
        "command-blanks": lambda: b"CRCX" + b" \t" * (n // 2) + b"1 a@b MGCP 1.0\r\n",
        "command-tail": lambda: b"CRCX 1 a@b MGCP 1.0 p" + b" " * n + b"!\r\n",
        "response-tail": lambda: b"200 1 x" + b"\t" * n + b"!x\r\n",
        "response-digits": lambda: b"200 " + b"1" * n + b" OK\r\n",
        "param-blanks": lambda: b"RQNT 1 a@b MGCP 1.0\r\nX:" + b" " * n + b"1\r\n",
        "ack-list": lambda: b"RQNT 1 a@b MGCP 1.0\r\nX: 1\r\nK: " + b"1-2," * (n // 4) + b"x\r\n",
        "id-list": lambda: b"200 1 OK\r\nI: " + b"1," * (n // 2) + b"\r\n",
        "endpoint-range": lambda: b"AUEP 1 a" + b"[1-2]" * (n // 5) + b"@b MGCP 1.0\r\n",
        "sdp-blanks": lambda: (b"CRCX 1 a@b MGCP 1.0\r\nC: 1\r\n\r\nv=0\r\nc=IN IP4 1.2.3.4" + b" " * n
                               + b"\r\nm=audio 4000 RTP/AVP 0\r\n"),
        "sdp-media": lambda: (b"CRCX 1 a@b MGCP 1.0\r\nC: 1\r\n\r\nv=0\r\nc=IN IP4 1.2.3.4\r\n"
                              + b"m=audio 4000 RTP/AVP 0\r\n" * (n // 24)),
        "lines": lambda: b"RQNT 1 a@b MGCP 1.0\r\n" + b"X: 1\r\n" * (n // 6),
        "sdp-rtcp-tabs": lambda: (b"CRCX 1 a@b MGCP 1.0\r\nC: 1\r\n\r\nv=0\r\no=- 1 1 IN IP4 1.1.1.1\r\n"
                                  b"m=audio 4000 RTP/AVP 0\r\na=rtcp:1" + b"\t" * n + b"9"),
        "sdp-other-lines": lambda: (b"CRCX 1 a@b MGCP 1.0\r\nC: 1\r\n\r\nv=0\r\no=- 1 1 IN IP4 1.1.1.1\r\n"
                                    b"m=audio 4000 RTP/AVP 0\r\n" + b"a=x\r\n" * (n // 5) + b"\xff"),
        "piggyback": lambda: b"000 1\r\n.\r\n" * (n // 10),
        "nul-padding": lambda: b"000 1\r\n" + b"\x00" * n,
    }
    return runs[kind]()


PATHOLOGICAL = ("command-blanks", "command-tail", "response-tail", "response-digits", "param-blanks",
                "ack-list", "id-list", "endpoint-range", "sdp-blanks", "sdp-media", "sdp-rtcp-tabs", "sdp-other-lines", "lines",
                "piggyback",
                "nul-padding")


def parse_rule(data: bytes) -> bool:
    """parse_datagram's rule; True when the input parsed."""
    try:
        msgs = parse_datagram(data)
    except RemoteProtocolError:
        return False
    assert msgs and all(0 <= m.start <= m.end <= len(data) for m in msgs)
    return True


CA, GW = ("10.1.1.101", 2427), ("2.2.2.25", 2427)
CONTEXTS = (
    MgcpContext("none", CA, GW, role=EITHER),
    MgcpContext("none", GW, CA, role=EITHER),
    MgcpContext("none", ("10.1.1.101", 2727), GW, role="call-agent"),
    MgcpContext("outbound", ("10.1.1.101", 2727), GW, nat_src=("3.3.3.101", 2727), role="call-agent"),
    MgcpContext("inbound", GW, ("3.3.3.101", 2727), nat_dst=("10.1.1.101", 2727), role="gateway"),
)
SETTINGS = MgcpSettings()


def warm_state():
    """A state with a call, a connection and transactions, so that mutated
    responses and commands meet something to match."""
    st = EMPTY
    for c, text in ((CONTEXTS[2], _TEXTS[0].replace("\n", "\r\n")),
                    (CONTEXTS[1], "200 1205 OK\r\nI: FDE234C8\r\n\r\n" + _SDP.replace("\n", "\r\n")),
                    (CONTEXTS[1], "RSIP 7 aaln/*@[2.2.2.25] MGCP 1.0\r\nRM: restart\r\n")):
        st = step(st, c, text.encode(), 1.0, SETTINGS).state
    return st


def step_rule(state, ctx, data: bytes):
    r = step(state, ctx, data, 2.0, SETTINGS)
    assert r.verdict in ("forward", "drop")
    assert r.verdict == "forward" or r.reason
    return r


def cpu(fn, *args) -> float:
    # This thread's CPU time only: the process's also counts whatever other
    # threads of the test process (a replicator, a timer of an earlier test)
    # did meanwhile.
    t = time.thread_time()
    fn(*args)
    return time.thread_time() - t
