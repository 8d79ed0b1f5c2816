"""The datapath's tables as the rest of the node changes them: pinholes
installed, removed and rebuilt from the ALGs' state, SIP connections' sequence
adjustments restored after failover, sessions released with their calls,
expiry, and the counters (:meth:`DatapathTables.stats`)."""

from __future__ import annotations

from typing import Iterable

from gateway.datapath import seqadj
from gateway.datapath.pinholes import Hole, PinholeLike
from gateway.datapath.sessions import Session


class DatapathTables:
    """Pinhole and session tables, expiry and counters; a part of :class:`gateway.datapath.pipeline.Datapath` (a base class):
    it reads and writes the datapath's tables and counters."""

    # -- tables ----------------------------------------------------------------------

    def install_pinholes(self, pinholes: Iterable[PinholeLike]) -> None:
        for p in pinholes:
            self.pinholes.install(p)

    def remove_pinholes(self, ids: Iterable[str]) -> None:
        for pid in ids:
            self.pinholes.remove(pid)

    def rebuild(self, pinholes: Iterable[PinholeLike]) -> None:
        """After failover or replay: the pinhole table from the ALGs' state."""
        self.pinholes.rebuild(pinholes)

    def restore_tcp(self, state: seqadj.TcpState) -> None:
        """After failover: the sequence adjustments of SIP connections from
        the journaled state (``DomainState.tcp``); a connection's session,
        made again when its next segment arrives, takes them."""
        self._tcp_restore = {conn: dict(sides) for conn, sides in state.conns.items()}

    def release_groups(self, groups: Iterable[str]) -> list[Session]:
        """A voice channel ended (e.g. SIP ``MediaReleased``): its media sessions go."""
        gs = set(groups)
        self.activity.forget(gs)
        return self._remove(self.sessions.of_groups(gs))

    def release_call(self, call: str) -> list[Session]:
        """A call ended (SIP ``CallEnded``): its media sessions and pinholes go."""
        self.pinholes.remove_call(call)
        gone = self._remove(self.sessions.media_of_call(call))
        self.activity.forget({s.group for s in gone} | {s.rev_group for s in gone if s.rev_group})
        return gone

    def remove_session(self, sess: Session) -> bool:
        self._close_stream(sess.id)
        return bool(self._remove([sess]))

    def _remove(self, sessions: list[Session]) -> list[Session]:
        gone = self.sessions.remove_all(sessions)
        for s in gone:
            self.screens.closed(s.from_zone, s.fwd_key[1])
            self._close_stream(s.id)
        # A removed session keeps its count of kernel flows until the
        # offload takes them out.
        self._gone_from_kernel([s for s in gone if s.offloaded])
        return gone

    def _gone_from_kernel(self, sessions: list[Session]) -> None:
        """Sessions the kernel forwards (media offload) ended now, by the ALG
        (a call or voice channel released: a DLCX, a BYE's end) or the
        operator (``clear session``): the offload is woken to take their
        flows out at once, not at its next turn, so that no media passes a
        closed pinhole (manual ch. 4: after DLCX the gateway passes none)."""
        if not sessions:
            return
        self.offload_gone.extend(sessions)
        wake = self.offload_wake
        if wake is not None:
            wake()

    def _close_stream(self, sid: int) -> None:
        stream = self._tpkt.pop(sid, None)
        if stream is not None:
            stream.close()

    def drain_activity(self) -> list[tuple[str, str | None, float]]:
        """Media activity since the last call: ``(group, pinhole id or None, last seen)``."""
        return self.activity.drain()

    def drain_alarms(self) -> list[str]:
        return self.screens.drain_alarms()

    def expire(self, now: float) -> list[Session | Hole]:
        """Remove what has passed its deadline: idle sessions and pinholes
        whose lifetime ended; returns them."""
        out: list[Session | Hole] = []
        for s in self.sessions.expire(now):
            self.screens.closed(s.from_zone, s.fwd_key[1])
            self._close_stream(s.id)
            out.append(s)
        for stream in list(self._sip_holding):
            stream.expire(now)
        out.extend(self.pinholes.expire(now))
        self._expire_fragments(now)
        return out

    def stats(self) -> dict:
        return {"paths": dict(self.paths), "drops": dict(self.drops),
                "drop_codes": dict(self.drop_codes),
                "drop_reasons": dict(self.drop_reasons), "screens": self.screens.stats(),
                "sessions": self.sessions.stats(), "pinholes": self.pinholes.stats(),
                "h323_tcp": self.tpkt_stats.as_dict(), "sip_tcp": self.sip_tcp_stats.as_dict()}
