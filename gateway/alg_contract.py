"""The contract every ALG implements for the node (SIP, MGCP, H.323:
``gateway.algs``). The node's machinery (dialog actors, journal-then-release,
entity actors with timers, pinholes into the datapath, mirroring on the
standby) is the same for every ALG and goes through these members only.

Adding an ALG: its package under ``gateway/`` (events declared with
``gateway.events.domain_event``, a state folded by ``gateway.fold.Fold``, a
``gateway.alg_result.Run`` subclass whose ``result`` builds the step's
``Result``), an adapter implementing :class:`Alg` registered in
``gateway.algs.ADAPTERS`` (the node and its views loop over it), its state
slot and fold in ``gateway.domain``, and, over UDP, its row of
``gateway.datapath.dispatch_constants.UDP_ALGS`` (ports, dialog key, idle
lifetime); ARCHITECTURE.md "Adding an ALG" is the checklist."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, ClassVar, Protocol

from gateway.alg_result import Result


class Direction(StrEnum):
    """A signalling packet's NAT direction, as the datapath tells every ALG
    (``gateway.datapath.alg_handoff._direction``). A ``str`` equal to its
    value: the ALGs' tables and journaled pinholes carry the text."""
    OUTBOUND = "outbound"       # private to public: the source is translated
    INBOUND = "inbound"         # public to private: the destination is translated
    NONE = "none"               # no NAT between the two sides


@dataclass(frozen=True, slots=True)
class PacketContext:
    """What the datapath knows of a signalling packet, as every ALG's context
    starts (``gateway.sip.alg.SipContext``, ``gateway.mgcp.alg.MgcpContext``
    add their own fields after these).

    ``direction``: "outbound" (private to public), "inbound", or "none" (no
    NAT between the two sides). ``src``/``dst``: the packet's addresses as it
    arrived. ``nat_src``: the public source the NAT engine gives it
    (outbound); ``nat_dst``: the private destination (inbound to a MIP/VIP);
    None for an inbound packet to an interface or DIP address, whose internal
    host only the ALG knows (Incoming DIP table: ``Result.route_to``).
    ``ingress``/``egress``: the interfaces it comes in and leaves by."""

    direction: Direction
    src: tuple[str, int]
    dst: tuple[str, int]
    nat_src: tuple[str, int] | None = None
    nat_dst: tuple[str, int] | None = None
    ingress: str = ""
    egress: str = ""


class Alg(Protocol):
    """One ALG as the node sees it. ``state`` is the ALG's slot of
    ``gateway.domain.DomainState``; ``o`` is the datapath's ``Alg`` outcome
    for a message (addresses, NAT, interfaces, segment)."""

    # classify: the ALG's name (the datapath's ``Alg.alg``, the DomainState
    # slot, the event type prefix), the prefixes of its streams, and the
    # first part of its calls' streams (``show calls``).
    name: ClassVar[str]
    stream_prefixes: ClassVar[tuple[str, ...]]
    call_prefix: ClassVar[str]
    # Events that end an entity (its actor stops) and that open/close a pinhole.
    ending: ClassVar[tuple[type, ...]]
    pinhole_opened: ClassVar[type]
    pinhole_closed: ClassVar[type]

    # step: one message, with the context built from the datapath's decision.
    @staticmethod
    def settings(config: Any) -> Any: ...

    @staticmethod
    def context(o: Any, engine: Any = None) -> Any: ...

    @staticmethod
    def step(state: Any, ctx: Any, data: bytes, now: float, settings: Any = ...) -> Result: ...

    # timers: a deadline of a key of Result.timers passed.
    @staticmethod
    def on_timer(state: Any, key: str, now: float, settings: Any = ...) -> Result: ...

    # media: the datapath saw RTP/RTCP of a group (of a pinhole).
    @staticmethod
    def media_activity(state: Any, group: str, now: float, settings: Any = ...,
                       pinhole: str | None = None) -> Result: ...

    @staticmethod
    def released(events: Any) -> tuple[list[str], list[str]]: ...

    @staticmethod
    def call_of_group(state: Any, group: str) -> str | None: ...

    # rematch (a configuration applied to a running pair): (call key, reason)
    # of each call the new configuration no longer permits, judged from the
    # state and the policy sessions it denies (gateway/rematch.py), and the
    # step that ends such calls as the ALG ends a call.
    @staticmethod
    def calls_denied(state: Any, engine: Any, denied: Any) -> list[tuple[str, str]]: ...

    @staticmethod
    def end_calls(state: Any, calls: Any, now: float, settings: Any = ...) -> Result: ...

    # views: the entity streams of a state (actors to start, timers), and
    # what ``show calls`` / ``show registrations`` print of it.
    @staticmethod
    def streams(state: Any) -> list[str]: ...

    @staticmethod
    def summary(state: Any, key: str) -> dict | None: ...

    @staticmethod
    def calls(state: Any) -> list[dict]: ...

    @staticmethod
    def registrations(state: Any) -> list[dict]: ...

    # ``gwctl replay``: the ALG's tables of a state (``call``: only that
    # call), and which journal streams tell that call's history
    # (gateway/alg_replay.py).
    @staticmethod
    def replay(state: Any, call: str | None) -> tuple[dict, Callable[[str], bool]]: ...

    # pinholes: those a state holds, and as the datapath's table takes them.
    @staticmethod
    def pinholes(state: Any) -> list: ...

    @staticmethod
    def for_datapath(pinholes: Any) -> list: ...


def owner_of(stream: str, algs, default: Any) -> Any:
    """The ALG of ``algs`` whose streams ``stream`` is one of; ``default``
    when none claims it."""
    for a in algs:
        if stream.startswith(a.stream_prefixes):
            return a
    return default
