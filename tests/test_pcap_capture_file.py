"""pcap mode's reader (actors/capture_file.py, actors/link_layer.py): files
that are not captures are a clear error and exit 1, empty records are
skipped and counted, and IPv4 is found under every supported link layer."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from actors.capture_file import MAX_RECORD, CaptureError, CaptureReader
from actors.link_layer import ipv4
from gateway.packet import build_udp
from ops.gatewayd import main as gatewayd

ROOT = Path(__file__).resolve().parents[1]
NAT_CFG = ROOT / "tests" / "data" / "pcap-ua-behind-nat.cfg"
CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
# Permitted by NAT_CFG (phone -> any, nat src): forwarded.
PACKET = build_udp("192.168.1.2", "212.242.33.35", 4000, 9, b"hello")


def pcap(records, linktype: int = 1, *, order: str = "<", nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, rec in enumerate(records):
        out += struct.pack(order + "IIII", 100 + i, 5, len(rec), len(rec)) + rec
    return out


def pcapng(records, linktype: int = 1, *, tsresol: int | None = None) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
    out += block(1, struct.pack("<HHI", linktype, 0, 0) + opts)
    for i, rec in enumerate(records):
        ts = (100 + i) * 1_000_000
        out += block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(rec), len(rec)) + rec)
    return out


def run(tmp_path: Path, data: bytes, capsys) -> tuple[int, str, str]:
    cap = tmp_path / "in.cap"
    cap.write_bytes(data)
    rc = gatewayd(["--pcap-in", str(cap), "--pcap-out", str(tmp_path / "out.pcap"),
                   "--config", str(NAT_CFG), "--json", "--log-level", "ERROR"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# -- files that are not captures ---------------------------------------------------

@pytest.mark.parametrize("data, found", [
    (b"", "the file is empty"),
    (b"GMBU\x00\x02" + b"\x00" * 40, "Network Monitor 2.x"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 30, "gzip"),
    (b"hello, world, this is text\n", "first bytes: 68 65 6c 6c 6f 2c 20 77"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated at byte 4: the pcap file header needs 20 bytes, 2 left"),
    (pcap([PACKET])[:-3], "truncated at byte 40: record 1 needs 33 bytes, 30 left"),
    (pcap([PACKET]) + b"\x01\x02", "a record header needs 16 bytes, 2 left"),
    (pcap([]) + struct.pack("<IIII", 0, 0, MAX_RECORD + 1, 0), "record 1 claims 262145 bytes"),
    (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x01\x02\x03\x04" + b"\x00" * 16, "byte-order magic 01020304"),
    (pcap([PACKET], linktype=105), "link type 105 is not supported"),
])
def test_not_a_capture_is_a_clear_error_and_exit_1(tmp_path, capsys, data, found):
    rc, out, err = run(tmp_path, data, capsys)
    assert rc == 1 and out == ""
    assert f"{tmp_path / 'in.cap'}: " in err and found in err, err
    assert "hint:" in err or "the file is empty" in err
    assert "Traceback" not in err


def test_empty_record_is_skipped_and_counted_not_made_into_a_packet(tmp_path, capsys):
    rc, out, _ = run(tmp_path, pcap([b"", FRAMES["ethernet"][1]]), capsys)
    assert rc == 0
    s = json.loads(out)
    assert (s["packets"], s["empty_records"], s["forwarded"], s["dropped"]) == (2, 1, 1, 1)
    assert s["drop_reasons"] == {"empty capture record (no bytes captured)": 1}
    assert s["duration_s"] == 0.0           # the empty record's time is not the capture's


# -- link layers ------------------------------------------------------------------------

ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
PPPOE = b"\x88\x64" + b"\x11\x00\x00\x2a" + struct.pack("!H", len(PACKET) + 2)
FRAMES = {
    "ethernet": (1, ETH + b"\x08\x00" + PACKET),
    "ethernet padded": (1, ETH + b"\x08\x00" + PACKET + b"\x00" * 4),
    "802.1Q": (1, ETH + b"\x81\x00\x00\x64\x08\x00" + PACKET),
    "QinQ 802.1ad": (1, ETH + b"\x88\xa8\x00\x0a\x81\x00\x00\x64\x08\x00" + PACKET),
    "QinQ 0x9100": (1, ETH + b"\x91\x00\x00\x0a\x81\x00\x00\x64\x08\x00" + PACKET),
    "PPPoE session": (1, ETH + PPPOE + b"\x00\x21" + PACKET),
    "PPPoE in a VLAN": (1, ETH + b"\x81\x00\x00\x07" + PPPOE + b"\x00\x21" + PACKET),
    "Linux SLL": (113, b"\x00\x00\x00\x01\x00\x06" + b"\x02\x00\x00\x00\x00\x01\x00\x00" + b"\x08\x00"
                  + PACKET),
    "Linux SLL2": (276, b"\x08\x00\x00\x00" + b"\x00\x00\x00\x03" + b"\x00\x01\x00\x06"
                   + b"\x02\x00\x00\x00\x00\x01\x00\x00" + PACKET),
    "null little-endian": (0, b"\x02\x00\x00\x00" + PACKET),
    "null big-endian": (0, b"\x00\x00\x00\x02" + PACKET),
    "OpenBSD loop": (108, b"\x00\x00\x00\x02" + PACKET),
    "raw": (101, PACKET),
    "raw (DLT 12)": (12, PACKET),
    "IPv4": (228, PACKET),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_ipv4_is_found_under_each_link_layer(name):
    linktype, frame = FRAMES[name]
    got = ipv4(linktype, frame)
    assert got is not None and got[:len(PACKET)] == PACKET


@pytest.mark.parametrize("linktype, frame", [
    (1, ETH + b"\x86\xdd" + b"\x60" + b"\x00" * 39),             # IPv6
    (1, ETH + b"\x08\x06" + b"\x00" * 28),                       # ARP
    (1, ETH + PPPOE + b"\x00\x57" + b"\x60" + b"\x00" * 39),     # PPPoE carrying IPv6
    (1, ETH + b"\x81\x00" * 20),                                 # tags without end
    (0, b"\x18\x00\x00\x00" + b"\x60" + b"\x00" * 39),           # AF_INET6 (BSD)
    (101, b"\x60" + b"\x00" * 39),
    (113, b"\x00" * 10),
])
def test_other_protocols_are_not_ipv4(linktype, frame):
    assert ipv4(linktype, frame) is None


@pytest.mark.parametrize("name", ["802.1Q", "PPPoE session", "Linux SLL", "Linux SLL2",
                                  "null big-endian", "raw"])
def test_link_layers_through_pcap_mode(tmp_path, capsys, name):
    linktype, frame = FRAMES[name]
    rc, out, _ = run(tmp_path, pcap([frame], linktype), capsys)
    assert rc == 0
    s = json.loads(out)
    assert (s["packets"], s["forwarded"], s["not_ipv4"]) == (1, 1, 0), s


def test_pcapng_big_endian_pcap_and_nanosecond_timestamps(tmp_path):
    _, frame = FRAMES["ethernet"]
    for data, times in [(pcapng([frame, frame]), [100.0, 101.0]),
                        (pcapng([frame], tsresol=9), [0.1]),
                        (pcap([frame], order=">"), [100.000005]),
                        (pcap([frame], nano=True), [100.000000005])]:
        path = tmp_path / "c"
        path.write_bytes(data)
        with CaptureReader(str(path)) as reader:
            records = list(reader)
        assert [r.data for r in records] == [frame] * len(times)
        assert [r.time for r in records] == pytest.approx(times, abs=1e-9)


def test_pcapng_through_pcap_mode(tmp_path, capsys):
    rc, out, _ = run(tmp_path, pcapng([FRAMES["QinQ 802.1ad"][1]]), capsys)
    assert rc == 0 and json.loads(out)["forwarded"] == 1


def test_corpus_captures_read_as_scapy_reads_them():
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap
    files = sorted(CORPUS.glob("*.pcap"))
    if not files:
        pytest.skip("corpus captures missing")
    for f in files:
        with CaptureReader(str(f)) as reader:
            mine = [ipv4(r.linktype, r.data) for r in reader]
        theirs = [bytes(p[IP]) if IP in p else None for p in rdpcap(str(f))]
        assert mine == theirs, f.name


def test_reader_errors_are_capture_errors(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"RTSS" + b"\x00" * 20)
    with pytest.raises(CaptureError, match="Network Monitor 1.x"):
        CaptureReader(str(path))
