"""Normalised configuration text: full keywords, one command per line, only
what differs from the defaults. ``parse_text(render(cfg)) == cfg``."""

from __future__ import annotations

from gateway.config.model import (
    DEFAULT_BLOCKING, DEFAULT_VROUTER, PREDEFINED_ZONES, AddressRef, Config, FlowSettings,
    MgcpSettings, NsrpSettings, Policy, PolicyTraffic, SipSettings, TrafficShaping,
)


def quote(name: str) -> str:
    """A name as the CLI needs it: in double quotes when it has spaces."""
    if name == "" or any(c.isspace() for c in name) or name.startswith("#"):
        return f'"{name}"'
    return name


def _ref(ref: AddressRef) -> str:
    if ref.kind == "any":
        return "any"
    if ref.kind in ("mip", "dip"):
        return f"{ref.kind}({ref.value})"
    return quote(ref.value)


def _policy(p: Policy) -> str:
    words = ["set policy id", str(p.id)]
    if p.name is not None:
        words += ["name", quote(p.name)]
    words += ["from", quote(p.from_zone), "to", quote(p.to_zone), _ref(p.src), _ref(p.dst),
              p.service]
    if p.nat_src:
        words.append("nat src")
        if p.nat_dip is not None:
            words += ["dip", str(p.nat_dip)]
    words.append(p.action)
    if p.traffic is not None:
        words.append(_traffic(p.traffic))
    return " ".join(words)


def _traffic(t: PolicyTraffic) -> str:
    words = ["traffic"]
    if t.shaping:
        words += ["gbw", str(t.gbw), "priority", str(t.priority), "mbw", str(t.mbw)]
    if t.dscp:
        words += ["dscp enable"] + ([] if t.dscp_value is None else ["value", str(t.dscp_value)])
    elif not t.shaping:
        words.append("dscp disable")
    return " ".join(words)


def render(cfg: Config) -> str:
    out: list[str] = []
    for zone in cfg.zones.values():
        if zone.name not in PREDEFINED_ZONES:
            out.append(f"set zone name {quote(zone.name)}")
    for zone in cfg.zones.values():
        z = quote(zone.name)
        if zone.block != DEFAULT_BLOCKING.get(zone.name, False):
            out.append(f"{'set' if zone.block else 'unset'} zone {z} block")
        for flood in zone.udp_flood:
            out.append(f"set zone {z} screen udp-flood dst-ip {flood.dst_ip} "
                       f"threshold {flood.threshold}")
        if zone.limit_session_per_source is not None:
            out.append(f"set zone {z} screen limit-session source-ip-based "
                       f"{zone.limit_session_per_source}")
    for iface in cfg.interfaces.values():
        i = f"set interface {iface.name}"
        if iface.zone is not None:
            out.append(f"{i} zone {quote(iface.zone)}")
        if iface.ip is not None:
            out.append(f"{i} ip {iface.ip}")
        if iface.unnumbered is not None:
            out.append(f"{i} ip unnumbered interface {iface.unnumbered}")
        if iface.mode is not None:
            out.append(f"{i} {iface.mode}")
        if iface.loopback_group is not None:
            out.append(f"{i} loopback-group {iface.loopback_group}")
        bw = []
        if iface.bandwidth_egress is not None:
            bw.append(f"egress mbw {iface.bandwidth_egress}")
        if iface.bandwidth_ingress is not None:
            bw.append(f"ingress mbw {iface.bandwidth_ingress}")
        if bw:
            out.append(f"{i} bandwidth " + " ".join(bw))
        for service in iface.manage:
            out.append(f"{i} manage" + ("" if service == "all" else f" {service}"))
        for mip in iface.mips:
            line = f"{i} mip {mip.ip} host {mip.host}"
            if str(mip.netmask) != "255.255.255.255":
                line += f" netmask {mip.netmask}"
            if mip.vrouter != DEFAULT_VROUTER:
                line += f" vrouter {mip.vrouter}"
            out.append(line)
        for pool in iface.dips:
            out.append(f"{i} dip {pool.id} {pool.first} {pool.last}"
                       + (" incoming" if pool.incoming else ""))
        if iface.dip_interface_incoming:
            out.append(f"{i} dip interface-ip incoming")
    for address in cfg.addresses.values():
        line = f"set address {quote(address.zone)} {quote(address.name)} {address.ip}"
        if address.comment is not None:
            line += f' "{address.comment}"'
        out.append(line)
    for route in cfg.routes:
        line = f"set vrouter {route.vrouter} route {route.prefix} interface {route.interface}"
        if route.gateway is not None:
            line += f" gateway {route.gateway}"
        out.append(line)
    if cfg.dip_sticky:
        out.append("set dip sticky")
    out += _sip(cfg.sip)
    out += _mgcp(cfg.mgcp)
    out += _nsrp(cfg.nsrp)
    if cfg.flow != FlowSettings() and cfg.flow.queue_bypass:
        out.append("set flow queue-bypass")
    out += _flow_overload(cfg.flow)
    if cfg.flow.media_offload != FlowSettings().media_offload:
        out.append("set flow media-offload" if cfg.flow.media_offload else "unset flow media-offload")
    out += _traffic_shaping(cfg.traffic_shaping)
    out += [_policy(p) for p in cfg.policies]
    out += [u.text for u in cfg.unenforced]
    return "\n".join(out) + "\n" if out else ""


