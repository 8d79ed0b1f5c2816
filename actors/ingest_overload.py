"""A worker's overload control from its datapath's configuration (``set flow
overload``): the new-dialog budget it applies before any ALG parses, and the
kernel's per-source screen ahead of the queue (:mod:`actors.kernel_screen`)."""

from __future__ import annotations

from actors import kernel_screen
from gateway.overload import NewDialogBudget, overload_settings


def source_screen_of(datapath, queue_num: int, ifaces: list[str]):
    """The kernel's per-source screen from ``set flow overload source-rate``,
    by default the new-dialog rate (gateway/config/model.py says why); None:
    off, shedding off, or no configuration."""
    flow = getattr(getattr(datapath, "config", None), "flow", None)
    if flow is None:
        return None
    rate = flow.overload_source_rate
    if rate is None:
        rate = flow.overload_new_dialog_rate
    if rate <= 0 or flow.overload_new_dialog_rate <= 0 or not ifaces:
        return None
    return kernel_screen.SourceRateScreen(queue_num, ifaces, rate)


def overload_control_of(datapath) -> NewDialogBudget | None:
    """Overload control from the datapath's configuration (``set flow
    overload``); None when shedding is off (``new-dialog-rate 0``) or there
    is no configuration (tests' stand-in datapaths)."""
    config = getattr(datapath, "config", None)
    flow = getattr(config, "flow", None)
    if flow is None:
        return None
    settings = overload_settings(flow)
    return NewDialogBudget(settings, 0.0) if settings.rate > 0 else None
