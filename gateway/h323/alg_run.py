"""One evaluation of the H.323 ALG (a message, a timer, a media report;
manual chapter 1): the running state and what it emitted, the pinholes each
event opens or closes, NAT of the embedded addresses, and how calls start,
progress and end."""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.alg_result import Dropped, Run, close_hole, open_hole
from gateway.h323 import events as ev
from gateway.h323.alg_context import H323Context
from gateway.h323.alg_limits import H323Settings
from gateway.h323.nat import address_edit
from gateway.h323.per import Address
from gateway.h323.state import H323State, apply
from gateway.ports import allocate_port


def _pinhole_opened(st: H323State, e: ev.PinholeOpened, opened: dict, closed: list) -> None:
    c = st.calls.get(e.key)
    open_hole(c.pinholes.get(e.pinhole) if c else None, opened)


def _pinhole_closed(st: H323State, e: ev.PinholeClosed, opened: dict, closed: list) -> None:
    close_hole(e.pinhole, opened, closed)


def _registered(st: H323State, e: ev.Registered, opened: dict, closed: list) -> None:
    # The registration's pinhole as it stands now: opened anew, last.
    reg = st.registrations.get(tuple(e.public))
    if reg is not None:
        hole = reg.pinhole
        opened.pop(hole.id, None)
        opened[hole.id] = hole


def _unregistered(st: H323State, e: ev.Unregistered, opened: dict, closed: list) -> None:
    close_hole(f"h323-reg/{e.public[0]}:{e.public[1]}", opened, closed)


class _Run(Run):
    apply = staticmethod(apply)
    # The events whose stream is their call's (``h323-call/<key>``).
    KEYED = dict.fromkeys((ev.CallStarted, ev.CallProgressed, ev.PortMapped, ev.H245Bound, ev.PinholeOpened,
                           ev.PinholeClosed, ev.PinholeShared, ev.MediaSeen, ev.CallEnded), ev.call_stream)
    PINHOLES = {ev.PinholeOpened: _pinhole_opened, ev.PinholeClosed: _pinhole_closed,
                ev.Registered: _registered, ev.Unregistered: _unregistered}

    def __init__(self, state: H323State, ctx: H323Context, now: float, settings: H323Settings) -> None:
        super().__init__(state, now, settings)
        self.ctx = ctx
        # (original, final) of every address, by id()
        self.moved: dict[int, tuple[tuple, tuple]] = {}

    # --- NAT of embedded addresses ----------------------------------------

    def translate(self, addresses: tuple[Address, ...], key: str | None) -> None:
        """Outbound: the sender's private address becomes its public one
        (manual ch. 1 "Outgoing Calls with NAT": the MIP; interface or DIP
        address otherwise). Inbound: our public address becomes the private
        host's (MIP, or the registration behind an incoming DIP)."""
        ctx = self.ctx
        for a in addresses:
            orig = (str(a.ip), a.port)
            new = None
            if ctx.direction == "outbound" and ctx.nat_src is not None and orig[0] == str(ctx.src[0]):
                new = self._outbound(orig, key)
            elif ctx.direction == "inbound" and orig[0] == str(ctx.dst[0]):
                new = self._inbound(orig, key)
            if new is not None and new != orig:
                self.edits.append(address_edit(a, new[0], new[1]))
            self.moved[id(a)] = (orig, new or orig)

    def _outbound(self, orig: tuple, key: str | None) -> tuple:
        ctx = self.ctx
        pub_ip = str(ctx.nat_src[0])
        if orig == (str(ctx.src[0]), int(ctx.src[1])):
            return (pub_ip, int(ctx.nat_src[1]))
        port = orig[1]
        owner = self.st.ports_in_use.get((pub_ip, port))
        if key is not None and owner is not None and owner != key and not ctx.dedicated:
            # Another call holds this public port (interface or DIP NAT
            # shares one address among hosts): take a free one. On a MIP
            # (``dedicated``) the port is the host's own: a port another of
            # its calls holds is the one it announces again, kept (the
            # newest pinhole to it answers; the newest call owns it here).
            used = {(IPv4Address(i), p) for (i, p) in self.st.ports_in_use}
            got = allocate_port(used, IPv4Address(pub_ip), hint=port)
            if got is None:
                raise Dropped("no free public port for an embedded address")
            port = got
        if key is not None and (pub_ip, port) not in self.st.calls[key].ports:
            self.emit(ev.PortMapped(key, (pub_ip, port), orig))
        return (pub_ip, port)

    def _inbound(self, orig: tuple, key: str | None) -> tuple:
        ctx = self.ctx
        if key is not None:
            private = self.st.calls[key].ports.get(orig)
            if private is not None:
                return private
        reg = self.st.registrations.get(orig)
        if reg is not None:
            return reg.private
        if ctx.nat_dst is not None:
            return (str(ctx.nat_dst[0]), orig[1])
        reg = self.st.registrations.get((str(ctx.dst[0]), int(ctx.dst[1])))
        if reg is not None:
            return (reg.private[0], orig[1])
        return orig

    def final(self, a: Address) -> tuple:
        return self.moved[id(a)][1]

    def pinhole_for(self, a: Address) -> tuple[tuple, tuple | None]:
        """Where the far side sends (``dst``) and where that goes inside."""
        orig, new = self.moved[id(a)]
        if self.ctx.direction == "outbound" and new != orig:
            return new, orig
        return new, None

    # --- call helpers ---------------------------------------------------------

    def open(self, key: str, kind: str, transport: str, a: Address, group: str) -> None:
        dst, to = self.pinhole_for(a)
        pid = f"{key}/{kind}/{dst[0]}:{dst[1]}"
        held = self.st.calls[key].pinholes.get(pid)
        if held is not None:
            # A retransmission, or another channel naming the same address
            # (an endpoint's RTCP port serves its channels both ways): the
            # pinhole stays while any of them is open.
            if group not in held.groups:
                self.emit(ev.PinholeShared(key, pid, group, True))
            return
        deadline = self.now + self.settings.media_inactivity_timeout if kind in ("rtp", "rtcp") else None
        self.emit(ev.PinholeOpened(key, pid, kind, transport, dst, to, group, deadline))

    def end_call(self, key: str, reason: str) -> None:
        call = self.st.calls[key]
        for pid in list(call.pinholes):
            self.emit(ev.PinholeClosed(key, pid, reason))
        self.emit(ev.CallEnded(key, reason))
        self.logs.append(f"h323 call {key} ended: {reason}")

    def start_call(self, key: str, conn: str, call_reference: int, origin: str) -> None:
        """A Setup or an ACF begins call ``key``; one that admitted it
        before (ACF then Setup) is joined and not counted again."""
        s = self.settings
        if key not in self.st.calls and self.st.setups_by_source.get(origin, 0) >= s.max_setups_per_source:
            raise Dropped(f"{s.max_setups_per_source} calls of {origin} already in setup")
        self.emit(ev.CallStarted(key, conn, call_reference, self.now, self.now + s.signaling_inactivity_timeout,
                                 self.now + s.max_call_duration, origin, self.now + s.setup_timeout))

    def touch(self, key: str, phase: str | None) -> None:
        c = self.st.calls[key]
        self.emit(ev.CallProgressed(key, phase or c.phase, self.now + self.settings.signaling_inactivity_timeout))
