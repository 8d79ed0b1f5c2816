"""Logical channels (H.245) keyed by forwardLogicalChannelNumber, H.245
tunnelled in Q.931 (h245Control), and RAS disengage (DRQ/DCF) ending calls."""

from __future__ import annotations

from gateway.h323 import per
from gateway.h323.alg import H323Context, step
from gateway.h323.state import EMPTY, fold

from h323_bounds import frames

F = frames()
SETUP, CONNECT = F[6], F[18]
TCS = F[25]
OLC_143, OLC_618 = F[38], F[39]          # channel 101 from .143, 61 from 6.18
ACK_61_BY_143, ACK_101_BY_618 = F[41], F[42]
ARQ, ACF, DRQ = F[63], F[64], F[69]

A = ("10.1.3.143", 32803)
B = ("10.1.6.18", 1720)


def _ok(res, old):
    assert res.verdict == "forward", res.reason
    assert fold(res.events, old) == res.state
    return res.state


def _tpkt(q931: bytes) -> bytes:
    return b"\x03\x00" + (len(q931) + 4).to_bytes(2, "big") + q931


def _clc(number: int) -> bytes:
    """CloseLogicalChannel (H.245 7.3.1) of ``number``, the opener closing it."""
    per.H245_MESSAGE.set_val(("request", ("closeLogicalChannel",
                                          {"forwardLogicalChannelNumber": number, "source": ("user", 0)})))
    return per.H245_MESSAGE.to_aper()


def _with_h245_control(frame: bytes, pdus: list[bytes], message_type: int | None = None,
                       empty_body: bool = False) -> bytes:
    """The corpus Q.931 message with ``pdus`` tunnelled in h245Control
    (H.225.0 7.3.1), made with pycrate's encoder."""
    uu_at = frame.index(b"\x7e", 4)
    value = per.decode(per.USER_INFORMATION, frame[uu_at + 4:], "uuie")
    pdu_v = value["h323-uu-pdu"]
    pdu_v["h245Tunnelling"] = True
    pdu_v["h245Control"] = pdus
    if empty_body:
        pdu_v["h323-message-body"] = ("empty", 0)
    per.USER_INFORMATION.set_val(value)
    uu = per.USER_INFORMATION.to_aper()
    head = bytearray(frame[4:uu_at])
    if message_type is not None:
        head[-1] = message_type
    return _tpkt(bytes(head) + b"\x7e" + (len(uu) + 1).to_bytes(2, "big") + b"\x05" + uu)


def _connected_call():
    s = EMPTY
    ctx = H323Context("q931", "none", A, B)
    for frame in (SETUP, CONNECT):
        s = _ok(step(s, ctx, frame, 1.0), s)
    (key,) = s.calls
    return s, key


def _h245(src, dst):
    return H323Context("h245", "none", src, dst)


def _media(s, key):
    return {p.dst: p for p in s.calls[key].pinholes.values() if p.kind in ("rtp", "rtcp")}


def test_close_logical_channel_closes_exactly_that_channel():
    """The corpus call's two channels (101 from 10.1.3.143, 61 from
    10.1.6.18, both session 1): closing 101 ends the pinhole only 101 uses
    (its receiver's RTP, 10.1.6.18:2006) and keeps the RTCP ports channel 61
    also names; closing 61 then ends the rest. Before, pinholes were grouped
    by session: CLC 101 and 61 closed nothing, CLC 1 closed all four."""
    s, key = _connected_call()
    a, b = ("10.1.3.143", 32804), ("10.1.6.18", 1232)
    for frame, src, dst in ((OLC_143, a, b), (OLC_618, b, a), (ACK_61_BY_143, a, b), (ACK_101_BY_618, b, a)):
        s = _ok(step(s, _h245(src, dst), frame, 2.0), s)
    assert set(_media(s, key)) == {("10.1.3.143", 5000), ("10.1.3.143", 5001),
                                   ("10.1.6.18", 2006), ("10.1.6.18", 2007)}

    res = step(s, _h245(a, b), _tpkt_h245(_clc(1)), 3.0)      # no channel 1
    s = _ok(res, s)
    assert not res.pinholes_close and len(_media(s, key)) == 4

    res = step(s, _h245(a, b), _tpkt_h245(_clc(101)), 3.0)
    s = _ok(res, s)
    assert [p.rsplit("/", 1)[1] for p in res.pinholes_close] == ["10.1.6.18:2006"]
    assert set(_media(s, key)) == {("10.1.3.143", 5000), ("10.1.3.143", 5001), ("10.1.6.18", 2007)}

    res = step(s, _h245(b, a), _tpkt_h245(_clc(61)), 4.0)
    s = _ok(res, s)
    assert len(res.pinholes_close) == 3 and not _media(s, key)
    assert not s.calls[key].media


