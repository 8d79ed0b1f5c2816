"""pcap mode: the core over the corpus captures, with the capture's clock.

Every capture runs through without a crash; every packet is accounted for
(forwarded or dropped with a reason); what the gateway emits is well-formed
for tshark; and with --journal, `gwctl replay` reconstructs the calls."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ops.gatewayd import main as gatewayd
from ops.gwctl import main as gwctl

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
NAT_CFG = ROOT / "tests" / "data" / "pcap-ua-behind-nat.cfg"

CAPTURES = ["sip.pcap", "sip_ipv4_tcp.pcap", "register-invite-reinvite-bye.pcap",
            "sip-compact-form__sip_compact_form.pcap", "sip-tcp-method__sip-tcp.pcap", "mgcp.pcap",
            "h323.pcap", "h323-overflow.pcap"]


def run(capsys, *args) -> tuple[int, str]:
    rc = gatewayd(list(args))
    return rc, capsys.readouterr().out


def malformed(path: Path) -> list[str]:
    r = subprocess.run(["tshark", "-r", str(path), "-Y", "_ws.malformed || _ws.expert.severity >= error",
                        "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_runs_and_every_packet_is_accounted_for(tmp_path, capsys, name):
    src = CORPUS / name
    if not src.exists():
        pytest.skip(f"{src} is not in the corpus")
    out = tmp_path / "out.pcap"
    rc, text = run(capsys, "--pcap-in", str(src), "--pcap-out", str(out), "--config", str(NAT_CFG), "--json",
                   "--log-level", "ERROR")
    assert rc == 0
    s = json.loads(text)
    assert s["packets"] > 0
    assert s["forwarded"] + s["dropped"] == s["packets"]
    assert s["written"] == s["forwarded"]
    assert sum(s["drop_reasons"].values()) == s["dropped"]
    assert all(reason for reason in s["drop_reasons"])
    if shutil.which("tshark") and s["written"]:
        assert malformed(out) == []


def test_sip_capture_through_nat_hides_the_private_address(tmp_path, capsys):
    out = tmp_path / "out.pcap"
    rc, text = run(capsys, "--pcap-in", str(CORPUS / "sip.pcap"), "--pcap-out", str(out),
                   "--config", str(NAT_CFG), "--json", "--log-level", "ERROR")
    s = json.loads(text)
    assert rc == 0 and s["alg_messages"]["sip"] > 0 and s["forwarded"] > 0
    # Nothing the gateway emits towards the provider carries the phone's private
    # address where an address belongs: the IP header, the SIP address fields
    # (Via sent-by, Contact, From, Call-ID host...) and SDP. (Opaque tokens such as
    # this phone's Via branch, which embeds its address, are not addresses.)
    from gateway.packet import parse
    from gateway.sip import is_keepalive, parse_message
    private = "192.168.1.2"
    data = out.read_bytes()[24:]
    checked = 0
    while data:
        incl = int.from_bytes(data[8:12], "little")
        pkt = parse(data[16:16 + incl])
        data = data[16 + incl:]
        if str(pkt.dst) == private:
            continue
        assert str(pkt.src) != private
        payload = bytes(pkt.payload)
        if pkt.proto != 17 or 5060 not in (pkt.sport, pkt.dport) or is_keepalive(payload):
            continue
        msg = parse_message(payload)
        assert all(a.host.text != private for a in msg.addresses), payload
        if msg.sdp is not None:
            conns = [m.conn for m in msg.sdp.media if m.conn] + [msg.sdp.session_conn]
            assert all(c is None or c.addr.text != private for c in conns)
            assert msg.sdp.origin_addr is None or msg.sdp.origin_addr.text != private
        checked += 1
    assert checked > 10


def test_journal_of_a_capture_replays(tmp_path, capsys):
    out, jdir = tmp_path / "out.pcap", tmp_path / "journal"
    rc, text = run(capsys, "--pcap-in", str(CORPUS / "sip.pcap"), "--pcap-out", str(out),
                   "--config", str(NAT_CFG), "--journal", str(jdir), "--json", "--log-level", "ERROR")
    assert rc == 0
    s = json.loads(text)
    assert s["events"] >= s["records"] > 0       # a step's events on one entity: one record
    assert gwctl(["replay", str(jdir), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["last_seq"] == s["records"]
    # stopping early gives an earlier state: the first REGISTER's binding and nothing after
    assert gwctl(["replay", str(jdir), "--until", "1", "--json"]) == 0
    early = json.loads(capsys.readouterr().out)
    assert early["last_seq"] == 1


def test_pcap_mode_usage_errors(capsys):
    assert gatewayd(["--pcap-in", "x.pcap"]) == 2
    assert "needs --pcap-in, --pcap-out and --config" in capsys.readouterr().err
    assert gatewayd([]) == 2


def test_an_out_of_order_capture_never_moves_the_datapaths_clock_back(tmp_path, capsys, monkeypatch):
    # Captures merged from several taps are not sorted: the core's clock (the
    # node's and the datapath's alike) must never go back, or sessions and
    # pinholes would be stamped in the past and expire early.
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    from gateway.datapath import Datapath
    frames = []
    for i, t in enumerate([100.0, 101.0, 50.0, 102.0]):
        f = Ether() / IP(src="10.150.20.3", dst="1.1.1.9") / UDP(sport=4000 + i, dport=9) / b"x"
        f.time = t
        frames.append(f)
    cap = tmp_path / "unsorted.pcap"
    wrpcap(str(cap), frames)
    seen = []
    real = Datapath.process

    def spy(self, raw, ingress, now, *a, **kw):
        seen.append(now)
        return real(self, raw, ingress, now, *a, **kw)
    monkeypatch.setattr(Datapath, "process", spy)
    rc, _ = run(capsys, "--pcap-in", str(cap), "--pcap-out", str(tmp_path / "o.pcap"), "--config",
                str(NAT_CFG), "--json", "--log-level", "ERROR")
    assert rc == 0 and len(seen) == 4
    assert seen == sorted(seen)


def test_replay_of_a_directory_without_a_journal_says_so(tmp_path, capsys):
    assert gwctl(["replay", str(tmp_path)]) == 1
    assert "holds no journal segments" in capsys.readouterr().err
