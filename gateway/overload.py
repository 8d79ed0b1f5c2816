"""Overload control: shed new dialogs early, fairly per source (sans-I/O).

Why: past the pair's capacity every held signalling message waits longer for
its ALG step and journal write; a UAC whose INVITE is not answered within
T1 (500 ms, RFC 3261 §17.1.1.2) retransmits it, which adds load, and the
collapse takes the calls already set up with it (ARCHITECTURE.md, "Call rate
through the gateway pair": past the limit "the failure is a collapse, not a
plateau"). RFC 6357 §3 names the remedy: reject new work early and cheaply
at the overloaded element so that the work already admitted completes.

What is shed: only requests that start something new — a SIP INVITE,
REGISTER, SUBSCRIBE or OPTIONS without a To tag (RFC 3261 §8.1.1.2: the To
tag is what marks a request inside a dialog), an MGCP CRCX (RFC 3435
§2.3.5: a new connection), an H.225.0 RAS AdmissionRequest (the start of an
H.323 call's admission). ACK, BYE, CANCEL, re-INVITEs, responses, the other
MGCP verbs and media are never shed: they belong to work already admitted.
:func:`new_dialog_kind` finds these with a byte scan of the first line and
the To header, before any full parse (the ALG's parser costs ~18% of the
active node's time at capacity).

How much is admitted: ``NewDialogBudget`` holds the rate of new dialogs per
second (``set flow overload new-dialog-rate``). The node's load lowers it:
``observe()`` takes, every housekeeping turn, the messages held waiting for
their ALG/journal completion, the mean completion latency and the
longest NFQUEUE drain since the last turn; while any is past its limit the
budget is cut by a quarter per turn (multiplicative decrease), otherwise it
grows back by a twentieth of the configured rate per turn (additive
increase), never below ``min_rate``: the AIMD loop of RFC 7415's rate-based
control, run locally.

Fairness: each source address has a token bucket refilled at its share of
the budget, the budget divided by the sources active in the last
``window`` seconds, holding at most ``burst`` seconds of that share; a new
dialog is admitted when its source's bucket and the global bucket (the
whole budget, twice the burst) each hold a token. A host flooding at fifty times
the budget gets its share and no more; a host below its share is never
refused while the total stays within the budget (the property tests in
tests/test_overload.py). Sources beyond ``max_sources`` (a spoofed sweep)
share one bucket, so memory stays bounded and the sweep gets one share.
"""

from __future__ import annotations

from dataclasses import dataclass

# SIP methods that start a dialog or a transaction outside one (RFC 3261
# §12, RFC 6665 §4.1.2 SUBSCRIBE, §11.2 OPTIONS, §10 REGISTER).
_SIP_NEW = (b"INVITE ", b"REGISTER ", b"SUBSCRIBE ", b"OPTIONS ")
_SCAN = 4096            # bytes of a message the scan looks at (its headers)
# H.225.0 RasMessage is an extensible CHOICE in aligned PER: one extension
# bit then the index of the root alternative in five bits;
# admissionRequest is alternative 9.
RAS_ARQ_INDEX = 9


def new_dialog_kind(alg: str, payload: bytes) -> str | None:
    """``"sip-invite"``, ``"sip-register"``, ``"sip-subscribe"``,
    ``"sip-options"``, ``"mgcp-crcx"``, ``"h323-arq"`` for a message that
    starts new work, None for anything else (including what does not look
    like any of these: the ALG's parser says why later)."""
    if alg == "sip":
        for method in _SIP_NEW:
            if payload.startswith(method):
                break
        else:
            return None
        if _has_to_tag(payload):
            return None                 # a request inside a dialog (re-INVITE, refresh)
        return "sip-" + method[:-1].decode().lower()
    if alg == "mgcp":
        if payload[:5].upper() == b"CRCX " or payload[:5].upper() == b"CRCX\t":
            return "mgcp-crcx"
        return None
    if alg == "h323":
        if payload and not payload[0] & 0x80 and (payload[0] >> 2) & 0x1F == RAS_ARQ_INDEX:
            return "h323-arq"
        return None
    return None


def _has_to_tag(payload: bytes) -> bool:
    """Whether the To header (long or compact form ``t``, RFC 3261 §7.3.3,
    names case-insensitive) carries a ``tag`` parameter."""
    head = payload[:_SCAN]
    end = head.find(b"\r\n\r\n")
    low = (head if end < 0 else head[:end]).lower()
    for name in (b"\nto", b"\nt"):
        start = 0
        while True:
            i = low.find(name, start)
            if i < 0:
                break
            j = i + len(name)
            while j < len(low) and low[j] in b" \t":
                j += 1
            if j < len(low) and low[j] == 58:                # ':'
                k = low.find(b"\n", j)
                value = low[j:k if k >= 0 else len(low)]
                # A header value may be folded onto following lines (§7.3.1).
                while k >= 0 and k + 1 < len(low) and low[k + 1] in b" \t":
                    k2 = low.find(b"\n", k + 1)
                    value += low[k:k2 if k2 >= 0 else len(low)]
                    k = k2
                return b"tag" in value and _tag_param(value)
            start = i + 1
    return False


def _tag_param(value: bytes) -> bool:
    # ``;tag=`` outside the angle brackets of the address (a URI parameter
    # inside <...> named tag is not the header's tag).
    close = value.rfind(b">")
    params = value[close + 1:] if close >= 0 else value
    for part in params.split(b";")[1:]:
        if part.strip().split(b"=", 1)[0].strip() == b"tag":
            return True
    return False


