"""An ALG's fold: its state is the fold of its events, each event type
folded by one handler. The dispatch (find the handler, refuse an event of
another ALG) is written here once for SIP, MGCP and H.323."""

from __future__ import annotations

from typing import Any, Callable


class Fold:
    """``handlers``: event type -> handler. A handler takes (state, event)
    and returns the new state; with ``draft`` (state -> a mutable draft with
    ``freeze()``) it changes the draft in place instead, and a run of events
    is folded into one draft frozen once (the same state as applying them one
    by one). ``what`` names the ALG in the error for a foreign event."""

    __slots__ = ("handlers", "what", "draft")

    def __init__(self, handlers: dict[type, Callable[[Any, Any], Any]], what: str,
                 draft: Callable[[Any], Any] | None = None) -> None:
        self.handlers = handlers
        self.what = what
        self.draft = draft

    def handler(self, event: Any) -> Callable[[Any, Any], Any]:
        handler = self.handlers.get(type(event))
        if handler is None:
            raise TypeError(f"not {self.what} event: {type(event).__name__}")
        return handler

    def apply(self, state: Any, event: Any) -> Any:
        """Fold one event into the state (pure)."""
        handler = self.handler(event)
        if self.draft is None:
            return handler(state, event)
        d = self.draft(state)
        handler(d, event)
        return d.freeze()

    def fold(self, events, state: Any) -> Any:
        if self.draft is None:
            for e in events:
                state = self.handler(e)(state, e)
            return state
        d = self.draft(state)
        for e in events:
            self.handler(e)(d, e)
        return d.freeze()
