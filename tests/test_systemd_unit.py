"""The systemd unit (ops/systemd/voip-alg-gateway@.service) as `gwctl
install-service` installs it, under a scratch root: systemd-analyze finds
nothing to say, and what it runs, keeps and cleans up is what gatewayd and
gwctl expect."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.nodefile import parse_node_file
from ops.commands.service import UNIT_NAME, render_unit
from ops.control_client import DEFAULT_RUN_DIR, socket_path
from ops.gwctl import main as gwctl

GATEWAYD = str(Path(sys.executable).absolute().with_name("gatewayd"))
needs_gatewayd = pytest.mark.skipif(not os.access(GATEWAYD, os.X_OK),
                                    reason=f"{GATEWAYD} not installed (ops/bootstrap.sh setup)")


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


@pytest.fixture
def installed(tmp_path, capsys):
    assert gwctl(["install-service", "--root", str(tmp_path), "--node", "gw-a",
                  "--gatewayd", GATEWAYD if os.access(GATEWAYD, os.X_OK) else sys.executable]) == 0
    out = capsys.readouterr().out
    return tmp_path, out


def test_install_writes_the_unit_and_a_node_file_that_parses(installed):
    root, out = installed
    unit = root / "etc/systemd/system" / UNIT_NAME
    node = root / "etc/voip-alg-gateway/gw-a.toml"
    assert unit.exists() and node.exists() and (root / "etc/voip-alg-gateway/gateway.cfg").exists()
    s = parse_node_file(node.read_text(), "/etc/voip-alg-gateway/gw-a.toml")
    assert s.node == "gw-a" and s.journal == "/var/lib/voip-alg-gateway/gw-a"
    assert s.metrics is not None and s.metrics.host == "127.0.0.1"
    # The node's control socket is where the unit's runtime directory is and
    # where gwctl looks without --node.
    assert os.path.dirname(s.socket_path()) == DEFAULT_RUN_DIR
    assert "systemctl enable --now voip-alg-gateway@gw-a" in out
    assert os.stat(node).st_mode & 0o777 == 0o640


def test_a_second_install_keeps_the_operators_node_file(installed, capsys):
    root, _ = installed
    node = root / "etc/voip-alg-gateway/gw-a.toml"
    node.write_text(node.read_text() + "# edited\n")
    assert gwctl(["install-service", "--root", str(root), "--gatewayd", sys.executable]) == 0
    assert node.read_text().endswith("# edited\n")
    assert f"kept     {node}" in capsys.readouterr().out


def test_unit_runs_notifies_restarts_and_cleans_up(installed):
    root, _ = installed
    u = unit_settings((root / "etc/systemd/system" / UNIT_NAME).read_text())
    assert u["Service.Type"] == ["notify"] and u["Service.NotifyAccess"] == ["main"]
    assert u["Service.Restart"] == ["on-failure"] and u["Service.WatchdogSec"]
    (start,) = u["Service.ExecStart"]
    (post,) = u["Service.ExecStopPost"]
    assert start.endswith("--node-file /etc/voip-alg-gateway/%i.toml")
    assert post.endswith("--cleanup --node-file /etc/voip-alg-gateway/%i.toml")
    assert start.split()[0] == post.split()[0] and os.path.isabs(start.split()[0])
    assert u["Service.RuntimeDirectory"] == [os.path.basename(DEFAULT_RUN_DIR)]
    assert u["Service.KillMode"] == ["mixed"]
    # Capabilities instead of full root: only these four survive.
    assert set(u["Service.CapabilityBoundingSet"][0].split()) == {
        "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_NICE", "CAP_CHOWN"}
    assert u["Service.NoNewPrivileges"] == ["yes"]


@needs_gatewayd
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_has_nothing_to_say(installed):
    root, _ = installed
    # An instance of the template, as systemctl would load it.
    inst = root / "voip-alg-gateway@gw-a.service"
    shutil.copy(root / "etc/systemd/system" / UNIT_NAME, inst)
    r = subprocess.run(["systemd-analyze", "verify", str(inst)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    # verify exits 0 on unknown keys and bad values (it only warns): none allowed.
    assert r.stderr.strip() == "", r.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_catches_a_broken_unit(tmp_path):
    bad = render_unit(sys.executable).replace("KillMode=mixed", "KillMode=blend")
    inst = tmp_path / "voip-alg-gateway@gw-a.service"
    inst.write_text(bad)
    r = subprocess.run(["systemd-analyze", "verify", str(inst)], capture_output=True, text=True,
                       timeout=120)
    assert "KillMode" in r.stderr or "kill mode" in r.stderr


@pytest.mark.parametrize("path,needle", [
    ("gatewayd", "not absolute"),
    ("/opt/my gateway/bin/gatewayd", "space"),
])
def test_unit_refuses_a_path_systemd_would_split(path, needle):
    with pytest.raises(ValueError) as e:
        render_unit(path)
    assert needle in str(e.value)


def test_percent_in_the_path_is_escaped():
    assert "ExecStart=/opt/100%%/gatewayd --node-file" in render_unit("/opt/100%/gatewayd")


def test_install_refuses_a_bad_node_name_and_a_missing_gatewayd(tmp_path, capsys):
    assert gwctl(["install-service", "--root", str(tmp_path), "--node", "../x"]) == 2
    assert gwctl(["install-service", "--root", str(tmp_path), "--gatewayd", "/nonexistent/gatewayd"]) == 1
    err = capsys.readouterr().err
    assert "node name '../x'" in err and "/nonexistent/gatewayd is not an executable" in err
    assert not (tmp_path / "etc").exists()


def test_gwctl_finds_the_one_live_node_beside_a_stale_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("GWCTL_RUN_DIR", str(tmp_path))
    for name in ("gw-old", "gw-older"):
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(tmp_path / f"{name}.sock"))
        stale.close()                              # the file stays, nobody listens
    with pytest.raises(ConnectionError) as e:
        socket_path()
    assert "no gateway node answers" in str(e.value)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(tmp_path / "gw-a.sock"))
    live.listen(4)
    try:
        assert socket_path() == str(tmp_path / "gw-a.sock")
        assert socket_path("gw-old") == str(tmp_path / "gw-old.sock")    # --node still wins
    finally:
        live.close()