def test_same_number_from_both_sides_is_two_channels():
    """Each side numbers its own channels (H.245 8.4): 10.1.6.18 opening
    its channel "101" too does not let 10.1.3.143's CLC 101 close it."""
    s, key = _connected_call()
    a, b = ("10.1.3.143", 32804), ("10.1.6.18", 1232)
    per.H245_MESSAGE.from_aper(OLC_618[4:])
    v = per.H245_MESSAGE.get_val()
    v[1][1]["forwardLogicalChannelNumber"] = 101
    per.H245_MESSAGE.set_val(v)
    olc_618_101 = _tpkt_h245(per.H245_MESSAGE.to_aper())
    s = _ok(step(s, _h245(a, b), OLC_143, 2.0), s)
    s = _ok(step(s, _h245(b, a), olc_618_101, 2.0), s)
    res = step(s, _h245(a, b), _tpkt_h245(_clc(101)), 3.0)
    s = _ok(res, s)
    assert set(_media(s, key)) == {("10.1.6.18", 2007)}


def _tpkt_h245(pdu: bytes) -> bytes:
    return b"\x03\x00" + (len(pdu) + 4).to_bytes(2, "big") + pdu


def test_tunnelled_h245_opens_and_closes_media_like_a_connection():
    """OLC tunnelled in the Setup, its OLCAck in the Connect, the CLC in a
    Facility with an empty body: the same pinholes as over the H.245
    connection (they opened none before; only fastStart did)."""
    a_ctx = H323Context("q931", "none", A, B)
    b_ctx = H323Context("q931", "none", B, A)
    setup = _with_h245_control(SETUP, [OLC_143[4:], TCS[4:]])
    res = step(EMPTY, a_ctx, setup, 1.0)
    s = _ok(res, EMPTY)
    (key,) = s.calls
    assert {p.dst for p in res.pinholes_open} == {("10.1.3.143", 5001)}
    connect = _with_h245_control(CONNECT, [ACK_101_BY_618[4:]])
    res = step(s, b_ctx, connect, 2.0)
    s = _ok(res, s)
    assert {p.dst for p in res.pinholes_open if p.kind != "h245"} == {("10.1.6.18", 2006), ("10.1.6.18", 2007)}
    groups = {g for p in _media(s, key).values() for g in p.groups}
    assert groups == {f"{key}/lc101@10.1.3.143:32803"}

    facility = _with_h245_control(CONNECT, [_clc(101)], message_type=0x62, empty_body=True)
    res = step(s, a_ctx, facility, 3.0)
    s = _ok(res, s)
    assert len(res.pinholes_close) == 3 and not _media(s, key)
    assert key in s.calls


def test_tunnelled_addresses_are_translated():
    """NAT of a tunnelled OLC's RTCP address, as for a separate H.245
    connection: the opener's private address becomes its public one."""
    out = H323Context("q931", "outbound", A, B, nat_src=("1.1.1.5", 32803))
    setup = _with_h245_control(SETUP, [OLC_143[4:]])
    res = step(EMPTY, out, setup, 1.0)
    _ok(res, EMPTY)
    (hole,) = [p for p in res.pinholes_open if p.kind == "rtcp"]
    assert hole.dst == ("1.1.1.5", 5001) and hole.to == ("10.1.3.143", 5001)


def _dcf(seq: int) -> bytes:
    per.RAS_MESSAGE.set_val(("disengageConfirm", {"requestSeqNum": seq}))
    return per.RAS_MESSAGE.to_aper()


