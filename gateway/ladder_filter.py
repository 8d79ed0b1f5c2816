"""Which journal records belong to a call (:class:`CallFilter`) and which
calls a journal holds (:class:`CallLister`), read from raw records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class CallFilter:
    """Feed it every record of a journal in order (:meth:`wants`): it says
    which belong to the call known as ``call_id`` (a SIP Call-ID as either
    side sees it or the ALG's call key; an MGCP CallId; an H.323
    callIdentifier in hex). Works on the raw record so that records of other
    calls are never decoded."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.streams: set[str] = set()
        self.mgcp_txns: set[tuple] = set()
        self.ras: set[tuple] = set()

    def wants(self, stream: str, type_: str, payload: Any) -> bool:
        cid = self.call_id
        if stream in self.streams:
            return True
        p = payload if isinstance(payload, dict) else {}
        if type_ == "sip.call_started":
            if cid in (p.get("call_id"), p.get("public_call_id"), p.get("key")) \
                    or stream == f"call/{cid}":
                self.streams.add(stream)
                return True
            return False
        if stream.startswith("mgcp-call/") and stream.endswith("/" + cid):
            self.streams.add(stream)
            return True
        if stream == f"h323-call/{cid}":
            self.streams.add(stream)
            return True
        if type_.startswith("mgcp.transaction_"):
            t = (p.get("gateway"), p.get("endpoint"), p.get("origin"), p.get("tid"))
            if type_ == "mgcp.transaction_started":
                if p.get("call_id") == cid:
                    self.mgcp_txns.add(t)
                    return True
                self.mgcp_txns.discard(t)     # a reused transaction id of another call
                return False
            if t in self.mgcp_txns:
                if type_ == "mgcp.transaction_ended":
                    self.mgcp_txns.discard(t)
                return True
            return False
        if type_ == "h323.ras_requested":
            t = (p.get("requester"), p.get("seq"))
            if p.get("call") == cid:
                self.ras.add(t)
                return True
            self.ras.discard(t)
            return False
        if type_ == "h323.ras_ended":
            t = (p.get("requester"), p.get("seq"))
            if t in self.ras:
                self.ras.discard(t)
                return True
        return False


@dataclass(slots=True)
class CallSummary:
    protocol: str
    call: str                    # the id `call ladder` takes
    parties: str
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None
    ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "call": self.call, "parties": self.parties,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "end_reason": self.end_reason, "ids": list(self.ids)}


class CallLister:
    """Feed it every record (:meth:`see`); :meth:`calls` lists the calls
    started in them, oldest first, with how they ended."""

    _STARTS = ("sip.call_started", "mgcp.call_started", "h323.call_started")
    _ENDS = ("sip.call_ended", "mgcp.call_ended", "h323.call_ended")

    def __init__(self) -> None:
        self._by_stream: dict[str, CallSummary] = {}

    def see(self, stream: str, type_: str, payload: Any, at: float) -> None:
        p = payload if isinstance(payload, dict) else {}
        if type_ == "sip.call_started":
            self._by_stream[stream] = CallSummary(
                "sip", str(p.get("call_id")),
                f"{p.get('mode')} {p.get('private_ip') or ''}{' as ' + p['alg_ip'] if p.get('alg_ip') else ''}"
                .strip(), at, ids=[str(p.get("call_id")), str(p.get("public_call_id")), str(p.get("key"))])
        elif type_ == "mgcp.call_started":
            self._by_stream[stream] = CallSummary("mgcp", str(p.get("call_id")),
                                                  f"gateway {p.get('gateway')}", at,
                                                  ids=[str(p.get("call_id"))])
        elif type_ == "h323.call_started":
            self._by_stream[stream] = CallSummary("h323", str(p.get("key")),
                                                  str(p.get("conn") or p.get("origin") or ""), at,
                                                  ids=[str(p.get("key"))])
        elif type_ in self._ENDS:
            s = self._by_stream.get(stream)
            if s is not None and s.ended_at is None:
                s.ended_at, s.end_reason = at, str(p.get("reason"))

    def calls(self) -> list[CallSummary]:
        return sorted(self._by_stream.values(), key=lambda s: s.started_at)
