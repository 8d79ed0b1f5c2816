"""MGCP parser and ALG on hostile numbers and blank runs.

- ``str.isdigit()`` accepts digits of other scripts and superscripts
  ("\\u00b2", latin-1 byte 0xB2); ``int()`` refuses them, so a K: (RFC 3435
  3.5.6) or an SDP address holding one raised ValueError out of the ALG's
  step. Numbers are ASCII (RFC 3435 appendix A, RFC 4566 9) and bounded in
  length: such input is a RemoteProtocolError, i.e. a drop with a reason.
- The command and response lines were matched by regexes that retried a run
  of blanks from every position inside it: quadratic in spaces/tabs."""

from __future__ import annotations

import time

import pytest

from gateway.errors import RemoteProtocolError
from gateway.mgcp.alg import EMPTY, MgcpContext, step
from gateway.mgcp.message import parse_datagram

CA = MgcpContext("none", ("10.1.1.101", 2727), ("2.2.2.25", 2427), role="call-agent")


def _sdp(addr: bytes) -> bytes:
    return (b"v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 " + addr +
            b"\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")


NON_ASCII_NUMBERS = [
    b"RQNT 1 aaln/1@gw MGCP 1.0\r\nX: 1\r\nK: \xb2\r\n",                 # K: superscript two
    b"RQNT 1 aaln/1@gw MGCP 1.0\r\nX: 1\r\nK: 1-\xb2\r\n",               # ... as a range's end
    b"RQNT 1 aaln/1@gw MGCP 1.0\r\nX: 1\r\nK: " + b"9" * 5000 + b"\r\n",  # past int()'s 4300 digits
    b"RQNT 1 aaln/1@gw MGCP 1.0\r\nX: 1\r\nK: 1234567890\r\n",           # 10 digits: no transaction id
    b"CRCX 2 aaln/1@gw MGCP 1.0\r\nC: 1\r\n\r\n" + _sdp(b"1.1.1.\xb2"),  # SDP c= with a superscript
    b"CRCX 2 aaln/1@gw MGCP 1.0\r\nC: 1\r\n\r\n" + _sdp(b"\xb9.1.1.1"),
    b"RSIP 3 aaln/1@gw MGCP 1.0\r\nRM: graceful\r\nRD: \xb3\r\n",
]


@pytest.mark.parametrize("data", NON_ASCII_NUMBERS)
def test_non_ascii_or_unbounded_numbers_are_protocol_errors(data):
    with pytest.raises(RemoteProtocolError):
        parse_datagram(data)
    r = step(EMPTY, CA, data, 1.0)
    assert r.verdict == "drop" and r.reason.startswith("malformed MGCP message")
    assert r.state is EMPTY and not r.events


def test_ascii_ack_ranges_still_pass():
    m, = parse_datagram(b"RQNT 9 aaln/1@gw MGCP 1.0\r\nX: 1\r\nK: 6 - 8, 12,13\r\n")
    assert m.get("K") == "6 - 8, 12,13"
    assert step(EMPTY, CA, b"RQNT 9 aaln/1@gw MGCP 1.0\r\nX: 1\r\nK: 6 - 8, 12,13\r\n", 1.0).verdict == "forward"


