"""The lab's life cycle without root: ``up`` over a lab that is up, ``down``
keeping the lab's files and waiting for its processes, ``status`` listing
every namespace of the lab, what the RTP counters count, and what ``up`` says
about an example with no hosts (ops/lab/netns.py, ops/commands/lab.py).

No namespace is made: ``NETNS_DIR`` points at a temporary directory (a file
there is a namespace that exists) and ``run`` answers the few ``ip`` commands
these paths use, or fails the test when anything else would run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from gateway.config import load_file
from ops.commands.lab import hosts_lacking, resolve_config
from ops.lab import netns
from ops.lab.plan import build_plan
from test_lab_plan_configs import route_mode_trust_untrust

LAB = "lc1"


@pytest.fixture
def fake_ns(tmp_path, monkeypatch):
    """A namespace directory of our own and a ``run`` that answers ``ip
    netns pids`` (nothing runs) and ``ip -n NS addr show`` (no address) and
    records every command."""
    ns_dir = tmp_path / "netns"
    ns_dir.mkdir()
    monkeypatch.setattr(netns, "NETNS_DIR", ns_dir)
    ran: list[list[str]] = []

    def run(cmd, **_kw):
        cmd = list(cmd)
        ran.append(cmd)
        if cmd[:3] == ["ip", "netns", "pids"] or (cmd[:2] == ["ip", "-n"] and "addr" in cmd):
            return CompletedProcess(cmd, 0, "", "")
        if cmd[:3] == ["ip", "netns", "delete"]:
            (ns_dir / cmd[3]).unlink()
            return CompletedProcess(cmd, 0, "", "")
        raise AssertionError(f"unexpected command {cmd}")

    monkeypatch.setattr(netns, "run", run)
    return ns_dir, tmp_path / "state", ran


def _running_lab(ns_dir: Path, state_dir: Path, *, complete: bool = True) -> netns.LabState:
    plan = build_plan(route_mode_trust_untrust(), lab=LAB)
    state = netns.LabState(LAB, plan=netns.to_data(plan), config="x.cfg", starter="gatewayd",
                           namespaces=list(plan.namespaces()), complete=complete)
    netns.save_state(state, state_dir)
    for ns in plan.namespaces():
        (ns_dir / ns).touch()
    return state


# --- up over a lab that is up -----------------------------------------------------------

def test_up_over_a_running_lab_refuses_and_touches_nothing(fake_ns):
    ns_dir, state_dir, ran = fake_ns
    _running_lab(ns_dir, state_dir)
    plan = build_plan(route_mode_trust_untrust(), lab=LAB)
    with pytest.raises(netns.LabRunning, match="--replace"):
        netns.up(plan, state_dir=state_dir)
    assert ran == []                                    # no process stopped, nothing deleted
    assert netns.load_state(LAB, state_dir).complete
    assert all((ns_dir / ns).exists() for ns in plan.namespaces())


def test_a_half_made_or_vanished_lab_is_not_running(fake_ns):
    ns_dir, state_dir, _ran = fake_ns
    _running_lab(ns_dir, state_dir, complete=False)
    assert netns.running(LAB, state_dir) is None        # a crash in the middle of up
    _running_lab(ns_dir, state_dir)
    assert netns.running(LAB, state_dir) is not None
    for p in ns_dir.iterdir():                          # a reboot: namespaces gone
        p.unlink()
    assert netns.running(LAB, state_dir) is None


# --- status ---------------------------------------------------------------------------

def test_status_lists_namespaces_added_after_up(fake_ns):
    ns_dir, state_dir, _ran = fake_ns
    state = _running_lab(ns_dir, state_dir)
    # What ops/lab/extra_hosts.py add_host records and makes.
    state.namespaces.append(f"{LAB}-iad1")
    netns.save_state(state, state_dir)
    (ns_dir / f"{LAB}-iad1").touch()
    (ns_dir / f"{LAB}-stray").touch()                   # named like the lab, recorded nowhere
    (ns_dir / "other-sw").touch()                       # another lab's
    info = netns.status(LAB, state_dir=state_dir)
    assert info["namespaces"][f"{LAB}-iad1"] is True
    assert info["namespaces"][f"{LAB}-stray"] is True
    assert "other-sw" not in info["namespaces"]
    assert set(info["added"]) == {f"{LAB}-iad1", f"{LAB}-stray"}
    assert list(info["namespaces"])[0] == f"{LAB}-sw"


# --- down -----------------------------------------------------------------------------

def _lab_files(state_dir: Path) -> Path:
    d = netns.lab_files(LAB, state_dir)
    (d / "keys").mkdir(parents=True)
    (d / "keys" / "gw-a.key_secret").write_text("secret")
    (d / "run").mkdir()
    (d / "journal" / "gw-a").mkdir(parents=True)
    (d / "journal" / "gw-a" / "00000001.seg").write_bytes(b"\0" * 16)
    (d / "gw-a.log").write_text("gatewayd gw-a: active (epoch 1)\n")
    return d


def test_down_keeps_the_logs_it_pointed_at(fake_ns):
    ns_dir, state_dir, _ran = fake_ns
    _running_lab(ns_dir, state_dir)
    _lab_files(state_dir)
    rep = netns.take_down(LAB, state_dir=state_dir)
    plan = build_plan(route_mode_trust_untrust(), lab=LAB)
    assert rep.clean and sorted(rep.namespaces) == sorted(plan.namespaces())
    assert not any(ns_dir.iterdir())
    assert not netns.lab_files(LAB, state_dir).exists()
    assert not netns.state_path(LAB, state_dir).exists()
    kept = rep.kept
    assert kept is not None and kept.parent == netns.kept_root(state_dir)
    assert (kept / "gw-a.log").read_text().startswith("gatewayd gw-a")
    assert (kept / "journal" / "gw-a" / "00000001.seg").exists()
    assert not (kept / "keys").exists() and not (kept / "run").exists()   # no secrets kept


def test_down_keeps_only_the_newest_runs(fake_ns):
    _ns_dir, state_dir, _ran = fake_ns
    kept = []
    for i in range(4):
        _lab_files(state_dir)
        (netns.lab_files(LAB, state_dir) / "gw-a.log").write_text(f"run {i}\n")
        kept.append(netns.take_down(LAB, state_dir=state_dir).kept)
        os.utime(kept[-1], (1000 + i, 1000 + i))        # distinct ages, oldest first
    _lab_files(state_dir)
    last = netns.keep_files(LAB, state_dir, keep=2)
    left = sorted(p.name for p in netns.kept_root(state_dir).iterdir())
    assert left == sorted([kept[3].name, last.name])
    assert (last / "gw-a.log").exists()


def _child(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


SLOW_STOP = """
import signal, sys, time
def stop(*_):
    time.sleep(2.5)                 # a clean stop that takes its time (a journal flush)
    open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, "w").write("clean")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""

