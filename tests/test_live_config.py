"""Live configuration (gwctl config apply): the diff of normal forms, the
journaled event's fold and replay, the active's apply with ScreenOS session
rematch, the standby following at the same journal record, a restart
adopting the journal's configuration, and the refusals."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from actors.live_config import RUNNING_FILE, ApplyRefused, LiveConfig
from actors.node import Node
from gateway import domain
from gateway.config import parse_text
from gateway.config.diff import config_hash, diff_configs, diff_texts, normal_text, restart_only_changes
from gateway.events import decode
from gateway.running_config import ConfigApplied
from gateway.sip.alg import SipContext
from journal.replay import replay
from journal.state_codec import decode_tree, encode_tree
from test_node import Clock
from test_sip_alg import invite, response, sdp

PH1, PH2, OTHER, ALG = "5.5.5.1", "6.6.6.2", "6.6.6.3", "6.6.6.254"

BASE = """\
set interface ethernet1 zone trust
set interface ethernet1 ip 5.5.5.254/24
set interface ethernet1 nat
set interface ethernet3 zone untrust
set interface ethernet3 ip 6.6.6.254/24
set address trust ph1 5.5.5.1/32
set address untrust ph2 6.6.6.2/32
set address untrust other 6.6.6.3/32
set policy from trust to untrust ph1 ph2 sip nat src permit
"""
# A policy added: the call to ph2 is still permitted.
MORE = BASE + "set policy from trust to untrust ph1 other sip nat src permit\n"
# The policy now names another destination: a call to ph2 is not permitted.
DENY_PH2 = BASE.replace("ph1 ph2 sip", "ph1 other sip")

OUT = SipContext("outbound", (PH1, 5060), (PH2, 5060), (ALG, 5060), None, "ethernet1", "ethernet3")
IN = SipContext("inbound", (PH2, 5060), (ALG, 5060), None, (PH1, 5060), "ethernet3", "ethernet1")


def cfg(text: str):
    return parse_text(text, "test.cfg")


def send(node: Node, ctx, data: bytes) -> None:
    done = threading.Event()
    node.handle_alg(SimpleNamespace(key="k", alg="sip"), lambda _o: done.set(), ctx, data)
    assert done.wait(5)
    assert node.quiesce(5)


@pytest.fixture
def pair(tmp_path):
    clock = Clock()
    a = Node("gw-a", cfg(BASE), str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False)
    b = Node("gw-b", cfg(BASE), str(tmp_path / "b"), clock=clock, fsync=False, timer_thread=False)
    la = LiveConfig(a, cfg(BASE), "base.cfg", state_dir=str(tmp_path / "a"), clock=clock)
    lb = LiveConfig(b, cfg(BASE), "base.cfg", state_dir=str(tmp_path / "b"), clock=clock)
    a.start()
    b.start(role="standby")
    yield a, b, la, lb
    a.stop()
    b.stop()


def replicate(active: Node, standby: Node) -> None:
    frames = active.journal.read_frames(standby.journal.head + 1, 1_000_000)
    if frames:
        standby.on_records(standby.journal.append_frames(frames))


def call_up(node: Node) -> None:
    send(node, OUT, invite(body=sdp(PH1, 52000)))
    send(node, IN, response(200, "OK", body=sdp(PH2, 62000)))


# ------------------------------------------------------------------- diff

def test_diff_of_the_same_configuration_in_other_words_is_empty():
    spelled = BASE.replace("set interface", "set int").replace("set policy", "set pol")
    other_words = "# the same, abbreviated\n\n" + spelled.replace("sip nat src", "sip nat src ")
    assert diff_configs(cfg(BASE), cfg(other_words)).empty
    assert config_hash(cfg(BASE)) == config_hash(cfg(other_words))


def test_diff_names_the_lines_that_go_and_come():
    d = diff_configs(cfg(BASE), cfg(DENY_PH2))
    assert any("ph2" in line and "policy" in line for line in d.removed)
    assert any("other" in line and "policy" in line for line in d.added)
    assert d.unified[0].startswith("--- running")


def test_restart_only_settings_are_named():
    changed = BASE.replace("6.6.6.254/24", "6.6.6.253/24") + "set nsrp rto-mirror async\n"
    why = restart_only_changes(cfg(BASE), cfg(changed))
    assert any(w.startswith("interfaces (ethernet3)") for w in why)
    assert any("nsrp" in w for w in why)
    assert restart_only_changes(cfg(BASE), cfg(DENY_PH2)) == []


LINES = BASE.splitlines()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(LINES + ["set address untrust x 7.7.7.7/32", "set alg sip t1-interval 500",
                                        "set polic from untrust to trust any any sip deny"]),
                max_size=12),
       st.text(alphabet="set policyaddrus \n\"#0123456789./", max_size=80))
def test_diff_of_any_file_text_is_a_diff_or_a_config_error(lines, noise):
    """The configuration parser is the one `config check` uses; whatever an
    operator hands `config diff`, it checks (diagnostics) or diffs; nothing
    else escapes, and the diff of a text against itself is empty."""
    from gateway.config import check_text
    text = "\n".join(lines) + "\n" + noise
    new, _diagnostics = check_text(text, "fuzz.cfg")
    if new is None:
        return
    d = diff_configs(cfg(BASE), new)
    assert d.empty == (normal_text(new) == normal_text(cfg(BASE)))
    assert diff_texts(normal_text(new), normal_text(new)).empty


# ------------------------------------------------------------ fold/replay

def test_config_event_survives_its_journal_encoding_and_folds():
    e = ConfigApplied("set alg sip t1-interval 500\n", "h", "p", "f.cfg", "root", 5.0, ("call/x;y",))
    back = decode(e.TYPE, e.SCHEMA, e.to_payload())
    assert back == e
    st_ = domain.apply(domain.EMPTY, back)
    assert st_.config.text == e.text and st_.config.hash == "h" and st_.config.by == "root"


def test_a_snapshot_of_a_state_without_the_configuration_field_still_loads():
    tree = encode_tree(domain.EMPTY)
    del tree[2]["config"]                   # as written before the field existed
    assert decode_tree(tree) == domain.EMPTY


# ------------------------------------------------------------------ apply

def test_apply_switches_both_nodes_at_the_same_record_and_replay_reproduces_it(pair, tmp_path):
    a, b, la, lb = pair
    call_up(a)
    replicate(a, b)
    res = la.apply(MORE, "more.cfg", "tester")
    assert res["applied"] and res["calls_ended"] == [] and res["journaled"]
    assert la.current_hash == config_hash(cfg(MORE))
    assert len(a.state.sip.calls) == 1                 # the permitted call carries on
    assert lb.current_hash == config_hash(cfg(BASE))   # not yet replicated
    replicate(a, b)
    assert lb.current_hash == config_hash(cfg(MORE))
    assert b.config == a.config and b.state == a.state
    # The configuration is no entity: no actor, no timer, on either node.
    assert b.directory.keys("entity") == a.directory.keys("entity")
    assert not any("config" in str(k) for k in b.directory.keys("entity"))
    replayed, _ = replay(a.journal, domain.apply, domain.EMPTY)
    assert replayed.config.hash == config_hash(cfg(MORE)) and replayed == a.state
    assert (tmp_path / "a" / RUNNING_FILE).read_text().endswith(normal_text(cfg(MORE)))
    assert (tmp_path / "b" / RUNNING_FILE).exists()


def test_a_call_the_new_policy_denies_is_ended_on_both_nodes(pair):
    a, b, la, lb = pair
    call_up(a)
    replicate(a, b)
    [key] = list(a.state.sip.calls)
    assert a.state.sip.calls[key].pinholes
    res = la.apply(DENY_PH2, "deny.cfg", "tester")
    assert [c["call"] for c in res["calls_ended"]] == [key]
    assert res["calls_ended"][0]["reason"].startswith("no policy matches trust->untrust")
    assert key not in a.state.sip.calls
    assert a.directory.get(("entity", f"call/{key}")) is None
    replicate(a, b)
    assert key not in b.state.sip.calls and b.state == a.state
    types = [t for r in a.journal.read(1) for t, _p in r.entries()]
    i = types.index("config.applied")
    assert types[i + 1:] and types[-1] == "sip.call_ended"


def test_a_standby_refuses_to_apply(pair):
    _a, b, _la, lb = pair
    with pytest.raises(ApplyRefused, match="gw-b is the standby.*active"):
        lb.apply(MORE, "more.cfg", "tester")
    assert lb.current_hash == config_hash(cfg(BASE))


def test_an_invalid_file_applies_nothing_and_says_where(pair):
    a, _b, la, _lb = pair
    head = a.journal.head
    with pytest.raises(ApplyRefused, match=r"bad.cfg:2:.*invalid|bad.cfg: invalid"):
        la.apply(BASE + "set policy from trust to nowhere any any sip permit\n", "bad.cfg", "t")
    with pytest.raises(ApplyRefused) as exc:
        la.apply("set interface ethernet1 zone trust\nset polcy from x\n", "bad.cfg", "t")
    assert "bad.cfg:2" in str(exc.value)
    assert a.journal.head == head and la.current_hash == config_hash(cfg(BASE))


def test_restart_only_and_empty_and_stale_applies_are_refused(pair):
    a, _b, la, _lb = pair
    head = a.journal.head
    with pytest.raises(ApplyRefused, match="cannot change on a running pair: interfaces"):
        la.apply(BASE.replace("5.5.5.254/24", "5.5.5.250/24"), "iface.cfg", "t")
    with pytest.raises(ApplyRefused, match="nothing to apply"):
        la.apply(BASE, "same.cfg", "t")
    with pytest.raises(ApplyRefused, match="changed since"):
        la.apply(MORE, "more.cfg", "t", expect="0" * 64)
    assert a.journal.head == head


def test_a_second_apply_is_refused_while_one_is_under_way(pair):
    _a, _b, la, _lb = pair
    assert la._applying.acquire()
    la._busy = "first.cfg asked by someone"
    try:
        with pytest.raises(ApplyRefused, match="in progress .*first.cfg"):
            la.apply(MORE, "more.cfg", "t")
    finally:
        la._applying.release()


def test_the_apply_is_logged_with_its_hash_and_who_asked(pair, caplog):
    _a, _b, la, _lb = pair
    with caplog.at_level(logging.WARNING, logger="gateway.config"):
        la.control("config-apply", {"text": MORE, "file": "more.cfg", "by": "ops@host: gwctl",
                                    "_peer": {"uid": 0, "pid": 42}})
    line = next(r.getMessage() for r in caplog.records if "applied" in r.getMessage())
    assert config_hash(cfg(MORE))[:12] in line and "uid 0 pid 42 (ops@host: gwctl)" in line


def test_a_restarted_node_runs_the_journal_configuration_and_says_so(tmp_path, caplog):
    clock = Clock()
    a = Node("gw-a", cfg(BASE), str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False)
    la = LiveConfig(a, cfg(BASE), "base.cfg", state_dir=str(tmp_path / "a"), clock=clock)
    a.start()
    la.apply(DENY_PH2, "deny.cfg", "t")
    a.stop()
    again = Node("gw-a", cfg(BASE), str(tmp_path / "a"), clock=clock, fsync=False, timer_thread=False)
    try:
        live = LiveConfig(again, cfg(BASE), "base.cfg", state_dir=str(tmp_path / "a"), clock=clock)
        with caplog.at_level(logging.WARNING, logger="gateway.config"):
            assert live.adopt()
        assert live.current_hash == config_hash(cfg(DENY_PH2)) and again.config == cfg(DENY_PH2)
        assert any("differs from the pair's running configuration" in r.getMessage()
                   for r in caplog.records)
        assert live.running()["origin"] == "journal"
    finally:
        again.stop()


# --------------------------------------------------------------- sessions

DNS = BASE + "set policy from trust to untrust any other any permit\n"


def test_policy_sessions_the_new_policy_denies_go_and_the_rest_carry_on(tmp_path):
    """ScreenOS session rematch on the datapath: a session whose flow the new
    configuration still permits stays (same translation, same id); one it
    denies is removed, and its next packet is decided by the new policy."""
    from gateway.datapath import Datapath, Drop, Forward
    from gateway.packet import build_udp
    clock = Clock()
    dp = Datapath(cfg(DNS))
    node = Node("gw-a", cfg(DNS), str(tmp_path / "a"), datapath=dp, clock=clock, fsync=False,
                timer_thread=False)
    live = LiveConfig(node, cfg(DNS), "dns.cfg", clock=clock)
    node.start()
    try:
        dns = dp.process(build_udp(PH1, OTHER, 7000, 53, b"q"), "ethernet1", 1.0)
        assert isinstance(dns, Forward)
        [kept_before] = [s for s in dp.sessions if s.fwd_key[4] == 53]
        res = live.apply(DNS + "set address trust other-ph 5.5.5.9/32\n", "more.cfg", "t")
        assert res["sessions_removed"] == 0
        assert [s for s in dp.sessions if s.fwd_key[4] == 53] == [kept_before]
        res = live.apply(BASE, "base.cfg", "t")          # DNS no longer permitted
        assert res["sessions_removed"] == 1
        assert [s for s in dp.sessions if s.fwd_key[4] == 53] == []
        again = dp.process(build_udp(PH1, OTHER, 7000, 53, b"q"), "ethernet1", 2.0)
        assert isinstance(again, Drop) and again.category == "policy"
    finally:
        node.stop()


def test_a_cut_that_removes_the_applied_configuration_brings_the_file_back(pair):
    a, b, la, lb = pair
    call_up(a)
    replicate(a, b)
    head = b.journal.head
    la.apply(MORE, "more.cfg", "t")
    replicate(a, b)
    assert lb.current_hash == config_hash(cfg(MORE))
    b.roles._cut_and_rebuild(head)     # as a rejoining node whose active never had it
    assert b.state.config is None and lb.current_hash == config_hash(cfg(BASE))
    assert b.config == cfg(BASE)


# -------------------------------------------------------------------- gwctl

@pytest.fixture
def served(pair, tmp_path):
    from actors.control import ControlServer
    a, b, _la, _lb = pair
    sa = ControlServer(str(tmp_path / "gw-a.sock"), a.control)
    sb = ControlServer(str(tmp_path / "gw-b.sock"), b.control)
    sa.start()
    sb.start()
    yield a, b, sa.path, sb.path
    sa.stop()
    sb.stop()


def gwctl(*argv) -> int:
    from ops.gwctl import main
    return main(list(argv))


def test_gwctl_config_diff_apply_and_show_running(served, tmp_path, capsys):
    a, b, sock_a, sock_b = served
    more = tmp_path / "more.cfg"
    more.write_text(MORE)
    assert gwctl("config", "diff", "--node", sock_a, str(more)) == 1
    out = capsys.readouterr().out
    assert "+set address untrust other" not in out and "+set policy id 2" in out
    assert gwctl("config", "apply", "--node", sock_b, str(more)) == 1     # the standby refuses
    assert "gw-b is the standby" in capsys.readouterr().err
    assert gwctl("config", "apply", "--node", sock_a, str(more)) == 0
    out = capsys.readouterr().out
    assert "+set policy id 2" in out and "applied " in out and "0 call(s) ended" in out
    assert gwctl("config", "diff", "--node", sock_a, str(more)) == 0
    assert "no difference" in capsys.readouterr().out
    replicate(a, b)
    assert gwctl("config", "show", "--running", "--node", sock_b) == 0
    out = capsys.readouterr().out
    assert config_hash(cfg(MORE)) in out and "from the journal" in out and normal_text(cfg(MORE)) in out
    # the journal's record names who asked: the process's uid and what gwctl said
    applied = next(p for r in a.journal.read(1) for t, p in r.entries() if t == "config.applied")
    assert applied["by"].startswith("uid ") and "gwctl config apply" in applied["by"]


def test_gwctl_config_apply_of_an_invalid_file_prints_where_and_applies_nothing(served, tmp_path, capsys):
    a, _b, sock_a, _sock_b = served
    bad = tmp_path / "bad.cfg"
    bad.write_text(BASE + "set policy from trust to untrust ph1 nowhere sip permit\n")
    head = a.journal.head
    assert gwctl("config", "apply", "--node", sock_a, str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}:10:" in err and "nowhere" in err and "nothing applied" in err
    assert a.journal.head == head
