"""The rules of the configuration language (manual "CLI Conventions" and
"Naming Conventions and Character Types"), one command at a time."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from gateway.config import ConfigError, Diagnostic, parse_text, render
from gateway.config.model import (
    AddressRef, FlowSettings, MgcpSettings, NsrpSettings, SipSettings,
)

BASE = """\
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set address trust phone1 10.1.1.3/24
set address untrust proxy 1.1.1.3/24
"""


def errors(text: str) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        parse_text(text, "t.cfg")
    return [d for d in info.value.diagnostics if d.severity == "error"]


def only_error(text: str) -> Diagnostic:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


# -- diagnostics ---------------------------------------------------------------

def test_diagnostic_format():
    d = Diagnostic("a.cfg", 3, 7, "tok", "bad thing", "do this")
    assert str(d) == "a.cfg:3:7: error: bad thing: 'tok' (hint: do this)"
    assert str(Diagnostic("a.cfg", 1, 1, "x", "m", "", "warning")) == "a.cfg:1:1: warning: m: 'x'"


def test_config_error_str_is_one_diagnostic_per_line():
    with pytest.raises(ConfigError) as info:
        parse_text("set zonk untrust block\nset zone untrust blok\n", "f.cfg")
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and lines == [str(d) for d in info.value.diagnostics]
    assert lines[0].startswith("f.cfg:1:5: error: unknown keyword: 'zonk' (hint: did you mean 'zone'?")


# -- keywords: abbreviation and case ---------------------------------------------

def test_keywords_may_be_abbreviated_to_a_unique_prefix_in_any_case():
    full = parse_text(BASE + "set policy from trust to untrust phone1 proxy sip nat src permit\n")
    short = parse_text(BASE + "SE POL fr trust T untrust phone1 proxy SIP na s p\n")
    assert short == full


def test_manual_admin_abbreviation_example_is_accepted_and_unenforced():
    cfg = parse_text("set adm u kathleen j12fmt54\n")
    (item,) = cfg.unenforced
    assert item.text == "set admin user kathleen password j12fmt54"
    assert "host" in item.reason
    assert parse_text("set admin user name1 password xyz\n").unenforced[0].text == \
        "set admin user name1 password xyz"


def test_ambiguous_prefix_lists_the_candidates():
    d = only_error("set i ethernet1 zone trust\n")
    assert (d.line, d.column, d.token, d.message) == (1, 5, "i", "ambiguous keyword")
    assert d.hint == "'i' could be one of 'interface', 'ike'; type more letters"
    d = only_error("set sip m 10\n")
    assert "'media-inactivity-timeout', 'max-call-duration'" in d.hint


def test_unknown_keyword_did_you_mean_and_choices():
    d = only_error("set interface ethernet1 zonee trust\nset interface ethernet1 ip 10.1.1.1/24\n")
    assert (d.column, d.token, d.message) == (25, "zonee", "unknown keyword")
    assert d.hint.startswith("did you mean 'zone'? expected one of 'zone', 'ip', 'nat'")


def test_unknown_command():
    d = only_error("sett zone untrust block\n")
    assert (d.line, d.column, d.token) == (1, 1, "sett")
    assert "did you mean 'set'?" in d.hint


# -- names: case, quotes, spaces -------------------------------------------------------

def test_names_are_case_sensitive_but_predefined_zones_and_services_are_not():
    cfg = parse_text("set address TRUST Phone 10.1.1.3/32\nset address Trust phone 10.1.1.4/32\n"
                     "set policy from Trust to UNTRUST Phone any SIP permit\n")
    assert set(cfg.addresses) == {("trust", "Phone"), ("trust", "phone")}
    assert cfg.policies[0].from_zone == "trust" and cfg.policies[0].to_zone == "untrust"
    assert cfg.policies[0].service == "sip"
    d = only_error("set address trust Phone 10.1.1.3/32\n"
                   "set policy from trust to untrust phone any sip permit\n")
    assert (d.line, d.token, d.message, d.hint) == (2, "phone", "undefined source address",
                                                     "did you mean 'Phone'?")


def test_quoted_names_straight_and_typographic():
    cfg = parse_text('set address trust "local LAN" 10.1.1.0/24\n'
                     "set address trust \u201c  our   phones \u201d 10.1.2.0/24 "
                     "\u201cthe subscribers\u2019 phones\u201d\n"
                     'set policy from trust to untrust "local LAN" any sip permit\n'
                     "set policy from trust to untrust \u201cour phones\u201d any sip permit\n")
    assert cfg.addresses[("trust", "local LAN")].ip == IPv4Interface("10.1.1.0/24")
    ours = cfg.addresses[("trust", "our phones")]
    assert ours.comment == "the subscribers\u2019 phones"
    assert [p.src.value for p in cfg.policies] == ["local LAN", "our phones"]
    assert '"local LAN"' in render(cfg)


def test_local_lan_and_local_lan_lowercase_are_different_names():
    cfg = parse_text('set address trust "local LAN" 10.1.1.0/24\n'
                     'set address trust "local lan" 10.1.2.0/24\n')
    assert len(cfg.addresses) == 2


def test_comment_lines_and_blank_lines_are_ignored():
    assert parse_text("# a comment\n\n   # indented comment\nsave\n") == parse_text("")


def test_quote_errors():
    d = only_error('set address trust "local LAN 10.1.1.0/24\n')
    assert (d.column, d.message) == (19, "unterminated quoted name")
    d = only_error('set address trust lo"cal 10.1.1.0/24\n')
    assert (d.column, d.token, d.message) == (21, 'lo"cal', "a double quote inside a word")
    d = only_error('set address trust "local"LAN 10.1.1.0/24\n')
    assert d.message == "text right after a closing quote"


# -- objects ---------------------------------------------------------------------------

def test_interfaces_zone_ip_modes_mip_dip_loopback_manage():
    cfg = parse_text(BASE + """\
