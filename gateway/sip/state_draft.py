"""The SIP state's working copy: :class:`SipDraft` (with :class:`CallDraft`), a
:class:`~gateway.sip.state.SipState` being changed by a run of events, frozen once.
It imports the frozen classes from gateway.sip.state, which never needs it (no cycle).
"""

from __future__ import annotations

from dataclasses import fields

from gateway.construct import frozen_constructor
from gateway.sip.state import Call, SipState, _CallQueries, _StateQueries
from gateway.sip.transitions import CALLING

_CALL_FIELDS = tuple(f.name for f in fields(Call))
_STATE_FIELDS = tuple(f.name for f in fields(SipState))


class CallDraft(_CallQueries):
    """A :class:`Call` being changed by the fold (see :class:`SipDraft`):
    the same fields, mutable. Its slots are exactly Call's, in the same
    order, so a finished draft becomes a Call in place (``__class__``
    assignment between classes of one layout) instead of being copied."""

    __slots__ = _CALL_FIELDS

    def __init__(self, key: str, call_id: str, public_call_id: str, from_tag: str, mode: str,
                 private_ip: str | None, alg_ip: str | None, ingress: str, egress: str,
                 started_at: float, max_deadline: float) -> None:
        # A new call: Call's defaults for the rest.
        self.key = key
        self.call_id = call_id
        self.public_call_id = public_call_id
        self.from_tag = from_tag
        self.mode = mode
        self.private_ip = private_ip
        self.alg_ip = alg_ip
        self.ingress = ingress
        self.egress = egress
        self.started_at = started_at
        self.max_deadline = max_deadline
        self.signalling_deadline = max_deadline
        self.phase = CALLING
        self.to_tag = None
        self.session_expires = None
        self.teardown_at = None
        self.forwarded = False
        self.bindings = ()
        self.txns = ()
        self.groups = ()
        self.pinholes = ()
        self.seq = 0
        self.setup_src = None

    def __repr__(self) -> str:
        return "CallDraft(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in _CALL_FIELDS) + ")"


if CallDraft.__slots__ != Call.__slots__:       # pragma: no cover - a definition error
    raise TypeError("CallDraft must have exactly Call's slots")

_new = object.__new__


def _thaw_call(c: Call) -> CallDraft:
    """A mutable copy of ``c`` (straight-line: this runs for every call a
    message touches)."""
    d = _new(CallDraft)
    d.key = c.key
    d.call_id = c.call_id
    d.public_call_id = c.public_call_id
    d.from_tag = c.from_tag
    d.mode = c.mode
    d.private_ip = c.private_ip
    d.alg_ip = c.alg_ip
    d.ingress = c.ingress
    d.egress = c.egress
    d.started_at = c.started_at
    d.max_deadline = c.max_deadline
    d.signalling_deadline = c.signalling_deadline
    d.phase = c.phase
    d.to_tag = c.to_tag
    d.session_expires = c.session_expires
    d.teardown_at = c.teardown_at
    d.forwarded = c.forwarded
    d.bindings = c.bindings
    d.txns = c.txns
    d.groups = c.groups
    d.pinholes = c.pinholes
    d.seq = c.seq
    d.setup_src = c.setup_src
    return d


_make_state = frozen_constructor(SipState)


class SipDraft(_StateQueries):
    """A state being changed by a run of events: the fold's working copy.

    It reads like a :class:`SipState` (same fields and queries; a call that
    was changed reads as its :class:`CallDraft`). Maps are still persistent
    ``immutables.Map`` values, so the state it started from is never touched
    and :meth:`freeze` shares every unchanged part. A call is copied into a
    mutable :class:`CallDraft` at its first change in the run, and becomes
    a :class:`Call` at :meth:`freeze`: a message that emits eight events of
    one call builds one Call and one SipState, not eight of each.
    Collections inside a draft call are replaced, never mutated in place, so
    a tuple read from it before an event stays what it was."""

    __slots__ = _STATE_FIELDS + ("_base", "_drafts")

    def __init__(self, base: SipState) -> None:
        self.calls = base.calls
        self.call_index = base.call_index
        self.group_index = base.group_index
        self.registrations = base.registrations
        self.reg_by_private = base.reg_by_private
        self.reg_by_call = base.reg_by_call
        self.reg_since = base.reg_since
        self.reg_seq = base.reg_seq
        self.protect = base.protect
        self.ports = base.ports
        self.borrowed = base.borrowed
        self.setup_by_src = base.setup_by_src
        self._base = base
        self._drafts: dict[str, CallDraft] = {}

    def edit_call(self, key: str) -> CallDraft:
        """The call ``key`` (which must exist), open for changes."""
        d = self._drafts.get(key)
        if d is None or self.calls.get(key) is not d:
            d = _thaw_call(self.calls[key])
            self._drafts[key] = d
            self.calls = self.calls.set(key, d)
        return d

    def add_call(self, call: CallDraft) -> None:
        self._drafts[call.key] = call
        self.calls = self.calls.set(call.key, call)

    def drop_call(self, key: str) -> None:
        self._drafts.pop(key, None)
        self.calls = self.calls.delete(key)

    def freeze(self) -> SipState:
        """The state as a frozen value. The draft may go on changing after:
        a call changed again is copied again."""
        calls = self.calls
        for key, d in self._drafts.items():
            if calls.get(key) is d:
                d.__class__ = Call      # same slots: the draft is the Call now
        self._drafts.clear()
        base = self._base
        if (calls is base.calls and self.call_index is base.call_index
                and self.group_index is base.group_index
                and self.registrations is base.registrations
                and self.reg_by_private is base.reg_by_private
                and self.reg_by_call is base.reg_by_call and self.reg_since is base.reg_since
                and self.reg_seq == base.reg_seq and self.protect is base.protect
                and self.ports is base.ports and self.borrowed is base.borrowed
                and self.setup_by_src is base.setup_by_src):
            return base
        return _make_state(calls, self.call_index, self.group_index, self.registrations,
                           self.reg_by_private, self.reg_by_call, self.reg_since, self.reg_seq,
                           self.protect, self.ports, self.borrowed, self.setup_by_src)
