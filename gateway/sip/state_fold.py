"""The fold of the SIP ALG's events: one handler per event type changing a
:class:`~gateway.sip.state_draft.SipDraft` in place (:data:`HANDLERS`), and :func:`apply`,
:func:`apply_to` and :func:`fold`. It sits above gateway.sip.state and state_draft,
which never import it (no cycle).
"""

from __future__ import annotations

from immutables import Map

from gateway.construct import frozen_constructor
from gateway.fold import Fold
from gateway.pinhole import Pinhole
from gateway.sip import events as ev
from gateway.sip import portmap
from gateway.sip.state import (EMPTY, MAX_TXNS, Binding, MediaGroup, Registration, SipState, Txn,
                               _call_base)
from gateway.sip.state_draft import CallDraft, SipDraft
from gateway.sip.transitions import CALLING, CONFIRMED, REJECTED, TERMINATING

_make_txn = frozen_constructor(Txn)
_make_binding = frozen_constructor(Binding)
_make_group = frozen_constructor(MediaGroup)
_make_pinhole = frozen_constructor(Pinhole)


def _group_until(g: MediaGroup, media_deadline: float | None) -> MediaGroup:
    return _make_group(g.group, g.side, g.index, g.dst_ip, g.dst_port, g.rtcp_port, g.public_ip,
                       g.public_port, media_deadline)


def _pinhole_until(p: Pinhole, expires_at: float | None) -> Pinhole:
    return _make_pinhole(p.id, p.call, p.group, p.kind, p.proto, p.direction, p.dst, p.to,
                         p.src_to, expires_at, p.channel, p.alg)


def _index_add(index: Map, key, value) -> Map:
    have = index.get(key, ())
    return index if value in have else index.set(key, have + (value,))


def _index_remove(index: Map, key, value) -> Map:
    have = index.get(key)
    if have is None or value not in have:
        return index
    rest = tuple(v for v in have if v != value)
    return index.set(key, rest) if rest else index.delete(key)


def apply(state: SipState, event: ev.Event) -> SipState:
    """Fold one event into the state (pure)."""
    return _FOLD.apply(state, event)


def apply_to(draft: SipDraft, event: ev.Event) -> None:
    """Fold one event into a draft (in place): a run of events folded this
    way and frozen once equals the same events applied one by one
    (tests/test_sip_alg_replay.py checks it)."""
    _FOLD.handler(event)(draft, event)


def fold(events, state: SipState = EMPTY) -> SipState:
    return _FOLD.fold(events, state)


# A call is "in setup" while its initial INVITE has no final answer: phase
# "calling" with the caller's source known (RFC 3261 §13.3.1.4: a 2xx
# confirms the dialog; a final non-2xx, CANCEL or BYE ends the attempt).
# setup_by_src counts them per source for the per-source limit.
def _count_setup(s: SipDraft, src: str, delta: int) -> None:
    n = s.setup_by_src.get(src, 0) + delta
    s.setup_by_src = s.setup_by_src.set(src, n) if n > 0 else s.setup_by_src.delete(src)


def _leave_setup(s: SipDraft, c) -> None:
    """Before ``c`` leaves phase "calling" (answered, rejected, ending)."""
    if c.phase == CALLING and c.setup_src is not None:
        _count_setup(s, c.setup_src, -1)


def _call_started(s: SipDraft, e: ev.CallStarted) -> None:
    s.add_call(CallDraft(e.key, e.call_id, e.public_call_id, e.from_tag, e.mode, e.private_ip,
                         e.alg_ip, e.ingress, e.egress, e.at, e.max_deadline))
    s.call_index = s.call_index.set((e.call_id, e.from_tag), e.key) \
        .set((e.public_call_id, e.from_tag), e.key)


def _call_activity(s: SipDraft, e: ev.CallActivity) -> None:
    c = s.edit_call(e.key)
    c.signalling_deadline = e.signalling_deadline
    c.session_expires = e.session_expires


def _txn_seen(s: SipDraft, e: ev.TransactionSeen) -> None:
    c = s.edit_call(e.key)
    c.txns = (c.txns + (_make_txn(e.branch, e.cseq, e.method, e.sender, e.src_ip, e.dst_ip),)
              )[-MAX_TXNS:]
    if c.setup_src is None and e.method == "INVITE" and e.sender == "a" and c.to_tag is None:
        # The caller's first INVITE names the call's source (CallStarted
        # is followed by it in the same step).
        c.setup_src = e.src_ip
        if c.phase == CALLING:
            _count_setup(s, e.src_ip, 1)


