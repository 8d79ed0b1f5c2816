"""Inputs and checks shared by the SIP/SDP fuzz tests (tests/test_sip_fuzz_bounds.py)
and the longer campaign (tests/fuzz/sip_campaign.py).

The rule checked (ARCHITECTURE.md, "Errors, events and spans"): every parser
returns a result or raises RemoteProtocolError, within bounded time and memory, whatever the
octets. The mutations are those that found the parsers' defects: bytes
flipped, inserted, repeated or removed, and long runs (up to 64 KiB) of
spaces, tabs, digits, separators, folds and SDP lines, with the
Content-Length sometimes made to match so the body is read as well.
"""

from __future__ import annotations

import random
import re
import time
import tracemalloc
from pathlib import Path

from gateway.errors import RemoteProtocolError
from gateway.sdp import parse_sdp
from gateway.sip import frame_stream, parse_message
from gateway.sip.message import _parse

from fuzz_mutations import MAX_RUN, Mutator

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "sip-torture"

_SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
_SDP2 = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 224.2.1.1/127/2\r\nt=0 0\r\n"
         b"m=audio 4000/2 RTP/AVP 0\r\na=rtcp:4001 IN IP4 10.0.0.1\r\n"
         b"m=video 5000 RTP/AVP 31\r\nc=IN IP4 10.0.0.2\r\na=recvonly\r\n")


def _with_body(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Type: application/sdp\r\nContent-Length: " + \
        str(len(body)).encode() + b"\r\n\r\n" + body


BUILT = [
    _with_body(b"INVITE sip:bob@10.0.0.2:5060 SIP/2.0\r\n"
               b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.9;rport=5062\r\n"
               b"From: \"A\" <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:b@10.0.0.2>\r\n"
               b"Call-ID: q@10.0.0.1\r\nCSeq: 1 INVITE\r\n"
               b"Contact: <sip:a@10.0.0.1:5060>;expires=60\r\n"
               b"Record-Route: <sip:10.0.0.3;lr>\r\nSession-Expires: 90\r\n", _SDP),
    _with_body(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
               b"f: <sip:a@10.0.0.1>;tag=1\r\nt: <sip:b@10.0.0.2>;tag=2\r\ni: q@10.0.0.1\r\n"
               b"CSeq: 1 INVITE\r\nm: <sip:b@10.0.0.2>\r\n", _SDP2),
    b"BYE sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK9\r\n"
    b"From: <sip:b@10.0.0.2>;tag=2\r\nTo: <sip:a@10.0.0.1>;tag=1\r\nCall-ID: q@10.0.0.1\r\n"
    b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    b"REGISTER sip:10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKr\r\n"
    b"From: <sip:a@10.0.0.5>;tag=r\r\nTo: <sip:a@10.0.0.5>\r\nCall-ID: reg@10.0.0.1\r\n"
    b"CSeq: 1 REGISTER\r\nContact: <sip:a@10.0.0.1:5060>;expires=3600, <sip:a@h.example>\r\n"
    b"Expires: 3600\r\nContent-Length: 0\r\n\r\n",
]


def seeds() -> list[bytes]:
    """Built messages and the RFC 4475 torture messages (valid and invalid)."""
    out = list(BUILT)
    out += [p.read_bytes() for p in sorted(CORPUS.glob("*.dat"))]
    return out


# What runs are made of: the characters the grammars treat specially.
RUN_UNITS = [b" ", b"\t", b"0", b"9", b"1.", b";", b",", b":", b"=", b"<", b">", b'"', b"\\",
             b"@", b"/", b".", b"a", b"\r\n ", b"\r\n\t", b"\r\n", b"\n", b"\r", b" \r\n ",
             b"b=x\r\n", b"a=x\r\n", b"a=sendrecv\r\n", b"c=IN IP4 1.2.3.4\r\n",
             b"m=audio 1 RTP/AVP 0\r\n", b"Via: SIP/2.0/UDP h\r\n", b"x: y\r\n", b";a=b",
             b" ; a = b", b"<sip:a@1.2.3.4>,", b"\xb2", b"\xff", b"\x00"]
TOKENS = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"\"", b"<", b">", b"@", b"=",
          b"/", b"\\", b"0", b"9", b"99999999999", b"1" * 4301, b"\x00", b"\xff", b"\xb2",
          b"\r\n ", b"\r\n\r\n", b"sip:", b"1.2.3.4", b"m=", b"c=", b"l:", b"a=rtcp:",
          b"[::1]", b"%", b"\x85", b"\xa0", b"pbx.example.com", b"h", b"0.0.0.0",
          b"255.255.255.255"]
_CL = re.compile(rb"(?im)^(content-length|l)[ \t]*:[ \t]*[0-9]*")


