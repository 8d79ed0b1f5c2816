"""The media offload's plan and nftables text (gateway/datapath/offload.py):
which flows go to the kernel, and that what the text installs rewrites a
packet's addresses and ports exactly as the userspace fast path does."""

from __future__ import annotations

import re
from ipaddress import IPv4Address
import shutil
import socket
import struct
import subprocess

import pytest

from gateway.datapath import Forward
from gateway.datapath.fastpath import FastPath
from gateway.datapath.offload import (OffloadTable, add_script, delete_script, flush_script,
                                      parse_counters, table_script)
from gateway.packet import build_udp

from test_datapath_fastpath import CFG, datapath

# The far party is reached through a gateway on the untrust side.
ROUTED = CFG + "set vrouter trust-vr route 0.0.0.0/0 interface ethernet3 gateway 1.1.1.250\n"

TABLE = "voipgw_media_q3"
MEDIA_IN = ("2.2.2.2", "1.1.1.1", 6000, 20000)       # through pinhole c#p1, to 10.1.1.3:4000
MEDIA_REV = ("10.1.1.3", "2.2.2.2", 4000, 6000)      # the reply side (pinhole c#p2)


def pkt(flow, payload=b"r" * 172) -> bytes:
    s, d, sp, dp = flow
    return build_udp(s, d, sp, dp, payload)


class Kernel:
    """The table's maps as the text leaves them (a model of what nft
    does with add/delete/flush element commands), and the rule applied to
    a packet's ``buf[12:24]``."""

    _EL = re.compile(r"^(add|delete) element inet (\S+) (\w+) \{ (.*) \}$")

    def __init__(self) -> None:
        self.maps: dict[str, dict] = {m: {} for m in ("flows", "nsaddr", "ndaddr", "nsport",
                                                     "ndport", "marks")}

    def apply(self, lines: list[str]) -> None:
        for line in lines:
            if line.startswith("flush map"):
                self.maps[line.split()[-1]].clear()
                continue
            op, table, name, body = self._EL.match(line).groups()
            assert table == TABLE
            m = self.maps[name]
            for item in body.split(", "):
                if op == "add":
                    k, v = item.rsplit(" : ", 1)
                    k = k.split(" timeout ")[0]
                    assert m.get(k, v) == v, "an add may only repeat an element's own data"
                    m[k] = v
                else:
                    k = item.split(" : ")[0]
                    assert k in m, f"delete of an absent element fails the batch: {k}"
                    del m[k]

    def forward(self, buf: bytes):
        """The new ``buf[12:24]`` and mark, or None (the packet goes on to the queue)."""
        s, d, sp, dp = struct.unpack("!4s4sHH", buf[12:24])
        key = f"{socket.inet_ntoa(s)} . {socket.inet_ntoa(d)} . {sp} . {dp}"
        fid = self.maps["flows"].get(key)
        if fid is None:
            return None
        m = self.maps
        head = struct.pack("!4s4sHH", socket.inet_aton(m["nsaddr"][fid]),
                           socket.inet_aton(m["ndaddr"][fid]), int(m["nsport"][fid]),
                           int(m["ndport"][fid]))
        return head, int(m["marks"][fid])


def test_established_media_directions_go_to_the_kernel_rewritten_as_the_fast_path_does():
    dp = datapath()
    table, kernel = OffloadTable(), Kernel()
    out0 = build_udp("10.1.1.3", "1.1.1.9", 40000, 30000, b"x")
    assert dp.process(out0, "ethernet1", 0.0).path == "policy"
    assert dp.process(pkt(MEDIA_IN), "ethernet3", 0.0).path == "fast-pinhole"
    plan = table.plan(dp.sessions.fast)
    # Only media (the policy session stays in userspace), and of it only the
    # forward direction: the reply's first packet still reports pinhole c#p2.
    assert [f.entry.forward for f in plan.adds] == [True] and not plan.deletes
    kernel.apply(plan.script(TABLE))
    assert kernel.forward(pkt(MEDIA_REV)) is None
    fast = FastPath.of(dp)
    assert kernel.forward(pkt(MEDIA_IN)) == (fast.process(pkt(MEDIA_IN), 1.0)[12:24], fast.mark)
    # The reply goes through userspace once, then it is offloaded too.
    assert dp.process(pkt(MEDIA_REV), "ethernet1", 1.0).path == "fast-session"
    plan = table.plan(dp.sessions.fast)
    assert [f.entry.forward for f in plan.adds] == [False] and not plan.deletes
    kernel.apply(plan.script(TABLE))
    assert kernel.forward(pkt(MEDIA_REV)) == (fast.process(pkt(MEDIA_REV), 2.0)[12:24], fast.mark)
    # Nothing changed: nothing to do.
    assert table.plan(dp.sessions.fast) == ([], [])
    assert len(kernel.maps["flows"]) == 2 and len(table) == 2


