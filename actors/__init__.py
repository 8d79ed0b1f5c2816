"""The body: actors, the timer service, ingest workers and the HA role machine.

Entity actors (calls, registrations, MGCP endpoints, pinholes) subclass
`actors.runtime.PooledActor`: pykka's API, run on a small dispatcher pool.
They are found by key in an `actors.directory.Directory`; their timeouts come
from `actors.timers.TimerService`.
"""
