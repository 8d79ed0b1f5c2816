"""The fuzz targets of the signalling protocols: H.323 (RAS, Q.931 with the
H.225.0 UUIE, H.245, TPKT framing, the ALG's step) and the MGCP ALG's step."""

from __future__ import annotations

from fuzz_target_base import Mutator


# -- H.323 (aligned PER, X.691; Q.931; TPKT, RFC 1006) ----------------------------------

# X.691 11.9 length determinants set high (0x80-0xbf: a two-octet count;
# 0xc1-0xc4: a fragment of 16K-64K items), extension bits, and
# the octets around them.
PER_TOKENS = [b"\xbf", b"\xc1", b"\xc2", b"\xc3", b"\xc4", b"\xff", b"\x7f", b"\x80", b"\x00",
              b"\x80\xff", b"\xbf\xff", b"\xc4\xff", b"\xff\xff", b"\x00\x00", b"\x01", b"\x40",
              b"\x03\x00", b"\x7e", b"\x05", b"\x08"]
PER_RUNS = [b"\x00", b"\xff", b"\x80", b"\xc4", b"\x01\x00", b"\x7f"]
DATAGRAM = 65507            # the largest UDP payload over IPv4
TPKT_MAX = 65535            # a TPKT length is 16 bits (RFC 1006 6)


def _h323_frames() -> dict[int, bytes]:
    from h323_bounds import frames
    return frames()


def _with_tpkt_length(m: bytes) -> bytes:
    from h323_bounds import with_tpkt_length
    return with_tpkt_length(m)


def _ras():
    from gateway.errors import RemoteProtocolError
    from gateway.h323.ras import parse_ras
    f = _h323_frames()
    seeds = [f[n] for n in range(59, 76) if n in f and n not in (65, 66)]
    return seeds, Mutator(PER_TOKENS, PER_RUNS, max_len=DATAGRAM, pool=seeds), parse_ras, (RemoteProtocolError,)


def _tpkt_messages() -> list[bytes]:
    return [m for m in _h323_frames().values() if m[:1] == b"\x03" and len(m) > 4]


def _q931():
    from gateway.errors import RemoteProtocolError
    from gateway.h323.q931 import parse_call_signal
    seeds = [m for m in _tpkt_messages() if len(m) > 4 and m[4] == 0x08]
    return (seeds, Mutator(PER_TOKENS, PER_RUNS, max_len=TPKT_MAX, finish=_with_tpkt_length, pool=seeds),
            parse_call_signal, (RemoteProtocolError,))


def _uuie_pdus() -> list[bytes]:
    """The H323-UserInformation PDUs of the corpus's Q.931 messages (the
    user-user IE's contents after its protocol discriminator)."""
    from gateway.h323.q931 import parse_call_signal
    out = []
    for m in _tpkt_messages():
        try:
            q = parse_call_signal(m)
        except Exception:       # noqa: BLE001 -- H.245 and partial messages are not seeds
            continue
        if q.uuie is None:
            continue
        i = m.find(b"\x7e", 4)
        while i >= 0:
            ln = (m[i + 1] << 8) | m[i + 2]
            if i + 3 + ln == len(m) or (i + 3 + ln <= len(m) and m[i + 3] == 0x05):
                out.append(m[i + 4:i + 3 + ln])
                break
            i = m.find(b"\x7e", i + 1)
    return out


def _h225():
    from gateway.errors import RemoteProtocolError
    from gateway.h323 import per

    def read(pdu: bytes):
        # What parse_call_signal does with the user-user IE's PDU, fastStart
        # and tunnelled H.245 (h245Control) included: decode, then locate
        # every transport address.
        value = per.decode(per.USER_INFORMATION, pdu, "H323-UserInformation")
        return per.locate(per.USER_INFORMATION, pdu, 0, value, "H323-UserInformation")

    seeds = _uuie_pdus()
    return seeds, Mutator(PER_TOKENS, PER_RUNS, max_len=TPKT_MAX, pool=seeds), read, (RemoteProtocolError,)