set interface ethernet3 mip 1.1.1.5 host 10.1.1.5
set interface ethernet3 mip 1.1.1.8 host 10.1.1.8 netmask 255.255.255.252 vrouter trust-vr
set interface ethernet3 dip 5 1.1.1.20 1.1.1.40 incoming
set interface ethernet3 dip 6 1.1.1.50 1.1.1.60
set interface ethernet3 dip interface-ip incoming
set interface loopback.1 zone untrust
set interface loopback.1 ip 1.1.4.1/24
set interface ethernet3 loopback-group loopback.1
set interface ethernet1 manage
set interface ethernet1 manage ssh
set interface tunnel.1 zone untrust
set interface tunnel.1 ip unnumbered interface ethernet3
""")
    e3 = cfg.interfaces["ethernet3"]
    assert e3.zone == "untrust" and e3.mode == "route" and e3.ip == IPv4Interface("1.1.1.1/24")
    assert [str(m.ip) for m in e3.mips] == ["1.1.1.5", "1.1.1.8"]
    assert e3.mips[1].netmask == IPv4Address("255.255.255.252")
    assert [(d.id, d.incoming) for d in e3.dips] == [(5, True), (6, False)]
    assert e3.dip_interface_incoming and e3.loopback_group == "loopback.1"
    assert cfg.interfaces["ethernet1"].manage == ("all", "ssh")
    assert cfg.interfaces["tunnel.1"].unnumbered == "ethernet3"
    assert cfg.interfaces["tunnel.1"].kind == "tunnel"
    assert parse_text(render(cfg)) == cfg


def test_unset_interface_items():
    cfg = parse_text(BASE + "set interface ethernet3 mip 1.1.1.5 host 10.1.1.5\n"
                     "unset interface ethernet3 mip 1.1.1.5\nunset interface ethernet1 nat\n")
    assert cfg.interfaces["ethernet3"].mips == () and cfg.interfaces["ethernet1"].mode is None


def test_zones_custom_block_and_screens():
    cfg = parse_text("set zone name voice\nset zone voice block\nunset zone untrust block\n"
                     "set zone untrust screen udp-flood dst-ip 1.1.1.5 threshold 80000\n"
                     "set zone untrust screen limit-session source-ip-based 20\n")
    assert cfg.zones["voice"].block and not cfg.zones["untrust"].block
    assert not cfg.zones["trust"].block
    assert cfg.zones["untrust"].udp_flood[0].threshold == 80000
    assert cfg.zones["untrust"].limit_session_per_source == 20
    assert parse_text("").zones["untrust"].block  # on by default (manual, Untrust Intrazone)
    assert parse_text(render(cfg)) == cfg


def test_addresses_prefix_and_mask_forms():
    cfg = parse_text("set address trust a 10.1.1.3/24\n"
                     "set address trust b 10.1.1.101 255.255.255.255 \"call agent\"\n")
    assert cfg.addresses[("trust", "a")].ip == IPv4Interface("10.1.1.3/24")
    assert cfg.addresses[("trust", "b")].ip == IPv4Interface("10.1.1.101/32")
    assert cfg.addresses[("trust", "b")].comment == "call agent"


def test_policies_forms():
    cfg = parse_text(BASE + """\
