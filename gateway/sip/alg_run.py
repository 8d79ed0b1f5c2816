"""One evaluation of the SIP ALG (a message, a timer, a media report): the
running state, folded event by event into one draft as they are emitted
(:func:`gateway.sip.state_fold.apply`), and how a call ends (its pinholes closed,
its media released; manual chapter 2, "Call Termination")."""

from __future__ import annotations

from gateway.config.model import SipSettings
from gateway.sip import events as ev
from gateway.sip.state import Call, SipState
from gateway.sip.state_draft import SipDraft
from gateway.sip.state_fold import HANDLERS, apply
from gateway.alg_result import Result, Run, close_hole

# The events whose stream is their call's (``call/<key>``).
_CALL_EVENTS = frozenset({
    ev.CallStarted, ev.CallActivity, ev.TransactionSeen, ev.BindingAdded, ev.CallAnswered,
    ev.CallRejected, ev.CallRetried, ev.CallForwarded, ev.CallTerminating, ev.MediaBound,
    ev.MediaReleased, ev.MediaSeen, ev.PinholeOpened, ev.PinholeClosed, ev.CallEnded})


def _pinhole_opened(st: SipState, e: ev.PinholeOpened, opened: dict, closed: list) -> None:
    call = st.calls.get(e.key)
    if call is not None:
        pid = e.pinhole
        for p in call.pinholes:
            if p.id == pid:
                # The first of that id, as a search of the call's pinholes finds
                # it (open_hole, inline: an answer opens three).
                opened[pid] = p
                return


def _pinhole_closed(st: SipState, e: ev.PinholeClosed, opened: dict, closed: list) -> None:
    close_hole(e.pinhole, opened, closed)


class _Run(Run):
    """One evaluation: the running state, and what it emitted."""

    apply = staticmethod(apply)
    KEYED = dict.fromkeys(_CALL_EVENTS, ev.call_stream)
    PINHOLES = {ev.PinholeOpened: _pinhole_opened, ev.PinholeClosed: _pinhole_closed}

    def __init__(self, state: SipState, now: float, settings: SipSettings) -> None:
        super().__init__(state, now, settings)
        self.draft: SipDraft | None = None

    def emit(self, e: ev.Event) -> None:
        # The events of one evaluation are folded into one draft, frozen
        # once in :meth:`result`: the same state as applying them one by
        # one (state.apply_to), without a Call and a SipState per event.
        d = self.draft
        if d is None:
            d = self.draft = SipDraft(self.st)
            self.st = d
        HANDLERS[type(e)](d, e)      # state.apply_to, without its check
        self.events.append(e)

    def snapshot(self) -> SipState:
        """The state as it is now, frozen (the run goes on from it)."""
        return self.draft.freeze() if self.draft is not None else self.st

    def result(self, verdict: str = "forward", reason: str = "", data: bytes = b"") -> Result:
        if self.draft is not None:
            self.st = self.draft.freeze()
            self.draft = None
        return super().result(verdict, reason, data)

    # --- calls ending ------------------------------------------------------

    def close_pinhole(self, call: Call, pid: str, reason: str) -> None:
        self.emit(ev.new.PinholeClosed(call.key, pid, reason))

    def release_group(self, key: str, group: str, reason: str) -> None:
        call = self.st.calls[key]
        for p in call.pinholes:
            if p.group == group:
                self.close_pinhole(call, p.id, reason)
        self.emit(ev.new.MediaReleased(key, group, reason))

    def end_call(self, key: str, reason: str) -> None:
        call = self.st.calls[key]
        for p in call.pinholes:
            self.close_pinhole(call, p.id, reason)
        self.emit(ev.new.CallEnded(key, reason))
        self.logs.append(f"call {call.call_id} ended: {reason}")