def _binding_added(s: SipDraft, e: ev.BindingAdded) -> None:
    c = s.edit_call(e.key)
    c.bindings = c.bindings + (_make_binding(e.private_ip, e.private_port, e.public_ip,
                                             e.public_port, e.owned),)
    if e.owned:
        s.ports = portmap.hold(s.ports, e.public_ip, e.public_port)
    else:
        pub = (e.public_ip, e.public_port)
        reg = s.registrations.get(pub)
        if reg is not None and reg.owned:
            s.borrowed = s.borrowed.set(pub, s.borrowed.get(pub, 0) + 1)


def _call_answered(s: SipDraft, e: ev.CallAnswered) -> None:
    c = s.edit_call(e.key)
    _leave_setup(s, c)
    c.groups = tuple([_group_until(g, e.media_deadline) for g in c.groups])
    c.pinholes = tuple([_pinhole_until(p, e.pinhole_expires)
                        if p.kind == "media" and p.direction == "inbound" else p
                        for p in c.pinholes])
    c.phase = CONFIRMED
    c.to_tag = e.to_tag
    c.teardown_at = None


def _call_rejected(s: SipDraft, e: ev.CallRejected) -> None:
    c = s.edit_call(e.key)
    _leave_setup(s, c)
    c.phase = REJECTED
    c.teardown_at = e.teardown_at


def _call_retried(s: SipDraft, e: ev.CallRetried) -> None:
    c = s.edit_call(e.key)
    if c.phase != CALLING and c.setup_src is not None:
        _count_setup(s, c.setup_src, 1)
    c.phase = CALLING
    c.teardown_at = None


def _call_forwarded(s: SipDraft, e: ev.CallForwarded) -> None:
    s.edit_call(e.key).forwarded = True


def _call_terminating(s: SipDraft, e: ev.CallTerminating) -> None:
    c = s.edit_call(e.key)
    _leave_setup(s, c)
    c.phase = TERMINATING
    c.teardown_at = e.teardown_at


def _media_bound(s: SipDraft, e: ev.MediaBound) -> None:
    c = s.edit_call(e.key)
    c.groups = c.groups + (_make_group(e.group, e.side, e.index, e.dst_ip, e.dst_port,
                                       e.rtcp_port, e.public_ip, e.public_port,
                                       e.media_deadline),)
    c.seq += 1
    if e.public_ip is not None and e.public_port is not None:
        s.ports = portmap.hold(s.ports, e.public_ip, e.public_port, e.public_port + 1)
    s.group_index = s.group_index.set(e.group, e.key)


def _media_released(s: SipDraft, e: ev.MediaReleased) -> None:
    c = s.edit_call(e.key)
    g = c.group(e.group)
    if g is not None and g.public_ip is not None and g.public_port is not None:
        s.ports = portmap.release(s.ports, g.public_ip, g.public_port, g.public_port + 1)
    if e.group in s.group_index:
        s.group_index = s.group_index.delete(e.group)
    c.groups = tuple(x for x in c.groups if x.group != e.group)


def _media_seen(s: SipDraft, e: ev.MediaSeen) -> None:
    c = s.edit_call(e.key)
    c.groups = tuple([_group_until(g, e.media_deadline) if g.group == e.group else g
                      for g in c.groups])


def _pinhole_opened(s: SipDraft, e: ev.PinholeOpened) -> None:
    c = s.edit_call(e.key)
    p = _make_pinhole(
        e.pinhole, e.key, e.group, e.kind, e.proto, e.direction, (e.dst_ip, e.dst_port),
        (e.to_ip, e.to_port) if e.to_ip is not None and e.to_port is not None else None,
        (e.from_ip, e.from_port) if e.from_ip is not None and e.from_port is not None else None,
        e.expires_at, "", "")
    c.pinholes = c.pinholes + (p,)
    c.seq += 1


def _pinhole_closed(s: SipDraft, e: ev.PinholeClosed) -> None:
    c = s.edit_call(e.key)
    c.pinholes = tuple(p for p in c.pinholes if p.id != e.pinhole)