def fix_length(data: bytes) -> bytes:
    """``data`` with its Content-Length values made to match the body after
    the first empty line (so that a mutated body is read, not refused)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    n = len(data) - end - 4
    head = _CL.sub(lambda m: m.group(1) + b": " + str(n).encode(), data[:end])
    return head + data[end:]


# One engine for every fuzzer (tests/fuzz_mutations.py), fitted to SIP/SDP by
# its tokens and runs; half of the outputs get their Content-Length fixed.
_MUTATOR = Mutator(TOKENS, RUN_UNITS, max_len=MAX_RUN, finish=fix_length)


def mutate(rng: random.Random, data: bytes, pool: list[bytes] | None = None) -> bytes:
    """One to four mutations of ``data``, cut to 64 KiB (a UDP datagram is
    smaller; a TCP header section longer than that is refused)."""
    return _MUTATOR(rng, data, pool or ())


def body_of(data: bytes) -> bytes:
    i = data.find(b"v=")
    return data[i:] if i >= 0 else data


# The parsers under the rule: the fast reading, the general reading, TCP
# framing, and SDP on its own.
PARSERS = {
    "parse_message": parse_message,
    "general": lambda d: _parse(d, False),
    "frame_stream": frame_stream,
    "parse_sdp": lambda d: parse_sdp(body_of(d)),
}


def run(fn, data: bytes) -> str:
    """"ok" or "refused"; anything else raised is the caller's failure."""
    try:
        fn(data)
    except RemoteProtocolError as exc:
        assert exc.reason
        return "refused"
    return "ok"


def cpu_time(fn, data: bytes, tries: int = 1) -> float:
    """The least process CPU time of ``tries`` runs of ``fn(data)``."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.thread_time()
        run(fn, data)
        best = min(best, time.thread_time() - t0)
    return best


def peak_memory(fn, data: bytes) -> int:
    """The tracemalloc peak (bytes) of one run of ``fn(data)``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run(fn, data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Inputs that were (or would be, with a backtracking pattern) super-linear,
# as functions of a size n: (name, builder).
_HEAD = (b"INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
         b"To: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n")
_SDP_HEAD = b"v=0\r\no=u 1 1 IN IP4 1.2.3.4\r\n"
SCALING = {
    # SDP: runs of other lines around an m= line, failing at the end.
    "sdp b= around m=, bad end": lambda n: _SDP_HEAD + b"b=x\r\n" * (n // 10)
    + b"m=audio 1 RTP/AVP 0\r\n" + b"b=x\r\n" * (n // 10) + b"x",
    "sdp a= around m=": lambda n: _SDP_HEAD + b"a=x\r\n" * (n // 10)
    + b"m=audio 1 RTP/AVP 0\r\n" + b"a=x\r\n" * (n // 10) + b"\n",
    "sdp long line": lambda n: _SDP_HEAD + b"m=audio 1 RTP/AVP" + b" 0" * (n // 2) + b"\r\n",
    "sdp rtcp spaces": lambda n: _SDP_HEAD + b"m=audio 1 RTP/AVP 0\r\na=rtcp:1" + b" " * n + b"x\r\n",
    # Folding: a run of spaces before a fold, in a value the parser unfolds.
    "spaces before a fold": lambda n: _HEAD + b"Content-Type: a" + b" " * n
    + b"x\r\n y\r\nContent-Length: 0\r\n\r\n",
    "call-id spaces before a fold": lambda n: _HEAD.replace(b"Call-ID: x", b"Call-ID: x"
                                                          + b" " * n + b"y\r\n z")
    + b"Content-Length: 0\r\n\r\n",
    # Line counting: many folded header lines the parser reads.
    "many folded lines": lambda n: _HEAD + b"Contact: <sip:x@1.2.3.4>\r\n \r\n" * (n // 29)
    + b"Content-Length: 0\r\n\r\n",
    "many folded Via": lambda n: _HEAD + b"v: SIP/2.0/UDP h\r\n ;x\r\n" * (n // 24)
    + b"Content-Length: 0\r\n\r\n",
    "long LWS after colon": lambda n: _HEAD + b"X:" + b" " * n + b"x\r\n\r\n",
    "many params": lambda n: _HEAD + b"Via: SIP/2.0/UDP h" + b" ; a = b" * (n // 8) + b"\r\n\r\n",
    "many commas": lambda n: _HEAD + b"Via: SIP/2.0/UDP h" + b"," * n + b"\r\n\r\n",
    "many <": lambda n: _HEAD + b"Contact: " + b"<" * n + b"\r\n\r\n",
    "many quotes": lambda n: _HEAD + b"Contact: " + b'"a\\' * (n // 3) + b"\r\n\r\n",
    "many lines": lambda n: _HEAD + b"X: y\r\n" * (n // 6) + b"\r\n",
    "digits cseq": lambda n: _HEAD.replace(b"CSeq: 1", b"CSeq: " + b"1" * n) + b"\r\n",
    "spaces in cseq": lambda n: _HEAD.replace(b"CSeq: 1 ", b"CSeq: 1" + b" " * n) + b"\r\n",
}
