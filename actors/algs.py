"""The ALG adapters the node drives: pure code, in :mod:`gateway.algs` (the
contract they implement is :class:`gateway.alg_contract.Alg`); the names
stay importable from here for the node and its tools."""

from __future__ import annotations

from gateway.algs import (ADAPTERS, H323Adapter, MgcpAdapter, SipAdapter, adapter_for_stream,
                          far_side_of, media_nat_of, sip_step)
from gateway.pinhole import Pinhole

# The datapath's pinhole type for MGCP media and H.323 pinholes alike.
MediaHole = H323Hole = Pinhole

__all__ = ["ADAPTERS", "H323Adapter", "H323Hole", "MediaHole", "MgcpAdapter", "Pinhole", "SipAdapter",
           "adapter_for_stream", "far_side_of", "media_nat_of", "sip_step"]