def test_a_session_that_ends_leaves_the_kernel_and_its_ids_are_reused():
    dp = datapath()
    table, kernel = OffloadTable(), Kernel()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    ids = set(kernel.maps["flows"].values())
    # The call ends (BYE + 5 s, clear session, max duration: the session goes).
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    dp.sessions.remove(sess)
    plan = table.plan(dp.sessions.fast)
    assert len(plan.deletes) == 2 and not plan.adds
    kernel.apply(plan.script(TABLE))
    assert all(not m for m in kernel.maps.values())
    # A new call's session on the same flow gets the freed ids.
    dp.process(pkt(MEDIA_IN), "ethernet3", 10.0)            # the call's pinholes are open
    dp.process(pkt(MEDIA_REV), "ethernet1", 10.0)
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    assert set(kernel.maps["flows"].values()) == ids


def test_a_new_session_on_the_same_flow_replaces_the_old_one_in_one_batch():
    dp = datapath()
    table, kernel = OffloadTable(), Kernel()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    (old,) = [s for s in dp.sessions if s.kind == "media"]
    dp.sessions.remove(old)
    dp.process(pkt(MEDIA_IN), "ethernet3", 1.0)        # the pinhole is still open
    plan = table.plan(dp.sessions.fast)
    assert len(plan.deletes) == 1 and len(plan.adds) == 1
    assert plan.deletes[0].key == plan.adds[0].key and plan.adds[0].entry.session is not old
    kernel.apply(plan.script(TABLE))
    assert len(kernel.maps["flows"]) == 1 and len(kernel.maps["nsaddr"]) == 1


def test_kernel_counters_count_for_the_session_and_its_voice_channel():
    dp = datapath()
    table = OffloadTable()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    dp.drain_activity()
    before = dict(dp.activity.packets)
    table.plan(dp.sessions.fast)
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    keys = {f.flow.entry.forward: k for k, f in table.installed.items()}
    new = table.counted({keys[True]: (50, 10_000), keys[False]: (40, 8_000)}, 30.0, dp.activity,
                        dp.paths)
    assert new == 90 and dp.paths["kernel"] == 90
    assert (sess.fwd_packets, sess.fwd_bytes) == (51, 10_200)
    assert (sess.rev_packets, sess.rev_bytes) == (41, 8_200)
    # The idle deadline moved: the session does not expire while the kernel
    # forwards its packets, and the voice channels were active.
    assert sess.deadline == 30.0 + sess.timeout
    assert not dp.expire(30.0 + sess.timeout - 1)
    assert {g for g, _hole, at in dp.drain_activity() if at == 30.0} == {"c#g1", "c#g2"}
    assert dp.activity.packets["c#g1"] - before["c#g1"] == 50
    assert dp.activity.packets["c#g2"] - before["c#g2"] == 40
    # Counters that did not move change nothing; a flow missing from the
    # listing timed out in the kernel: forgotten, and offered again.
    assert table.counted({keys[True]: (50, 10_000), keys[False]: (40, 8_000)}, 40.0, dp.activity,
                         dp.paths) == 0
    assert sess.deadline == 30.0 + sess.timeout
    table.counted({keys[True]: (50, 10_000)}, 41.0, dp.activity, dp.paths)
    assert len(table) == 1 and table.expired == 1
    plan = table.plan(dp.sessions.fast)
    assert len(plan.adds) == 1 and not plan.adds[0].entry.forward
    assert [f.fid for f in plan.deletes] != []                  # its auxiliary elements go


def test_deleting_an_element_that_timed_out_does_not_fail_the_batch():
    kernel = Kernel()
    dp = datapath()
    table = OffloadTable()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    kernel.maps["flows"].clear()                                 # timed out in the kernel
    dp.sessions.remove(next(iter(dp.sessions)))
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))     # the model asserts the rest
    assert all(not m for m in kernel.maps.values())