DEAF = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def test_stopping_a_namespace_gives_a_clean_stop_its_time(fake_ns, monkeypatch, tmp_path):
    """gatewayd's stop on SIGTERM (journal flushed, queue rules removed) may
    take seconds on a loaded machine: it is not SIGKILLed in the middle."""
    done = tmp_path / "stopped-cleanly"
    slow = _child(SLOW_STOP.format(path=str(done)))
    monkeypatch.setattr(netns, "_pids_in",
                        lambda _ns: [slow.pid] if netns.process_alive(slow.pid) else [])
    try:
        assert netns.stop_processes(f"{LAB}-gw-a") == [slow.pid]
        assert not netns.process_alive(slow.pid)
        assert done.read_text() == "clean"
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()


def test_stop_all_returns_when_every_process_exited_and_reports_sigkill(fake_ns):
    deaf = _child(DEAF)
    other = _child(DEAF)
    spawned: list[subprocess.Popen] = []

    def find():
        # A process that appears while the lab stops (as gatewayd's fence
        # supervisor would) is stopped too.
        if not spawned:
            spawned.append(_child(DEAF))
        return [p.pid for p in (deaf, other, *spawned)]
    try:
        rep = netns.stop_all(find, grace=0.3)
        everyone = sorted(p.pid for p in (deaf, other, *spawned))
        assert sorted(rep.killed) == everyone and rep.stopped == [] and rep.left == []
        assert all(not netns.process_alive(pid) for pid in everyone)
    finally:
        for p in (deaf, other, *spawned):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_zombie_counts_as_exited():
    # A child that exited and was not reaped yet: gone for the lab.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    assert netns.process_alive(proc.pid) is False


# --- what the counters count --------------------------------------------------------------

RTP = bytes([0x80, 8]) + bytes(10) + b"\xd5" * 160          # version 2, PCMA


