"""The kernel settings files of the ingest worker: the /proc/sys path of a
setting by its components (interface names may hold dots), read and written
(why the worker sets them: :mod:`actors.ingest`)."""

from __future__ import annotations

PROC_SYS = "/proc/sys"


def sysctl_path(*parts: str, root: str = PROC_SYS) -> str:
    """The /proc/sys file of a setting given by its components, e.g.
    ``("net", "ipv4", "conf", "eth0.100", "rp_filter")``. Not the dotted
    ``sysctl`` name: an interface name may itself hold dots (VLAN devices
    such as ``eth0.100``, ``loopback.1``), and replacing every dot by a slash
    would split it into two path components."""
    for part in parts:
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"bad sysctl path component {part!r}")
    return "/".join((root, *parts))


def conf_path(ifname: str, setting: str, root: str = PROC_SYS) -> str:
    """``net/ipv4/conf/<ifname>/<setting>`` (``ifname`` may be ``all``)."""
    return sysctl_path("net", "ipv4", "conf", ifname, setting, root=root)


def read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)