def test_clear_takes_everything_out():
    dp = datapath()
    table, kernel = OffloadTable(), Kernel()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    kernel.apply(table.clear().script(TABLE))
    assert all(not m for m in kernel.maps.values()) and len(table) == 0
    kernel.apply(flush_script(TABLE))


def test_the_table_limit_leaves_the_rest_in_userspace():
    dp = datapath()
    table = OffloadTable(max_flows=1)
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    assert len(table.plan(dp.sessions.fast).adds) == 1
    assert table.plan(dp.sessions.fast) == ([], [])


def test_counters_parse_from_nft_json():
    listing = ('{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "inet", '
               '"name": "flows", "table": "voipgw_media_q3", "type": ["ipv4_addr", "ipv4_addr", '
               '"inet_service", "inet_service"], "handle": 1, "map": "mark", "elem": [[{"elem": '
               '{"val": {"concat": ["2.2.2.2", "1.1.1.1", 6000, 20000]}, "timeout": 60, '
               '"expires": 59, "counter": {"packets": 7, "bytes": 1400}}}, 1]]}}]}')
    key = socket.inet_aton("2.2.2.2") + socket.inet_aton("1.1.1.1") + struct.pack("!HH", 6000, 20000)
    assert parse_counters(listing) == {key: (7, 1400)}
    assert parse_counters('{"nftables": []}') == {}


def test_scripts_name_only_the_given_interfaces_and_keep_fragments_out():
    text = table_script(TABLE, ["gwa", "gwb"])
    assert 'iifname { "gwa", "gwb" }' in text and "frag-off & 0x3fff == 0" in text
    assert text.index("notrack") > text.index("udp dport set")
    with pytest.raises(ValueError):
        table_script(TABLE, [])
    assert add_script(TABLE, []) == [] and delete_script(TABLE, []) == []


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
def test_the_table_and_its_elements_pass_nfts_check():
    # `nft -c` parses and validates without changing the ruleset.
    dp = datapath()
    table = OffloadTable()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    plan = table.plan(dp.sessions.fast)
    script = table_script(TABLE, ["lo"]).replace(f"delete table inet {TABLE}\n", "")
    r = subprocess.run(["nft", "-c", "-f", "-"], input=script + "\n".join(plan.script(TABLE)) + "\n",
                       capture_output=True, text=True)
    if r.returncode != 0 and "Operation not permitted" in r.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert r.returncode == 0, r.stderr


def test_sessions_and_pinholes_show_the_kernel_path_and_its_counts():
    from gateway.datapath.session_filter import media_by_pinhole, session_row
    dp = datapath()
    table = OffloadTable()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    assert "path" not in session_row(sess, 0.0)
    table.plan(dp.sessions.fast)
    assert sess.offloaded == 2 and session_row(sess, 0.0)["path"] == "kernel"
    keys = {f.flow.entry.forward: k for k, f in table.installed.items()}
    table.counted({keys[True]: (9, 1800), keys[False]: (4, 800)}, 1.0, dp.activity, dp.paths)
    row = media_by_pinhole(dp.sessions)[sess.pinhole]
    assert row == {"sessions": 1, "packets": [10, 5], "bytes": [2000, 1000], "path": "kernel"}
    # One direction timed out in the kernel, then the session went.
    table.counted({keys[True]: (9, 1800)}, 2.0, dp.activity, dp.paths)
    assert sess.offloaded == 1
    dp.sessions.remove(sess)
    table.plan(dp.sessions.fast)
    assert sess.offloaded == 0 and len(table) == 0


