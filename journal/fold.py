"""Folding many records at once: restart, standby rejoin and snapshots.

``gateway.domain.apply`` folds one event: for a SIP event it opens a draft
of the SIP state, runs the handler, freezes the draft into a new SipState
and copies the DomainState around it. The live path needs exactly that (a
state per message). A restart folding a tail of 200,000 records does not:
:class:`BatchFold` keeps one SIP draft open across a run of SIP events and
freezes it once, when an event of another domain comes or the result is
wanted. The SIP state's own contract is that a run folded into a draft and
frozen once equals the same events applied one by one
(``gateway.sip.state_fold.apply_to``; tests/test_sip_alg_replay.py and
tests/test_batch_fold.py check it); events of the other domains go through
``domain.apply`` as they are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway import domain
from gateway.sip import state_draft as sip_draft
from gateway.sip import state_fold as sip_fold

_apply_to = sip_fold.apply_to
# sip_fold.apply_to's own table (HANDLERS): the handler of each SIP event class, looked
# up here once per event instead of through two calls (a standby and a
# replay fold every record through add()).
_SIP_HANDLERS = sip_fold.HANDLERS


class BatchFold:
    """``state = domain.apply(state, e)`` for each ``e`` given to :meth:`add`,
    with :attr:`state` (or :meth:`freeze`) giving the same value."""

    __slots__ = ("_state", "_draft")

    def __init__(self, state: domain.DomainState) -> None:
        self._state = state
        self._draft: sip_draft.SipDraft | None = None

    def add(self, event: Any) -> None:
        handler = _SIP_HANDLERS.get(type(event))
        if handler is not None:
            draft = self._draft
            if draft is None:
                draft = self._draft = sip_draft.SipDraft(self._state.sip)
            handler(draft, event)
        elif event.TYPE.startswith("sip."):
            # A SIP type without a handler: apply_to raises what it always did.
            draft = self._draft
            if draft is None:
                draft = self._draft = sip_draft.SipDraft(self._state.sip)
            _apply_to(draft, event)
        else:
            if self._draft is not None:
                self.freeze()
            self._state = domain.apply(self._state, event)

    def freeze(self) -> domain.DomainState:
        """The state folded so far (the fold may go on after)."""
        draft = self._draft
        if draft is not None:
            self._draft = None
            sip = draft.freeze()
            if sip is not self._state.sip:
                self._state = replace(self._state, sip=sip)
        return self._state

    @property
    def state(self) -> domain.DomainState:
        return self.freeze()
