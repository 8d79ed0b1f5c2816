"""The routes and the global settings of the configuration language: virtual
routers and routes, DIP stickiness, the SIP, MGCP, NSRP and flow settings and
traffic shaping, in the manual's ScreenOS CLI ("CLI Conventions")."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface

from gateway.config.model import (
    DEFAULT_VROUTER, FlowSettings, MgcpSettings, NsrpSettings, Route, SipSettings, TrafficShaping,
)
from gateway.config.parse_cursor import Apply, _Line
from gateway.config.parse_words import MAX_INT, _is_ipv4


class _SettingLines:
    """The route and global-setting lines; a part of :class:`gateway.config.parser._Parser`."""

    # == routes ==============================================================
    def set_vrouter(self, ln: _Line) -> Apply | None:
        vr = ln.vrouter()
        ln.keyword(("route",))
        return self._route(ln, vr, unset=False)

    def set_route(self, ln: _Line) -> Apply | None:
        return self._route(ln, DEFAULT_VROUTER, unset=False)

    def unset_vrouter(self, ln: _Line) -> Apply | None:
        vr = ln.vrouter()
        ln.keyword(("route",))
        return self._route(ln, vr, unset=True)

    def unset_route(self, ln: _Line) -> Apply | None:
        return self._route(ln, DEFAULT_VROUTER, unset=True)

    def _route(self, ln: _Line, vr: str, *, unset: bool) -> Apply | None:
        st = self.state
        prefix, ptok = ln.network("the destination prefix")
        if unset and ln.at_end():
            return lambda: setattr(st, "routes", [r for r in st.routes
                                                  if (r[0].prefix, r[0].vrouter) != (prefix, vr)])
        ln.keyword(("interface",))
        iface, itok = ln.interface_name()
        gateway = None
        if ln.optional(("gateway",)):
            gateway, _ = ln.address("the gateway address")
        ln.end()
        route = Route(prefix, iface, gateway, vr)
        if unset:
            return lambda: setattr(st, "routes", [r for r in st.routes if r[0] != route])
        self.ref(ln, itok, "interface", iface, role="route's interface")
        line = ln.lineno
        return lambda: st.routes.append((route, line, ptok))

    # == global settings =====================================================
    def set_dip(self, ln: _Line) -> Apply | None:
        ln.keyword(("sticky",))
        ln.end()
        return lambda: setattr(self.state, "dip_sticky", True)

    def unset_dip(self, ln: _Line) -> Apply | None:
        ln.keyword(("sticky",))
        ln.end()
        return lambda: setattr(self.state, "dip_sticky", False)

    SIP_TIMERS = {
        "signaling-inactivity-timeout": ("signaling_inactivity_timeout", "seconds", 1, MAX_INT),
        "media-inactivity-timeout": ("media_inactivity_timeout", "seconds", 1, MAX_INT),
        "max-call-duration": ("max_call_duration", "seconds", 1, MAX_INT),
        "timer-c": ("timer_c", "seconds", 1, MAX_INT),
        "max-setup-calls-per-source": ("max_setup_calls_per_source", "number of calls", 1,
                                       MAX_INT),
        "tcp-max-message": ("tcp_max_message", "longest SIP message over TCP (octets)", 1500,
                            16 << 20),
    }

    def _sip_timer(self, ln: _Line, key: str, unset: bool) -> Apply:
        attr, what, lo, hi = self.SIP_TIMERS[key]
        if unset:
            ln.end()
            value = getattr(SipSettings(), attr)
        else:
            value, _ = ln.integer(f"the {what}", lo, hi)
            ln.end()
        st = self.state
        return lambda: setattr(st, "sip", replace(st.sip, **{attr: value}))

    def set_sip(self, ln: _Line) -> Apply | None:
        return self._sip(ln, unset=False)

    def unset_sip(self, ln: _Line) -> Apply | None:
        return self._sip(ln, unset=True)

    def _sip(self, ln: _Line, *, unset: bool) -> Apply | None:
        st = self.state
        key = ln.keyword(tuple(self.SIP_TIMERS) + ("protect",))
        if key != "protect":
            return self._sip_timer(ln, key, unset)
        ln.keyword(("deny",))
        opt = ln.optional(("dst-ip", "timeout"))
        if opt == "timeout":
            if unset:
                ln.end()
                return lambda: setattr(st, "sip", replace(st.sip, protect_deny_timeout=3))
            n, _ = ln.integer("the deny timeout (seconds)", 1, 3600)
            ln.end()
            return lambda: setattr(st, "sip", replace(st.sip, protect_deny_timeout=n))
        if opt == "dst-ip":
            if unset:
                ln.end()
                return lambda: setattr(st, "sip", replace(st.sip, protect_deny_dst=None))
            ptok = ln.peek()
            if ptok is not None and "/" not in ptok.text and _is_ipv4(ptok.text):
                ln.pos += 1
                dst = IPv4Interface(ptok.text)
            else:
                dst, _ = ln.with_prefix("the proxy address", "1.1.1.3/24")
            ln.end()
            return lambda: setattr(st, "sip", replace(st.sip, protect_deny=True,
                                                      protect_deny_dst=dst))
        if not ln.at_end():
            ln.keyword(("dst-ip", "timeout"))
        ln.end()
        if unset:
            return lambda: setattr(st, "sip", replace(st.sip, protect_deny=False,
                                                      protect_deny_dst=None))
        return lambda: setattr(st, "sip", replace(st.sip, protect_deny=True))

    MGCP = {
        "message-flood": ("message_flood_threshold", "message flood threshold (messages/s)",
                          1, 1_000_000),
        "connection-flood": ("connection_flood_threshold",
                             "connection flood threshold (CRCX/s)", 1, 1_000_000),
        "inactive-media-timeout": ("inactive_media_timeout", "timeout (seconds)", 1, MAX_INT),
        "transaction-timeout": ("transaction_timeout", "timeout (seconds)", 1, MAX_INT),
        "max-call-duration": ("max_call_duration", "duration (seconds)", 1, MAX_INT),
        "max-transactions": ("max_transactions", "transactions per source address", 1, 1_000_000),
    }

    def _mgcp(self, ln: _Line, unset: bool) -> Apply:
        key = ln.keyword(tuple(self.MGCP))
        attr, what, lo, hi = self.MGCP[key]
        if key.endswith("-flood"):
            ln.keyword(("threshold",))
        if unset:
            ln.end()
            value = getattr(MgcpSettings(), attr)
        else:
            value, _ = ln.integer(f"the {what}", lo, hi)
            ln.end()
        st = self.state
        return lambda: setattr(st, "mgcp", replace(st.mgcp, **{attr: value}))

    def set_mgcp(self, ln: _Line) -> Apply | None:
        return self._mgcp(ln, False)

    def unset_mgcp(self, ln: _Line) -> Apply | None:
        return self._mgcp(ln, True)

    def _nsrp(self, ln: _Line, unset: bool) -> Apply:
        st = self.state
        defaults = NsrpSettings()
        changes: dict[str, object] = {}
        sub = ln.keyword(("cluster", "vsd-group", "rto-mirror"))
        if sub == "cluster":
            ln.keyword(("id",))
            changes["cluster_id"] = defaults.cluster_id if unset else \
                ln.integer("the cluster id", 0, 7)[0]
        elif sub == "rto-mirror":
            if unset:
                ln.optional(("sync", "async"))
                changes["rto_mirror"] = defaults.rto_mirror
            else:
                changes["rto_mirror"] = ln.keyword(("sync", "async"))
        else:
            opt = ln.keyword(("id", "hb-interval", "hb-threshold"))
            if opt == "id":
                changes["vsd_group"], _ = ln.integer("the VSD group id", 0, 7)
                ln.keyword(("priority",))
                changes["priority"] = defaults.priority if unset else \
                    ln.integer("the priority (lower is the preferred active)", 1, 254)[0]
            elif opt == "hb-interval":
                changes["hb_interval_ms"] = defaults.hb_interval_ms if unset else \
                    ln.integer("the heartbeat interval (ms)", 50, 10_000)[0]
            else:
                changes["hb_threshold"] = defaults.hb_threshold if unset else \
                    ln.integer("the number of missed heartbeats", 1, 255)[0]
        ln.end()
        return lambda: setattr(st, "nsrp", replace(st.nsrp, **changes))

    def set_nsrp(self, ln: _Line) -> Apply | None:
        return self._nsrp(ln, False)

    def unset_nsrp(self, ln: _Line) -> Apply | None:
        return self._nsrp(ln, True)

    def set_flow(self, ln: _Line) -> Apply | None:
        return self._flow(ln, False)

    def unset_flow(self, ln: _Line) -> Apply | None:
        return self._flow(ln, True)

    # `set flow overload <setting> <n>` (gateway/overload.py); `unset` puts
    # the default back. new-dialog-rate 0 turns shedding off.
    _OVERLOAD = {
        "new-dialog-rate": ("overload_new_dialog_rate", "new dialogs admitted per second (0: off)",
                            0, 1_000_000),
        "max-held": ("overload_max_held", "messages held for their ALG before overload", 1, 1_000_000),
        "latency-target": ("overload_latency_target_ms",
                           "the completion latency (ms) past which the node is overloaded", 1, 60_000),
        "source-rate": ("overload_source_rate",
                        "new-work packets per second one source may send (0: off)", 0, 1_000_000),
    }

    def _flow(self, ln: _Line, unset: bool) -> Apply | None:
        st = self.state
        sub = ln.keyword(("queue-bypass", "overload", "media-offload"))
        if sub == "queue-bypass":
            ln.end()
            return lambda: setattr(st, "flow", replace(st.flow, queue_bypass=not unset))
        if sub == "media-offload":
            ln.end()
            return lambda: setattr(st, "flow", replace(st.flow, media_offload=not unset))
        opt = ln.keyword(tuple(self._OVERLOAD))
        field_name, what, lo, hi = self._OVERLOAD[opt]
        value = getattr(FlowSettings(), field_name) if unset else ln.integer(what, lo, hi)[0]
        ln.end()
        return lambda: setattr(st, "flow", replace(st.flow, **{field_name: value}))

    # == traffic shaping =====================================================
    def set_traffic_shaping(self, ln: _Line) -> Apply | None:
        return self._traffic_shaping(ln, False)

    def unset_traffic_shaping(self, ln: _Line) -> Apply | None:
        return self._traffic_shaping(ln, True)

    def _traffic_shaping(self, ln: _Line, unset: bool) -> Apply:
        """``set traffic-shaping mode auto|on|off``; ``set traffic-shaping
        ip_precedence P0 P1 ... P7`` (the IP precedence of each priority
        level, 0 to 7); ``unset`` puts the default back."""
        st = self.state
        sub = ln.keyword(("mode", "ip_precedence"))
        defaults = TrafficShaping()
        if sub == "mode":
            mode = defaults.mode if unset else ln.keyword(("auto", "on", "off"))
            if unset:
                ln.optional(("auto", "on", "off"))
            ln.end()
            return lambda: setattr(st, "traffic_shaping", replace(st.traffic_shaping, mode=mode))
        if unset:
            ln.end()
            values = defaults.ip_precedence
        else:
            got = []
            for level in range(8):
                tok = ln.peek()
                if tok is None:
                    ln.missing(f"the IP precedence of priority {level} (eight numbers 0-7, "
                               "one per priority level)",
                               "give eight numbers, e.g. 'set traffic-shaping ip_precedence "
                               "7 6 5 4 3 2 1 0' (the default)")
                got.append(ln.integer(f"the IP precedence of priority {level}", 0, 7)[0])
            ln.end()
            values = tuple(got)
        return lambda: setattr(st, "traffic_shaping",
                               replace(st.traffic_shaping, ip_precedence=values))
