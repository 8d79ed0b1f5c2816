"""The H.323 ALG's Q.931 call signalling (H.225.0, manual chapter 1): a
call's setup, progress and release, its H.245 address and Fast Start media."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.h323 import events as ev
from gateway.h323.alg_h245 import MEDIA_FIELDS, _tunnelled_h245
from gateway.h323.alg_run import _Run
from gateway.h323.transitions import ANY, lookup


def _q931(run: _Run, msg) -> None:
    ctx = run.ctx
    conn = ctx.connection()
    rule = lookup("q931", msg.name)
    key = run.st.call_refs.get((conn, msg.call_reference))
    if rule is None:
        if key is None:
            raise Dropped(f"Q.931 {msg.name} of no known call")
        run.translate(msg.addresses, key)
        return
    if "start" in rule.actions:
        if key is None:
            guid = msg.call_identifier()
            key = guid.hex() if guid else f"{conn}#{msg.call_reference}"
            if key in run.st.calls and run.st.calls[key].conn:
                raise Dropped(f"Setup of call {key} already on another connection")
            run.start_call(key, conn, msg.call_reference, str(ctx.src[0]))
        if ctx.direction == "inbound" and ctx.nat_dst is None:
            reg = run.st.registrations.get((str(ctx.dst[0]), int(ctx.dst[1])))
            if reg is None:
                raise Dropped("Setup to an incoming DIP address with no registration behind it")
            run.route_to = (reg.private[0], reg.private[1])
    elif key is None:
        raise Dropped(f"Q.931 {msg.name} of no known call")
    elif key not in run.st.calls:
        if "release" not in rule.actions:
            raise Dropped(f"Q.931 {msg.name} of call {key}, ended by its DCF")
        # The call already ended here, by the DCF of its DRQ (H.225.0 7.10:
        # an endpoint may disengage before it releases): its ReleaseComplete
        # must still reach the other endpoint, which otherwise waits for it.
        run.emit(ev.CallEnded(key, "ReleaseComplete"))
        run.logs.append(f"h323 ReleaseComplete of call {key} after its DCF")
        return
    call = run.st.calls[key]
    if rule.phases is not None and ANY not in rule.phases and call.phase not in rule.phases:
        raise Dropped(f"Q.931 {msg.name} in call phase {call.phase}")
    run.translate(msg.addresses, key)
    if "release" in rule.actions:
        run.end_call(key, "ReleaseComplete")
        return
    run.touch(key, rule.to if "progress" in rule.actions else None)
    if "h245" in rule.actions:
        a = msg.address("h245Address")
        if a is not None:
            orig, new = run.moved[id(a)]
            run.emit(ev.H245Bound(key, (orig, new) if orig != new else (orig,)))
            run.open(key, "h245", "tcp", a, "h245")
    if msg.nested:
        _tunnelled_h245(run, key, msg)
    if "faststart" in rule.actions:
        for a in msg.addresses:
            if a.path and a.path[0] == "h323-uu-pdu" and "fastStart" in a.path and a.field in MEDIA_FIELDS:
                i = a.path.index("fastStart")
                run.open(key, MEDIA_FIELDS[a.field], "udp", a, f"{key}/fs{a.path[i + 1]}")
