"""The ALG adapters the node drives: pure code, in :mod:`gateway.algs` (the
contract they implement is :class:`gateway.alg_contract.Alg`); the names
stay importable from here for the node and its tools."""

from __future__ import annotations

from gateway.algs import (ADAPTERS, ENDING, PINHOLE_CLOSED, PINHOLE_OPENED, H323Adapter, MgcpAdapter,
                          SipAdapter, adapter_for_stream, all_calls, all_pinholes, all_registrations,
                          all_streams, entity_summary, far_side_of, media_nat_of, next_deadline, sip_step)
from gateway.pinhole import Pinhole

# The datapath's pinhole type for MGCP media and H.323 pinholes alike.
MediaHole = H323Hole = Pinhole

__all__ = ["ADAPTERS", "ENDING", "H323Adapter", "H323Hole", "MediaHole", "MgcpAdapter", "PINHOLE_CLOSED",
           "PINHOLE_OPENED", "Pinhole", "SipAdapter", "adapter_for_stream", "all_calls", "all_pinholes",
           "all_registrations", "all_streams", "entity_summary", "far_side_of", "media_nat_of",
           "next_deadline", "sip_step"]
