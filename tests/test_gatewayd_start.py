"""gatewayd's start-up: operator mistakes end with a message and exit 1, and a
node that cannot start must not disturb a node that is already running."""

import shutil
from pathlib import Path

import pytest

from journal.store import Journal
from ops.gatewayd import main as gatewayd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ch2-incoming-call-with-mip.cfg"


def _node_file(tmp_path, extra=""):
    shutil.copy(EXAMPLE, tmp_path / "gw.cfg")
    (tmp_path / "node.toml").write_text(
        'node = "gw-a"\nconfig = "gw.cfg"\njournal = "j"\ncontrol_socket = "run/gw-a.sock"\n'
        f'queue = 4077\n{extra}')
    return str(tmp_path / "node.toml")


@pytest.fixture
def releases(monkeypatch):
    """Record AddressManager.release() calls instead of running `ip addr del`."""
    calls = []
    import actors.addresses
    monkeypatch.setattr(actors.addresses.AddressManager, "release", lambda self: calls.append(self))
    return calls


def test_second_instance_on_a_locked_journal_leaves_the_running_node_alone(tmp_path, releases, capsys):
    path = _node_file(tmp_path)
    running = Journal.open(tmp_path / "j", fsync=False)   # the node already running holds it
    try:
        assert gatewayd(["--node-file", path]) == 1
    finally:
        running.close()
    err = capsys.readouterr().err
    assert "another process" in err and "Traceback" not in err
    # Releasing the addresses would take them from the running active node.
    assert releases == []


def test_unknown_control_group_is_a_message_not_a_traceback(tmp_path, releases, capsys):
    path = _node_file(tmp_path, 'control_group = "no-such-group-here"\n')
    assert gatewayd(["--node-file", path]) == 1
    err = capsys.readouterr().err
    assert "no-such-group-here" in err and "Traceback" not in err
    assert releases == []


def test_startup_clock_says_where_the_start_went():
    from ops.gatewayd import StartupClock
    ticks = iter([10.0, 10.8, 11.0, 14.5, 14.6])
    c = StartupClock(clock=lambda: next(ticks))
    for part in ("imports", "configuration", "journal", "node"):
        c.mark(part)
    assert c.summary() == "started in 4.6 s (imports 0.8, configuration 0.2, journal 3.5, node 0.1)"


def test_the_niceness_weighs_against_other_sessions_too(tmp_path):
    """With autogroup scheduling a niceness counts only inside its session:
    gatewayd sets its session's autogroup niceness as well (sched(7))."""
    import os
    import subprocess
    import sys

    import pytest
    if not os.path.exists("/proc/self/autogroup") or os.geteuid() != 0:
        pytest.skip("needs autogroup scheduling and root")
    code = ("import os; from ops.gatewayd import _renice; _renice(-3); "
            "print(os.getpriority(os.PRIO_PROCESS, 0)); print(open('/proc/self/autogroup').read())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         start_new_session=True, timeout=60)
    assert out.returncode == 0, out.stderr
    prio, group = out.stdout.splitlines()[:2]
    assert prio == "-3" and group.endswith("nice -3"), out.stdout

