"""The worker's kernel settings as /proc/sys paths: an interface name with a
dot (VLAN devices such as eth0.100, loopback.1) is one path component, not
two. Run against a scratch tree standing in for /proc/sys (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.ingest import NfqueueWorker, conf_path, sysctl_path
from gateway.config import parse_text
from gateway.datapath import Datapath

CFG = """
set interface ethernet1 zone trust
set interface ethernet1 ip 10.1.1.1/24
set interface ethernet3 zone untrust
set interface ethernet3 ip 1.1.1.1/24
set policy from trust to untrust any any any permit
"""

IFACES = {"eth0.100": "ethernet1", "loopback.1": "ethernet3"}


def scratch_proc(root: Path) -> None:
    (root / "net/ipv4").mkdir(parents=True)
    (root / "net/ipv4/ip_forward").write_text("0\n")
    for ifname, rp in (("all", "1"), ("eth0.100", "2"), ("loopback.1", "1")):
        d = root / "net/ipv4/conf" / ifname
        d.mkdir(parents=True)
        (d / "rp_filter").write_text(rp + "\n")
        (d / "accept_local").write_text("0\n")


def worker(root: Path, ifaces=IFACES) -> NfqueueWorker:
    return NfqueueWorker(0, ifaces, Datapath(parse_text(CFG)), install=False, proc_sys=str(root))


def test_a_dotted_interface_name_stays_one_path_component():
    assert conf_path("eth0.100", "rp_filter") == "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"
    assert sysctl_path("net", "ipv4", "ip_forward", root="/x") == "/x/net/ipv4/ip_forward"


@pytest.mark.parametrize("bad", ["", "..", ".", "a/b"])
def test_a_component_that_would_leave_its_directory_is_refused(bad):
    with pytest.raises(ValueError):
        conf_path(bad, "rp_filter")


def test_install_writes_dotted_interfaces_and_restore_puts_back_the_old_values(tmp_path):
    scratch_proc(tmp_path)
    w = worker(tmp_path)
    w.install_sysctls()
    conf = tmp_path / "net/ipv4/conf"
    assert (tmp_path / "net/ipv4/ip_forward").read_text() == "1"
    assert (conf / "all/rp_filter").read_text() == "0"
    for ifname in IFACES:
        assert (conf / ifname / "accept_local").read_text() == "1"
        assert (conf / ifname / "rp_filter").read_text() == "0"
    # Nothing was made beside the real entries (no net/ipv4/conf/eth0/100/...).
    assert sorted(p.name for p in conf.iterdir()) == ["all", "eth0.100", "loopback.1"]
    w.restore_sysctls()
    assert (tmp_path / "net/ipv4/ip_forward").read_text() == "0"
    assert (conf / "eth0.100/rp_filter").read_text() == "2"
    assert (conf / "loopback.1/accept_local").read_text() == "0"
    assert (conf / "all/rp_filter").read_text() == "1"


def test_an_interface_the_kernel_does_not_have_fails_install(tmp_path):
    scratch_proc(tmp_path)
    w = worker(tmp_path, {"eth9.7": "ethernet1"})
    with pytest.raises(OSError, match="eth9.7"):
        w.install_sysctls()
