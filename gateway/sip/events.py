"""The SIP ALG's domain events.

Every change of the SIP ALG's state (calls, address bindings, media groups,
pinholes, the Incoming DIP table, the ``sip protect deny`` table) is one of
these events; :func:`gateway.sip.state_fold.apply` folds them into the state, so the
live node, a replay of the journal and the standby all hold the same calls.

Payloads are flat plain data (str, int, float, None and tuples of them):
addresses are dotted-quad strings, so the journal format does not depend on
Python types.
"""

from __future__ import annotations

from types import SimpleNamespace

from gateway.construct import frozen_constructor
from gateway.events import Event, domain_event


def call_stream(key: str) -> str:
    return f"call/{key}"


def reg_stream(ip: str, port: int) -> str:
    return f"reg/{ip}:{port}"


def protect_stream(src: str, proxy: str) -> str:
    return f"sip-protect/{src}>{proxy}"


def _by_call(e) -> str:
    return call_stream(e.key)


def _by_registration(e) -> str:
    return reg_stream(e.public_ip, e.public_port)


def _by_protect_entry(e) -> str:
    return protect_stream(e.src_ip, e.proxy_ip)


@domain_event("sip.call_started", schema=1, stream=_by_call)
class CallStarted(Event):
    """A new INVITE created a call (manual ch. 2 "SIP with Network Address
    Translation": the ALG collects the header information into a call table).

    ``key`` is Call-ID and the caller's From tag as the caller sent them;
    ``public_call_id`` is the Call-ID as the public side sees it. ``mode`` is
    the direction of the initial INVITE: outbound, inbound or none (no NAT).
    ``private_ip``/``alg_ip`` are the private party's local address and the
    public (ALG) address that stands for it; both None without NAT."""

    key: str
    call_id: str
    public_call_id: str
    from_tag: str
    mode: str
    private_ip: str | None
    alg_ip: str | None
    ingress: str
    egress: str
    at: float
    max_deadline: float


@domain_event("sip.call_activity", schema=1, stream=_by_call)
class CallActivity(Event):
    """Signalling was seen on the call: the signalling inactivity timer
    restarts (ch. 2 "Session Inactivity Timeout"). ``session_expires`` is the
    Session-Expires value in force (None: the configured default applies,
    ch. 2 "Call Session Timers")."""

    key: str
    at: float
    signalling_deadline: float
    session_expires: int | None


@domain_event("sip.transaction_seen", schema=1, stream=_by_call)
class TransactionSeen(Event):
    """A request of the call, identified by its top Via branch and CSeq;
    ``sender`` is "a" (the party that sent the initial INVITE) or "b"; the
    addresses are the request's IP source and destination as it arrived."""

    key: str
    branch: str
    cseq: int
    method: str
    sender: str
    src_ip: str
    dst_ip: str


@domain_event("sip.binding_added", schema=1, stream=_by_call)
class BindingAdded(Event):
    """A header address of the private party (Via, Contact, Record-Route,
    Refer-To) is bound to a public address of the ALG (ch. 2 "Outgoing
    Calls": "Via:, Contact:, Route:, and Record-Route: SIP header fields, if
    present, are also bound to the firewall IP address"). ``owned`` is True
    when the public port was allocated by the ALG (and is released with the
    call), False when it is the NAT engine's own translation of the
    signalling flow."""

    key: str
    private_ip: str
    private_port: int
    public_ip: str
    public_port: int
    owned: bool


@domain_event("sip.call_answered", schema=1, stream=_by_call)
class CallAnswered(Event):
    """A 2xx to an INVITE of the call (the first one wins when the INVITE
    forked, ch. 2 "Forking"). Media inactivity timing starts for every group
    and inbound gates are refreshed (ch. 2 "Incoming Calls")."""

    key: str
    to_tag: str
    at: float
    media_deadline: float
    pinhole_expires: float


@domain_event("sip.call_rejected", schema=1, stream=_by_call)
class CallRejected(Event):
    """A final non-2xx answer to the initial INVITE: the call ends at
    ``teardown_at`` unless the caller retries (e.g. with credentials)."""

    key: str
    code: int
    teardown_at: float


@domain_event("sip.call_retried", schema=1, stream=_by_call)
class CallRetried(Event):
    """A new INVITE (higher CSeq) after a rejection: the call goes on."""

    key: str
    at: float


@domain_event("sip.call_forwarded", schema=1, stream=_by_call)
class CallForwarded(Event):
    """The INVITE came back out by the interface the caller is on: media flows
    between the outside parties directly, so the call keeps no pinholes (ch. 2
    "Forwarded Calls")."""

    key: str


