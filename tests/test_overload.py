"""Overload control (gateway/overload.py): which messages are new work, and
the per-source fair admission of new dialogs."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.overload import NewDialogBudget, OverloadSettings, new_dialog_kind

INVITE = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
          b"From: <sip:alice@example.com>;tag=a1\r\n"
          b"To: <sip:bob@example.com>\r\n"
          b"Call-ID: 1@10.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def with_to(to: bytes, method: bytes = b"INVITE") -> bytes:
    return INVITE.replace(b"To: <sip:bob@example.com>", to).replace(b"INVITE sip", method + b" sip", 1)


# -- which messages are new --------------------------------------------------------

def test_new_requests_without_to_tag_are_new():
    assert new_dialog_kind("sip", INVITE) == "sip-invite"
    for m in (b"REGISTER", b"SUBSCRIBE", b"OPTIONS"):
        assert new_dialog_kind("sip", with_to(b"To: <sip:bob@example.com>", m)) == "sip-" + m.decode().lower()


def test_requests_with_to_tag_are_in_dialog():
    assert new_dialog_kind("sip", with_to(b"To: <sip:bob@example.com>;tag=b2")) is None
    assert new_dialog_kind("sip", with_to(b"t: <sip:bob@example.com> ; TAG = b2")) is None
    assert new_dialog_kind("sip", with_to(b"TO:sip:bob@example.com;tag=x")) is None


def test_tag_inside_the_uri_is_not_the_headers_tag():
    assert new_dialog_kind("sip", with_to(b"To: <sip:bob@example.com;tag=x>")) == "sip-invite"


def test_other_tag_headers_do_not_count():
    # The From tag is always there; a header whose name starts with "t" is not To.
    msg = with_to(b"To: <sip:bob@example.com>").replace(b"Call-ID", b"Timestamp: 1;tag=2\r\nCall-ID")
    assert new_dialog_kind("sip", msg) == "sip-invite"


def test_never_new():
    for m in (b"ACK", b"BYE", b"CANCEL", b"INFO", b"NOTIFY"):
        assert new_dialog_kind("sip", with_to(b"To: <sip:bob@example.com>", m)) is None
    assert new_dialog_kind("sip", b"SIP/2.0 200 OK\r\nTo: <sip:b@x>\r\n\r\n") is None
    assert new_dialog_kind("mgcp", b"MDCX 1 aaln/1@gw MGCP 1.0\r\n") is None
    assert new_dialog_kind("mgcp", b"200 1 OK\r\n") is None


def test_mgcp_crcx_and_h323_arq():
    assert new_dialog_kind("mgcp", b"CRCX 1204 aaln/1@rgw.example.net MGCP 1.0\r\n") == "mgcp-crcx"
    assert new_dialog_kind("mgcp", b"crcx 1204 aaln/1@rgw MGCP 1.0\r\n") == "mgcp-crcx"
    # RasMessage CHOICE index 9 (admissionRequest), root, aligned PER: 0b0_01001_xx.
    assert new_dialog_kind("h323", bytes([9 << 2]) + b"\x00" * 20) == "h323-arq"
    assert new_dialog_kind("h323", bytes([3 << 2]) + b"\x00" * 20) is None      # RRQ
    assert new_dialog_kind("h323", b"") is None


def test_h323_arq_as_the_ras_parser_sees_it():
    """Every RAS datagram of the H.323 capture: new exactly when the ALG's
    parser says admissionRequest."""
    from gateway.h323.ras import parse_ras
    from tests.test_h323_parse import _segments
    from gateway.errors import RemoteProtocolError
    kinds = set()
    for _n, proto, _s, _d, _, data in _segments("h323.pcap"):
        if proto != "udp":
            continue
        try:
            kind = parse_ras(data).kind
        except RemoteProtocolError:
            continue
        kinds.add(kind)
        assert (new_dialog_kind("h323", data) == "h323-arq") == (kind == "admissionRequest"), kind
    assert "admissionRequest" in kinds and "registrationRequest" in kinds


@settings(max_examples=300, deadline=None)
@given(alg=st.sampled_from(["sip", "mgcp", "h323", "other"]), data=st.binary(max_size=600))
def test_any_bytes_classify_without_error(alg, data):
    assert new_dialog_kind(alg, data) in (None, "sip-invite", "sip-register", "sip-subscribe",
                                          "sip-options", "mgcp-crcx", "h323-arq")


# -- admission --------------------------------------------------------------------

A, B = 0x0A000001, 0x0A000002


def run(budget: NewDialogBudget, arrivals):
    """arrivals: (time, source) sorted by time -> admitted per source."""
    got = {}
    for t, src in arrivals:
        if budget.admit(src, t):
            got[src] = got.get(src, 0) + 1
    return got


def stream(src, rate, start, end):
    n = int((end - start) * rate)
    return [(start + i / rate, src) for i in range(n)]


def test_a_lone_source_gets_the_budget_and_no_more():
    b = NewDialogBudget(OverloadSettings(rate=100), now=0.0)
    got = run(b, stream(A, 2000, 0.0, 10.0))
    # 10 s of budget plus at most the global bucket's burst.
    assert 990 <= got[A] <= 100 * 10 + 2 * 100 * 0.5 + 1


def test_disabled_admits_everything():
    b = NewDialogBudget(OverloadSettings(rate=0), now=0.0)
    assert run(b, stream(A, 5000, 0.0, 1.0))[A] == 5000


@settings(max_examples=60, deadline=None)
@given(rate=st.integers(20, 500), b_frac=st.floats(0.01, 0.25), seconds=st.integers(2, 8),
       b_start=st.floats(0.0, 1.5), offset=st.floats(0.0, 0.01))
def test_flooder_cannot_take_the_modest_sources_share(rate, b_frac, seconds, b_start, offset):
    """Source A floods at 50x the budget, source B asks at a modest rate (at
    most a quarter of the budget, below its half share): every one of B's new
    dialogs is admitted, A gets what is left, and the total stays within the
    budget over the run (plus the global bucket's burst)."""
    b = NewDialogBudget(OverloadSettings(rate=rate), now=0.0)
    a_arr = stream(A, rate * 50, 0.0, seconds)
    b_rate = max(1.0, rate * b_frac)
    b_arr = stream(B, b_rate, b_start + offset, seconds)
    got = run(b, sorted(a_arr + b_arr))
    assert got.get(B, 0) == len(b_arr)
    total = got.get(A, 0) + got.get(B, 0)
    assert total <= rate * seconds + 2 * rate * 0.5 + 2
    # A is held to about its share once B is there, not starved either.
    assert got.get(A, 0) >= rate * 0.4 * (seconds - b_start - 1)


@settings(max_examples=40, deadline=None)
@given(rate=st.integers(20, 300), n=st.integers(2, 40), seconds=st.integers(2, 5))
def test_many_flooders_share_the_budget(rate, n, seconds):
    b = NewDialogBudget(OverloadSettings(rate=rate), now=0.0)
    arr = sorted(x for s in range(n) for x in stream(0x0A000100 + s, rate * 5, s * 1e-4, seconds))
    got = run(b, arr)
    assert sum(got.values()) <= rate * seconds + 2 * rate * 0.5 + n + 1


def test_a_spoofed_sweep_is_bounded_by_the_global_bucket():
    b = NewDialogBudget(OverloadSettings(rate=100, max_sources=64), now=0.0)
    arr = [(i / 20000, 0x0B000000 + i) for i in range(20000)]      # 20,000 sources in 1 s
    got = run(b, arr)
    assert sum(got.values()) <= 100 * 1 + 2 * 100 * 0.5 + 1
    assert len(b._sources) <= 65


def test_load_cuts_the_budget_and_it_grows_back():
    s = OverloadSettings(rate=400, max_held=100, latency_target=0.2)
    b = NewDialogBudget(s, now=0.0)
    t = 0.0
    for _ in range(10):
        t += 0.2
        assert b.observe(t, held=500, latency=0.05)
    assert b.budget < 400 * 0.1 and b.budget >= s.min_rate
    assert b.cuts >= 9
    for _ in range(40):
        t += 0.2
        assert not b.observe(t, held=0, latency=0.01)
    assert b.budget == 400
    t += 0.2
    assert b.observe(t, held=0, latency=0.5)           # latency alone is overload
    assert b.observe(t + 0.2, held=0, latency=0.0, batch=1.0)


def test_quiet_sources_leave_the_count():
    b = NewDialogBudget(OverloadSettings(rate=100, window=1.0), now=0.0)
    for s in range(10):
        b.admit(0x0A000100 + s, 0.0)
    assert b.active_sources() == 10
    b.admit(A, 5.0)
    assert b.active_sources() == 1
