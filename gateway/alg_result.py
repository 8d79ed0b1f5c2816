"""What every ALG's pure step returns (SIP: gateway/sip/alg.py, MGCP:
gateway/mgcp/alg.py, H.323: gateway/h323/alg.py), and the one builder of it
from an evaluation's events (:meth:`Run.result`), so the node handles them
with one code path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from gateway.construct import frozen_constructor
from gateway.events import Event
from gateway.span import Edit


@dataclass(frozen=True, slots=True)
class Timer:
    """Call the ALG's ``on_timer`` with ``key`` at ``deadline`` (None: cancel)."""

    key: str
    deadline: float | None


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one message, timer or media report.

    ``state`` is the new state: exactly the fold of ``events`` into the old
    one. ``verdict`` is "forward" or "drop" (with a one-line ``reason``);
    ``data`` the bytes to send (rewritten by ``edits``, or the input);
    ``pinholes_open``/``pinholes_close`` what the datapath must change;
    ``timers`` the deadlines to (re)arm; ``logs`` lines for the operator;
    ``route_to`` where the message must go when it is not addressed there
    already (SIP Incoming DIP table; an MGCP response to its command's source)."""

    state: Any
    verdict: str
    reason: str = ""
    data: bytes = b""
    edits: tuple[Edit, ...] = ()
    pinholes_open: tuple = ()
    pinholes_close: tuple[str, ...] = ()
    timers: tuple[Timer, ...] = ()
    events: tuple[Event, ...] = ()
    logs: tuple[str, ...] = ()
    route_to: tuple[str, int] | None = None


class Dropped(Exception):
    """Raised inside an ALG's evaluation: the message is dropped for
    ``reason`` (the one line logged) and its events are discarded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_make_result = frozen_constructor(Result)
_make_timer = frozen_constructor(Timer)


def stream_of(e: Event) -> str:
    """The timer key of most events: the stream of the entity they change."""
    return e.stream


def open_hole(hole: Any, opened: dict[str, Any]) -> None:
    """A pinhole opened by this evaluation (None: it is already gone again)."""
    if hole is not None:
        opened[hole.id] = hole


def close_hole(pid: str, opened: dict[str, Any], closed: list[str]) -> None:
    """A pinhole closed: one this evaluation opened is simply not opened."""
    if opened.pop(pid, None) is None:
        closed.append(pid)


# What an event does to the Result's pinholes: (final state, event, opened by
# id in order, closed ids) -> None.
PinholeChange = Callable[[Any, Event, dict, list], None]


class Run:
    """One evaluation of an ALG (a message, a timer, a media report): the
    running state and what it emitted. Every change goes through
    :meth:`emit`, which folds the event at once with the ALG's own ``apply``,
    so the state a step returns is exactly the fold of its events.

    Subclasses set ``apply`` (a staticmethod) and describe their events for
    :meth:`result`: ``KEYED`` maps an event type whose timer key is
    ``stream(event.key)`` to that function (runs of events of one key, the
    common case, then cost one lookup: an INVITE emits eight events of its
    call); ``TIMER_KEYS`` maps an event type to a function giving the timer
    key it touches (None: no timer); any other type uses its stream.
    ``PINHOLES`` maps an event type to its :data:`PinholeChange`."""

    apply: Any = None
    KEYED: ClassVar[dict[type, Callable[[str], str]]] = {}
    TIMER_KEYS: ClassVar[dict[type, Callable[[Event], str | None]]] = {}
    PINHOLES: ClassVar[dict[type, PinholeChange]] = {}

    def __init__(self, state: Any, now: float, settings: Any) -> None:
        self.st = state
        self.now = now
        self.settings = settings
        self.events: list[Event] = []
        self.logs: list[str] = []
        self.edits: list[Edit] = []
        self.route_to: tuple[str, int] | None = None

    def emit(self, e: Event) -> None:
        self.st = self.apply(self.st, e)
        self.events.append(e)

    def result(self, verdict: str = "forward", reason: str = "", data: bytes = b"") -> Result:
        """The Result of the evaluation: the state, the pinholes its events
        opened and closed net of each other (in order), one timer per key
        touched with the key's deadline in the final state."""
        st = self.st
        opened: dict[str, Any] = {}
        closed: list[str] = []
        keys: dict[str, None] = {}
        keyed, timer_keys, pinholes = self.KEYED, self.TIMER_KEYS, self.PINHOLES
        last = last_stream = None
        for e in self.events:
            kind = type(e)
            stream = keyed.get(kind)
            if stream is not None:
                if e.key != last or stream is not last_stream:
                    last, last_stream = e.key, stream
                    keys[stream(last)] = None
            else:
                key = timer_keys.get(kind, stream_of)(e)
                if key is not None:
                    keys[key] = None
            change = pinholes.get(kind)
            if change is not None:
                change(st, e, opened, closed)
        timers = tuple([_make_timer(k, st.next_deadline(k)) for k in keys])
        return _make_result(st, verdict, reason, data, tuple(self.edits), tuple(opened.values()),
                            tuple(closed), timers, tuple(self.events), tuple(self.logs), self.route_to)


class Combined:
    """The Results of the several messages one TCP segment carried, merged
    into the segment's one Result (SIP over TCP, H.323): events and logs in
    order, pinholes opened and closed net of each other, one timer per
    stream touched. The first dropped message drops the whole segment and
    changes nothing (``add`` returns False; ``dropped`` is that Result)."""

    def __init__(self, state: Any) -> None:
        self.before = state
        self.state = state
        self.events: list[Event] = []
        self.logs: list[str] = []
        self.opened: list = []
        self.closed: list[str] = []
        self.streams: dict[str, None] = {}
        self.dropped: Result | None = None

    def add(self, r: Result, data: bytes) -> bool:
        self.logs.extend(r.logs)
        if r.verdict != "forward":
            self.dropped = Result(self.before, "drop", r.reason, data, logs=tuple(self.logs))
            return False
        self.state = r.state
        self.events.extend(r.events)
        for t in r.timers:
            self.streams[t.key] = None
        self.opened.extend(r.pinholes_open)
        for pid in r.pinholes_close:
            if any(p.id == pid for p in self.opened):
                self.opened = [p for p in self.opened if p.id != pid]
            else:
                self.closed.append(pid)
        return True

    def result(self, data: bytes, edits: tuple[Edit, ...] = (),
               route_to: tuple[str, int] | None = None) -> Result:
        timers = tuple(Timer(k, self.state.next_deadline(k)) for k in self.streams)
        return Result(self.state, "forward", "", data, edits, tuple(self.opened), tuple(self.closed),
                      timers, tuple(self.events), tuple(self.logs), route_to)
