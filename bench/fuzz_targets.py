"""The inputs bench/fuzz_campaign.py fuzzes: one :class:`Target` per parser
or reader of something that comes from outside the gateway (a peer's
packet, an operator's file, a capture, a journal or a replication peer).

Each target has its seeds (valid inputs: the corpus capture's messages, the
manual's configuration examples, frames the journal writes), the tokens and
runs that fit its grammar for the shared mutation engine
(tests/fuzz_mutations.py), an optional ``finish`` applied to half of the
mutated inputs (a length or checksum made right again, so the mutation
reaches what the length guards), the function that reads one input, and
the error classes that are its contract: the input is read, or one of
these is raised -- nothing else (an ALG step raises nothing: it gives a
verdict).

Seeds are built lazily (``Target.load``): some need scapy to read the
corpus capture."""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fuzz_mutations import Mutator  # noqa: E402


@dataclass
class Target:
    name: str
    what: str
    # () -> (seeds, mutator, read, expected error classes)
    build: Callable[[], tuple[list[bytes], Mutator, Callable[[bytes], object], tuple[type, ...]]]
    seeds: list[bytes] = field(default_factory=list)
    mutator: Mutator | None = None
    read: Callable[[bytes], object] | None = None
    expected: tuple[type, ...] = ()

    def load(self) -> "Target":
        if self.read is None:
            self.seeds, self.mutator, self.read, self.expected = self.build()
        return self


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


# -- configuration (the manual's CLI) ------------------------------------------------

CFG_TOKENS = [b"set ", b"unset ", b"policy ", b"id ", b"from ", b"to ", b"zone ", b"interface ",
              b"ethernet1/1 ", b"trust ", b"untrust ", b"any ", b"permit ", b"deny ", b"nat ", b"src ",
              b"dip-id ", b"dip ", b"mip ", b"vip ", b"host ", b"netmask ", b"address ", b"service ",
              b"\"", b"\xe2\x80\x9c", b"#", b"\\", b"\n", b"\r\n", b"\r", b"\x0c", b"\x0b", b"\xc2\x85",
              b"\xe2\x80\xa8", b"\x00", b"\t", b" ", b"9" * 5000, b"0" * 60, b"\xc2\xb2", b"-1",
              b"255.255.255.255", b"0.0.0.0/0", b"1.2.3.4/33", b"65536", b"exit", b"alg ", b"sip ",
              b"mgcp ", b"h323 ", b"enable", b"disable", b"timeout ", b"\xff"]
CFG_RUNS = [b" ", b"\t", b"\n", b"#", b"9", b"\"", b"set ", b"x", b"\r", b"set zone \"z\"\n"]
# Inputs up to 16 KiB (some 1,000 lines; the manual's examples are 1 KB):
# the 50 ms bound is for one input, and reading a configuration costs by
# the line (26 us a line that has an error). That the cost stays linear
# for larger files is tests/test_config_scaling.py's.
CONFIG_MAX = 16 * 1024


def _config():
    from gateway.config import ConfigError, parse_text
    files = sorted((ROOT / "examples").glob("*.cfg")) + sorted((TESTS / "data").rglob("*.cfg"))
    seeds = [p.read_bytes() for p in files]

    def read(data: bytes):
        # As load_file reads a file: UTF-8, undecodable octets replaced,
        # line ends as written.
        return parse_text(data.decode("utf-8", errors="replace"), "fuzz.cfg")

    return seeds, Mutator(CFG_TOKENS, CFG_RUNS, max_len=CONFIG_MAX, max_run=CONFIG_MAX, pool=seeds), read, (ConfigError,)


# -- packets (IPv4, UDP, TCP) --------------------------------------------------------