def _cost(data: bytes, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.thread_time()
        try:
            parse_datagram(data)
        except RemoteProtocolError:
            pass
        best = min(best, time.thread_time() - t)
    return best


# First lines with a long run of blanks where the old patterns backtracked:
# inside a response's commentary, after a command's profile, before a bad
# character at the end.
BLANK_RUNS = [
    lambda n: b"200 1 x" + b" " * n + b"!x",
    lambda n: b"200 1" + b" \t" * (n // 2) + b"x",
    lambda n: b"CRCX 1 a@b MGCP 1.0 p" + b" " * n + b"!",
    lambda n: b"CRCX 1 a@b MGCP 1.0 p" + b"\t" * n + b"q",
    lambda n: b"510 1 /pkg" + b" " * n + b"\xff",
]


@pytest.mark.parametrize("make", BLANK_RUNS)
def test_first_line_blank_runs_are_linear(make):
    # 64 KiB of blanks within the 50 ms budget (the old patterns took about
    # 0.7 s at 16 KiB), and doubling the input at most ~triples the time
    # (generous for a busy machine; a quadratic cost quadruples it).
    assert _cost(make(65536)) <= 0.05
    small, large = _cost(make(16384), 5), _cost(make(32768), 5)
    assert large <= 3 * small + 0.002


def test_blank_line_only_first_line_is_refused():
    for data in (b" \r\n", b"\t\t\r\nX: 1\r\n"):
        with pytest.raises(RemoteProtocolError):
            parse_datagram(data)


def test_sdp_with_many_lines_is_refused_before_the_cubic_pattern():
    # 1,600 "a=x" lines and a bad byte at the end: gateway.sdp.parse_sdp's
    # whole-description pattern split the run of lines in O(n^3) ways (8 KiB
    # took 100 s); the MGCP parser now refuses more than MAX_SDP_LINES lines
    # in a description before handing it over.
    data = (b"CRCX 1 aaln/1@gw MGCP 1.0\r\nC: 1\r\n\r\nv=0\r\no=- 1 1 IN IP4 1.1.1.1\r\n"
            b"m=audio 4000 RTP/AVP 0\r\n" + b"a=x\r\n" * 1600 + b"\xff")
    t = time.thread_time()
    with pytest.raises(RemoteProtocolError, match="lines in a session description"):
        parse_datagram(data)
    assert time.thread_time() - t <= 0.05


def test_long_sdp_line_is_refused_before_the_quadratic_pattern():
    # "a=rtcp:1", 8 KiB of tabs, a digit, no line end: parse_sdp's a=rtcp
    # patterns retried the tab run from every position (0.5 s).
    data = (b"CRCX 1 aaln/1@gw MGCP 1.0\r\nC: 1\r\n\r\nv=0\r\no=- 1 1 IN IP4 1.1.1.1\r\n"
            b"m=audio 4000 RTP/AVP 0\r\na=rtcp:1" + b"\t" * 8192 + b"9")
    t = time.thread_time()
    with pytest.raises(RemoteProtocolError, match="session description line longer"):
        parse_datagram(data)
    assert time.thread_time() - t <= 0.05


def _step_cost(data: bytes) -> tuple[float, object]:
    best, r = float("inf"), None
    for _ in range(3):
        t = time.thread_time()
        r = step(EMPTY, CA, data, 1.0)
        best = min(best, time.thread_time() - t)
    return best, r


def test_endpoint_name_of_many_terms_is_refused():
    """Found by the MGCP ALG step fuzz campaign: an endpoint name of 6,456
    terms (aaln/1aaln/1...@gw) took 282 ms, the ALG looking up the RSIP of
    every wildcard prefix of it (aaln/*, aaln/1aaln/*, ...; RFC 3435 2.3.12),
    each as long as the name so far. Names have a few terms (RFC 3435 2.1.1:
    aaln/1, ds/ds1-1/1); more than MAX_ENDPOINT_TERMS is malformed."""
    from gateway.mgcp.message import MAX_ENDPOINT_TERMS
    data = b"AUCX 3003 " + b"aaln/" * 4000 + b"1@gw MGCP 1.0\r\nI: 32F3\r\n"
    with pytest.raises(RemoteProtocolError, match="terms"):
        parse_datagram(data)
    spent, r = _step_cost(data)
    assert spent <= 0.05 and r.verdict == "drop" and r.reason.startswith("malformed MGCP message")
    deep = b"/".join([b"t"] * MAX_ENDPOINT_TERMS)
    m, = parse_datagram(b"AUCX 3 " + deep + b"@gw MGCP 1.0\r\n")
    assert m.endpoint.local.count("/") == MAX_ENDPOINT_TERMS - 1
