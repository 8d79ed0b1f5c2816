"""What a call's ladder is made of: :class:`Ladder`, its rows (:class:`Step`)
and the gateway's column (:data:`GATEWAY`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class Step:
    """One row of the ladder. ``kind``: "message" (``src`` to ``dst``, two of
    the ladder's columns), or "pinhole", "nat", "media", "state" (a note at
    the gateway's column). ``before``/``after``: the message's addresses as
    it reached the gateway and as it left it (None: not known)."""

    seq: int
    at: float
    kind: str
    src: str
    dst: str
    label: str
    before: str | None = None
    after: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "src": self.src, "dst": self.dst,
                "label": self.label, "before": self.before, "after": self.after, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Ladder:
    protocol: str                 # "sip", "mgcp", "h323"
    call: str                     # the call's key in the ALG's state
    ids: tuple[str, ...]          # the identifiers an operator may know it by
    columns: tuple[str, ...]      # left to right; the gateway is one of them
    steps: tuple[Step, ...]
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    nat: tuple[tuple[str, str], ...] = ()    # (private, public) bindings of the call

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "call": self.call, "ids": list(self.ids),
                "columns": list(self.columns), "started_at": self.started_at,
                "ended_at": self.ended_at, "end_reason": self.end_reason,
                "nat": [{"private": p, "public": q} for p, q in self.nat],
                "steps": [s.to_dict() for s in self.steps]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Ladder":
        return Ladder(d["protocol"], d["call"], tuple(d["ids"]), tuple(d["columns"]),
                      tuple(Step(**s) for s in d["steps"]), d.get("started_at"), d.get("ended_at"),
                      d.get("end_reason"), tuple((n["private"], n["public"]) for n in d.get("nat", [])))