PKT_TOKENS = [b"\x45", b"\x46", b"\x4f", b"\x40\x00", b"\x20\x00", b"\x1f\xff", b"\x00\x00", b"\xff\xff",
              b"\x06", b"\x11", b"\x01", b"\x00", b"\xff", b"\x02\x04\x05\xb4", b"\x05\x0a", b"\x05\x02",
              b"\x01\x01", b"\x08\x0a", b"\x07\x27", b"\x44", b"\x83\x03\x04", b"\x13\xc4", b"\x06\xb8"]
PKT_RUNS = [b"\x00", b"\x01", b"\xff", b"\x05\x0a\x00\x00\x00\x01\x00\x00\x00\x02"]


def _fix_ip_length(data: bytes) -> bytes:
    """IPv4 total length (and UDP length) made to match the octets."""
    if len(data) < 20:
        return data
    b = bytearray(data)
    n = min(len(b), 0xFFFF)
    b[2:4] = n.to_bytes(2, "big")
    ihl = (b[0] & 15) * 4
    if b[9] == 17 and len(b) >= ihl + 8 >= 28:
        b[ihl + 4:ihl + 6] = min(n - ihl, 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def _packet():
    from gateway.errors import RemoteProtocolError
    from gateway.packet import build_tcp, build_udp, parse, rewrite, sack_option
    from test_input_fuzz import _packet as parse_and_inspect

    seeds = [
        build_udp("10.1.1.3", "1.1.1.4", 5060, 5060, b"INVITE sip:b@1.1.1.4 SIP/2.0\r\n\r\n"),
        build_udp("10.1.1.3", "1.1.1.4", 4000, 4002, b"\x80" * 172),
        build_udp("10.1.1.3", "1.1.1.4", 2427, 2727, b"RQNT 1 a@b MGCP 1.0\r\n"),
        build_tcp("10.1.1.3", "1.1.1.4", 40000, 5060, seq=1, ack=2, payload=b"REGISTER sip:x SIP/2.0\r\n\r\n",
                  options=sack_option([(5, 9)])),
        build_tcp("10.1.1.3", "1.1.1.4", 40000, 1720, seq=1, payload=b"\x03\x00\x00\x08abcd"),
        build_tcp("10.1.1.3", "1.1.1.4", 40000, 1720, seq=1, options=b"\x02\x04\x05\xb4\x01\x03\x03\x07"),
    ]

    def read(data: bytes):
        # What the datapath asks of a parsed packet (the CI test's reading),
        # and what it makes of one: none of it may raise anything but
        # RemoteProtocolError.
        pkt = parse_and_inspect(data)
        if pkt.sport is not None:
            out = rewrite(pkt, src="192.0.2.1", sport=1024)
            parse(out)
            if not pkt.frag_offset and not pkt.more_fragments:
                parse(rewrite(pkt, dst="192.0.2.2", dport=1025, payload=pkt.payload_bytes + b"x"))
        return pkt

    return (seeds, Mutator(PKT_TOKENS, PKT_RUNS, max_len=0xFFFF, max_run=2048, finish=_fix_ip_length,
                           pool=seeds), read, (RemoteProtocolError,))


# -- capture files (pcap, pcapng) and link layers -----------------------------------

CAP_TOKENS = [b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x4d\x3c\x2b\x1a",
              b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00", b"\x06\x00\x00\x00",
              b"\x81\x00", b"\x88\xa8", b"\x88\x64", b"\x08\x00", b"\x86\xdd", b"\x00\x21", b"\x45",
              b"\x71\x00\x00\x00", b"\x14\x01\x00\x00", b"\x09\x00\x01\x06", b"\x00\x00\x01\x00", b"\xff"]
CAP_RUNS = [b"\x00", b"\xff", b"\x81\x00\x00\x01", b"\x06\x00\x00\x00\x20\x00\x00\x00"]


def _capture_seeds() -> list[bytes]:
    from test_input_fuzz import CAPTURES
    corpus = ROOT.parent / "shared" / "corpus" / "pcap"
    return list(CAPTURES) + [p.read_bytes()[:16384] for p in sorted(corpus.glob("*.pcap"))
                             if p.stat().st_size]


def _capture():
    from actors.capture_file import CaptureError
    from test_input_fuzz import _read_capture
    path = os.path.join(_scratch(), "capture.pcap")

    def read(data: bytes):
        # Written where the reader reads it (a tmpfs where there is one),
        # then every record's link layer down to IPv4, as pcap mode does.
        with open(path, "wb") as f:
            f.write(data)
        return _read_capture(path)

    seeds = _capture_seeds()
    return seeds, Mutator(CAP_TOKENS, CAP_RUNS, max_len=1 << 20, pool=seeds), read, (CaptureError,)


# -- journal: frames, segments, replication messages --------------------------------

JRN_TOKENS = [b"\xa1", b"\xa2", b"\x00", b"\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
              b"\x01\x00\x00\x00", b"\xc0", b"\xc1", b"\xc2", b"\xc3", b"\x90", b"\x98", b"\x80", b"\xde\xff\xff",
              b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xcf" + b"\xff" * 8, b"\xd3" + b"\x80" + b"\x00" * 7,
              b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xa0", b"\xc4\xff", b"\xd9\xff", b"\xc7\x05\x01"]
JRN_RUNS = [b"\x00", b"\x90", b"\x91", b"\xc0", b"\xa1", b"\x81\xa1x\xc0"]


def _journal_frames() -> list[bytes]:
    from journal.record import Record, encode_record
    from test_replication_harness import call_events
    from gateway.events import in_steps
    evs = call_events(7, activity=3) + call_events(8, activity=1) + in_steps(call_events(9, activity=2))
    return [encode_record(Record.of(ev, seq=i + 1, epoch=1, timestamp=1000.0 + i, version=i + 1))
            for i, ev in enumerate(evs)]


def _fix_crcs(data: bytes) -> bytes:
    """Each frame's length and CRC made right again where a frame header
    can be read, so that the body decoder is what stands."""
    from journal.record import HEADER_SIZE, MAX_BODY
    b = bytearray(data)
    pos = 0
    while len(b) - pos >= HEADER_SIZE:
        length = int.from_bytes(b[pos + 1:pos + 5], "big")
        if length > min(MAX_BODY, len(b) - pos - HEADER_SIZE):
            length = len(b) - pos - HEADER_SIZE
            b[pos + 1:pos + 5] = length.to_bytes(4, "big")
        body = bytes(b[pos + HEADER_SIZE:pos + HEADER_SIZE + length])
        crc = zlib.crc32(body, zlib.crc32(bytes(b[pos + 1:pos + 5])))
        b[pos + 5:pos + 9] = struct.pack(">I", crc)
        pos += HEADER_SIZE + length
    return bytes(b)


def _read_events(records) -> list:
    from gateway.events import UnknownEvent
    out = []
    for rec in records:
        out.append(rec.entries())           # the raw view never raises either
        try:
            out.append(rec.events())
        except UnknownEvent as exc:
            out.append(exc)
    return out


def _journal_record():
    from journal.record import FrameError, decode_record
    frames = _journal_frames()

    def read(data: bytes):
        rec, end = decode_record(data)
        assert 0 < end <= len(data)
        return _read_events([rec])

    return frames, Mutator(JRN_TOKENS, JRN_RUNS, max_len=1 << 16, finish=_fix_crcs, pool=frames), read, (FrameError,)


def _journal_segment():
    from journal.segment import JournalCorrupt, iter_records, scan_segment, segment_name
    directory = Path(_scratch()) / "journal"
    directory.mkdir(exist_ok=True)
    path = directory / segment_name(1)
    frames = _journal_frames()
    seeds = [b"".join(frames), b"".join(frames[:3]), b"".join(frames[2:])]

    def read(data: bytes):
        path.write_bytes(data)
        # Both readings: the store's scan at start (the newest segment, whose
        # tail may be torn, and a sealed one) and the replay reader.
        try:
            scan_segment(path, 1, is_last=False)
        except JournalCorrupt:
            pass
        scan = scan_segment(path, 1, is_last=True)
        assert scan.valid_end <= scan.file_size == len(data)
        return _read_events(iter_records(directory))

    return seeds, Mutator(JRN_TOKENS, JRN_RUNS, max_len=1 << 18, finish=_fix_crcs, pool=frames), read, \
        (JournalCorrupt,)


def _replication():
    import msgpack
    from journal.record import FrameError, decode_record
    from journal.replication import Ack, Batch, Handover, Heartbeat, Hello, ProtocolViolation, Refused, Taken, \
        decode, encode
    frames = _journal_frames()
    messages = [Hello("a", 5, 1, 0x1234, 2), Batch(1, frames[:3], 3, 1), Batch(4, frames[3:], 9, 2), Ack(3, 1),
                Heartbeat("b", "active", 2, 9, 100, 9, 1000.5), Handover(2, 9), Taken(3), Refused("diverged", 4),
                Refused("not active")]
    # One input: the type frame, a NUL, the msgpack body (what ZeroMQ's two
    # frames carry); without a NUL, one frame.
    seeds = [kind + b"\x00" + body for kind, body in map(encode, messages)]
    tokens = JRN_TOKENS + [b"HELLO", b"BATCH", b"ACK", b"HB", b"HANDOVER", b"TAKEN", b"REFUSED", b"\x00",
                           msgpack.packb("frames"), msgpack.packb("first"), msgpack.packb("role")]

    def read(data: bytes):
        kind, sep, body = data.partition(b"\x00")
        msg = decode([kind, body] if sep else [kind])
        if isinstance(msg, Batch):
            # The standby appends the batch's frames to its journal: each is read.
            for frame in msg.frames:
                try:
                    decode_record(frame)
                except FrameError:
                    pass
        return msg

    return seeds, Mutator(tokens, JRN_RUNS, max_len=1 << 18, pool=seeds), read, (ProtocolViolation,)


_SCRATCH: list[str] = []


def _scratch() -> str:
    """A directory for the files a reader needs (in memory where there is
    a tmpfs), removed at exit."""
    if not _SCRATCH:
        import atexit
        import shutil
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        d = tempfile.mkdtemp(prefix="fuzz-", dir=base)
        atexit.register(shutil.rmtree, d, True)
        _SCRATCH.append(d)
    return _SCRATCH[0]


TARGETS = {t.name: t for t in (
    Target("ras", "H.225.0 RAS datagrams (gateway.h323.ras.parse_ras)", _ras),
    Target("q931", "Q.931 call signalling with the H.225.0 UUIE (gateway.h323.q931.parse_call_signal)", _q931),
    Target("h225", "H323-UserInformation PER decode and address location (gateway.h323.per)", _h225),
    Target("h245", "H.245 messages over TPKT (gateway.h323.h245.parse_h245)", _h245),
    Target("tpkt", "TPKT framing of a TCP stream (gateway.h323.tpkt.frame_tpkt)", _tpkt),
    Target("h323-step", "the H.323 ALG step on RAS, Q.931 and H.245 (gateway.h323.alg.step)", _h323_step),
    Target("mgcp-step", "the MGCP ALG step (gateway.mgcp.alg.step)", _mgcp_step),
    Target("config", "configuration files (gateway.config.parse_text)", _config),
    Target("packet", "IPv4/UDP/TCP packet codec (gateway.packet parse and rewrite)", _packet),
    Target("capture", "capture files and link layers (actors.capture_file, actors.link_layer)", _capture),
    Target("journal-record", "journal frames (journal.record.decode_record, events)", _journal_record),
    Target("journal-segment", "journal segment files (journal.segment scan_segment, iter_records)",
           _journal_segment),
    Target("replication", "replication messages (journal.replication.decode)", _replication),
)}