def _h245():
    from gateway.errors import RemoteProtocolError
    from gateway.h323.h245 import parse_h245
    seeds = []
    for m in _tpkt_messages():
        try:
            parse_h245(m)
            seeds.append(m)
        except RemoteProtocolError:
            pass
    return (seeds, Mutator(PER_TOKENS, PER_RUNS, max_len=TPKT_MAX, finish=_with_tpkt_length, pool=seeds),
            parse_h245, (RemoteProtocolError,))


def _tpkt():
    from gateway.errors import RemoteProtocolError
    from gateway.h323.tpkt import frame_tpkt
    msgs = _tpkt_messages()
    # Streams: a segment holds part of a message, one, or several.
    seeds = msgs + [b"".join(msgs[i:i + 3]) for i in range(0, len(msgs), 3)] + [m[:7] for m in msgs[:5]]

    def read(stream: bytes):
        # As the TCP stream reader feeds it: what is left goes back in
        # with the next segment (here: the rest again, then with a byte).
        messages, rest = frame_tpkt(stream)
        assert sum(map(len, messages)) + len(rest) == len(stream)
        frame_tpkt(rest + b"\x03")
        return messages

    return seeds, Mutator(PER_TOKENS, PER_RUNS, max_len=4 * TPKT_MAX, pool=seeds), read, (RemoteProtocolError,)


def _h323_step():
    """The H.323 ALG's step on mutated RAS, Q.931 and H.245 messages, each
    on its channel in turn, from a state with a call set up: never an
    exception, a verdict whose events fold to its state, a forwarded
    message of the same length (addresses are patched in place)."""
    from gateway.h323.alg import H323Context, step
    from gateway.h323.state import EMPTY, fold
    f = _h323_frames()
    a, b = ("10.1.3.143", 32803), ("10.1.6.18", 1720)
    state = step(step(EMPTY, H323Context("q931", "none", a, b), f[6], 1.0).state,
                 H323Context("q931", "none", b, a), f[18], 1.1).state
    ras = [f[n] for n in range(59, 76) if n in f and n not in (65, 66)]
    tcp = _tpkt_messages()
    contexts = [
        H323Context("ras", "outbound", ("17.2.0.124", 2034), ("17.2.0.161", 1719), nat_src=("1.1.1.12", 2034)),
        H323Context("q931", "none", b, a),
        H323Context("h245", "inbound", ("10.1.6.18", 1232), ("1.1.1.5", 32804), nat_dst=("10.1.3.143", 32804)),
    ]
    # An input: one octet naming the channel, then the message.
    seeds = [b"\x00" + m for m in ras] + [bytes((1 + i % 2,)) + m for i, m in enumerate(tcp)]

    def read(data: bytes):
        if not data:
            return None
        ctx = contexts[data[0] % 3]
        msg = data[1:]
        if ctx.channel != "ras" and len(msg) >= 4:
            msg = _with_tpkt_length(msg)
        r = step(state, ctx, msg, 2.0)
        assert r.verdict in ("forward", "drop"), r.verdict
        assert fold(r.events, state) == r.state
        if r.verdict == "forward":
            assert len(r.data) == len(msg)
        return r

    return seeds, Mutator(PER_TOKENS, PER_RUNS, max_len=TPKT_MAX, pool=seeds), read, ()


def _mgcp_step():
    """The MGCP ALG's step (tests/mgcp_fuzz.py's rule and warm state) on
    mutated commands and responses, in its five contexts in turn: never an
    exception, a verdict, a reason for every drop."""
    from mgcp_fuzz import CONTEXTS, SEEDS, TOKENS, step_rule, warm_state
    state = warm_state()
    seeds = [bytes((i % len(CONTEXTS),)) + s for i, s in enumerate(SEEDS)]

    def read(data: bytes):
        if not data:
            return None
        return step_rule(state, CONTEXTS[data[0] % len(CONTEXTS)], data[1:])

    return seeds, Mutator(TOKENS, [b" ", b"\t", b" \t", b"0", b"9", b"1", b"\r\n", b"X: 1\r\n"],
                          max_len=DATAGRAM, pool=seeds), read, ()
