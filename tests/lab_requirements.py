"""What a namespace-lab test needs of the machine, as one skip reason.

Each lab test module names its requirements in the order they are checked;
:func:`missing` gives the first one not met (namespaces first), or None.
The reasons name what to install."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from ops.lab import netns

Requirement = Callable[[], "str | None"]


def tools(*names: str) -> Requirement:
    """Programs on the PATH (or paths to them)."""
    def check() -> str | None:
        for tool in names:
            if shutil.which(tool) is None:
                return f"{tool} not installed"
        return None
    return check


def file(path: str | Path, package: str) -> Requirement:
    """A file a Debian package installs."""
    def check() -> str | None:
        return None if Path(path).exists() else f"{path} missing (Debian {package})"
    return check


def netfilterqueue() -> str | None:
    """The NFQUEUE binding gatewayd's datapath runs on."""
    try:
        import netfilterqueue as _  # noqa: F401
    except ImportError:
        return "netfilterqueue is not installed in this environment"
    return None


def missing(*requirements: Requirement) -> str | None:
    """Why the lab cannot run here: network namespaces, then each
    requirement in turn; None when all are met."""
    why = netns.available()
    if why:
        return why
    for requirement in requirements:
        why = requirement()
        if why:
            return why
    return None