@domain_event("sip.call_terminating", schema=1, stream=_by_call)
class CallTerminating(Event):
    """BYE or CANCEL: the call is torn down at ``teardown_at``, five seconds
    later, so the final response can still pass (ch. 2 "Call Termination",
    "Call Cancellation")."""

    key: str
    method: str
    teardown_at: float


@domain_event("sip.media_bound", schema=1, stream=_by_call)
class MediaBound(Event):
    """A voice channel (RTP and RTCP, one group, ch. 2 "Session Inactivity
    Timeout") announced by ``side`` ("a" or "b") in its ``index``-th m= line.
    ``dst_*`` is where that side wants the media (the SDP's address);
    ``public_*`` the ALG's even/odd pair standing for it (None without NAT,
    or for the public party's own media). ``media_deadline`` is None until
    the call is answered."""

    key: str
    group: str
    side: str
    index: int
    dst_ip: str
    dst_port: int
    rtcp_port: int
    public_ip: str | None
    public_port: int | None
    media_deadline: float | None


@domain_event("sip.media_released", schema=1, stream=_by_call)
class MediaReleased(Event):
    """A voice channel removed by a re-INVITE/UPDATE, put on hold, or ended
    with the call: its ports are free again."""

    key: str
    group: str
    reason: str


@domain_event("sip.media_seen", schema=1, stream=_by_call)
class MediaSeen(Event):
    """The datapath saw RTP or RTCP of the group: its media inactivity timer
    restarts (ch. 2 "Session Inactivity Timeout")."""

    key: str
    group: str
    at: float
    media_deadline: float


@domain_event("sip.pinhole_opened", schema=1, stream=_by_call)
class PinholeOpened(Event):
    """A pinhole: UDP (or the signalling transport) from any source to
    ``dst_ip:dst_port`` as the packet arrives; ``to_*`` is the destination it
    is translated to (None: unchanged), ``from_*`` the source it is
    translated to (None: unchanged). ``kind`` is "media" or "signalling";
    ``direction`` "inbound" (public to private), "outbound" or "any"."""

    key: str
    pinhole: str
    group: str
    kind: str
    proto: str
    direction: str
    dst_ip: str
    dst_port: int
    to_ip: str | None
    to_port: int | None
    from_ip: str | None
    from_port: int | None
    expires_at: float | None


@domain_event("sip.pinhole_closed", schema=1, stream=_by_call)
class PinholeClosed(Event):
    key: str
    pinhole: str
    reason: str


@domain_event("sip.call_ended", schema=1, stream=_by_call)
class CallEnded(Event):
    """The call is removed: every pinhole, binding and port goes with it."""

    key: str
    reason: str


@domain_event("sip.registration_bound", schema=1, stream=_by_registration)
class RegistrationBound(Event):
    """An Incoming DIP table entry (ch. 2 "Incoming SIP Call Support Using the
    SIP Registrar", Figure 10): the private contact and the public address
    that stands for it. ``expires_at`` is None while the REGISTER waits for
    its 200 OK, then the registrar's granted lifetime. ``owned``: the public
    port was allocated by the ALG."""

    public_ip: str
    public_port: int
    private_ip: str
    private_port: int
    call_id: str
    expires_at: float | None
    owned: bool


@domain_event("sip.registration_removed", schema=1, stream=_by_registration)
class RegistrationRemoved(Event):
    public_ip: str
    public_port: int
    reason: str


@domain_event("sip.protect_deny_added", schema=1, stream=_by_protect_entry)
class ProtectDenyAdded(Event):
    """A 3xx/4xx/5xx answer to an INVITE: INVITEs from ``src_ip`` to
    ``proxy_ip`` are discarded until ``until`` (ch. 2 "SIP Attack
    Protection")."""

    src_ip: str
    proxy_ip: str
    until: float


@domain_event("sip.protect_deny_expired", schema=1, stream=_by_protect_entry)
class ProtectDenyExpired(Event):
    src_ip: str
    proxy_ip: str


# Positional constructors of every event above for the ALG's hot path
# (gateway.construct.frozen_constructor): the same instances, built without
# the frozen ``__init__``'s guarded ``__setattr__`` per field (an INVITE
# emits eight events; PinholeOpened has thirteen fields).
new = SimpleNamespace(**{
    cls.__name__: frozen_constructor(cls)
    for cls in (CallStarted, CallActivity, TransactionSeen, BindingAdded, CallAnswered,
                CallRejected, CallRetried, CallForwarded, CallTerminating, MediaBound,
                MediaReleased, MediaSeen, PinholeOpened, PinholeClosed, CallEnded,
                RegistrationBound, RegistrationRemoved, ProtectDenyAdded, ProtectDenyExpired)})