set interface ethernet3 mip 1.1.1.5 host 10.1.1.5
set interface ethernet3 dip 5 1.1.1.20 1.1.1.40 incoming
set interface ethernet3 dip interface-ip incoming
set policy name "to the proxy" from trust to untrust phone1 proxy sip nat src dip 5 permit
set policy from untrust to trust any mip(1.1.1.5) sip permit
set policy from untrust to trust any mip (1.1.1.5) h.323 permit
set policy from untrust to trust any dip(5) sip permit
set policy from untrust to trust any DIP(ethernet3) sip permit
set policy id 20 from trust to untrust any any any deny
set policy from trust to untrust any any mgcp-ua permit
""")
    p = cfg.policies
    assert p[0].name == "to the proxy" and p[0].nat_src and p[0].nat_dip == 5
    assert p[1].dst == p[2].dst == AddressRef("mip", "1.1.1.5")
    assert p[3].dst == AddressRef("dip", "5") and p[4].dst == AddressRef("dip", "ethernet3")
    assert (p[5].id, p[5].action, p[5].service) == (20, "deny", "any")
    assert p[6].id == 21
    assert [x.id for x in p[:5]] == [1, 2, 3, 4, 5]
    assert parse_text(render(cfg)) == cfg
    assert p[0].source.line == 12


def test_unset_policy_by_id():
    cfg = parse_text(BASE + "set policy from trust to untrust any any sip permit\n"
                     "set policy from untrust to trust any any sip permit\nunset policy id 1\n")
    assert [p.id for p in cfg.policies] == [2]
    d = only_error("unset policy id 4\n")
    assert (d.token, d.message) == ("4", "no such policy")


def test_routes():
    cfg = parse_text(BASE + "set vrouter trust-vr route 0.0.0.0/0 interface ethernet3 gateway 1.1.1.250\n"
                     "set route 10.9.0.0/16 interface ethernet1\n")
    assert cfg.routes[0].prefix == IPv4Network("0.0.0.0/0")
    assert cfg.routes[0].gateway == IPv4Address("1.1.1.250")
    assert cfg.routes[1].vrouter == "trust-vr" and cfg.routes[1].gateway is None
    d = only_error(BASE + "set route 10.9.0.1/16 interface ethernet1\n")
    assert (d.message, d.hint) == ("the destination prefix has host bits set",
                                   "did you mean 10.9.0.0/16?")


def test_sip_settings_and_unset_back_to_defaults():
    cfg = parse_text("set sip protect deny dst-ip 1.1.1.3/24\nset sip protect deny timeout 5\n"
                     "set sip signaling-inactivity-timeout 30000\n"
                     "set sip media-inactivity-timeout 90\nset sip max-call-duration 7200\n")
    assert cfg.sip == SipSettings(True, IPv4Interface("1.1.1.3/24"), 5, 30000, 90, 7200)
    assert parse_text(render(cfg)) == cfg
    back = parse_text(render(cfg) + "unset sip protect deny\nunset sip protect deny timeout\n"
                      "unset sip signaling-inactivity-timeout\nunset sip media-inactivity-timeout\n"
                      "unset sip max-call-duration\n")
    assert back.sip == SipSettings()
    assert parse_text("set sip protect deny\n").sip.protect_deny


def test_dip_sticky_and_flow_queue_bypass():
    cfg = parse_text("set dip sticky\nset flow queue-bypass\n")
    assert cfg.dip_sticky and cfg.flow == FlowSettings(queue_bypass=True)
    cfg = parse_text("set dip sticky\nunset dip sticky\nset flow queue-bypass\nunset flow queue-bypass\n")
    assert not cfg.dip_sticky and not cfg.flow.queue_bypass


def test_nsrp_settings():
    assert parse_text("").nsrp == NsrpSettings(1, 0, 100, 1000, 3, "sync")   # NSRP hb-interval 1000 ms
    cfg = parse_text("set nsrp cluster id 2\nset nsrp vsd-group id 0 priority 50\n"
                     "set nsrp vsd-group hb-interval 300\nset nsrp vsd-group hb-threshold 5\n"
                     "set nsrp rto-mirror async\n")
    assert cfg.nsrp == NsrpSettings(2, 0, 50, 300, 5, "async")
    assert parse_text(render(cfg)) == cfg
    d = only_error("set nsrp vsd-group id 0 priority 255\n")
    assert (d.token, d.message, d.hint) == ("255", "the priority (lower is the preferred active) "
                                            "out of range", "a whole number from 1 to 254")


def test_mgcp_settings():
    assert parse_text("").mgcp == MgcpSettings(1000, 200, 120, 30, 86400)
    cfg = parse_text("set mgcp message-flood threshold 500\nset mgcp connection-flood threshold 50\n"
                     "set mgcp inactive-media-timeout 60\nset mgcp transaction-timeout 10\n"
                     "set mgcp max-call-duration 3600\n")
    assert cfg.mgcp == MgcpSettings(500, 50, 60, 10, 3600)
    assert parse_text(render(cfg) + "unset mgcp transaction-timeout\n").mgcp.transaction_timeout == 30


def test_exec_is_an_operational_command():
    d = only_error("exec nsrp vsd-group 0 mode backup\n")
    assert (d.column, d.token) == (1, "exec")
    assert d.hint == "run it with gwctl, e.g. 'gwctl exec nsrp vsd-group 0 mode backup'"


def test_save_is_accepted_and_has_no_effect():
    assert parse_text("save\n") == parse_text("")


def test_ike_and_vpn_are_checked_and_recorded_unenforced():
    text = BASE + """\
