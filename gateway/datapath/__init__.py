"""The per-packet datapath, sans-I/O: sessions, pinholes, screens and the
pipeline that decides each packet (DESIGN.md, "A packet's way through").

    from gateway.datapath import Datapath, Forward, Drop, Alg
    dp = Datapath(config)                      # builds its own Engine unless given one
    outcome = dp.process(ip_bytes, "ethernet1", now)
"""

from gateway.datapath.pinholes import Hole, MediaActivity, PinholeTable, sip_media_pinholes
from gateway.datapath.pipeline import (
    FRAGMENT_DROP, TCP_SIGNALLING_NOTE, Alg, Datapath, Drop, Forward, Outcome, looks_like_sip,
    mgcp_key, sip_call_id,
)
from gateway.datapath.screens import Screens
from gateway.datapath.sessions import Session, SessionTable

__all__ = ["Alg", "Datapath", "Drop", "FRAGMENT_DROP", "Forward", "Hole", "MediaActivity",
           "Outcome", "PinholeTable", "Screens", "Session", "SessionTable", "TCP_SIGNALLING_NOTE",
           "looks_like_sip", "mgcp_key", "sip_call_id", "sip_media_pinholes"]
