"""Properties of the configuration language: no input escapes as anything but
ConfigError, and rendering is a faithful, stable normal form."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import MappingProxyType

from hypothesis import given, settings, strategies as st

from gateway.config import ConfigError, parse_text, render
from gateway.config.model import (
    PREDEFINED_ZONES, SERVICES, Address, AddressRef, Config, DipPool, FlowSettings, Interface,
    MgcpSettings, Mip, NsrpSettings, Policy, Route, SipSettings, UdpFloodScreen, Zone,
)

VOCABULARY = [
    "set", "unset", "save", "exec", "interface", "zone", "address", "policy", "vrouter",
    "route", "dip", "sip", "admin", "ike", "vpn", "nsrp", "mgcp", "flow", "name", "block",
    "screen", "udp-flood", "dst-ip", "threshold", "limit-session", "source-ip-based", "ip",
    "unnumbered", "nat", "mip", "host", "netmask", "incoming", "interface-ip",
    "loopback-group", "manage", "from", "to", "any", "permit", "deny", "src", "id", "gateway",
    "sticky", "protect", "timeout", "ethernet1", "ethernet3", "loopback.1", "tunnel.1",
    "trust", "untrust", "dmz", "trust-vr", "10.1.1.1/24", "1.1.1.5", "0.0.0.0/0", "5", "0",
    "255.255.255.255", "mip(1.1.1.5)", "mip", "(1.1.1.5)", "dip(5)", "dip(ethernet3)",
    "sip", "h.323", '"a b"', "\u201cx\u201d", '"', "\u201c", "#", "p", "s", "i", "-1",
    "99999999999999999999", "cluster", "vsd-group", "priority", "rto-mirror", "async",
    "queue-bypass", "message-flood", "preshare", "sec-level", "standard", "no-replay",
    "tunnel", "idletime", "bind", "outgoing-interface", "main", "\u00e9", "\t", "",
]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_parses_or_raises_config_error(text):
    try:
        cfg = parse_text(text)
    except ConfigError as exc:
        assert exc.diagnostics and all(d.line >= 1 and d.column >= 1 for d in exc.diagnostics)
    else:
        assert parse_text(render(cfg)) == cfg


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(VOCABULARY), max_size=12).map(" ".join), max_size=12))
def test_vocabulary_soup_parses_or_raises_config_error(lines):
    try:
        cfg = parse_text("\n".join(lines))
    except ConfigError as exc:
        assert any(d.severity == "error" for d in exc.diagnostics)
    else:
        assert parse_text(render(cfg)) == cfg


# -- generated configurations ------------------------------------------------------

_word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,7}", fullmatch=True)
names = st.one_of(_word, st.tuples(_word, _word).map(" ".join)).filter(
    lambda n: n.lower() not in ("any", "mip", "dip"))
comments = st.lists(st.from_regex(r"[a-z0-9.'\u2019]{1,6}", fullmatch=True), max_size=3).map(" ".join)
addresses_v4 = st.integers(0, 2 ** 32 - 1).map(IPv4Address)


@st.composite
def configs(draw) -> Config:
    custom = draw(st.lists(st.sampled_from(["voice", "lab zone", "Branch_1", "ca"]),
                           unique=True, max_size=2))
    zone_names = list(PREDEFINED_ZONES) + custom
    zones = {}
    for z in zone_names:
        floods = draw(st.lists(st.tuples(addresses_v4, st.integers(1, 1_000_000)),
                               unique_by=lambda t: t[0], max_size=2))
        zones[z] = Zone(z, draw(st.booleans()), tuple(UdpFloodScreen(a, n) for a, n in floods),
                        draw(st.none() | st.integers(1, 1_000_000)))

    interfaces: dict[str, Interface] = {}
    pools: list[tuple[str, DipPool]] = []
    mips: list[str] = []
    next_pool = iter(range(1, 256))
    for i in range(1, draw(st.integers(0, 4)) + 1):
        zone = draw(st.sampled_from(zone_names))
        iface_mips = tuple(
            Mip(IPv4Address(f"10.{i}.0.{100 + j}"), draw(addresses_v4),
                draw(st.sampled_from([IPv4Address("255.255.255.255"),
                                      IPv4Address("255.255.255.252")])),
                draw(st.sampled_from(["trust-vr", "untrust-vr"])))
            for j in range(draw(st.integers(0, 2))))
        mips += [str(m.ip) for m in iface_mips]
        iface_pools = tuple(
            DipPool(next(next_pool), IPv4Address(f"10.{i}.0.{200 + 10 * j}"),
                    IPv4Address(f"10.{i}.0.{205 + 10 * j}"), draw(st.booleans()))
            for j in range(draw(st.integers(0, 2))))
        name = f"ethernet{i}"
        pools += [(name, p) for p in iface_pools]
        interfaces[name] = Interface(
            name, zone, IPv4Interface(f"10.{i}.0.1/24"), None,
            draw(st.sampled_from([None, "nat", "route"])), iface_mips, iface_pools,
            draw(st.booleans()), None,
            tuple(draw(st.lists(st.sampled_from(["all", "ssh", "ping", "web"]), unique=True,
                                max_size=2))))
    if interfaces and draw(st.booleans()):
        interfaces["tunnel.1"] = Interface("tunnel.1", draw(st.sampled_from(zone_names)),
                                           unnumbered=draw(st.sampled_from(sorted(interfaces))))
    addresses = {}
    for z in zone_names:
        for name in draw(st.lists(names, unique=True, max_size=3)):
            ip = IPv4Interface((draw(st.integers(0xC0A80000, 0xC0A8FFFF)),
                                draw(st.integers(16, 32))))
            addresses[(z, name)] = Address(z, name, ip, draw(st.none() | comments))
    routes = []
    if interfaces:
        for _ in range(draw(st.integers(0, 3))):
            out = draw(st.sampled_from(sorted(interfaces)))
            prefix = IPv4Network((draw(st.integers(0x14000000, 0x14FFFFFF)),
                                  draw(st.integers(8, 32))), strict=False)
            ip = interfaces[out].ip
            gateway = None if ip is None or draw(st.booleans()) else IPv4Address(int(ip.network[0]) + 254)
            routes.append(Route(prefix, out, gateway, draw(st.sampled_from(["trust-vr", "untrust-vr"]))))

    policies = []
    pid = 0
    for _ in range(draw(st.integers(0, 5))):
        pid += draw(st.integers(1, 3))
        frm, to = draw(st.sampled_from(zone_names)), draw(st.sampled_from(zone_names))
        src_names = [n for z, n in addresses if z == frm]
        dst_choices = [AddressRef("any")] + [AddressRef("name", n) for z, n in addresses if z == to]
        dst_choices += [AddressRef("mip", m) for m in mips]
        dst_choices += [AddressRef("dip", str(p.id)) for _, p in pools if p.incoming]
        dst_choices += [AddressRef("dip", n) for n, i in interfaces.items() if i.dip_interface_incoming]
        src = draw(st.sampled_from([AddressRef("any")] + [AddressRef("name", n) for n in src_names]))
        nat_pools = [p.id for n, p in pools if interfaces[n].zone == to]
        nat_src = draw(st.booleans())
        nat_dip = draw(st.none() | st.sampled_from(nat_pools)) if nat_src and nat_pools else None
        policies.append(Policy(pid, frm, to, src, draw(st.sampled_from(dst_choices)),
                               draw(st.sampled_from(sorted(SERVICES))),
                               draw(st.sampled_from(["permit", "deny"])),
                               draw(st.none() | names), nat_src, nat_dip))
    sip = SipSettings(draw(st.booleans()), None, draw(st.integers(1, 3600)),
                      draw(st.integers(1, 100000)), draw(st.integers(1, 1000)),
                      draw(st.integers(1, 100000)))
    if sip.protect_deny and draw(st.booleans()):
        sip = SipSettings(True, IPv4Interface("1.1.1.3/24"), sip.protect_deny_timeout,
                          sip.signaling_inactivity_timeout, sip.media_inactivity_timeout,
                          sip.max_call_duration)
    mgcp = MgcpSettings(*(draw(st.integers(1, 100000)) for _ in range(5)))
    nsrp = NsrpSettings(draw(st.integers(0, 7)), draw(st.integers(0, 7)), draw(st.integers(1, 254)),
                        draw(st.integers(50, 10000)), draw(st.integers(1, 255)),
                        draw(st.sampled_from(["sync", "async"])))
    return Config(MappingProxyType(zones), MappingProxyType(interfaces),
                  MappingProxyType(addresses), tuple(policies), tuple(routes), sip,
                  draw(st.booleans()), (), mgcp, nsrp, FlowSettings(draw(st.booleans())))


@settings(max_examples=200, deadline=None)
@given(configs())
def test_render_parse_round_trip(cfg):
    text = render(cfg)
    parsed = parse_text(text)
    assert parsed == cfg
    assert render(parsed) == text
