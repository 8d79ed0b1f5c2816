"""The established-UDP fast path: a packet of a known session, rewritten
from precomputed bytes (DESIGN.md, "A packet's way through", step 3).

:meth:`gateway.datapath.Datapath.process` parses every packet into a
:class:`gateway.packet.Packet`, probes the session table with a tuple of
ints and rewrites through :func:`gateway.packet.rewrite`. For the bulk of
the traffic (RTP of a call, any UDP of an established flow) all of that is
constant per session direction: the old and new addresses and ports, and
therefore the checksum changes too. RFC 1624 (eqn. 3: ``HC' = ~(~HC + ~m +
m')``) makes an incremental update a sum of per-field terms ``~m + m'``
that depend only on the old and new field values, so the sum of them can be
computed once, when the session is made.

A :class:`FastEntry` is that precomputation for one direction of one UDP
session, keyed by the raw bytes of the addresses and ports as the packet
carries them (``buf[12:24]`` of an IPv4 header without options: source,
destination, source port, destination port). The session table keeps the
entries in step with its own map (:class:`gateway.datapath.sessions.SessionTable`):
added when a session is created (whatever made it: policy, a pinhole, a
pinhole reopened at takeover), removed with it (expiry, close, release).

:meth:`FastPath.process` takes only packets whose handling by
``Datapath.process`` is known to be exactly "session hit, forward with the
rewrite": IPv4 without options, UDP, not a fragment (no offset, MF clear),
lengths consistent (IP total length = bytes received, UDP length = IP
payload), a session that is not an ALG's, and no reply-side pinhole waiting
to be reported. Anything else returns None and goes the slow way. It does
the same accounting the slow path does (deadline, per-direction counters,
media activity of the session's voice channel, the ``fast-session`` path
counter), so the two are interchangeable packet by packet
(tests/test_datapath_fastpath.py checks byte-identical output and identical
state).

UDP checksum 0 (RFC 768: none computed) stays 0, as in ``rewrite``; a
computed result of 0 is sent as 0xFFFF.

Not used when a UDP flood screen is configured: that screen counts every
packet before the session lookup (pipeline module docstring, step 2).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from gateway.packet import _delta

PROTO_UDP = 17
_FFFF = 0xFFFF

# The fields the fast path reads from an IPv4 header without options and the
# UDP header after it: version/IHL, total length, flags/fragment offset,
# protocol, header checksum, (addresses and ports skipped), UDP length and
# checksum. 28 bytes.
_HEAD = struct.Struct("!BxHxxHxBH12xHH")
_ADDRS = struct.Struct("!IIHH")          # buf[12:24]: src, dst, sport, dport
# The new first 28 bytes: the first 10 as they came (a "10s" field takes the
# first 10 bytes of the whole packet), then IP checksum, addresses and ports,
# UDP length and checksum.
_OUT = struct.Struct("!10sH12sHH")
_NOT_FIRST_OR_MORE = 0x3FFF              # MF flag and fragment offset


class FastEntry(NamedTuple):
    """One direction of one UDP session, ready to forward.

    ``head``: the new ``buf[12:24]`` (None: the packet leaves unchanged).
    ``ip_delta``/``l4_delta``: the sums of the RFC 1624 terms ``~m + m'``
    over the fields that change (0: that checksum is left alone; every
    changed field adds at least 1, so 0 means nothing changed).
    ``group``: the voice channel whose activity the packet counts for (None:
    not media). ``watch``: a reply-direction entry of a media session,
    whose first packet may still have a pinhole to report (slow path)."""

    session: object
    forward: bool
    head: bytes | None
    ip_delta: int
    l4_delta: int
    group: str | None
    watch: bool
    mark: int = 0


def key_bytes(key) -> bytes:
    """``buf[12:24]`` of a packet with session key ``(proto, src, sport, dst, dport)``."""
    _p, s, sp, d, dp = key
    return _ADDRS.pack(s, d, sp, dp)


def make_entry(sess, key, rw, forward: bool) -> FastEntry:
    """The fast entry of one direction of ``sess`` (its key and rewrite)."""
    _p, s, sp, d, dp = key
    head = None
    ip_d = l4_d = 0
    if rw is not None:
        ns, nsp, nd, ndp = rw
        head = _ADDRS.pack(ns, nd, nsp, ndp)
        # The same terms, in the same cases, as gateway.packet.rewrite adds up.
        if ns != s:
            ip_d += _delta(s, ns)
        if nd != d:
            ip_d += _delta(d, nd)
        l4_d = ip_d
        if nsp != sp:
            l4_d += _delta(sp, nsp)
        if ndp != dp:
            l4_d += _delta(dp, ndp)
    group = None
    watch = False
    if sess.group is not None:
        # As Datapath._media_seen: the forward direction counts for the
        # session's group, replies for the reply side's own group if any.
        group = sess.group if forward else (sess.rev_group or sess.group)
        watch = not forward
    return FastEntry(sess, forward, head, ip_d, l4_d, group, watch, getattr(sess, "mark", 0))


class FastPath:
    """The fast path over one datapath's session table (``entries``), its
    media activity and path counters. ``process(buf, now)``: the packet to
    send (``buf`` itself when unchanged), or None: use ``Datapath.process``.
    ``buf`` is ``bytes`` (what netfilterqueue's ``get_payload`` gives): its
    slice is the table's key. ``mark``: the firewall mark of the last
    packet forwarded (its session's, gateway.shaping), for the verdict."""

    __slots__ = ("_entries", "_seen", "_paths", "mark")

    def __init__(self, entries: dict[bytes, FastEntry], activity, paths: dict[str, int]) -> None:
        self._entries = entries
        self._seen = activity.seen
        self._paths = paths
        self.mark = 0

    @classmethod
    def of(cls, datapath) -> "FastPath | None":
        """The fast path of a :class:`gateway.datapath.Datapath`; None when
        it cannot have one (a UDP flood screen is configured)."""
        if datapath.screens.flood_thresholds:
            return None
        return cls(datapath.sessions.fast, datapath.activity, datapath.paths)

    def process(self, buf: bytes, now: float) -> bytes | None:
        try:
            vihl, total, frag, proto, ipc, ulen, uc = _HEAD.unpack_from(buf)
        except struct.error:
            return None                     # shorter than IPv4 + UDP headers
        if (vihl != 0x45 or proto != PROTO_UDP or frag & _NOT_FIRST_OR_MORE
                or total != len(buf) or ulen != total - 20):
            return None
        e = self._entries.get(buf[12:24])
        if e is None:
            return None
        sess, fwd, head, ip_d, l4_d, group, watch, self.mark = e
        if group is not None:
            if watch and sess.rev_pinhole is not None:
                return None                 # the reply's pinhole is reported once: slow path
            self._seen(group, now)
        sess.deadline = now + sess.timeout
        if fwd:
            sess.fwd_packets += 1
            sess.fwd_bytes += total
        else:
            sess.rev_packets += 1
            sess.rev_bytes += total
        self._paths["fast-session"] += 1
        if head is None:
            return buf
        # RFC 1624 eqn. 3 as gateway.packet._apply_delta computes it,
        # ~(((~HC + D) mod 0xFFFF) or 0xFFFF), is (HC - D) mod 0xFFFF in
        # 16 bits: one operation.
        if ip_d:
            ipc = (ipc - ip_d) % _FFFF
        if l4_d and uc:
            uc = (uc - l4_d) % _FFFF or _FFFF      # RFC 768: a computed 0 goes as all ones
        return _OUT.pack(buf, ipc, head, ulen, uc) + buf[28:]
