"""The H.323 ALG, sans-I/O: ``step(state, ctx, data, now) -> Result``.

The datapath has decided policy and NAT for the packet and describes it in an
:class:`H323Context`; ``data`` is one RAS datagram, or one TPKT-framed Q.931
or H.245 message (:func:`gateway.h323.tpkt.frame_tpkt` splits a TCP stream).
:func:`step` parses it into the positions of its transport addresses, looks
the transition up in :mod:`gateway.h323.transitions`, runs its actions and
rewrites every embedded address NAT changes, in place (same length). Every
change is an event folded with :func:`gateway.h323.state.apply` as it is
emitted, so ``Result.state`` is the fold of ``Result.events``; a dropped
message changes nothing.

Manual: chapter 1 ("H.323 Application Layer Gateway") and its examples.
"""

from __future__ import annotations

from gateway.alg_result import Dropped, Result
from gateway.errors import RemoteProtocolError
from gateway.h323 import events as ev
from gateway.h323.alg_context import H323Context
from gateway.h323.alg_h245 import MEDIA_FIELDS, _h245
from gateway.h323.alg_limits import DEFAULT_SETTINGS, H323Settings
from gateway.h323.alg_q931 import _q931
from gateway.h323.alg_ras import _ras
from gateway.h323.alg_run import _Run
from gateway.h323.h245 import parse_h245
from gateway.h323.q931 import parse_call_signal
from gateway.h323.ras import parse_ras
from gateway.h323.state import H323State
from gateway.span import apply_edits

# Names other modules, the tests and the benchmarks read here.
__all__ = ["DEFAULT_SETTINGS", "MEDIA_FIELDS", "H323Context", "H323Settings", "step", "on_timer",
           "media_activity", "end_calls"]


def step(state: H323State, ctx: H323Context, data: bytes, now: float,
         settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """Process one message. Never raises on wire input: malformed is a drop."""
    run = _Run(state, ctx, now, settings)
    try:
        if ctx.channel == "ras":
            _ras(run, parse_ras(data))
        elif ctx.channel == "q931":
            _q931(run, parse_call_signal(data))
        elif ctx.channel == "h245":
            _h245(run, parse_h245(data))
        else:
            raise ValueError(f"unknown H.323 channel {ctx.channel!r}")
    except RemoteProtocolError as e:
        return Result(state, "drop", f"malformed H.323 message: {e}", data, logs=(f"drop: {e}",))
    except Dropped as d:
        return Result(state, "drop", d.reason, data, logs=tuple(run.logs) + (f"drop: {d.reason}",))
    return run.result("forward", "", apply_edits(data, run.edits) if run.edits else data)


def on_timer(state: H323State, key: str, now: float, settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """A deadline of ``key`` (a stream) has passed: end what is due."""
    run = _Run(state, H323Context("ras", "none", ("0.0.0.0", 0), ("0.0.0.0", 0)), now, settings)
    kind, _, rest = key.partition("/")
    if kind == "h323-call" and rest in state.calls:
        c = state.calls[rest]
        reason = None
        if c.max_deadline <= now:
            reason = "maximum call duration reached"
        elif c.in_setup and c.setup_deadline is not None and c.setup_deadline <= now:
            reason = "setup timeout (no Connect)"
        elif c.signalling_deadline <= now:
            reason = "signalling inactivity timeout"
        else:
            for group, deadline in c.media.items():
                if deadline is not None and deadline <= now:
                    reason = f"media inactivity timeout ({group})"
                    break
        if reason is not None:
            run.end_call(rest, reason)
    elif kind == "h323-ras":
        requester, _, seq = rest.rpartition("/")
        t = state.ras.get((requester, int(seq))) if seq.isdigit() else None
        if t is not None and t.expires_at <= now:
            run.emit(ev.RasEnded(t.requester, t.seq, "timeout"))
    elif kind == "h323-reg":
        ip, _, port = rest.rpartition(":")
        r = state.registrations.get((ip, int(port))) if port.isdigit() else None
        if r is not None and r.expires_at <= now:
            run.emit(ev.Unregistered(r.public, "registration expired"))
    return run.result()


def media_activity(state: H323State, pinhole_id: str, now: float,
                   settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """RTP/RTCP went through ``pinhole_id``: its voice channel stays."""
    run = _Run(state, H323Context("ras", "none", ("0.0.0.0", 0), ("0.0.0.0", 0)), now, settings)
    key = pinhole_id.split("/", 1)[0]
    call = state.calls.get(key)
    p = call.pinholes.get(pinhole_id) if call else None
    if p is not None and p.group in call.media:
        run.emit(ev.MediaSeen(key, p.group, now + settings.media_inactivity_timeout))
    return run.result()


def end_calls(state: H323State, calls, now: float, settings: H323Settings = DEFAULT_SETTINGS) -> Result:
    """End the calls ``calls`` names ((call key, reason) each: those a new
    configuration no longer permits, gateway/rematch.py), each as the ALG
    ends a call (its pinholes closed, then ``CallEnded``); a key no longer
    known is skipped."""
    run = _Run(state, H323Context("ras", "none", ("0.0.0.0", 0), ("0.0.0.0", 0)), now, settings)
    for key, reason in calls:
        if key in run.st.calls:
            run.end_call(key, reason)
    return run.result()
