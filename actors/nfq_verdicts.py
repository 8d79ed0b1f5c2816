"""NFQUEUE verdicts sent in batches, without the GIL.

netfilterqueue's ``Packet.accept()`` / ``drop()`` send one netlink message per
packet and hold the GIL during the system call. That call is where the kernel
reinjects the packet and forwards it (routing, the veth transmit, often the
receiving side's protocol processing too), so under load it held the GIL in
16% of the active node's samples (py-spy --gil, 200 calls/s with RTP): every
other thread of the node (dialog actors, journal writer, replication) waited.

Here the worker writes the verdicts itself, on a duplicate of the queue's
netlink socket (same socket, so the kernel sees the port id that bound the
queue): many NFQNL_MSG_VERDICT messages concatenated into one datagram (the
kernel's netlink receive handles every message of a datagram in turn), sent
with ``socket.send``, which releases the GIL.

Message layout (linux/netfilter/nfnetlink_queue.h, libnetfilter_queue's
``nfq_set_verdict``): nlmsghdr (host order), nfgenmsg (family AF_UNSPEC,
version 0, queue number big-endian), attribute NFQA_VERDICT_HDR (verdict and
packet id, big-endian), NFQA_MARK (big-endian u32) when the packet gets a
firewall mark (its traffic-shaping class and DSCP, gateway/shaping.py; the
kernel sets skb->mark from it, as ``nfq_set_verdict2`` and netfilterqueue's
``set_mark`` do), and NFQA_PAYLOAD when the packet was rewritten.
"""

from __future__ import annotations

import logging
import os
import socket
import struct

log = logging.getLogger("voip_alg.ingest")

NF_DROP = 0
NF_ACCEPT = 1

_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_VERDICT = 1          # enum nfqnl_msg_types: PACKET 0, VERDICT 1, CONFIG 2
_NLM_F_REQUEST = 1
_NFQA_VERDICT_HDR = 2
_NFQA_MARK = 3
_NFQA_PAYLOAD = 10
_NETLINK_NETFILTER = 12