def test_sessions_primed_from_takeover_pinholes_go_to_the_kernel_before_any_packet():
    from gateway.datapath.media_prime import expected_flows, prime
    dp = datapath(ROUTED)
    # What each pinhole's first packet will be: the other party's media address.
    flows = expected_flows(dp.pinholes.holes())
    as_text = sorted((str(IPv4Address(s)), sp, str(IPv4Address(d)), dp_) for (s, sp), (d, dp_) in flows)
    assert as_text == [("10.1.1.3", 4000, "2.2.2.2", 6000), ("2.2.2.2", 6000, "1.1.1.1", 20000)]
    paths = dict(dp.paths)
    assert prime(dp, 0.0) == 2
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    # Nothing was seen: no counts, no activity reported to the ALG.
    assert (sess.fwd_packets, sess.rev_packets, sess.fwd_bytes, sess.rev_bytes) == (0, 0, 0, 0)
    assert dp.drain_activity() == [] and dp.paths == paths
    # Both directions are ready for the kernel, rewritten as the datapath
    # rewrites the real packets.
    table, kernel = OffloadTable(), Kernel()
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    ref = datapath(ROUTED)
    for flow, ingress in ((MEDIA_IN, "ethernet3"), (MEDIA_REV, "ethernet1")):
        assert kernel.forward(pkt(flow))[0] == ref.process(pkt(flow), ingress, 1.0).data[12:24]
    # Once more: nothing new to make.
    assert prime(dp, 1.0) == 0


def test_priming_leaves_calls_with_several_channels_to_their_packets():
    from gateway.datapath.media_prime import expected_flows
    from gateway.sip.state import Pinhole
    dp = datapath()
    dp.install_pinholes([Pinhole("c#p3", "c", "c#g3", "media", "udp", "inbound", ("1.1.1.1", 20002),
                                 ("10.1.1.3", 4002), None, None)])
    assert expected_flows(dp.pinholes.holes()) == []


def test_a_newer_call_takes_over_the_flow_a_lingering_call_holds():
    # A phone behind the gateway (10.1.1.3:4000) is called twice from the
    # same far phone (2.2.2.2:6000); the first call's session lingers. The
    # second call's media arrives at its own pinhole, and its reply tuple is
    # the first session's: the new call takes the flow (before: dropped,
    # "the reply tuple of this flow belongs to another session").
    from gateway.sip.state import Pinhole
    dp = datapath()
    dp.install_pinholes([Pinhole("d#p1", "d", "d#g1", "media", "udp", "inbound", ("1.1.1.1", 20002),
                                 ("10.1.1.3", 4000), None, None)])
    first = dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    assert first.path == "fast-pinhole"
    (old,) = [s for s in dp.sessions if s.kind == "media"]
    second = dp.process(pkt(("2.2.2.2", "1.1.1.1", 6000, 20002)), "ethernet3", 1.0)
    assert isinstance(second, Forward) and second.path == "fast-pinhole", second
    assert second.note == f"media flow taken over by call d (pinhole d#p1): session {old.id} of call c ended"
    (new,) = [s for s in dp.sessions if s.kind == "media"]
    assert new.call == "d" and old.removed
    # The phone's media now belongs to the new call, both ways.
    back = dp.process(pkt(MEDIA_REV), "ethernet1", 2.0)
    assert back.path == "fast-session" and dp.sessions.lookup(
        (17, int(IPv4Address("10.1.1.3")), 4000, int(IPv4Address("2.2.2.2")), 6000))[0] is new


