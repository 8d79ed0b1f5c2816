"""Zone screens of the datapath (manual ch. 2, "Example: UDP Flooding
Protection" and "Example: SIP Connection Maximum").

* UDP flood, per zone and destination address: "a threshold of 80000 per
  second for the number of UDP packets that can be received on IP address
  1.1.1.5, in the Untrust zone, before the security device generates an alarm
  and drops subsequent packets for the remainder of that second". The zone is
  the one the packet arrives from; the second is the whole second of ``now``
  (``int(now)``), so the count restarts on every second boundary. The alarm is
  raised once per flooded second.
* Source-IP-based session limit, per zone: "If the security device detects
  more than 20 connection attempts from the same IP address, it begins
  dropping subsequent attempts until the number of sessions drops below the
  specified maximum." Sessions are counted per (zone of arrival, source
  address) while they exist; a new one is refused while the count is at the
  limit.

Intra-zone blocking is a policy decision (:mod:`gateway.policy`).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from gateway.config.model import Config


class Screens:
    __slots__ = ("flood_thresholds", "_flood", "session_limits", "_sessions", "counters",
                 "_alarms")

    def __init__(self, config: Config) -> None:
        # (zone, dst ip int) -> packets/s
        self.flood_thresholds: dict[tuple[str, int], int] = {}
        self.session_limits: dict[str, int] = {}
        for zone in config.zones.values():
            for screen in zone.udp_flood:
                self.flood_thresholds[(zone.name, int(screen.dst_ip))] = screen.threshold
            if zone.limit_session_per_source is not None:
                self.session_limits[zone.name] = zone.limit_session_per_source
        # (zone, dst) -> [second, packets in it, alarmed]
        self._flood: dict[tuple[str, int], list] = {}
        # (zone, src) -> live sessions
        self._sessions: dict[tuple[str, int], int] = {}
        self.counters = {"udp_flood_dropped": 0, "udp_flood_alarms": 0,
                         "limit_session_dropped": 0}
        self._alarms: list[str] = []

    # -- UDP flood ----------------------------------------------------------------

    def udp_flood(self, zone: str | None, dst: int, now: float) -> str | None:
        """Count one UDP packet to ``dst`` arriving from ``zone``; the drop
        reason when it is past the threshold of this second, else None."""
        key = (zone, dst)
        threshold = self.flood_thresholds.get(key)
        if threshold is None:
            return None
        second = int(now)
        st = self._flood.get(key)
        if st is None or st[0] != second:
            st = self._flood[key] = [second, 0, False]
        st[1] += 1
        if st[1] <= threshold:
            return None
        if not st[2]:
            st[2] = True
            self.counters["udp_flood_alarms"] += 1
            self._alarms.append(f"alarm: UDP flood to {IPv4Address(dst)} from zone {zone}: over "
                                f"{threshold} packets in second {second}; dropping the rest of it")
        self.counters["udp_flood_dropped"] += 1
        return f"screen udp-flood: {IPv4Address(dst)} in zone {zone} over {threshold} packets/s"

    # -- source-IP-based session limit ---------------------------------------

    def session_limit(self, zone: str | None, src: int) -> str | None:
        """The drop reason when a new session from ``src`` in ``zone`` is over
        the zone's limit, else None (nothing is counted: see ``opened``)."""
        limit = self.session_limits.get(zone)
        if limit is None:
            return None
        if self._sessions.get((zone, src), 0) >= limit:
            self.counters["limit_session_dropped"] += 1
            return (f"screen limit-session: {IPv4Address(src)} has {limit} sessions from "
                    f"zone {zone} (source-ip-based limit)")
        return None

    def counts_sessions(self, zone: str | None) -> bool:
        return zone in self.session_limits

    def opened(self, zone: str | None, src: int) -> None:
        if zone in self.session_limits:
            k = (zone, src)
            self._sessions[k] = self._sessions.get(k, 0) + 1

    def closed(self, zone: str | None, src: int) -> None:
        k = (zone, src)
        n = self._sessions.get(k)
        if n is None:
            return
        if n <= 1:
            del self._sessions[k]
        else:
            self._sessions[k] = n - 1

    def sessions_of(self, zone: str, src: int) -> int:
        return self._sessions.get((zone, src), 0)

    def drain_alarms(self) -> list[str]:
        out, self._alarms = self._alarms, []
        return out

    def stats(self) -> dict[str, int]:
        return dict(self.counters)
