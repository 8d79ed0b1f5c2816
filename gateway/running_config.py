"""The pair's running configuration as journaled state.

``gwctl config apply`` is one event, :class:`ConfigApplied`, carrying the new
configuration's normal form (``gateway.config.render``) and its hash. It is
journaled and replicated like every ALG event, so both nodes switch at the
same point of the journal; the state it folds into (:class:`RunningConfig`,
``DomainState.config``) is in every snapshot, so a node that restarts or
rejoins (and a standby taking over) runs the configuration the active last
applied, whatever its own node file says. ``None``: nothing was ever applied,
the node file's configuration runs."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.events import Event, event

STREAM = "config"


@event("config.applied", schema=1)
@dataclass(frozen=True, slots=True)
class ConfigApplied(Event):
    """``text``: the normal form; ``hash``: its SHA-256 (hex); ``previous``:
    the hash of the configuration it replaces; ``source``: the file the
    operator named; ``by``: who asked (user and command); ``at``: wall time.
    ``ended``: the calls the new policy no longer permits, ended by the ALG
    events journaled right after this one."""

    text: str
    hash: str
    previous: str
    source: str
    by: str
    at: float
    ended: tuple = ()

    @property
    def stream(self) -> str:
        return STREAM


@dataclass(frozen=True, slots=True)
class RunningConfig:
    text: str
    hash: str
    source: str
    by: str
    at: float


def apply(state: RunningConfig | None, e: Event) -> RunningConfig | None:
    if isinstance(e, ConfigApplied):
        return RunningConfig(e.text, e.hash, e.source, e.by, e.at)
    raise TypeError(f"no config fold for {e.TYPE!r}")
