"""Reading capture files: classic pcap and pcapng, as (timestamp, link type, bytes).

pcap mode used Scapy's reader, which ended in a traceback for a file that is
not a capture (NetMon, snoop, empty, gzip, a cut-short header) and turned an
empty record into a fabricated packet. This reader checks what it reads and
raises :class:`CaptureError` naming the file, what was found and what to do.

Formats: pcap (both byte orders, microsecond and nanosecond magic; the
tcpdump/libpcap file format, draft-ietf-opsawg-pcap) and pcapng (Section
Header, Interface Description with ``if_tsresol``, Enhanced, Simple and the
obsolete Packet blocks; other blocks are skipped; draft-ietf-opsawg-pcapng).
A record longer than :data:`MAX_RECORD` is taken as a damaged header, not
read (bounded memory whatever the file says).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterator, NamedTuple

# libpcap's MAXIMUM_SNAPLEN: no capture record is longer.
MAX_RECORD = 262_144
# A pcapng block other than a packet (name resolution, comments, keys) may be
# larger, but not without bound.
MAX_BLOCK = 16 * 1024 * 1024

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_OTHER_FORMATS = [
    (b"GMBU", "a Microsoft Network Monitor 2.x capture",
     "save it as pcap or pcapng first (e.g. in Wireshark: File > Save As, or editcap -F pcap IN OUT)"),
    (b"RTSS", "a Microsoft Network Monitor 1.x capture", "convert it with editcap -F pcap IN OUT"),
    (b"snoop\x00\x00\x00", "a Solaris snoop capture", "convert it with editcap -F pcap IN OUT"),
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it first (gunzip)"),
    (b"\xfd7zXZ", "an xz-compressed file", "decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "decompress it first (unzstd)"),
    (b"PK\x03\x04", "a zip archive", "extract the capture first"),
    (b"XCP\x00", "a NetXray/Sniffer capture", "convert it with editcap -F pcap IN OUT"),
]
_HINT = "pcap mode reads pcap and pcapng files (tcpdump -w, tshark -w, Wireshark)"


class CaptureError(ValueError):
    """The file is not a capture this reader can read, or is damaged."""


class Record(NamedTuple):
    time: float
    linktype: int
    data: bytes
    number: int                     # 1-based position among the file's records


def _describe(head: bytes) -> tuple[str, str]:
    for magic, what, hint in _OTHER_FORMATS:
        if head.startswith(magic):
            return what, hint
    shown = head[:8].hex(" ")
    return f"no pcap or pcapng magic number (first bytes: {shown})", _HINT


class CaptureReader:
    """Iterate a capture file's records; ``with CaptureReader(path) as r:``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f: BinaryIO = open(path, "rb")
        try:
            self._size = os.fstat(self._f.fileno()).st_size
            head = self._f.read(4)
            if not head:
                raise CaptureError(f"{path}: the file is empty ({_HINT})")
            if head in _PCAP_MAGICS:
                self.format = "pcap"
                self._order, self._unit = _PCAP_MAGICS[head]
                rest = self._read(20, "the pcap file header")
                # The upper bits of the link type field hold the FCS length.
                self.linktype = struct.unpack(self._order + "HHiIII", rest)[5] & 0x0FFFFFFF
            elif head == _PCAPNG_SHB:
                self.format = "pcapng"
                self._f.seek(0)                 # the block is read whole by _pcapng
            else:
                what, hint = _describe(head + self._f.read(8))
                raise CaptureError(f"{path}: not a pcap or pcapng file: {what} (hint: {hint})")
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __iter__(self) -> Iterator[Record]:
        if self.format == "pcap":
            return self._pcap()
        return self._pcapng()

    # -- helpers -----------------------------------------------------------------

    def _read(self, n: int, what: str) -> bytes:
        offset = self._f.tell()
        # Not more than the file holds: read(n) allocates n bytes first, and
        # a damaged length must not cost its claimed size in memory.
        data = self._f.read(min(n, max(self._size - offset, 0)))
        if len(data) != n:
            raise CaptureError(
                f"{self.path}: truncated at byte {offset}: {what} needs {n} bytes, "
                f"{len(data)} left (hint: the capture was cut short; "
                f"editcap IN OUT rewrites the whole records)")
        return data

    def _damaged(self, offset: int, what: str) -> CaptureError:
        return CaptureError(f"{self.path}: damaged at byte {offset}: {what} "
                            f"(hint: the file is corrupt or not a capture)")

    # -- classic pcap --------------------------------------------------------------

    def _pcap(self) -> Iterator[Record]:
        order, unit, linktype = self._order, self._unit, self.linktype
        head = struct.Struct(order + "IIII")
        number = 0
        while True:
            offset = self._f.tell()
            raw = self._f.read(16)
            if not raw:
                return
            if len(raw) < 16:
                raise CaptureError(
                    f"{self.path}: truncated at byte {offset}: a record header needs 16 bytes, "
                    f"{len(raw)} left (hint: the capture was cut short)")
            sec, frac, incl, _orig = head.unpack(raw)
            number += 1
            if incl > MAX_RECORD:
                raise self._damaged(offset, f"record {number} claims {incl} bytes (at most {MAX_RECORD})")
            data = self._read(incl, f"record {number}")
            yield Record(sec + frac * unit, linktype, data, number)

    # -- pcapng ----------------------------------------------------------------------

    def _pcapng(self) -> Iterator[Record]:
        order = "<"
        interfaces: list[tuple[int, float, int]] = []   # (linktype, seconds per unit, snaplen)
        number = 0
        first = True
        while True:
            offset = self._f.tell()
            start = self._f.read(8)
            if not start:
                return
            if len(start) < 8:
                raise CaptureError(f"{self.path}: truncated at byte {offset}: a block header needs "
                                   f"8 bytes, {len(start)} left (hint: the capture was cut short)")
            if start[:4] == _PCAPNG_SHB:
                bom = self._read(4, "the section header's byte-order magic")
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise self._damaged(offset + 8, f"byte-order magic {bom.hex()} is not 1a2b3c4d")
                interfaces = []
                length = struct.unpack(order + "I", start[4:])[0]
                body_len = length - 16
            elif first:
                raise self._damaged(offset, "a pcapng file starts with a section header block")
            else:
                length = struct.unpack(order + "I", start[4:])[0]
                body_len = length - 12
            first = False
            btype = struct.unpack(order + "I", start[:4])[0]
            if length % 4 or body_len < 0 or length > MAX_BLOCK:
                raise self._damaged(offset, f"block of type {btype:#x} with length {length}")
            body = self._read(body_len, f"a block of type {btype:#x}")
            trailer = self._read(4, "a block's trailing length")
            if struct.unpack(order + "I", trailer)[0] != length:
                raise self._damaged(offset, f"block of type {btype:#x}: its two lengths differ")
            if start[:4] == _PCAPNG_SHB:
                continue
            if btype == 1:                                  # Interface Description Block
                if len(body) < 8:
                    raise self._damaged(offset, "interface description block too short")
                linktype, _res, snaplen = struct.unpack(order + "HHI", body[:8])
                interfaces.append((linktype, _tsresol(body[8:], order), snaplen))
                continue
            if btype in (6, 2):                             # Enhanced / obsolete Packet Block
                if len(body) < 20:
                    raise self._damaged(offset, "packet block too short")
                if btype == 6:
                    iface, hi, lo, incl, _orig = struct.unpack(order + "IIIII", body[:20])
                else:
                    iface, _drops, hi, lo, incl, _orig = struct.unpack(order + "HHIIII", body[:20])
                if incl > len(body) - 20 or incl > MAX_RECORD:
                    raise self._damaged(offset, f"packet of {incl} bytes in a block of {length}")
                if iface >= len(interfaces):
                    raise self._damaged(offset, f"packet of interface {iface}, which the "
                                                f"section does not describe")
                linktype, unit, _snap = interfaces[iface]
                number += 1
                yield Record(((hi << 32) | lo) * unit, linktype, body[20:20 + incl], number)
                continue
            if btype == 3:                                  # Simple Packet Block
                if len(body) < 4 or not interfaces:
                    raise self._damaged(offset, "simple packet block without an interface")
                orig = struct.unpack(order + "I", body[:4])[0]
                linktype, _unit, snap = interfaces[0]
                incl = min(orig, len(body) - 4, snap or MAX_RECORD)
                number += 1
                yield Record(0.0, linktype, body[4:4 + incl], number)
            # Any other block (statistics, name resolution, custom) carries no packet.


def _tsresol(options: bytes, order: str) -> float:
    """Seconds per timestamp unit from an IDB's options (if_tsresol, code 9)."""
    i = 0
    while i + 4 <= len(options):
        code, length = struct.unpack(order + "HH", options[i:i + 4])
        if code == 0:
            break
        if code == 9 and length >= 1 and i + 5 <= len(options):
            v = options[i + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -min(v, 30)
        i += 4 + length + (-length % 4)
    return 1e-6
