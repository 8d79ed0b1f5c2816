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

from fuzz_target_base import ROOT, TESTS, Mutator, Target, _scratch
from fuzz_targets_journal import _journal_record, _journal_segment, _replication
from fuzz_targets_signalling import _h225, _h245, _h323_step, _mgcp_step, _q931, _ras, _tpkt


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