_MSG_TYPE = (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_VERDICT
_NLMSGHDR = struct.Struct("=IHHII")        # len, type, flags, seq, pid
_HEAD = struct.Struct("=IHHIIBBH")          # nlmsghdr + nfgenmsg (res_id already big-endian)
# nlattr (host order) then nfqnl_msg_verdict_hdr (big-endian): packed by hand
_ATTR = struct.Struct("=HH")
_VERDICT = struct.Struct(">II")

# One struct per message shape, for the per-packet verdicts of BatchedVerdicts:
# the whole header in one pack. Host-order fields (nlmsghdr, nlattr headers)
# go as they are; the big-endian ones (queue number, verdict, packet id) are
# passed already swapped (socket.htons/htonl), and seq, port id, family and
# version are zero (pad bytes).
_MSG_PLAIN = struct.Struct("=IHH10xHHHII")          # 32 bytes: verdict only
_MSG_PAYLOAD = struct.Struct("=IHH10xHHHIIHH")      # 36 bytes: + NFQA_PAYLOAD header
_MSG_MARK = struct.Struct("=IHH10xHHHIIHHI")        # 40 bytes: verdict and NFQA_MARK
_MSG_MARK_PAYLOAD = struct.Struct("=IHH10xHHHIIHHIHH")  # 44 bytes: + NFQA_PAYLOAD header
_MARK_ATTR_LEN = 8
_VERDICT_ATTR_LEN = _ATTR.size + _VERDICT.size
_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")          # by payload attribute length % 4
_ACCEPT_BE = socket.htonl(NF_ACCEPT)
_DROP_BE = socket.htonl(NF_DROP)
_htonl = socket.htonl

# A datagram stays well under the socket's send buffer (netlink refuses a
# message longer than sk_sndbuf - 32; the default buffer is 208 KiB).
FLUSH_BYTES = 64 * 1024


def _align4(n: int) -> int:
    return (n + 3) & ~3


def encode_verdict(queue_num: int, packet_id: int, verdict: int, payload: bytes | None = None,
                   seq: int = 0, mark: int = 0) -> bytes:
    """One NFQNL_MSG_VERDICT message (padded to 4 bytes)."""
    res_id = socket.htons(queue_num)
    attrs = _ATTR.pack(_ATTR.size + _VERDICT.size, _NFQA_VERDICT_HDR) + _VERDICT.pack(verdict, packet_id)
    if mark:
        attrs += _ATTR.pack(_MARK_ATTR_LEN, _NFQA_MARK) + struct.pack(">I", mark)
    if payload is not None:
        n = _ATTR.size + len(payload)
        attrs += _ATTR.pack(n, _NFQA_PAYLOAD) + payload + b"\0" * (_align4(n) - n)
    total = _HEAD.size + len(attrs)
    return _HEAD.pack(total, _MSG_TYPE, _NLM_F_REQUEST, seq, 0, socket.AF_UNSPEC, 0, res_id) + attrs


def decode_verdicts(data: bytes, *, marks: bool = False) -> list[tuple]:
    """(queue, packet id, verdict, payload or None) of every message in a
    datagram ``encode_verdict`` made (for tests); with ``marks``, the mark
    (0: none) is a fifth item."""
    out = []
    off = 0
    while off < len(data):
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if mtype != _MSG_TYPE or length < _HEAD.size:
            raise ValueError(f"not a verdict message at {off}")
        res_id = struct.unpack_from("=H", data, off + 18)[0]
        queue = socket.ntohs(res_id)
        pos, end = off + _HEAD.size, off + length
        pid = verdict = None
        payload = None
        mark = 0
        while pos < end:
            alen, atype = _ATTR.unpack_from(data, pos)
            body = data[pos + _ATTR.size:pos + alen]
            if atype == _NFQA_VERDICT_HDR:
                verdict, pid = _VERDICT.unpack(body)
            elif atype == _NFQA_PAYLOAD:
                payload = bytes(body)
            elif atype == _NFQA_MARK:
                mark = struct.unpack(">I", body)[0]
            pos += _align4(alen)
        out.append((queue, pid, verdict, payload, mark) if marks else
                   (queue, pid, verdict, payload))
        off += _align4(length)
    return out


class PacketVerdicts:
    """Verdicts through netfilterqueue's own Packet methods (one system call
    each, GIL held): used where no queue socket is bound (tests with fake
    packets)."""

    def accept(self, pkt, payload: bytes | None = None, mark: int = 0) -> None:
        if payload is not None:
            pkt.set_payload(payload)
        if mark:
            pkt.set_mark(mark)
        pkt.accept()

    def drop(self, pkt) -> None:
        pkt.drop()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class BatchedVerdicts:
    """Verdicts collected by the worker thread and sent together by
    :meth:`flush` (after each drain of the queue socket), or when
    ``FLUSH_BYTES`` are pending. One thread only (the worker's)."""

    def __init__(self, fd: int, queue_num: int, *, sender=None) -> None:
        self.queue_num = queue_num
        self._res_id = socket.htons(queue_num)
        self._sock = None
        if sender is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER,
                                       fileno=os.dup(fd))
            sender = self._sock.send
        self._send = sender
        self._parts: list[bytes] = []
        self._pending = 0
        self.datagrams = 0
        self.verdicts = 0
        self.send_errors = 0

    def accept(self, pkt, payload: bytes | None = None, mark: int = 0) -> None:
        # The same bytes as encode_verdict, without its concatenations: the
        # header is one pack, the payload goes into the datagram as it is
        # (flush joins the parts once).
        if mark:
            self._accept_marked(pkt, payload, mark)
            return
        if payload is None:
            self._parts.append(_MSG_PLAIN.pack(_HEAD.size + _VERDICT_ATTR_LEN, _MSG_TYPE,
                                               _NLM_F_REQUEST, self._res_id, _VERDICT_ATTR_LEN,
                                               _NFQA_VERDICT_HDR, _ACCEPT_BE, _htonl(pkt.id)))
            n = _MSG_PLAIN.size
        else:
            alen = _ATTR.size + len(payload)
            pad = _PADS[alen & 3]
            n = _MSG_PAYLOAD.size + len(payload) + len(pad)
            parts = self._parts
            parts.append(_MSG_PAYLOAD.pack(n, _MSG_TYPE, _NLM_F_REQUEST, self._res_id,
                                           _VERDICT_ATTR_LEN, _NFQA_VERDICT_HDR, _ACCEPT_BE,
                                           _htonl(pkt.id), alen, _NFQA_PAYLOAD))
            parts.append(payload)
            if pad:
                parts.append(pad)
        self.verdicts += 1
        self._pending += n
        if self._pending >= FLUSH_BYTES:
            self.flush()

    def _accept_marked(self, pkt, payload: bytes | None, mark: int) -> None:
        head = _HEAD.size + _VERDICT_ATTR_LEN + _MARK_ATTR_LEN
        if payload is None:
            self._parts.append(_MSG_MARK.pack(head, _MSG_TYPE, _NLM_F_REQUEST, self._res_id,
                                              _VERDICT_ATTR_LEN, _NFQA_VERDICT_HDR, _ACCEPT_BE,
                                              _htonl(pkt.id), _MARK_ATTR_LEN, _NFQA_MARK,
                                              _htonl(mark)))
            n = _MSG_MARK.size
        else:
            alen = _ATTR.size + len(payload)
            pad = _PADS[alen & 3]
            n = _MSG_MARK_PAYLOAD.size + len(payload) + len(pad)
            parts = self._parts
            parts.append(_MSG_MARK_PAYLOAD.pack(n, _MSG_TYPE, _NLM_F_REQUEST, self._res_id,
                                                _VERDICT_ATTR_LEN, _NFQA_VERDICT_HDR, _ACCEPT_BE,
                                                _htonl(pkt.id), _MARK_ATTR_LEN, _NFQA_MARK,
                                                _htonl(mark), alen, _NFQA_PAYLOAD))
            parts.append(payload)
            if pad:
                parts.append(pad)
        self.verdicts += 1
        self._pending += n
        if self._pending >= FLUSH_BYTES:
            self.flush()

    def drop(self, pkt) -> None:
        self._parts.append(_MSG_PLAIN.pack(_HEAD.size + _VERDICT_ATTR_LEN, _MSG_TYPE,
                                           _NLM_F_REQUEST, self._res_id, _VERDICT_ATTR_LEN,
                                           _NFQA_VERDICT_HDR, _DROP_BE, _htonl(pkt.id)))
        self.verdicts += 1
        self._pending += _MSG_PLAIN.size
        if self._pending >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        data = b"".join(self._parts)
        self._parts.clear()
        self._pending = 0
        try:
            self._send(data)
            self.datagrams += 1
        except OSError as exc:
            # The packets stay queued in the kernel until the queue is unbound
            # (fail-closed); say so once per failure.
            self.send_errors += 1
            log.error("NFQUEUE %d: %d bytes of verdicts not sent: %s", self.queue_num, len(data), exc)

    def close(self) -> None:
        self.flush()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