def _call_ended(s: SipDraft, e: ev.CallEnded) -> None:
    c = s.calls[e.key]
    used = s.ports
    for g in c.groups:
        if g.public_ip is not None and g.public_port is not None:
            used = portmap.release(used, g.public_ip, g.public_port, g.public_port + 1)
    borrowed = s.borrowed
    for b in c.bindings:
        if b.owned:
            used = portmap.release(used, b.public_ip, b.public_port)
            continue
        pub = (b.public_ip, b.public_port)
        n = borrowed.get(pub)
        if n is None:
            continue
        if n > 1:
            borrowed = borrowed.set(pub, n - 1)
            continue
        borrowed = borrowed.delete(pub)
        if pub not in s.registrations:
            used = portmap.release(used, b.public_ip, b.public_port)
    # Only this call's own entries point at its key: the two Call-ID forms
    # it was started with, and its live groups (a group leaves the index
    # and the call together, on MediaReleased).
    index = s.call_index
    for k in ((c.call_id, c.from_tag), (c.public_call_id, c.from_tag)):
        if index.get(k) == e.key:
            index = index.delete(k)
    gi = s.group_index
    for g in c.groups:
        if gi.get(g.group) == e.key:
            gi = gi.delete(g.group)
    s.drop_call(e.key)
    s.call_index, s.group_index, s.ports, s.borrowed = index, gi, used, borrowed
    _leave_setup(s, c)


def _unindex(s, r: Registration) -> tuple[Map, Map]:
    pub = (r.public_ip, r.public_port)
    return (_index_remove(s.reg_by_private, (r.private_ip, r.private_port), pub),
            _index_remove(s.reg_by_call, (r.public_ip, _call_base(r.call_id)), pub))


def _registration_bound(s: SipDraft, e: ev.RegistrationBound) -> None:
    pub = (e.public_ip, e.public_port)
    new = Registration(e.public_ip, e.public_port, e.private_ip, e.private_port, e.call_id,
                       e.expires_at, e.owned)
    old = s.registrations.get(pub)
    by_private, by_call = s.reg_by_private, s.reg_by_call
    if old is None:
        s.reg_since, s.reg_seq = s.reg_since.set(pub, s.reg_seq), s.reg_seq + 1
    else:
        by_private, by_call = _unindex(s, old)
    s.reg_by_private = _index_add(by_private, (e.private_ip, e.private_port), pub)
    s.reg_by_call = _index_add(by_call, (e.public_ip, _call_base(e.call_id)), pub)
    # As with a set: a port held twice is one port, and it is released by
    # whichever holder goes first.
    if e.owned:
        s.ports = portmap.hold(s.ports, e.public_ip, e.public_port)
    s.registrations = s.registrations.set(pub, new)


def _registration_removed(s: SipDraft, e: ev.RegistrationRemoved) -> None:
    pub = (e.public_ip, e.public_port)
    r = s.registrations.get(pub)
    if r is None:
        return
    s.reg_by_private, s.reg_by_call = _unindex(s, r)
    if r.owned and pub not in s.borrowed:
        s.ports = portmap.release(s.ports, r.public_ip, r.public_port)
    s.registrations = s.registrations.delete(pub)
    s.reg_since = s.reg_since.delete(pub)


def _protect_added(s: SipDraft, e: ev.ProtectDenyAdded) -> None:
    s.protect = s.protect.set((e.src_ip, e.proxy_ip), e.until)


def _protect_expired(s: SipDraft, e: ev.ProtectDenyExpired) -> None:
    k = (e.src_ip, e.proxy_ip)
    if k in s.protect:
        s.protect = s.protect.delete(k)


_HANDLERS = {
    ev.CallStarted: _call_started,
    ev.CallActivity: _call_activity,
    ev.TransactionSeen: _txn_seen,
    ev.BindingAdded: _binding_added,
    ev.CallAnswered: _call_answered,
    ev.CallRejected: _call_rejected,
    ev.CallRetried: _call_retried,
    ev.CallForwarded: _call_forwarded,
    ev.CallTerminating: _call_terminating,
    ev.MediaBound: _media_bound,
    ev.MediaReleased: _media_released,
    ev.MediaSeen: _media_seen,
    ev.PinholeOpened: _pinhole_opened,
    ev.PinholeClosed: _pinhole_closed,
    ev.CallEnded: _call_ended,
    ev.RegistrationBound: _registration_bound,
    ev.RegistrationRemoved: _registration_removed,
    ev.ProtectDenyAdded: _protect_added,
    ev.ProtectDenyExpired: _protect_expired,
}
# Event class -> its in-place fold into a SipDraft (what apply_to runs).
HANDLERS = _HANDLERS
_FOLD = Fold(_HANDLERS, "a SIP ALG", SipDraft)