@pytest.mark.parametrize("sport,dport,payload,media", [
    (6000, 6002, RTP, True),
    (30000, 6000, RTP, True),
    (6000, 9999, b"hello, not RTP at all", False),            # text: version bits 01
    (6000, 6001, bytes([0x80, 200]) + bytes(26), False),      # RTCP sender report
    (6000, 6001, bytes([0x80, 8]) + bytes(5), False),         # shorter than an RTP header
    (5060, 6000, RTP, False), (6000, 5060, RTP, False),       # SIP's port
    (2427, 6000, RTP, False), (1719, 6000, RTP, False),       # MGCP, H.323 RAS
    (6000, 53, RTP, False),
])
def test_only_rtp_counts_as_media(sport, dport, payload, media):
    assert netns.is_counted_media(sport, dport, payload) is media


def test_the_counter_rule_checks_the_rtp_header():
    rules = netns.counter_rules()
    assert "@th,64,2 2" in rules["rtp"] and "@th,72,8 != 192-223" in rules["rtp"]
    assert all(str(p) in rules["rtp"] for p in netns.NOT_MEDIA_PORTS)
    assert set(rules) == {"rtp", "udp"}


# --- examples without hosts ----------------------------------------------------------------

@pytest.mark.parametrize("example", ["ch2-udp-flood-protection", "ch2-sip-connection-maximum"])
def test_a_screen_example_says_it_has_no_hosts_and_how_to_get_some(example):
    path = resolve_config(example)
    config = load_file(path)
    plan = build_plan(config, lab=LAB)
    assert plan.hosts == ()
    text = hosts_lacking(config, plan, path)
    assert text is not None and "no hosts" in text and "lab failover" in text
    assert "screen on zone untrust" in text
    # The recipe it gives makes a lab with hosts that the screen applies to.
    base = text.split("cat examples/")[1].split(".cfg")[0]
    merged = Path(path).parent / f"{base}.cfg"
    text_cfg = merged.read_text() + "\n" + Path(path).read_text()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"lab-lifecycle-{os.getpid()}-{example}.cfg"
    try:
        tmp.write_text(text_cfg)
        both = load_file(tmp)
        assert len(build_plan(both, lab=LAB).hosts) >= 2
        assert any(z.udp_flood or z.limit_session_per_source for z in both.zones.values())
    finally:
        tmp.unlink(missing_ok=True)


def test_an_example_with_hosts_needs_no_word():
    path = resolve_config("ch2-incoming-call-with-mip")
    config = load_file(path)
    assert hosts_lacking(config, build_plan(config, lab=LAB), path) is None


def test_lab_up_prints_the_word(fake_ns, monkeypatch, capsys):
    """``gwctl lab up`` of a screen example says so before building."""
    from ops.gwctl import main as gwctl
    ns_dir, state_dir, _ran = fake_ns
    monkeypatch.setattr(netns, "available", lambda: None)
    built = []
    monkeypatch.setattr(netns, "up", lambda plan, **kw: built.append(plan))
    assert gwctl(["lab", "up", "ch2-udp-flood-protection", "--plain-routing", "--name", LAB]) == 0
    out = capsys.readouterr().out
    assert built and "warning: ch2-udp-flood-protection: the lab has no hosts" in out
    assert gwctl(["lab", "up", "ch2-udp-flood-protection", "--plain-routing", "--name", LAB,
                  "--json"]) == 0
    assert "no hosts" in json.loads(capsys.readouterr().out)["warning"]


def test_lab_up_refuses_over_a_running_lab_and_replace_takes_it_down(fake_ns, monkeypatch, capsys):
    from ops.gwctl import main as gwctl
    ns_dir, state_dir, _ran = fake_ns
    monkeypatch.setattr(netns, "STATE_DIR", state_dir)
    monkeypatch.setattr(netns, "available", lambda: None)
    _running_lab(ns_dir, state_dir)
    (netns.lab_files(LAB, state_dir)).mkdir(parents=True)
    (netns.lab_files(LAB, state_dir) / "gw-a.log").write_text("old run\n")
    argv = ["lab", "up", "ch2-incoming-call-with-mip", "--plain-routing", "--name", LAB]
    # The real up: it refuses before running any command.
    assert gwctl(argv) == 1
    err = capsys.readouterr().err
    assert f"lab {LAB} is up" in err and "--replace" in err
    assert netns.running(LAB, state_dir) is not None
    built = []
    monkeypatch.setattr(netns, "up", lambda plan, **kw: built.append(kw))
    assert gwctl(argv + ["--replace"]) == 0
    out = capsys.readouterr().out
    assert built and built[0]["replace"] is True
    assert f"lab {LAB} replaced" in out and "logs kept in" in out
    assert netns.running(LAB, state_dir) is None
    (kept,) = netns.kept_root(state_dir).iterdir()
    assert (kept / "gw-a.log").read_text() == "old run\n"
