"""The SIP ALG, sans-I/O: ``step(state, ctx, data, now) -> Result``.

The datapath has already decided policy and NAT for the signalling packet and
describes it in a :class:`SipContext`. :func:`step` parses the message, finds
its call, looks the transition up in :mod:`gateway.sip.transitions`, and runs
its actions. Every change is an event (:mod:`gateway.sip.events`), folded
into the state as it is emitted with :func:`gateway.sip.state_fold.apply`: the
state returned is exactly the fold of the events returned. A message that is
dropped changes nothing: its events are discarded with it.

Time comes in as ``now``; deadlines are absolute and live in the state. The
caller arms one timer per key of ``Result.timers`` and calls
:func:`on_timer` when it passes (a stale deadline is harmless: the state is
checked again). RTP/RTCP activity comes in through :func:`media_activity`.

Manual references are to chapter 2 of the ScreenOS guide.

The message's actions are in :mod:`gateway.sip.alg_actions` (with its parts
``alg_dialog``, ``alg_header_nat``, ``alg_pinholes``), one evaluation's
running state in ``alg_run``, the packet's context in ``alg_context``, the
timers and bounds in ``alg_limits``.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.errors import RemoteProtocolError
from gateway.sip import parse_message, rewrite_message
from gateway.sip import events as ev
from gateway.sip.alg_actions import _Message
from gateway.sip.alg_context import SipContext
from gateway.sip.alg_limits import (DEFAULT_REGISTRATION, DEFAULT_SETTINGS, MAX_BINDINGS_PER_CALL,
                                    MAX_CHANNELS_PER_DIRECTION, MAX_REGISTRATION, PENDING_REGISTRATION,
                                    TEARDOWN_DELAY)
from gateway.sip.alg_literals import _is_port
from gateway.sip.alg_run import _CALL_EVENTS, _Run
from gateway.sip.state import EMPTY, SipState
from gateway.sip.transitions import CALLING, REJECTED, TERMINATING
from gateway.config.model import SipSettings
from gateway.alg_result import Dropped, Result, Timer


# --------------------------------------------------------------------------
# public API

def step(state: SipState, ctx: SipContext, data: bytes, now: float,
         settings: SipSettings = DEFAULT_SETTINGS) -> Result:
    """Process one SIP message. Never raises on wire input: a malformed
    message is a drop with the parser's reason."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError as e:
        return Result(state, "drop", f"malformed SIP message: {e}", data, logs=(f"drop: {e}",))
    run = _Run(state, now, settings)
    try:
        _Message(run, ctx, msg, data).process()
    except Dropped as d:
        return Result(state, "drop", d.reason, data, logs=tuple(run.logs) + (f"drop: {d.reason}",))
    out = rewrite_message(data, msg, run.edits) if run.edits else data
    return run.result("forward", "", out)


def on_timer(state: SipState, key: str, now: float,
             settings: SipSettings = DEFAULT_SETTINGS) -> Result:
    """A deadline of ``key`` (a stream: ``call/..``, ``reg/..``,
    ``sip-protect/..``) has passed: end what is due."""
    run = _Run(state, now, settings)
    kind, _, rest = key.partition("/")
    if kind == "call" and rest in state.calls:
        call = state.calls[rest]
        reason = None
        if call.teardown_at is not None and call.teardown_at <= now:
            reason = {TERMINATING: "torn down 5 s after BYE/CANCEL",
                      REJECTED: "INVITE rejected"}.get(call.phase, "torn down")
        elif call.max_deadline <= now:
            reason = "maximum call duration reached"
        elif call.teardown_at is not None:
            pass        # ending anyway, at teardown_at, with its own reason
        elif call.signalling_deadline <= now:
            reason = (f"no final answer to the INVITE within Timer C ({settings.timer_c} s, "
                      "RFC 3261 16.6)" if call.phase == CALLING
                      else "signalling inactivity timeout")
        else:
            for g in call.groups:
                if g.media_deadline is not None and g.media_deadline <= now:
                    reason = f"media inactivity timeout (voice channel {g.group})"
                    break
        if reason is not None:
            run.end_call(call.key, reason)
        else:
            for p in call.pinholes:
                if p.expires_at is not None and p.expires_at <= now:
                    # "When the lifetime expires, the SIP ALG removes the
                    # pinhole" (Pinhole Creation).
                    run.close_pinhole(call, p.id, "pinhole lifetime expired")
    elif kind == "reg":
        ip, _, port = rest.rpartition(":")
        reg = state.registrations.get((ip, int(port))) if _is_port(port) else None
        if reg is not None and reg.expires_at is not None and reg.expires_at <= now:
            run.emit(ev.new.RegistrationRemoved(reg.public_ip, reg.public_port, "registration expired"))
    elif kind == "sip-protect":
        src, _, proxy = rest.partition(">")
        until = state.protect.get((src, proxy))
        if until is not None and until <= now:
            run.emit(ev.new.ProtectDenyExpired(src, proxy))
    res = run.result()
    if not any(t.key == key for t in res.timers):
        res = replace(res, timers=res.timers + (Timer(key, state.next_deadline(key) if not run.events
                                                      else res.state.next_deadline(key)),))
    return res


def media_activity(state: SipState, group: str, now: float,
                   settings: SipSettings = DEFAULT_SETTINGS, pinhole: str | None = None) -> Result:
    """RTP or RTCP of voice channel ``group`` was seen (the datapath reports
    in batches). The group's media inactivity timer restarts; ``pinhole``,
    when given, is the pinhole the packet used, which is then removed: "When a
    packet goes through the pinhole within the lifetime period, immediately
    after, the SIP ALG removes the pinhole for the direction from which the
    packet came" (Pinhole Creation)."""
    run = _Run(state, now, settings)
    key = state.group_index.get(group)
    if key is None or key not in state.calls:
        return run.result()
    call = state.calls[key]
    if call.group(group) is None:
        return run.result()
    run.emit(ev.new.MediaSeen(key, group, now, now + settings.media_inactivity_timeout))
    if pinhole is not None and any(p.id == pinhole for p in call.pinholes):
        run.close_pinhole(call, pinhole, "used")
    return run.result()


def end_calls(state: SipState, calls, now: float, settings: SipSettings = DEFAULT_SETTINGS) -> Result:
    """End the calls ``calls`` names ((call key, reason) each: those a new
    configuration no longer permits, gateway/rematch.py), each as a call
    ends (its pinholes closed, then ``CallEnded``); a key no longer known is
    skipped."""
    run = _Run(state, now, settings)
    for key, reason in calls:
        if key in run.st.calls:
            run.end_call(key, reason)
    return run.result()


__all__ = ["SipContext", "Result", "Timer", "step", "on_timer", "media_activity", "end_calls", "EMPTY",
           "SipState", "TEARDOWN_DELAY", "MAX_CHANNELS_PER_DIRECTION", "MAX_BINDINGS_PER_CALL"]

# Names other modules and the tests read here.
__all__ += ["DEFAULT_REGISTRATION", "DEFAULT_SETTINGS", "MAX_REGISTRATION", "PENDING_REGISTRATION",
            "_CALL_EVENTS", "parse_message"]