def _traffic_shaping(ts: TrafficShaping) -> list[str]:
    d = TrafficShaping()
    out = []
    if ts.mode != d.mode:
        out.append(f"set traffic-shaping mode {ts.mode}")
    if ts.ip_precedence != d.ip_precedence:
        out.append("set traffic-shaping ip_precedence " + " ".join(map(str, ts.ip_precedence)))
    return out


def _flow_overload(flow: FlowSettings) -> list[str]:
    d = FlowSettings()
    out = []
    for word, name in (("new-dialog-rate", "overload_new_dialog_rate"),
                       ("max-held", "overload_max_held"),
                       ("source-rate", "overload_source_rate"),
                       ("latency-target", "overload_latency_target_ms")):
        if getattr(flow, name) != getattr(d, name):
            out.append(f"set flow overload {word} {getattr(flow, name)}")
    return out


def _sip(sip: SipSettings) -> list[str]:
    d = SipSettings()
    out = []
    if sip.protect_deny:
        out.append("set sip protect deny" + (f" dst-ip {sip.protect_deny_dst}"
                                             if sip.protect_deny_dst is not None else ""))
    if sip.protect_deny_timeout != d.protect_deny_timeout:
        out.append(f"set sip protect deny timeout {sip.protect_deny_timeout}")
    for attr, keyword in (("signaling_inactivity_timeout", "signaling-inactivity-timeout"),
                          ("media_inactivity_timeout", "media-inactivity-timeout"),
                          ("max_call_duration", "max-call-duration"),
                          ("timer_c", "timer-c"),
                          ("max_setup_calls_per_source", "max-setup-calls-per-source"),
                          ("tcp_max_message", "tcp-max-message")):
        if getattr(sip, attr) != getattr(d, attr):
            out.append(f"set sip {keyword} {getattr(sip, attr)}")
    return out


def _mgcp(mgcp: MgcpSettings) -> list[str]:
    d = MgcpSettings()
    out = []
    for attr, words in (("message_flood_threshold", "message-flood threshold"),
                        ("connection_flood_threshold", "connection-flood threshold"),
                        ("inactive_media_timeout", "inactive-media-timeout"),
                        ("transaction_timeout", "transaction-timeout"),
                        ("max_call_duration", "max-call-duration"),
                        ("max_transactions", "max-transactions")):
        if getattr(mgcp, attr) != getattr(d, attr):
            out.append(f"set mgcp {words} {getattr(mgcp, attr)}")
    return out


def _nsrp(nsrp: NsrpSettings) -> list[str]:
    d = NsrpSettings()
    out = []
    if nsrp.cluster_id != d.cluster_id:
        out.append(f"set nsrp cluster id {nsrp.cluster_id}")
    if (nsrp.vsd_group, nsrp.priority) != (d.vsd_group, d.priority):
        out.append(f"set nsrp vsd-group id {nsrp.vsd_group} priority {nsrp.priority}")
    if nsrp.hb_interval_ms != d.hb_interval_ms:
        out.append(f"set nsrp vsd-group hb-interval {nsrp.hb_interval_ms}")
    if nsrp.hb_threshold != d.hb_threshold:
        out.append(f"set nsrp vsd-group hb-threshold {nsrp.hb_threshold}")
    if nsrp.rto_mirror != d.rto_mirror:
        out.append(f"set nsrp rto-mirror {nsrp.rto_mirror}")
    return out
