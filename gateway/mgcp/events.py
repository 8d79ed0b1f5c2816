"""The MGCP ALG's domain events.

Every durable change of the MGCP ALG's state is one of these events:
transactions (RFC 3435 section 3.5: a command and its responses), endpoints
(in or out of service, notified entity: manual ch. 3 "Call Agent") and calls
with their connections, media groups and pinholes (manual ch. 3
"Connection", "Call"). :func:`gateway.mgcp.state.apply` folds them, so the
live node, a replay of the journal and the standby hold the same state.

Streams: ``mgcp-ep/<gateway ip>/<endpoint>`` for an endpoint and the
transactions addressed to it, ``mgcp-call/<gateway ip>/<call id>`` for a call.
The gateway ip is the media gateway's own address (as seen on its side of the
NAT). Flood counters are not events (see :mod:`gateway.mgcp.flood`).

Payloads are flat plain data (str, int, float, None).
"""

from __future__ import annotations


from gateway.events import Event, domain_event, upcaster


def endpoint_stream(gateway: str, endpoint: str) -> str:
    return f"mgcp-ep/{gateway}/{endpoint}"


def call_stream(gateway: str, call_id: str) -> str:
    return f"mgcp-call/{gateway}/{call_id}"


class _EndpointEvent(Event):
    __slots__ = ()

    @property
    def stream(self) -> str:
        return endpoint_stream(self.gateway, self.endpoint)


class _CallEvent(Event):
    __slots__ = ()

    @property
    def stream(self) -> str:
        return call_stream(self.gateway, self.call_id)


@domain_event("mgcp.transaction_started", schema=1)
class TransactionStarted(_EndpointEvent):
    """A command passed (RFC 3435 3.5). ``origin`` is the sender's role
    ("call-agent" or "gateway"); ``src_*`` the command's source as it arrived:
    its response is sent there (manual ch. 3: "A response to a command is sent
    to the source address of the command"). ``expires_at``: the transaction is
    forgotten then (transaction timeout)."""

    gateway: str
    endpoint: str
    origin: str
    tid: int
    verb: str
    src_ip: str
    src_port: int
    call_id: str | None
    conn_id: str | None
    at: float
    expires_at: float


@domain_event("mgcp.transaction_answered", schema=1)
class TransactionAnswered(_EndpointEvent):
    """A response to the transaction's command: provisional (1xx) or final."""

    gateway: str
    endpoint: str
    origin: str
    tid: int
    code: int
    expires_at: float


@domain_event("mgcp.transaction_ended", schema=1)
class TransactionEnded(_EndpointEvent):
    """Response acknowledged (000), or transaction timeout."""

    gateway: str
    endpoint: str
    origin: str
    tid: int
    reason: str


@domain_event("mgcp.endpoint_restarted", schema=2)
class EndpointRestarted(_EndpointEvent):
    """RSIP (RFC 3435 2.3.12). ``out_of_service_at``: when the endpoint leaves
    service (forced: now; graceful: after RestartDelay), None when it is (back)
    in service (restart, disconnected, cancel-graceful). ``tid``: the RSIP's
    transaction (schema 2): an endpoint record it creates lasts only if a
    command naming the endpoint succeeds (see ``state.Endpoint.pending``)."""

    gateway: str
    endpoint: str
    method: str
    at: float
    out_of_service_at: float | None
    tid: int | None = None


@domain_event("mgcp.notified_entity_set", schema=2)
class NotifiedEntitySet(_EndpointEvent):
    """The endpoint's notified entity (manual ch. 3 "Call Agent"): from an N:
    parameter (``source`` "N:"), or the source address of the last successful
    non-audit command (``source`` "command"). ``tid`` (schema 2): the call
    agent's transaction whose N: set it, None when set by a success."""

    gateway: str
    endpoint: str
    entity: str
    source: str
    tid: int | None = None


@upcaster("mgcp.endpoint_restarted", 1)
def _endpoint_restarted_v1(payload: dict) -> dict:
    # Schema 1 had no transaction: the record is kept, as it was then.
    payload.setdefault("tid", None)
    return payload


@upcaster("mgcp.notified_entity_set", 1)
def _notified_entity_set_v1(payload: dict) -> dict:
    payload.setdefault("tid", None)
    return payload


@domain_event("mgcp.call_started", schema=1)
class CallStarted(_CallEvent):
    """A CRCX for a call id the gateway had no call of."""

    gateway: str
    call_id: str
    at: float
    max_deadline: float


@domain_event("mgcp.connection_created", schema=1)
class ConnectionCreated(_CallEvent):
    """The success response of a CRCX named the connection id (I:); the media
    bound by transaction ``tid`` now belongs to it."""

    gateway: str
    call_id: str
    conn_id: str
    endpoint: str
    tid: int


@domain_event("mgcp.connection_deleted", schema=1)
class ConnectionDeleted(_CallEvent):
    gateway: str
    call_id: str
    conn_id: str
    reason: str


@domain_event("mgcp.media_bound", schema=1)
class MediaBound(_CallEvent):
    """A media destination (RTP and RTCP, one group) announced in the SDP of
    a CRCX/MDCX (``side`` "remote") or of its response ("local"), for
    connection ``conn_id`` (None until the CRCX response names it; ``tid`` is
    the transaction that bound it). ``public_*``: the ALG's even/odd pair
    standing for a translated destination (None without NAT)."""

    gateway: str
    call_id: str
    group: str
    conn_id: str | None
    tid: int
    side: str
    index: int
    dst_ip: str
    dst_port: int
    rtcp_ip: str
    rtcp_port: int
    public_ip: str | None
    public_port: int | None
    media_deadline: float


@domain_event("mgcp.media_released", schema=1)
class MediaReleased(_CallEvent):
    gateway: str
    call_id: str
    group: str
    reason: str


@domain_event("mgcp.media_seen", schema=1)
class MediaSeen(_CallEvent):
    """RTP/RTCP of the group was seen: its inactivity timer restarts."""

    gateway: str
    call_id: str
    group: str
    at: float
    media_deadline: float


@domain_event("mgcp.pinhole_opened", schema=1)
class PinholeOpened(_CallEvent):
    """UDP from any source to ``dst`` as the packet arrives, translated to
    ``to`` (None: unchanged). ``direction``: "inbound" (public to private) or
    "any" (no translation)."""

    gateway: str
    call_id: str
    pinhole: str
    group: str
    direction: str
    dst_ip: str
    dst_port: int
    to_ip: str | None
    to_port: int | None


@domain_event("mgcp.pinhole_closed", schema=1)
class PinholeClosed(_CallEvent):
    gateway: str
    call_id: str
    pinhole: str
    reason: str


@domain_event("mgcp.call_ended", schema=1)
class CallEnded(_CallEvent):
    """The call is removed with what is left of it."""

    gateway: str
    call_id: str
    reason: str