set interface tunnel.1 zone untrust
set interface tunnel.1 ip unnumbered interface ethernet3
set ike gateway gw1 address 3.3.3.3 aggressive outgoing-interface ethernet3 preshare "a b" sec-level compatible
set vpn v1 gateway gw1 replay tunnel idletime 5 sec-level basic
set vpn v1 id 3 bind interface tunnel.1
"""
    cfg = parse_text(text)
    assert len(cfg.unenforced) == 3
    assert cfg.unenforced[1].text == "set vpn v1 gateway gw1 replay tunnel idletime 5 sec-level basic"
    # Source lines differ after rendering; the normalised text is kept.
    assert [u.text for u in parse_text(render(cfg)).unenforced] == [u.text for u in cfg.unenforced]
    found = errors(text.replace("gateway gw1 replay", "gateway gw2 replay")
                   .replace("bind interface tunnel.1", "bind interface tunnel.2"))
    assert [(d.token, d.message, d.hint) for d in found] == [
        ("gw2", "undefined IKE gateway", "did you mean 'gw1'?"),
        ("tunnel.2", "undefined interface", "did you mean 'tunnel.1'?"),
    ]


def test_all_errors_of_a_file_are_reported_at_once():
    found = errors("set interface ethernet1 zone trust\n"
                   "set interface ethernet1 ip 10.1.1.0/24\n"
                   "set address trust a 10.1.1.3/24\n"
                   "set polcy from trust to untrust a any sip permit\n"
                   "set address trust a 10.1.1.4/24\n"
                   "set policy from trust to untrust a b sip permit\n"
                   "set zone dmz blok\n")
    assert [d.line for d in found] == [2, 4, 5, 6, 7]


def test_media_offload_is_on_by_default_and_unset_keeps_media_in_userspace():
    assert parse_text("").flow.media_offload is True
    cfg = parse_text("unset flow media-offload\n")
    assert cfg.flow.media_offload is False
    assert parse_text("unset flow media-offload\nset flow media-offload\n").flow.media_offload is True
