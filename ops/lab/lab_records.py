"""A lab's records: :class:`LabState`, what a lab has made (its state file),
and :class:`DownReport`, what taking it down did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ops.lab.plan import Plan, plan_from_data
from ops.lab.process_stop import StopReport


@dataclass
class LabState:
    """What a lab has made; written before each step so ``down`` finds it."""

    lab: str
    plan: dict | None = None
    config: str | None = None
    namespaces: list[str] = field(default_factory=list)
    active: str = "gw-a"
    extra: list[list[str]] = field(default_factory=list)   # [address, device, announce]
    starter: str | None = None
    complete: bool = False
    state_dir: str | None = None      # where this state file (and <lab>.d/) lives
    daemons: dict = field(default_factory=dict)   # role -> pid of a starter's daemon

    def get_plan(self) -> Plan | None:
        return plan_from_data(self.plan) if self.plan is not None else None


@dataclass
class DownReport:
    """What :func:`take_down` did."""

    lab: str
    namespaces: list[str] = field(default_factory=list)     # deleted
    processes: StopReport = field(default_factory=StopReport)
    kept: Path | None = None                                # where the lab's files went

    @property
    def clean(self) -> bool:
        """Every process the lab ran has exited."""
        return not self.processes.left
