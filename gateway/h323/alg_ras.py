"""The H.323 ALG's RAS messages (H.225.0 RAS, manual chapter 1): requests
and their answers, registrations behind an incoming DIP, admissions and
disengages of calls."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.h323 import events as ev
from gateway.h323.alg_context import _ep
from gateway.h323.alg_run import _Run
from gateway.h323.state import DISENGAGED, requester_ip
from gateway.h323.transitions import lookup


def _ras(run: _Run, msg) -> None:
    ctx = run.ctx
    rule = lookup("ras", msg.kind)
    run.translate(msg.addresses, None)
    if rule is None or msg.seq is None:
        return
    if "request" in rule.actions:
        requester = _ep(ctx.src)
        if (requester, msg.seq) in run.st.ras:
            return          # a retransmission (H.225.0 Annex A: same seq)
        binding: tuple = ()
        call = ""
        if msg.kind == "registrationRequest":
            for a in msg.all("callSignalAddress"):
                orig, new = run.moved[id(a)]
                if new != orig or ctx.direction == "none":
                    binding = (new, orig)
                    break
        if msg.kind in ("admissionRequest", "disengageRequest"):
            ci = msg.fields.get("callIdentifier")
            if ci:
                call = ci["guid"].hex()
        if run.st.ras_by_source.get(requester_ip(requester), 0) >= run.settings.max_ras_per_source:
            raise Dropped(f"RAS {msg.kind}: {run.settings.max_ras_per_source} transactions of "
                        f"{requester_ip(requester)} already await an answer")
        run.emit(ev.RasRequested(requester, msg.seq, msg.kind, run.now + run.settings.ras_transaction_timeout,
                                 binding, call))
        return
    # An answer goes back to the requester: the destination as it arrived
    # is the public side of a NATed requester (inbound), else the requester.
    requester = _ep(ctx.nat_dst) if ctx.nat_dst is not None else _ep(ctx.dst)
    txn = run.st.ras.get((requester, msg.seq)) or run.st.ras.get((_ep(ctx.dst), msg.seq))
    if txn is None:
        run.logs.append(f"h323 RAS {msg.kind} seq {msg.seq} answers no request")
        return
    run.emit(ev.RasEnded(txn.requester, txn.seq, msg.kind))
    if "register" in rule.actions and txn.binding:
        ttl = msg.fields.get("timeToLive", run.settings.registration_ttl)
        public, private = txn.binding
        run.emit(ev.Registered(tuple(public), tuple(private), run.now + ttl))
    elif "unregister" in rule.actions:
        for pub, reg in list(run.st.registrations.items()):
            if _ep(reg.private).split(":")[0] == txn.requester.split(":")[0]:
                run.emit(ev.Unregistered(pub, "unregistered (UCF)"))
    elif "admit" in rule.actions and txn.call:
        dest = msg.address("destCallSignalAddress")
        if dest is None:
            return
        key = txn.call
        if key not in run.st.calls:
            run.start_call(key, "", 0, requester_ip(txn.requester))
        run.open(key, "q931", "tcp", dest, "q931")
    elif "disengage" in rule.actions and txn.call in run.st.calls:
        # DCF confirms the endpoint's DRQ (H.225.0 7.10): the call is over,
        # as after ReleaseComplete.
        run.end_call(txn.call, DISENGAGED)
