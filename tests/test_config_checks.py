"""Checks across lines: references to zones, interfaces, addresses, MIPs, DIP
pools and VPNs, and the values that contradict each other."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, Diagnostic, check_text, parse_text

BASE = """\
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set interface ethernet3 route
set address trust phone1 10.1.1.3/24
set address untrust phone2 1.1.1.4/24
set address untrust proxy 1.1.1.3/24
"""
N = BASE.count("\n")


def errors(text: str) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        parse_text(BASE + text, "t.cfg")
    return [d for d in info.value.diagnostics if d.severity == "error"]


def one(text: str) -> tuple[int, int, str, str, str]:
    found = errors(text)
    assert len(found) == 1, found
    d = found[0]
    return d.line - N, d.column, d.token, d.message, d.hint


def test_undefined_zone_did_you_mean():
    assert one("set zone name voice\nset address voise x 10.9.9.9/32\n") == \
        (2, 13, "voise", "undefined zone", "did you mean 'voice'?")
    assert one("set address lab x 10.9.9.9/32\n")[4] == "define it with 'set zone name lab'"


def test_undefined_interface_did_you_mean():
    assert one("set route 10.9.0.0/16 interface ethernet4\n") == \
        (1, 33, "ethernet4", "undefined interface", "did you mean 'ethernet3'?")


def test_not_an_interface_name():
    line, col, tok, msg, hint = one("set interface ethenet1 zone trust\n")
    assert (line, col, tok, msg) == (1, 15, "ethenet1", "not an interface name")
    assert hint.startswith("did you mean 'ethernet1'?")


def test_policy_source_must_be_in_the_from_zone():
    assert one("set policy from untrust to trust phone1 any sip permit\n") == (
        1, 34, "phone1", "the source address is in zone trust, not in the policy's from-zone untrust",
        "a policy's source must be an address of its from-zone; write the policy for zone trust "
        "or define the address in untrust")


def test_policy_destination_must_be_in_the_to_zone():
    line, col, tok, msg, _ = one("set policy from trust to untrust phone1 phone1 sip permit\n")
    assert (col, tok, msg) == (41, "phone1", "the destination address is in zone trust, "
                                            "not in the policy's to-zone untrust")


def test_undefined_address_did_you_mean():
    assert one("set policy from trust to untrust phone1 proxi sip permit\n")[2:] == \
        ("proxi", "undefined destination address", "did you mean 'proxy'?")


def test_mip_and_dip_destinations_are_global_but_must_exist():
    ok = BASE + ("set interface ethernet3 mip 1.1.1.5 host 10.1.1.3\n"
                 "set interface ethernet3 dip 5 1.1.1.20 1.1.1.40 incoming\n"
                 "set policy from untrust to trust any mip(1.1.1.5) sip permit\n"
                 "set policy from dmz to trust any mip(1.1.1.5) sip permit\n"
                 "set policy from untrust to trust any dip(5) sip permit\n")
    assert len(parse_text(ok).policies) == 3
    assert one("set policy from untrust to trust any mip(1.1.1.6) sip permit\n")[3] == "undefined MIP"
    line, col, tok, msg, hint = one("set interface ethernet3 mip 1.1.1.5 host 10.1.1.3\n"
                                    "set policy from untrust to trust any mip(1.1.1.6) sip permit\n")
    assert (tok, msg, hint) == ("mip(1.1.1.6)", "undefined MIP", "did you mean '1.1.1.5'?")
    assert one("set policy from untrust to trust any dip(7) sip permit\n")[3] == "undefined DIP pool"


def test_dip_destination_must_accept_incoming_calls():
    assert one("set interface ethernet3 dip 5 1.1.1.20 1.1.1.40\n"
               "set policy from untrust to trust any dip(5) sip permit\n")[3:] == (
        "DIP pool 5 does not accept incoming calls",
        "add 'incoming': set interface ethernet3 dip 5 1.1.1.20 1.1.1.40 incoming")
    assert one("set policy from untrust to trust any dip(ethernet3) sip permit\n")[3:] == (
        "ethernet3 has no incoming interface DIP",
        "add 'set interface ethernet3 dip interface-ip incoming'")


def test_mip_cannot_be_a_source():
    line, col, tok, msg, _ = one("set interface ethernet3 mip 1.1.1.5 host 10.1.1.3\n"
                                 "set policy from untrust to trust mip(1.1.1.5) any sip permit\n")
    assert (line, tok, msg) == (2, "mip(1.1.1.5)", "a MIP cannot be a policy's source")


def test_nat_src_dip_must_exist_and_be_on_the_egress_side():
    assert one("set policy from trust to untrust phone1 any sip nat src dip 9 permit\n")[2:4] == \
        ("9", "undefined DIP pool")
    assert one("set interface ethernet1 dip 9 10.1.1.50 10.1.1.60\n"
               "set policy from trust to untrust phone1 any sip nat src dip 9 permit\n")[3] == \
        "DIP pool 9 is on ethernet1 in zone trust, not in the policy's to-zone untrust"


def test_interface_ip_must_be_a_host_address():
    assert one("set interface ethernet4 zone dmz\nset interface ethernet4 ip 2.2.2.255/24\n")[2:] == (
        "2.2.2.255/24", "the broadcast address of 2.2.2.0/24 is not a host address",
        "an interface needs a host address of its subnet, e.g. 2.2.2.1/24")
    cfg = parse_text(BASE + "set interface loopback.2 zone untrust\nset interface loopback.2 ip 9.9.9.9/32\n")
    assert str(cfg.interfaces["loopback.2"].ip) == "9.9.9.9/32"


def test_interface_with_an_address_needs_a_zone():
    assert one("set interface ethernet5 ip 5.5.5.1/24\n")[3] == \
        "ethernet5 has an address but is bound to no zone"


def test_duplicate_interface_address():
    assert one("set interface ethernet4 zone dmz\nset interface ethernet4 ip 1.1.1.1/24\n")[3] == \
        "1.1.1.1 is already the address of ethernet3"


def test_mip_must_not_equal_an_interface_or_address_book_host():
    assert one("set interface ethernet3 mip 1.1.1.1 host 10.1.1.3\n")[3:] == (
        "the MIP 1.1.1.1 is the address of interface ethernet3",
        "a MIP needs an address of its own, such as 1.1.1.2")
    assert one("set interface ethernet3 mip 1.1.1.4 host 10.1.1.3\n")[3:] == (
        "the MIP 1.1.1.4 is the address of 'phone2' in zone untrust (address book)",
        "a MIP needs an address of its own, such as 1.1.1.5")
    assert one("set interface ethernet3 dip 5 1.1.1.20 1.1.1.40\n"
               "set interface ethernet3 mip 1.1.1.30 host 10.1.1.3\n")[3] == \
        "the MIP 1.1.1.30 lies in DIP pool 5 of ethernet3"


def test_duplicate_address_name():
    assert one("set address untrust proxy 1.1.1.9/32\n") == (
        1, 21, "proxy", "duplicate address name",
        "zone untrust already has an address 'proxy'; choose another name or "
        "'unset address untrust proxy' first")
    # The same name in another zone is another address.
    assert ("trust", "proxy") in parse_text(BASE + "set address trust proxy 10.1.1.9/32\n").addresses


def test_route_gateway_must_be_on_the_interface_subnet():
    assert one("set route 0.0.0.0/0 interface ethernet3 gateway 2.2.2.250\n")[3] == \
        "the gateway 2.2.2.250 is not on ethernet3's subnet 1.1.1.0/24"


def test_loopback_group_must_name_a_loopback_interface():
    assert one("set interface ethernet3 loopback-group ethernet1\n")[3] == \
        "a loopback group is named by a loopback interface"


def test_a_file_with_an_error_yields_nothing():
    config, diagnostics = check_text(BASE + "set zone untrust blok\n")
    assert config is None and diagnostics[0].severity == "error"


def test_check_text_returns_warnings_of_a_valid_file():
    config, diagnostics = check_text(BASE + "set interface ethernet3 nat\n", "w.cfg")
    assert config is not None
    assert [(d.severity, d.line) for d in diagnostics] == [("warning", N + 1)]


def test_wrapped_line_hint_skips_blank_lines():
    found = errors("set policy from trust to untrust\n\n\nphone1 any sip permit\n")
    assert [(d.line - N, d.column, d.token, d.message) for d in found] == [
        (1, 34, "untrust", "incomplete command: expected the source address after"),
        (4, 1, "phone1", "a line that starts with no command"),
    ]
    assert found[1].hint == (f"the manual wrapped the command of line {N + 1} onto this line: "
                             "join the two lines")


def test_a_line_without_a_command_not_after_a_cut_line():
    line, col, tok, msg, hint = one("phone1 any sip permit\n")
    assert (col, tok, msg) == (1, "phone1", "unknown keyword")
    assert "expected a command (set, unset or save)" in hint
