"""What the datapath knows of a SIP packet: :class:`SipContext`, the
:class:`gateway.alg_contract.PacketContext` of the SIP ALG (manual chapter 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gateway.alg_contract import PacketContext


@dataclass(frozen=True, slots=True)
class SipContext(PacketContext):
    """What the datapath knows of a SIP packet (:class:`PacketContext`), and
    ``transport``: "udp" or "tcp". ``far_side``: optional, True for an
    address that lies in the zone the message is going to: media or requests
    to it would not cross the gateway from the side the message came from,
    so no pinhole is opened to it (an SDP or Contact naming a third party
    behind the gateway must not open a path to it from anywhere). None: not
    checked (no routing known). ``dedicated``: optional, True for a public
    address that is one host's alone (see the field)."""

    transport: str = "udp"
    far_side: Callable[[str], bool] | None = None
    # True for a public address that is one host's alone (a MIP's mapped
    # address): a one-to-one translation, whose ports are the host's own, so
    # what the host announces keeps its port there, media and bindings (a
    # phone that announces one RTP port for every call is reached on that
    # port: each call's media is the same flow, which the newest call's
    # pinhole answers). None: not known.
    dedicated: Callable[[str], bool] | None = None
