"""The typed, frozen model of a gateway configuration.

The parser (:mod:`gateway.config.parser`) builds a :class:`Config` from the
manual's CLI language; the policy/NAT engine, the ALGs and the node read it.
Everything here is immutable: a configuration is replaced whole, never edited in
place, so a file with an error can never be half-applied.

Names follow the manual ("Naming Conventions"): zone, address, policy and other
object names are case-sensitive strings; keywords are not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import MappingProxyType
from typing import Literal, Mapping

# The zones every ScreenOS device has. Blocking of intra-zone traffic is on by
# default in Untrust and off in Trust and in custom zones (manual, ch. 2
# "Example: Untrust Intrazone" and "Example: Trust Intrazone").
PREDEFINED_ZONES = ("trust", "untrust", "dmz", "global")
DEFAULT_BLOCKING = {"untrust": True}
DEFAULT_VROUTER = "trust-vr"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a configuration item came from: for errors and ``config check``."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Service:
    """A predefined service: protocol and destination ports."""

    name: str
    # (protocol, first port, last port); protocol is "tcp", "udp" or "any".
    ports: tuple[tuple[str, int, int], ...]

    def matches(self, protocol: str, dport: int) -> bool:
        return any((p == "any" or p == protocol) and lo <= dport <= hi
                   for p, lo, hi in self.ports)


# Predefined services (manual ch. 1 "H.323", ch. 2 "SIP is a predefined service
# ... port 5060", ch. 3 "MGCP-UA, UDP 2427 ... MGCP-CA, UDP 2727").
# H.323: Q.931 call signalling on TCP 1720, RAS on UDP 1718-1719 (ITU-T H.225.0).
SERVICES: Mapping[str, Service] = MappingProxyType({
    "any": Service("any", (("any", 0, 65535),)),
    "h.323": Service("h.323", (("tcp", 1720, 1720), ("udp", 1718, 1719))),
    "sip": Service("sip", (("udp", 5060, 5060), ("tcp", 5060, 5060))),
    "mgcp-ua": Service("mgcp-ua", (("udp", 2427, 2427),)),
    "mgcp-ca": Service("mgcp-ca", (("udp", 2727, 2727),)),
})


@dataclass(frozen=True, slots=True)
class UdpFloodScreen:
    """``set zone Z screen udp-flood dst-ip IP threshold N`` (packets/s)."""

    dst_ip: IPv4Address
    threshold: int


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    block: bool = False
    udp_flood: tuple[UdpFloodScreen, ...] = ()
    # ``screen limit-session source-ip-based N``: concurrent sessions per source.
    limit_session_per_source: int | None = None
    vrouter: str = DEFAULT_VROUTER


@dataclass(frozen=True, slots=True)
class Mip:
    """``mip IP host IP [netmask M] [vrouter VR]``: static one-to-one NAT."""

    ip: IPv4Address
    host: IPv4Address
    netmask: IPv4Address = IPv4Address("255.255.255.255")
    vrouter: str = DEFAULT_VROUTER

    @property
    def public(self) -> IPv4Network:
        return IPv4Network(f"{self.ip}/{self.netmask}", strict=False)

    @property
    def private(self) -> IPv4Network:
        return IPv4Network(f"{self.host}/{self.netmask}", strict=False)


@dataclass(frozen=True, slots=True)
class DipPool:
    """``dip ID IP1 IP2 [incoming]``: a pool of public source addresses."""

    id: int
    first: IPv4Address
    last: IPv4Address
    incoming: bool = False


@dataclass(frozen=True, slots=True)
class Interface:
    name: str                                  # e.g. "ethernet3", "loopback.1", "tunnel.1"
    zone: str | None = None
    ip: IPv4Interface | None = None            # ``ip A/M``
    unnumbered: str | None = None              # ``ip unnumbered interface X``
    mode: Literal["nat", "route"] | None = None
    mips: tuple[Mip, ...] = ()
    dips: tuple[DipPool, ...] = ()
    dip_interface_incoming: bool = False       # ``dip interface-ip incoming``
    loopback_group: str | None = None          # ``loopback-group loopback.N``
    manage: tuple[str, ...] = ()
    # ``bandwidth egress mbw N`` / ``bandwidth ingress mbw N`` (Kbps; None:
    # not configured). The egress bandwidth is what the policies' guaranteed
    # bandwidths share (manual ch. 2 "Bandwidth Management for VoIP
    # Services", Figure 20: ethernet1 at 2 Mbps).
    bandwidth_egress: int | None = None
    bandwidth_ingress: int | None = None

    @property
    def kind(self) -> Literal["ethernet", "loopback", "tunnel"]:
        if self.name.startswith("loopback."):
            return "loopback"
        if self.name.startswith("tunnel."):
            return "tunnel"
        return "ethernet"


@dataclass(frozen=True, slots=True)
class Address:
    """An address book entry: ``set address ZONE NAME A/M|A MASK ["comment"]``.

    ``ip`` keeps the address as written (host bits included: the manual writes
    phones as ``10.1.1.3/24``); :attr:`network` is the prefix it matches."""

    zone: str
    name: str
    ip: IPv4Interface
    comment: str | None = None

    @property
    def network(self) -> IPv4Network:
        return self.ip.network

    @property
    def is_host(self) -> bool:
        """True when the entry names one host (a /32, or a host address with
        its subnet mask, as the manual writes phones)."""
        return self.ip.network.prefixlen == 32 or self.ip.ip != self.ip.network.network_address


@dataclass(frozen=True, slots=True)
class AddressRef:
    """A policy's source or destination.

    kind: ``any``; ``name`` (an address book entry); ``mip`` (value: the MIP
    address); ``dip`` (value: a DIP pool id as a string of digits, or an interface
    name for interface DIP)."""

    kind: Literal["any", "name", "mip", "dip"]
    value: str = ""


# ScreenOS's eight priority levels: 0 is the highest ("High priority"), 7
# the lowest, which a policy without a ``priority`` gets.
LOWEST_PRIORITY = 7


@dataclass(frozen=True, slots=True)
class PolicyTraffic:
    """A policy's ``traffic gbw N priority P mbw M dscp enable [value V]``
    (manual ch. 2 "Bandwidth Management for VoIP Services"): guaranteed and
    maximum bandwidth in Kbps (mbw 0: up to the egress interface's
    bandwidth), priority 0 (highest) to 7, and DSCP marking. ``shaping``:
    the line gave gbw, priority or mbw (a ``traffic dscp ...`` alone marks
    without shaping). ``dscp_value`` None: the codepoint of the priority's
    IP precedence (``set traffic-shaping ip_precedence``)."""

    gbw: int = 0
    priority: int = LOWEST_PRIORITY
    mbw: int = 0
    dscp: bool = False
    dscp_value: int | None = None
    shaping: bool = True


@dataclass(frozen=True, slots=True)
class Policy:
    id: int                                    # order of definition, from 1
    from_zone: str
    to_zone: str
    src: AddressRef
    dst: AddressRef
    service: str                               # key of SERVICES
    action: Literal["permit", "deny"]
    name: str | None = None
    nat_src: bool = False                      # ``nat src``
    nat_dip: int | None = None                 # ``nat src dip ID``
    source: Source | None = field(default=None, compare=False)
    traffic: PolicyTraffic | None = None       # ``... permit traffic ...``


@dataclass(frozen=True, slots=True)
class Route:
    """``set [vrouter VR] route PREFIX interface IF [gateway IP]``."""

    prefix: IPv4Network
    interface: str
    gateway: IPv4Address | None = None
    vrouter: str = DEFAULT_VROUTER


@dataclass(frozen=True, slots=True)
class SipSettings:
    """``set sip ...`` (manual ch. 2 "SIP Attack Protection", "Session
    Inactivity Timeout"). Defaults are the manual's."""

    protect_deny: bool = False
    protect_deny_dst: IPv4Interface | None = None   # ``dst-ip P``: only this proxy
    protect_deny_timeout: int = 3
    signaling_inactivity_timeout: int = 43200
    media_inactivity_timeout: int = 120
    # ``set sip max-call-duration N``: hard maximum call duration, seconds.
    max_call_duration: int = 86400
    # ``set sip timer-c N``: an INVITE without a final answer ends after N s,
    # restarted by each provisional answer (RFC 3261 §16.6 bullet 11, §16.8:
    # Timer C "MUST be set ... greater than 3 minutes").
    timer_c: int = 181
    # ``set sip max-setup-calls-per-source N``: calls in setup (INVITE sent,
    # no final answer) one source address may hold; a new INVITE beyond it
    # is dropped.
    max_setup_calls_per_source: int = 1000
    # ``set sip tcp-max-message N``: the longest SIP message over TCP, in
    # octets, reassembled from its segments for the ALG; a longer one is
    # dropped (gateway/datapath/sip_stream.py SipStream). A 64 KiB SDP fits.
    tcp_max_message: int = 131072


@dataclass(frozen=True, slots=True)
class MgcpSettings:
    """``set mgcp ...``: flood limits and timers of the MGCP ALG (manual ch. 3
    "MGCP Security": message and connection flood protection, inactive media
    and transaction timeouts, maximum call duration)."""

    message_flood_threshold: int = 1000      # messages/s per media gateway
    connection_flood_threshold: int = 200    # CRCX/s per media gateway
    inactive_media_timeout: int = 120        # seconds
    transaction_timeout: int = 30            # seconds
    max_call_duration: int = 86400          # seconds
    # Transactions the ALG remembers (in progress, or answered within the
    # transaction timeout, RFC 3435 3.5) per source address of commands: a
    # call agent at ~330 commands/s, each remembered 30 s, fits.
    max_transactions: int = 10000


@dataclass(frozen=True, slots=True)
class NsrpSettings:
    """``set nsrp ...``: the active/standby pair. A lower VSD priority is the
    preferred active node."""

    cluster_id: int = 1
    vsd_group: int = 0
    priority: int = 100                      # 1..254
    # NSRP's own defaults (hb-interval 1000 ms, hb-threshold 3): a detection
    # time of 3 s rides out the stalls of a loaded box (a node standing still
    # for 2 s is slow, not dead); a node whose process exits is taken over
    # from in a fraction of a second all the same, when its HA connection
    # closes (actors/replication.py, gateway/ha.py "active_exited").
    hb_interval_ms: int = 1000               # heartbeat interval
    hb_threshold: int = 3                    # missed heartbeats before failover
    rto_mirror: Literal["sync", "async"] = "sync"


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """``set flow queue-bypass``: fail open (forward unexamined) when no packet
    worker listens; off by default, i.e. fail closed.

    ``set flow overload ...`` (gateway/overload.py): new dialogs admitted per
    second at most (0: no shedding), the held messages and the mean
    completion latency past which the node counts as overloaded and lowers
    that rate. Defaults from the lab (bench/bench_flood.py, 2 shared cores):
    the pair passed 320 calls/s signalling-only from one caller; 200/s is
    ~0.6 of that, leaving room for retransmissions, in-dialog responses and
    media. 300 held messages is ~45 ms of actor work at ~146 us each
    (docs/decisions/call-rate.md); a mean
    completion of 100 ms is queueing, well inside SIP's T1 (500 ms) before
    UACs retransmit."""

    queue_bypass: bool = False
    overload_new_dialog_rate: int = 200
    overload_max_held: int = 300
    overload_latency_target_ms: int = 100
    # New-dialog requests (SIP INVITE, REGISTER, SUBSCRIBE, OPTIONS over UDP
    # to 5060) one source address may send per second before the kernel drops
    # the rest ahead of the queue (actors/kernel_screen.py); 0: off. None (the
    # default): the new-dialog rate, so the screen drops only what the budget
    # would shed from that source anyway (one source is never admitted past
    # the budget). Why not lower: the manual's per-source limits are screens
    # the operator sets for a zone with a threshold of their choosing
    # ("Example: SIP Connection Maximum", `set zone untrust screen
    # limit-session source-ip-based 20`; "Example: UDP Flooding Protection",
    # a threshold per destination), none is on by default; a lower built-in
    # cap held a proxy or SBC that carries every call to a fraction of the
    # node (half the budget: ~100 calls/s). What the kernel screen adds by
    # default is cost control: a flooding host costs the node's Python at
    # most the budget's worth of shedding per second, whatever its rate.
    # Fairness between sources stays with the budget's per-source buckets
    # (gateway/overload.py: budget / active sources each).
    overload_source_rate: int | None = None
    # ``set flow media-offload``: established media sessions (RTP/RTCP
    # through a pinhole the ALG opened) are forwarded and translated by the
    # kernel (gateway/datapath/offload.py); ``unset`` keeps every media
    # packet on the userspace path. On by default: RTP through Python cost
    # the signalling its interpreter (400 calls/s with RTP against 560
    # without) and held one node to ~2,000 concurrent G.711 calls; where
    # the kernel cannot (no nft, a UDP flood screen, pcap mode) the
    # userspace path carries the media and ``gwctl status`` says why.
    media_offload: bool = True


# ScreenOS's default map of priority level to IP precedence: priority 0
# (highest) to precedence 7 (111 in the DS field's first three bits), 7 to 0.
DEFAULT_IP_PRECEDENCE = (7, 6, 5, 4, 3, 2, 1, 0)


@dataclass(frozen=True, slots=True)
class TrafficShaping:
    """``set traffic-shaping mode auto|on|off`` and ``set traffic-shaping
    ip_precedence P0 ... P7``. auto (the default): interfaces are shaped
    only when some policy shapes traffic; on: every interface with an
    egress bandwidth is shaped; off: nothing is shaped (DSCP marking still
    applies). ``ip_precedence[p]`` is the IP precedence that priority p
    marks with ``dscp enable``."""

    mode: Literal["auto", "on", "off"] = "auto"
    ip_precedence: tuple[int, ...] = DEFAULT_IP_PRECEDENCE


@dataclass(frozen=True, slots=True)
class Unenforced:
    """A line that parses but that the gateway does not enforce (IKE/VPN: IPsec
    belongs to the host). ``config check`` reports these."""

    source: Source
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Config:
    zones: Mapping[str, Zone]
    interfaces: Mapping[str, Interface]
    addresses: Mapping[tuple[str, str], Address]   # (zone, name) -> Address
    policies: tuple[Policy, ...]
    routes: tuple[Route, ...]
    sip: SipSettings = SipSettings()
    dip_sticky: bool = False
    unenforced: tuple[Unenforced, ...] = field(default=(), compare=False)
    mgcp: MgcpSettings = MgcpSettings()
    nsrp: NsrpSettings = NsrpSettings()
    flow: FlowSettings = FlowSettings()
    traffic_shaping: TrafficShaping = TrafficShaping()

    def address(self, zone: str, name: str) -> Address | None:
        return self.addresses.get((zone, name))

    def zone_of_interface(self, ifname: str) -> str | None:
        iface = self.interfaces.get(ifname)
        return iface.zone if iface else None
