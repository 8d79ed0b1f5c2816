"""The manual's examples as configuration files (examples/*.cfg), and the
manual's text as printed where it is wrong (tests/data/manual-as-printed):
each error must be reported exactly, with line, column, token and hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_file, parse_text, render
from gateway.config.model import AddressRef
from ops import gwctl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cfg"))
AS_PRINTED = ROOT / "tests" / "data" / "manual-as-printed"

EXPECTED_EXAMPLES = {
    "ch1-gatekeeper-in-trust-zone", "ch1-gatekeeper-in-untrust-zone",
    "ch1-outgoing-calls-with-nat", "ch1-incoming-calls-with-nat",
    "ch1-gatekeeper-in-untrust-zone-with-nat", "ch2-sip-protect-deny",
    "ch2-inactivity-timeouts", "ch2-udp-flood-protection", "ch2-sip-connection-maximum",
    "ch2-incoming-call-interface-dip", "ch2-incoming-call-dip-pool",
    "ch2-incoming-call-with-mip", "ch2-proxy-in-private-zone", "ch2-proxy-in-public-zone",
    "ch2-three-zone-proxy-in-dmz", "ch2-untrust-intrazone", "ch2-trust-intrazone",
    "ch2-full-mesh-vpn-central", "ch2-full-mesh-vpn-branch1", "ch2-full-mesh-vpn-branch2",
    "ch3-media-gateway-in-subscribers-homes", "ch3-isp-hosted-service",
}

WRAPPED = "complete the command; if the manual wrapped it onto the next line, join the two lines"


def joined(line: int) -> str:
    return f"the manual wrapped the command of line {line} onto this line: join the two lines"


# (line, column, token, severity, message, hint) of every diagnostic, in order.
AS_PRINTED_ERRORS = {
    "ch2-incoming-call-with-mip": [
        (17, 29, "1.1.1.3", "error",
         "the MIP 1.1.1.3 is the address of 'proxy' in zone untrust (address book)",
         "a MIP needs an address of its own, such as 1.1.1.5"),
    ],
    "ch2-three-zone-proxy-in-dmz": [
        (17, 23, "2.2.2.4", "error", "the address needs a netmask",
         "write 2.2.2.4/32 (one host) or 2.2.2.4 255.255.255.255, or with its subnet mask, "
         "e.g. 2.2.2.4/24"),
        (20, 5, "interface2", "error", "unknown keyword",
         "a keyword and an interface name run together: did you mean 'interface ethernet2'?"),
    ],
    "ch2-full-mesh-vpn-central": [
        (20, 81, "ethernet2/1", "error", "incomplete command: expected 'preshare' after", WRAPPED),
        (22, 1, "preshare", "error", "a line that starts with no command", joined(20)),
        (23, 81, "ethernet2/2", "error", "incomplete command: expected 'preshare' after", WRAPPED),
        (25, 1, "preshare", "error", "a line that starts with no command", joined(23)),
        (26, 42, "no-reply", "error", "unknown keyword",
         "did you mean 'no-replay'? expected one of 'no-replay', 'replay', 'tunnel'"),
        (26, 79, "sec-level", "error",
         "incomplete command: expected one of 'standard', 'compatible', 'basic' after", WRAPPED),
        (28, 1, "standard", "error", "a line that starts with no command", joined(26)),
        (29, 9, "vpn-branch-1", "error", "undefined VPN", "did you mean 'vpn_branch-1'?"),
        (30, 42, "no-reply", "error", "unknown keyword",
         "did you mean 'no-replay'? expected one of 'no-replay', 'replay', 'tunnel'"),
        (30, 79, "sec-level", "error",
         "incomplete command: expected one of 'standard', 'compatible', 'basic' after", WRAPPED),
        (32, 1, "standard", "error", "a line that starts with no command", joined(30)),
        (37, 11, "10.1.1.0/24", "error",
         "the route to 10.1.1.0/24 via tunnel.1 is shadowed by the connected subnet of "
         "ethernet2/8 (10.1.1.1/24)",
         "a connected subnet always wins over a static route to the same prefix; one of the "
         "two addresses is wrong"),
    ],
    "ch2-full-mesh-vpn-branch1": [
        (20, 78, "ethernet3", "error", "incomplete command: expected 'preshare' after", WRAPPED),
        (22, 1, "preshare", "error", "a line that starts with no command", joined(20)),
        (23, 33, "4.4.4.4", "error",
         "the IKE peer of 'to-ns50' is this device's own address (ethernet4)",
         "the peer address is the remote device's outgoing interface"),
        (23, 75, "ethernet4", "error", "incomplete command: expected 'preshare' after", WRAPPED),
        (25, 1, "preshare", "error", "a line that starts with no command", joined(23)),
        (31, 11, "10.1.1.0/24", "error",
         "the route to 10.1.1.0/24 via tunnel.3 is shadowed by the connected subnet of "
         "ethernet1 (10.1.1.1/24)",
         "a connected subnet always wins over a static route to the same prefix; one of the "
         "two addresses is wrong"),
    ],
    "ch2-full-mesh-vpn-branch2": [
        (20, 78, "ethernet3", "error", "incomplete command: expected 'preshare' after", WRAPPED),
        (22, 1, "preshare", "error", "a line that starts with no command", joined(20)),
        (23, 33, "5.5.5.5", "error",
         "the IKE peer of 'to-ns50' is this device's own address (ethernet4)",
         "the peer address is the remote device's outgoing interface"),
        (23, 75, "ethernet4", "error", "incomplete command: expected 'preshare' after", WRAPPED),
        (25, 1, "preshare", "error", "a line that starts with no command", joined(23)),
    ],
    "ch3-isp-hosted-service": [
        (18, 25, "nat", "warning", "NAT mode on ethernet6 in the untrust zone has no effect",
         "NAT mode translates traffic that enters a trust-side interface; use 'route' on "
         "untrust interfaces"),
        (22, 63, "netmask", "error", "incomplete command: expected the MIP netmask after",
         WRAPPED),
        (24, 1, "255.255.255.255", "error", "a line that starts with no command", joined(22)),
    ],
    "ch3-media-gateway-in-subscribers-homes": [
        (8, 71, "\u201cOur", "error", "unterminated quoted name",
         "close the quotes on the same line (one command per line); if the command continues "
         "on the next line, join the two lines"),
        (10, 1, "subscribers'", "error", "a line that starts with no command", joined(8)),
        (11, 61, "\u201cOur No. 1 call", "error", "unterminated quoted name",
         "close the quotes on the same line (one command per line); if the command continues "
         "on the next line, join the two lines"),
        (13, 1, "agent\u201d", "error", "a line that starts with no command", joined(11)),
        (15, 49, "\u201cOur subscribers\u2019 network\u201d", "error",
         "unexpected text at the end of the command",
         "an interface's zone binding takes no quoted comment; remove it"),
        (16, 28, "2.2.2.0/24", "error",
         "the network address of 2.2.2.0/24 is not a host address",
         "an interface needs a host address of its subnet, e.g. 2.2.2.1/24"),
        (19, 39, "\u201cOur No. 1 call agent\u201d", "error",
         "unexpected text at the end of the command",
         "an interface's zone binding takes no quoted comment; remove it"),
        (24, 75, "untrust_subscriber", "error",
         "incomplete command: expected the source address after", WRAPPED),
        (26, 1, "call_agent1", "error", "a line that starts with no command", joined(24)),
        (27, 75, "trust_ca", "error", "incomplete command: expected the source address after",
         WRAPPED),
        (29, 1, "SubscriberSubNet", "error", "a line that starts with no command", joined(27)),
    ],
}


def test_every_example_of_the_manual_has_a_file():
    assert {p.stem for p in EXAMPLES} == EXPECTED_EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads_and_round_trips(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Manual (ScreenOS VoIP ALGs), Chapter")
    cfg = load_file(path)
    assert parse_text(render(cfg)) == cfg
    assert render(parse_text(render(cfg))) == render(cfg)


@pytest.mark.parametrize("name", sorted(AS_PRINTED_ERRORS))
def test_as_printed_errors_are_reported_exactly(name):
    path = AS_PRINTED / f"{name}.cfg"
    with pytest.raises(ConfigError) as info:
        load_file(path)
    got = [(d.line, d.column, d.token, d.severity, d.message, d.hint)
           for d in info.value.diagnostics]
    assert got == AS_PRINTED_ERRORS[name]
    assert all(d.file == str(path) for d in info.value.diagnostics)
    corrected = (ROOT / "examples" / f"{name}.cfg").read_text(encoding="utf-8")
    assert "Corrected (as printed: tests/data/manual-as-printed/" in corrected


def test_as_printed_files_are_the_ones_with_errors():
    assert {p.stem for p in AS_PRINTED.glob("*.cfg")} == set(AS_PRINTED_ERRORS)


def test_corrected_mip_example_uses_a_free_address():
    cfg = load_file(ROOT / "examples" / "ch2-incoming-call-with-mip.cfg")
    (mip,) = cfg.interfaces["ethernet3"].mips
    assert str(mip.ip) == "1.1.1.5" and str(mip.host) == "10.1.1.3"
    assert cfg.policies[-1].dst == AddressRef("mip", "1.1.1.5")


def test_full_mesh_vpn_lines_are_recorded_as_unenforced():
    cfg = load_file(ROOT / "examples" / "ch2-full-mesh-vpn-central.cfg")
    texts = [u.text for u in cfg.unenforced]
    assert len(texts) == 6
    assert texts[0].startswith('set ike gateway to-branch-1 address 3.3.3.3 main ')
    assert all("IPsec" in u.reason for u in cfg.unenforced)


def test_gwctl_config_check_accepts_every_example(capsys):
    assert gwctl.main(["config", "check", *map(str, EXAMPLES)]) == 0
    out = capsys.readouterr()
    assert out.out.count(": valid (") == len(EXAMPLES)
    assert "not enforced" in out.err
    assert "warning: NAT mode on ethernet6" in out.err


def test_gwctl_config_check_rejects_an_as_printed_file(capsys):
    path = AS_PRINTED / "ch2-incoming-call-with-mip.cfg"
    assert gwctl.main(["config", "check", str(EXAMPLES[0]), str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:17:29: error: the MIP 1.1.1.3 is the address of 'proxy'" in err
    assert "(hint: a MIP needs an address of its own, such as 1.1.1.5)" in err
    assert f"{path}: invalid (1 error)" in err


def test_gwctl_config_check_missing_file(tmp_path, capsys):
    assert gwctl.main(["config", "check", str(tmp_path / "nope.cfg")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_gwctl_config_show_prints_the_normalised_text(capsys):
    path = ROOT / "examples" / "ch2-untrust-intrazone.cfg"
    assert gwctl.main(["config", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == render(load_file(path))
    assert "unset zone untrust block\n" in out
    assert "set interface ethernet3 loopback-group loopback.1\n" in out


def test_gwctl_config_show_invalid_file(capsys):
    path = AS_PRINTED / "ch2-three-zone-proxy-in-dmz.cfg"
    assert gwctl.main(["config", "show", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ":20:5: error: unknown keyword: 'interface2'" in captured.err
