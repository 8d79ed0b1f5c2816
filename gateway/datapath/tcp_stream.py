"""Framed signalling over TCP, packet by packet: TPKT (H.225.0 call
signalling on TCP 1720 and H.245 on the connection to an h245Address; RFC
1006 §6) and SIP (Content-Length framing, RFC 3261 §18.3). One base,
:class:`FramedStream`; :class:`TpktStream` and :class:`SipStream` give the
framing and differ in two choices, explained at the end.

The gateway stays packet-level on TCP (DESIGN.md, "A packet's way through",
step 1: a terminating proxy would not survive a failover), so it follows each
direction's byte stream by sequence number and frames it with
:func:`gateway.h323.tpkt.frame_tpkt`:

* a segment that completes one or more messages goes to the ALG with every
  complete message and its offset in the segment (negative when the message
  began in an earlier segment);
* a segment that only carries part of a message is forwarded unmodified (see
  below why it is not held) and its bytes are kept until the message is
  complete;
* H.323 rewrites keep the length (six octets for six octets), so no sequence
  or acknowledgement number ever changes;
* a retransmission (bytes below the next expected sequence number) leaves
  exactly as those bytes left the first time: patched from a small cache of
  what the ALG rewrote, dropped again if the ALG dropped them, dropped if the
  ALG has not answered for the original yet (the original is on its way);
* a segment beyond the next expected one (a gap: loss or reordering) is
  forwarded unmodified and counted; its bytes are kept, so once the gap is
  filled the messages they complete still reach the ALG (for its state: the
  bytes already left).

Why partial segments are forwarded, not held: a peer with Nagle's algorithm
(RFC 896; on by default) sends the rest of a message only once the part in
flight is acknowledged. Holding that part means the receiver never
acknowledges it, so the rest never comes until the sender's retransmission
timer fires: each split message would stall the call by an RTO or more. The
corpus capture has exactly this (a TPKT header sent alone, the body in the
next segment, which the Linux helper nf_conntrack_h323 also special-cases).
The price: an address inside bytes that already left cannot be rewritten; the
ALG's step says so in its log (``gateway.h323.segment``) and the case is
counted here (``split_messages``). Addresses sit in the message body, so the
common split (header alone, body after) loses nothing.

SIP differs (:class:`SipStream`):

* a SIP rewrite changes lengths (a private address and port for a public
  one, and the Content-Length with them), so the stream keeps per direction
  the sequence adjustment of :mod:`gateway.datapath.seqadj`, and segments of
  a direction that has a segment at the ALG queue behind it (an ``alg``
  outcome with no messages): each leaves in order, with the adjustment of
  every rewrite before it; so do segments without data (acknowledgements,
  FIN, RST), whose sequence number lies after the queued data. A retransmission of a segment whose length the
  ALG changed leaves as its first copy did, at the same adjusted number; one
  re-segmented across such a rewrite is dropped (counted ``resegmented``).
* a partial message is never forwarded before the ALG has seen it whole
  (forwarding the first part would fix its Content-Length and addresses
  before the ALG saw the rest, and a rewrite of the rest would then corrupt
  the stream). While the message (as far as known: its Content-Length once
  the headers are in) is at most :data:`SIP_HOLD_LIMIT` octets, the part is
  held back: the segment is dropped and its octets kept, and the segment
  that completes the message leaves carrying all of it from the first held
  octet, in one packet under an Ethernet MTU. A SIP stack writes a message
  with one send, so a split mostly means a message longer than one segment,
  whose parts the sender sends back to back (Linux's Nagle test lets a
  segment after a full-sized one go, RFC 896 as amended by Minshall).
* a longer message, up to ``set sip tcp-max-message`` octets, is
  reassembled from *retained* segments (:class:`Retained`): each is given
  no verdict yet (the kernel keeps the packet queued; the receiver has not
  acknowledged it, so the sender still holds it for retransmission), and
  once the octets reach a message boundary the ALG gets every message of
  the set and the rewritten octets leave spread over the same segments at
  their own places in the sequence space (:mod:`gateway.datapath.resegment`).
  The sender's window must hold the whole message (an initial window of
  ten segments, RFC 6928, holds about 14 KB; a longer message on a fresh
  connection waits for the sender's retransmission timer and its window
  growth, see :class:`SipStream`). If the sender retransmits octets held
  back to leave coalesced (it waits for their acknowledgement), the
  retransmission is retained the same way: nothing passes uninspected.
  Over the limit, unframeable, or in too many segments, the direction's
  signalling stops (every later data segment dropped, with the reason):
  never forwarded in parts.

Pure: no clock, no I/O; one caller at a time (the datapath's lock).
"""

from __future__ import annotations

from gateway.datapath.framed_stream import FramedStream, Retained, SegmentWork
from gateway.datapath.sip_stream import SipStream
from gateway.datapath.stream_limits import (
    CACHE_ENTRIES, MAX_OUT_OF_ORDER, MAX_PENDING, SIP_HOLD_LIMIT, SIP_MAX_MESSAGE, SIP_MAX_PARTS,
    SIP_RETAIN_SECONDS, SIP_RETAINED_TOTAL, StreamStats, seq_diff,
)
from gateway.datapath.tpkt_stream import TpktStream

# The streams are read from here; their parts live in the modules above
# (framing common to both, TPKT, SIP, the numbers and counters).
__all__ = ["CACHE_ENTRIES", "FramedStream", "MAX_OUT_OF_ORDER", "MAX_PENDING", "Retained",
           "SIP_HOLD_LIMIT", "SIP_MAX_MESSAGE", "SIP_MAX_PARTS", "SIP_RETAIN_SECONDS",
           "SIP_RETAINED_TOTAL", "SegmentWork", "SipStream", "StreamStats", "TpktStream", "seq_diff"]
