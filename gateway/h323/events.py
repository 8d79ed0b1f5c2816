"""Events of the H.323 ALG: every change of its state is one of these
(frozen, slotted, registered as ``h323.<name>``). Streams: ``h323-call/<key>``
for a call, ``h323-ras/<requester>/<seq>`` for a RAS transaction,
``h323-reg/<ip>:<port>`` for a registration."""

from __future__ import annotations

from gateway.events import Event, domain_event


def call_stream(key: str) -> str:
    return f"h323-call/{key}"


def _by_call(e) -> str:
    return call_stream(e.key)


def _by_ras_transaction(e) -> str:
    return f"h323-ras/{e.requester}/{e.seq}"


def _by_registration(e) -> str:
    return f"h323-reg/{e.public[0]}:{e.public[1]}"


@domain_event("h323.ras_requested", stream=_by_ras_transaction)
class RasRequested(Event):
    requester: str          # "ip:port" the request came from
    seq: int
    kind: str
    expires_at: float
    # RRQ through NAT: ((public ip, port), (private ip, port)) of the
    # callSignalAddress, bound when the RCF comes
    binding: tuple = ()
    call: str = ""          # ARQ: the call it admits; DRQ: the call it ends (callIdentifier)


@domain_event("h323.ras_ended", stream=_by_ras_transaction)
class RasEnded(Event):
    requester: str
    seq: int
    outcome: str            # the answer's kind, or "timeout"


@domain_event("h323.registered", stream=_by_registration)
class Registered(Event):
    """RRQ answered by RCF: calls to ``public`` go to ``private`` (the
    incoming DIP table, manual ch. 1 "Incoming Calls with NAT")."""

    public: tuple           # (ip, port) of the callSignalAddress others see
    private: tuple          # (ip, port) of the endpoint
    expires_at: float


@domain_event("h323.unregistered", stream=_by_registration)
class Unregistered(Event):
    public: tuple
    reason: str


@domain_event("h323.call_started", stream=_by_call)
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


@domain_event("h323.call_progressed", stream=_by_call)
class CallProgressed(Event):
    key: str
    phase: str
    signalling_deadline: float


@domain_event("h323.port_mapped", stream=_by_call)
class PortMapped(Event):
    """An embedded private address given a public one for this call."""

    key: str
    public: tuple
    private: tuple


@domain_event("h323.h245_bound", stream=_by_call)
class H245Bound(Event):
    """The call's H.245 connection listens at ``addresses`` (as each side
    sees it)."""

    key: str
    addresses: tuple


@domain_event("h323.pinhole_opened", stream=_by_call)
class PinholeOpened(Event):
    key: str
    pinhole: str
    kind: str               # "q931", "h245", "rtp", "rtcp"
    transport: str          # "tcp" / "udp"
    dst: tuple              # (ip, port) the packets are sent to
    to: tuple | None        # where they are translated to (None: unchanged)
    group: str
    media_deadline: float | None = None


@domain_event("h323.pinhole_closed", stream=_by_call)
class PinholeClosed(Event):
    key: str
    pinhole: str
    reason: str


@domain_event("h323.pinhole_shared", stream=_by_call)
class PinholeShared(Event):
    """Another logical channel names the address of an open pinhole
    (``add``), or one of several channels naming it closed (not ``add``):
    the pinhole stays while any channel names it."""

    key: str
    pinhole: str
    group: str
    add: bool


@domain_event("h323.media_seen", stream=_by_call)
class MediaSeen(Event):
    key: str
    group: str
    media_deadline: float


@domain_event("h323.call_ended", stream=_by_call)
class CallEnded(Event):
    key: str
    reason: str