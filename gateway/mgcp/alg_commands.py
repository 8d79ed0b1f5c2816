"""MGCP commands through the ALG (RFC 3435 2.3 and 3.5; manual chapter 3,
"Call Agent"): endpoint names and wildcards (RFC 3435 2.1.1, 2.1.2), service
state after RSIP (2.3.12), a command's transaction, its checks and the
actions of its rule (:func:`gateway.mgcp.transitions.command_rule`)."""

from __future__ import annotations

from gateway.alg_result import Dropped
from gateway.mgcp import events as ev
from gateway.mgcp.alg_limits import CA_PORT, MAX_ACK_RANGE, STATEFUL
from gateway.mgcp.alg_literals import _ascii_int, _is_ipv4
from gateway.mgcp.transitions import CA, command_rule


def _covers(pattern: str, name: str) -> bool:
    """Whether endpoint ``pattern`` (possibly ``*`` wildcarded, RFC 3435
    2.1.2) names endpoint ``name`` (both lower case)."""
    if pattern == name:
        return True
    plocal, _, pdomain = pattern.rpartition("@")
    local, _, domain = name.rpartition("@")
    if pdomain != domain:
        return False
    if plocal == "*":
        return True
    return plocal.endswith("/*") and local.startswith(plocal[:-1])


class _Commands:
    """A command: its endpoint, transaction, checks and actions."""

    def endpoint_name(self, ep) -> str:
        """The endpoint as its gateway names it (lower case: RFC 3435 2.1.1
        endpoint names are case-insensitive); an ``[IP]`` domain written by the
        call agent is translated to the gateway's side."""
        domain = ep.domain
        if ep.domain_ip_span is not None and self.ctx.role == CA and self.tr is not None:
            new = self.tr.address(ep.domain_ip_span.text)
            if new is not None:
                domain = f"[{new}]"
        return f"{ep.local}@{domain}".lower()

    def in_service(self, name: str) -> bool:
        """The latest RSIP naming this endpoint, itself or through a wildcard
        (``*@gw``, ``aaln/*@gw``), decides (RFC 3435 2.3.12)."""
        local, _, domain = name.rpartition("@")
        names = [name, f"*@{domain}"]
        parts = local.split("/")
        for i in range(1, len(parts)):
            names.append("/".join(parts[:i]) + f"/*@{domain}")
        latest = None
        for n in names:
            ep = self.run.st.endpoints.get((self.gw, n))
            if ep is not None and ep.restart_method is not None and (latest is None or ep.changed_at > latest.changed_at):
                latest = ep
        return latest is None or latest.in_service(self.now)

    def command(self) -> None:
        msg, ctx, run = self.msg, self.ctx, self.run
        verb, tid = msg.verb, msg.transaction_id
        ep = msg.endpoint
        name = self.endpoint_name(ep)
        t = run.st.txns.get((self.gw, ctx.role, tid))
        if t is not None:
            if t.verb != verb or t.src != self.seen_src:
                raise Dropped(f"{STATEFUL}: transaction id {tid} already in use by {t.verb} from "
                            f"{t.src[0]}:{t.src[1]}")
            # RFC 3435 3.5.1: a retransmission of a command in progress (or
            # answered: the gateway repeats its response). Translated the same
            # way; nothing new is bound.
            run.logs.append(f"{verb} {tid}: retransmission")
            if verb in ("CRCX", "MDCX"):
                self.media("remote", t.conn_id, tid, t.call_id)
            else:
                self.sdp_addresses()
            return
        rule = command_rule(ctx.role, verb)
        if rule is None:
            raise Dropped(f"{STATEFUL}: {verb} is not sent by a {ctx.role}")
        if ep.is_wildcard:
            if rule.wildcard == "none" or (rule.wildcard == "any" and (ep.all_wildcard or ep.has_range)):
                raise Dropped(f"{STATEFUL}: {verb} does not take the wildcard endpoint {ep.span.text}")
        if rule.service and not self.in_service(name):
            raise Dropped(f"{STATEFUL}: endpoint {name} of gateway {self.gw} is out of service")
        call_id, conn_id = msg.call_id, msg.connection_id
        if rule.needs == "call-id" and call_id is None:
            raise Dropped(f"{STATEFUL}: {verb} without a call id (C:)")
        if rule.needs == "connection":
            if conn_id is None:
                raise Dropped(f"{STATEFUL}: {verb} without a connection id (I:)")
            owner = run.st.conn_index.get((self.gw, conn_id))
            if owner is None or (call_id is not None and owner != call_id):
                raise Dropped(f"{STATEFUL}: {verb} for unknown connection {conn_id} of gateway {self.gw}")
            if verb == "MDCX" and call_id is None:
                raise Dropped(f"{STATEFUL}: MDCX without a call id (C:)")
            call_id = owner
        limit = self.settings.max_transactions
        if run.st.txn_counts.get(self.seen_src[0], 0) >= limit:
            # RFC 3435 3.5: a transaction is remembered for a bounded time;
            # past the per-source cap a sender's new commands are refused
            # rather than growing the state (set mgcp max-transactions).
            raise Dropped(f"{STATEFUL}: {self.seen_src[0]} already has {limit} transactions in progress "
                        f"or remembered (set mgcp max-transactions); {verb} {tid} refused")
        if "start_call" in rule.actions and (self.gw, call_id) not in run.st.calls:
            run.emit(ev.CallStarted(self.gw, call_id, self.now, self.now + self.settings.max_call_duration))
        run.emit(ev.TransactionStarted(self.gw, name, ctx.role, tid, verb, self.seen_src[0],
                                       self.seen_src[1], call_id, conn_id, self.now,
                                       self.now + self.settings.transaction_timeout))
        self.do_ack_list(name, call_id, conn_id)
        handled_sdp = False
        for action in rule.actions:
            if action == "media":
                handled_sdp = True
                self.media("remote", conn_id, tid, call_id)
            else:
                getattr(self, "do_" + action)(name, call_id, conn_id)
        if not handled_sdp:
            self.sdp_addresses()

    def do_start_call(self, name, call_id, conn_id) -> None:
        """The call exists from here on (started before the transaction, so
        the call knows its CRCX is pending)."""

    def do_notified(self, name, call_id, conn_id) -> None:
        ne = self.msg.notified_entity
        if ne is None:
            return
        if ne.host_is_ip:
            host = ne.host
            port = ne.port if ne.port is not None else CA_PORT
            if self.tr is not None:
                new = self.tr.address(host)
                if new is not None:
                    port = self.tr.port(host, port) or port
                    host = new
            entity = f"{host}:{port}"
        else:
            entity = self.msg.get("N").strip()
        self.check_endpoint_room(name)
        self.run.emit(ev.NotifiedEntitySet(self.gw, name, entity, "N:", self.msg.transaction_id))

    def do_notified_check(self, name, call_id, conn_id) -> None:
        """"An endpoint should send any MGCP command to its notified entity"
        (ch. 3 "Call Agent"). Only an entity known as an address can be
        checked (a domain name needs DNS, which the ALG does not do)."""
        ep = self.run.st.endpoints.get((self.gw, name))
        if ep is None or ep.notified_entity is None:
            return
        host, _, port = ep.notified_entity.rpartition(":")
        number = _ascii_int(port)
        if not _is_ipv4(host) or number is None:
            return
        dst = (str(self.ctx.dst[0]), int(self.ctx.dst[1]))
        if dst != (host, number):
            raise Dropped(f"{STATEFUL}: {self.msg.verb} from {name} sent to {dst[0]}:{dst[1]}, not to "
                        f"its notified entity {ep.notified_entity}")

    def do_restart(self, name, call_id, conn_id) -> None:
        method = self.msg.restart_method or "restart"
        if method not in ("graceful", "forced", "restart", "disconnected", "cancel-graceful"):
            self.run.logs.append(f"RSIP {name}: restart method {method} leaves the service state")
            return
        out = None
        if method == "forced":
            out = self.now
        elif method == "graceful":
            rd = self.msg.get("RD")
            out = self.now + (int(rd.strip()) if rd is not None else 0)
        self.check_endpoint_room(name)
        self.run.emit(ev.EndpointRestarted(self.gw, name, method, self.now, out, self.msg.transaction_id))
        if method == "forced":
            # RFC 3435 2.3.12: "forced" -- "the endpoints are taken abruptly
            # out of service and any established connections are lost": their
            # pinholes close now. (A graceful restart leaves them be.)
            run = self.run
            for (g, cid), call in list(run.st.calls.items()):
                if g != self.gw:
                    continue
                for c in list(call.connections.values()):
                    if _covers(name, c.endpoint) and (g, cid) in run.st.calls:
                        run.delete_connection(g, cid, c.conn_id, "RSIP forced")

    def do_ack_list(self, name, call_id, conn_id) -> None:
        """K: (RFC 3435 3.5.6): the sender acknowledges final responses to its
        earlier transactions; they are over."""
        k = self.msg.get("K")
        if k is None:
            return
        run = self.run
        for item in k.split(","):
            # The parser checked the grammar (1-9 ASCII digits each side).
            lo, _, hi = item.partition("-")
            a = _ascii_int(lo.strip(" \t"))
            b = _ascii_int(hi.strip(" \t")) if hi else a
            if a is None or b is None:
                continue
            if b < a or b - a > MAX_ACK_RANGE:
                # A range wider than any sender keeps in flight is not
                # expanded (it would cost the ALG, not the sender).
                continue
            for tid in range(a, b + 1):
                t = run.st.txns.get((self.gw, self.ctx.role, tid))
                if t is not None and t.final:
                    run.emit(ev.TransactionEnded(t.gateway, t.endpoint, t.origin, tid,
                                                 "response acknowledged (K:)"))

    def do_delete(self, name, call_id, conn_id) -> None:
        run, msg = self.run, self.msg
        reason = f"DLCX from the {self.ctx.role}"
        e = msg.get("E")
        if e is not None:
            reason += f" ({e.strip()})"
        if conn_id is not None:
            owner = run.st.conn_index.get((self.gw, conn_id))
            if owner is None or (call_id is not None and owner != call_id):
                raise Dropped(f"{STATEFUL}: DLCX for unknown connection {conn_id} of gateway {self.gw}")
            run.delete_connection(self.gw, owner, conn_id, reason)
            return
        if call_id is not None:
            call = run.st.calls.get((self.gw, call_id))
            if call is None:
                raise Dropped(f"{STATEFUL}: DLCX for unknown call {call_id} of gateway {self.gw}")
            calls = [call]
        else:
            # RFC 3435 2.3.7: without C: every connection of the endpoint(s).
            calls = [c for (g, _), c in run.st.calls.items() if g == self.gw]
        for call in calls:
            for c in list(call.connections.values()):
                if _covers(name, c.endpoint):
                    if (self.gw, call.call_id) in run.st.calls:
                        run.delete_connection(self.gw, call.call_id, c.conn_id, reason)