def test_disengage_confirm_ends_the_call():
    """Corpus ARQ/ACF admit the call; the gatekeeper's DRQ (frame 69) for
    it, confirmed by the endpoint's DCF (H.225.0 7.10), ends it and closes
    its pinholes, as ReleaseComplete does. Before, the call stayed."""
    ep, gk = ("17.2.0.124", 2034), ("17.2.0.161", 1719)
    s = _ok(step(EMPTY, H323Context("ras", "none", ep, gk), ARQ, 1.0), EMPTY)
    res = step(s, H323Context("ras", "none", gk, ep), ACF, 1.1)
    s = _ok(res, s)
    (key,) = s.calls
    (hole,) = res.pinholes_open
    s = _ok(step(s, H323Context("ras", "none", gk, ep), DRQ, 5.0), s)
    res = step(s, H323Context("ras", "none", ep, gk), _dcf(4181), 5.1)
    s = _ok(res, s)
    assert key not in s.calls and res.pinholes_close == (hole.id,)
    assert not s.ras and not s.ras_by_source and not s.setups_by_source


def test_disengage_reject_or_unrelated_confirm_ends_nothing():
    ep, gk = ("17.2.0.124", 2034), ("17.2.0.161", 1719)
    s = _ok(step(EMPTY, H323Context("ras", "none", ep, gk), ARQ, 1.0), EMPTY)
    s = _ok(step(s, H323Context("ras", "none", gk, ep), ACF, 1.1), s)
    s = _ok(step(s, H323Context("ras", "none", gk, ep), DRQ, 5.0), s)
    res = step(s, H323Context("ras", "none", ep, gk), _dcf(4180), 5.1)     # answers no DRQ
    assert len(_ok(res, s).calls) == 1


def test_release_complete_after_disengage_confirm_is_forwarded():
    """The caller disengages first (DRQ/DCF through the gateway, H.225.0
    7.10), then sends its ReleaseComplete on the call signalling connection:
    the DCF ended the call, and the ReleaseComplete must still reach the
    callee (it was dropped as "of no known call"; the callee waited for it).
    Messages as the lab's H.323 peer builds them."""
    from ops.lab import h323msg as m

    guid = bytes(range(1, 17))
    ep, gk, callee = ("10.1.1.5", 40000), ("2.2.2.25", 1719), ("2.2.2.5", 1720)
    sig_out = H323Context("q931", "none", ("10.1.1.5", 32803), callee)
    sig_in = H323Context("q931", "none", callee, ("10.1.1.5", 32803))
    ras_out, ras_in = H323Context("ras", "none", ep, gk), H323Context("ras", "none", gk, ep)
    s = _ok(step(EMPTY, ras_out, m.arq(2, "EP0001", "phone1", "phone2", 7, guid, False), 1.0), EMPTY)
    s = _ok(step(s, ras_in, m.acf(2, callee), 1.1), s)
    setup = m.q931(m.SETUP, 7, False, m.uuie(m.setup_body("phone1", "phone2", guid, ("10.1.1.5", 32803),
                                                           callee, None)))
    s = _ok(step(s, sig_out, setup, 1.2), s)
    s = _ok(step(s, sig_in, m.q931(m.CONNECT, 7, True, m.uuie(m.connect_body(guid, None, None))), 1.3), s)
    assert s.calls[guid.hex()].phase == "connected"
    s = _ok(step(s, ras_out, m.drq(3, "EP0001", 7, guid, False), 2.0), s)
    s = _ok(step(s, ras_in, m.dcf(3), 2.1), s)
    assert guid.hex() not in s.calls
    release = m.q931(m.RELEASE_COMPLETE, 7, False, m.uuie(m.release_body(guid)))
    res = step(s, sig_out, release, 2.2)
    assert res.verdict == "forward", res.reason
    assert res.data == release and not res.pinholes_open
    s = _ok(res, s)
    assert not s.call_refs and not s.calls          # the call reference kept for it is gone
    assert step(s, sig_out, release, 2.3).verdict == "drop"     # a second one names no call