def test_a_port_translated_source_never_takes_another_endpoints_flow():
    # The same collision, but the new flow's source would be port-translated:
    # its reply tuple then belongs to another endpoint, whose session stays.
    from gateway.datapath.media_takeover import displaced
    from gateway.sip.state import Pinhole
    dp = datapath()
    dp.install_pinholes([Pinhole("d#p1", "d", "d#g1", "media", "udp", "inbound", ("1.1.1.1", 20002),
                                 ("10.1.1.3", 4000), None, None)])
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    (sess,) = [s for s in dp.sessions if s.kind == "media"]
    hole = next(h for h in dp.pinholes.holes() if h.pinhole.id == "d#p1")
    key = (17, int(IPv4Address("2.2.2.2")), 6000, int(IPv4Address("1.1.1.1")), 20002)
    rw = (int(IPv4Address("2.2.2.2")), 6000, int(IPv4Address("10.1.1.3")), 4000)
    assert displaced(dp.sessions, key, rw, hole, translated=False) is sess
    assert displaced(dp.sessions, key, rw, hole, translated=True) is None


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
def test_the_chains_layout_passes_nfts_check_and_writes_only_what_changes():
    from gateway.datapath.offload import parse_chain_counters
    dp = datapath()
    table = OffloadTable()
    dp.process(pkt(MEDIA_IN), "ethernet3", 0.0)
    dp.process(pkt(MEDIA_REV), "ethernet1", 0.0)
    plan = table.plan(dp.sessions.fast)
    lines = plan.script(TABLE, "chains")
    # Inbound through the public pair: only the destination changes;
    # outbound: only the source.
    rules = [ln for ln in lines if ln.startswith("add rule")]
    assert any("ip daddr set 10.1.1.3 udp dport set 4000" in r and "saddr" not in r for r in rules)
    assert any("ip saddr set 1.1.1.1 udp sport set 20000" in r and "daddr" not in r for r in rules)
    script = table_script(TABLE, ["lo"], "chains").replace(f"delete table inet {TABLE}\n", "")
    r = subprocess.run(["nft", "-c", "-f", "-"], input=script + "\n".join(lines) + "\n",
                       capture_output=True, text=True)
    if r.returncode != 0 and "Operation not permitted" in r.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert r.returncode == 0, r.stderr
    fid = plan.adds[0].fid
    listing = ('{"nftables": [{"rule": {"family": "inet", "table": "t", "chain": "f%d", "expr": '
               '[{"mangle": {}}, {"counter": {"packets": 5, "bytes": 1000}}, {"notrack": null}]}}, '
               '{"rule": {"chain": "pre", "expr": [{"counter": {"packets": 9, "bytes": 9}}]}}]}' % fid)
    counts = parse_chain_counters(listing)
    assert counts == {fid: (5, 1000)}
    assert table.by_key(counts) == {plan.adds[0].key: (5, 1000)}


def _as_text(flows):
    return sorted(((str(IPv4Address(s)), sp), (str(IPv4Address(d)), dp_)) for (s, sp), (d, dp_) in flows)


def test_priming_pairs_a_one_channel_call_s_rtp_and_rtcp_pinholes():
    # A SIP call through NAT as the ALG leaves it (test_sip_alg.established):
    # each party's media is a group of two pinholes, RTP and RTCP. Each
    # pinhole expects the other party's media address of the same kind.
    from gateway.datapath.media_prime import expected_flows
    from gateway.datapath.pinholes import PinholeTable
    from test_sip_alg import established
    (call,) = established().state.calls.values()
    table = PinholeTable()
    table.rebuild([p for p in call.pinholes if p.kind == "media"])
    assert len(table) == 4
    assert _as_text(expected_flows(table.holes())) == [
        (("5.5.5.1", 52002), ("6.6.6.2", 62002)), (("5.5.5.1", 52003), ("6.6.6.2", 62003)),
        (("6.6.6.2", 62002), ("6.6.6.1", 52002)), (("6.6.6.2", 62003), ("6.6.6.1", 52003))]


def _with_rtcp_pinholes():
    """The datapath of the tests above, its call's RTCP pinholes added to
    each party's group (RTP on 20000 / 6000, RTCP on the next ports)."""
    from gateway.sip.state import Pinhole
    dp = datapath(ROUTED)
    dp.install_pinholes([
        Pinhole("c#p3", "c", "c#g1", "media", "udp", "inbound", ("1.1.1.1", 20001), ("10.1.1.3", 4001),
                None, None),
        Pinhole("c#p4", "c", "c#g2", "media", "udp", "outbound", ("2.2.2.2", 6001), None,
                ("1.1.1.1", 20001), None)])
    return dp


def test_a_one_channel_call_s_rtp_and_rtcp_are_primed_into_the_kernel():
    from gateway.datapath.media_prime import prime
    dp = _with_rtcp_pinholes()
    assert prime(dp, 0.0) == 4
    assert sorted(s.pinhole for s in dp.sessions if s.kind == "media") == ["c#p1", "c#p3"]
    table, kernel = OffloadTable(), Kernel()
    kernel.apply(table.plan(dp.sessions.fast).script(TABLE))
    ref = _with_rtcp_pinholes()
    rtcp_in, rtcp_rev = ("2.2.2.2", "1.1.1.1", 6001, 20001), ("10.1.1.3", "2.2.2.2", 4001, 6001)
    for flow, ingress in ((MEDIA_IN, "ethernet3"), (MEDIA_REV, "ethernet1"),
                          (rtcp_in, "ethernet3"), (rtcp_rev, "ethernet1")):
        assert kernel.forward(pkt(flow))[0] == ref.process(pkt(flow), ingress, 1.0).data[12:24]