@dataclass(frozen=True, slots=True)
class OverloadSettings:
    """``set flow overload ...`` (gateway.config.model.FlowSettings holds the
    values; defaults there). ``rate`` 0 turns shedding off."""

    rate: float = 200.0              # new dialogs per second admitted at most
    max_held: int = 300              # held messages past which the node is overloaded
    latency_target: float = 0.1      # seconds: mean completion latency tolerated
    batch_target: float = 0.1        # seconds: longest NFQUEUE drain tolerated
    min_rate: float = 10.0           # the budget never falls below this
    burst: float = 0.5               # seconds of a bucket's rate it can hold
    window: float = 2.0              # a source is active this long after its last request
    max_sources: int = 16384


def overload_settings(flow) -> OverloadSettings:
    """The settings of a configuration's ``FlowSettings`` (``set flow overload``)."""
    rate = float(flow.overload_new_dialog_rate)
    # The floor of the AIMD cut: a quarter of the configured rate. Lower, a
    # flooder's shed INVITEs come back as retransmissions (RFC 3261 timer A)
    # faster than the budget frees the node.
    return OverloadSettings(rate=rate, max_held=int(flow.overload_max_held),
                            latency_target=flow.overload_latency_target_ms / 1000.0,
                            min_rate=max(1.0, rate / 4))


OVERFLOW = -1                         # the shared bucket of sources past max_sources


class NewDialogBudget:
    """Admission of new dialogs (module docstring). Time is passed in."""

    __slots__ = ("settings", "budget", "_global", "_sources", "_active_until", "_active",
                 "_last_observe", "admitted", "shed", "overloaded", "cuts")

    def __init__(self, settings: OverloadSettings, now: float = 0.0) -> None:
        self.settings = settings
        self.budget = float(settings.rate)
        self._global = [self._global_cap(), now]                    # tokens, last refill
        self._sources: dict[int, list] = {}                         # src -> [tokens, last, seen]
        self._active = 0                                            # sources seen within window
        self._active_until = now + settings.window
        self._last_observe = now
        self.admitted = 0
        self.shed = 0
        self.overloaded = False
        self.cuts = 0

    @property
    def enabled(self) -> bool:
        return self.settings.rate > 0

    def active_sources(self) -> int:
        return max(1, self._active)

    def share(self) -> float:
        return self.budget / self.active_sources()

    def admit(self, src: int, now: float) -> bool:
        """One new dialog from ``src`` (an IPv4 address as int): admit it?"""
        if not self.enabled:
            return True
        s = self.settings
        if now >= self._active_until:
            self._recount(now)
        st = self._sources.get(src)
        if st is None:
            if len(self._sources) >= s.max_sources:
                src = OVERFLOW
                st = self._sources.get(OVERFLOW)
            if st is None:
                # A new source starts with one share's burst.
                self._active += 1
                st = self._sources[src] = [self.share() * s.burst, now, now]
        st[2] = now
        share = self.share()
        cap = max(1.0, share * s.burst)
        tokens = min(cap, st[0] + (now - st[1]) * share) if now > st[1] else min(cap, st[0])
        st[1] = max(st[1], now)
        g = self._global
        gcap = self._global_cap()
        gtokens = min(gcap, g[0] + (now - g[1]) * self.budget) if now > g[1] else min(gcap, g[0])
        g[1] = max(g[1], now)
        if tokens >= 1.0 and gtokens >= 1.0:
            st[0] = tokens - 1.0
            g[0] = gtokens - 1.0
            self.admitted += 1
            return True
        st[0], g[0] = tokens, gtokens
        self.shed += 1
        return False

    def _global_cap(self) -> float:
        # Twice a lone source's burst: a source's first burst never empties
        # it, so the shares (which add up to the refill rate) always find
        # tokens; what it bounds is the churn of new sources' bursts.
        return max(1.0, 2.0 * self.budget * self.settings.burst)

    def _recount(self, now: float) -> None:
        """Forget sources quiet for a window; count those left."""
        w = self.settings.window
        quiet = [k for k, st in self._sources.items() if now - st[2] > w]
        for k in quiet:
            del self._sources[k]
        self._active = len(self._sources)
        self._active_until = now + w

    def observe(self, now: float, held: int, latency: float, batch: float = 0.0) -> bool:
        """The node's load since the last call (``held``: messages waiting
        for their verdict now; ``latency``: the mean completion latency since
        the last call, seconds; ``batch``: the longest NFQUEUE drain). Adjusts
        the budget (AIMD, at most one step per 0.1 s) and returns whether
        the node is overloaded."""
        s = self.settings
        self.overloaded = (held > s.max_held or latency > s.latency_target
                           or batch > s.batch_target)
        if not self.enabled or now - self._last_observe < 0.1:
            return self.overloaded
        self._last_observe = now
        if self.overloaded:
            new = max(min(s.min_rate, s.rate), self.budget * 0.75)
            if new < self.budget:
                self.cuts += 1
            self.budget = new
        else:
            self.budget = min(float(s.rate), self.budget + s.rate / 20.0)
        return self.overloaded

    def stats(self) -> dict:
        return {"enabled": self.enabled, "rate": self.settings.rate,
                "budget": round(self.budget, 1), "overloaded": self.overloaded,
                "active_sources": self._active, "admitted": self.admitted, "shed": self.shed,
                "budget_cuts": self.cuts}
