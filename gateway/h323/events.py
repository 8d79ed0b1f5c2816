"""Events of the H.323 ALG: every change of its state is one of these
(frozen, slotted, registered as ``h323.<name>``). Streams: ``h323-call/<key>``
for a call, ``h323-ras/<requester>/<seq>`` for a RAS transaction,
``h323-reg/<ip>:<port>`` for a registration."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.events import Event, event


def call_stream(key: str) -> str:
    return f"h323-call/{key}"


@event("h323.ras_requested")
@dataclass(frozen=True, slots=True)
class RasRequested(Event):
    requester: str          # "ip:port" the request came from
    seq: int
    kind: str
    expires_at: float
    # RRQ through NAT: ((public ip, port), (private ip, port)) of the
    # callSignalAddress, bound when the RCF comes
    binding: tuple = ()
    call: str = ""          # ARQ: the call it admits; DRQ: the call it ends (callIdentifier)

    @property
    def stream(self) -> str:
        return f"h323-ras/{self.requester}/{self.seq}"


@event("h323.ras_ended")
@dataclass(frozen=True, slots=True)
class RasEnded(Event):
    requester: str
    seq: int
    outcome: str            # the answer's kind, or "timeout"

    @property
    def stream(self) -> str:
        return f"h323-ras/{self.requester}/{self.seq}"


@event("h323.registered")
@dataclass(frozen=True, slots=True)
class Registered(Event):
    """RRQ answered by RCF: calls to ``public`` go to ``private`` (the
    incoming DIP table, manual ch. 1 "Incoming Calls with NAT")."""

    public: tuple           # (ip, port) of the callSignalAddress others see
    private: tuple          # (ip, port) of the endpoint
    expires_at: float

    @property
    def stream(self) -> str:
        return f"h323-reg/{self.public[0]}:{self.public[1]}"


@event("h323.unregistered")
@dataclass(frozen=True, slots=True)
class Unregistered(Event):
    public: tuple
    reason: str

    @property
    def stream(self) -> str:
        return f"h323-reg/{self.public[0]}:{self.public[1]}"


@event("h323.call_started")
@dataclass(frozen=True, slots=True)
class CallStarted(Event):
    key: str
    conn: str
    call_reference: int
    at: float
    signalling_deadline: float
    max_deadline: float
    # The address that started it (Setup sender or ARQ requester): calls in
    # setup are counted per source; until Connect the call must be answered
    # by ``setup_deadline`` (None: no bound, as journals before it had).
    origin: str = ""
    setup_deadline: float | None = None

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.call_progressed")
@dataclass(frozen=True, slots=True)
class CallProgressed(Event):
    key: str
    phase: str
    signalling_deadline: float

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.port_mapped")
@dataclass(frozen=True, slots=True)
class PortMapped(Event):
    """An embedded private address given a public one for this call."""

    key: str
    public: tuple
    private: tuple

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.h245_bound")
@dataclass(frozen=True, slots=True)
class H245Bound(Event):
    """The call's H.245 connection listens at ``addresses`` (as each side
    sees it)."""

    key: str
    addresses: tuple

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.pinhole_opened")
@dataclass(frozen=True, slots=True)
class PinholeOpened(Event):
    key: str
    pinhole: str
    kind: str               # "q931", "h245", "rtp", "rtcp"
    transport: str          # "tcp" / "udp"
    dst: tuple              # (ip, port) the packets are sent to
    to: tuple | None        # where they are translated to (None: unchanged)
    group: str
    media_deadline: float | None = None

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.pinhole_closed")
@dataclass(frozen=True, slots=True)
class PinholeClosed(Event):
    key: str
    pinhole: str
    reason: str

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.pinhole_shared")
@dataclass(frozen=True, slots=True)
class PinholeShared(Event):
    """Another logical channel names the address of an open pinhole
    (``add``), or one of several channels naming it closed (not ``add``):
    the pinhole stays while any channel names it."""

    key: str
    pinhole: str
    group: str
    add: bool

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.media_seen")
@dataclass(frozen=True, slots=True)
class MediaSeen(Event):
    key: str
    group: str
    media_deadline: float

    @property
    def stream(self) -> str:
        return call_stream(self.key)


@event("h323.call_ended")
@dataclass(frozen=True, slots=True)
class CallEnded(Event):
    key: str
    reason: str

    @property
    def stream(self) -> str:
        return call_stream(self.key)
