"""The HA transport's limits (ARCHITECTURE.md, "High availability"): the
largest message a node accepts, how long a snapshot transfer may stall, how
much a standby stores and folds at once, and the grace before a standby takes
over from an active whose process exited."""

from __future__ import annotations

# The largest replication message a node accepts (ZeroMQ drops the connection
# of a peer sending more).
MAX_MESSAGE_BYTES = 64 << 20
# Active: a snapshot transfer with no acknowledgement for this long is dropped
# (the standby says HELLO again and gets a new one).
SNAPSHOT_STALL = 30.0

# Standby: at most this many frames stored in one append (one fsync) and
# acknowledged at once; at most this many records waiting for the applier
# before the transport stops reading batches (the active's window then
# holds the rest); a drain of waiting batches yields to the heartbeats after
# half a heartbeat interval.
APPEND_CHUNK = 2000
# Standby: how long after the active's HA connection closed (its process
# exited) it takes over. The dead process's supervisor, at SCHED_FIFO and
# blocked on the pipe that closed at the same moment, removes its addresses
# in a few milliseconds (actors/fence.py, measured 2 ms in the lab); this is
# the margin for that, as the lease's margin is for a stalled one.
EXIT_GRACE = 0.15
FOLD_BACKLOG = 20000
# Standby: acknowledged records wait at most FOLD_DELAY seconds (or until
# FOLD_COALESCE of them) to be folded together (actors/replication_standby.py).
FOLD_DELAY = 0.05
FOLD_COALESCE = 2000
