"""H.323 calls through the lab's gateway pair with the test peer of
:mod:`ops.lab.h323peer` (Debian packages no H.323 endpoint).

Who is who comes from the chapter 1 configuration (manual ch. 1
"Examples"):

* the gatekeeper is the address book's ``gatekeeper`` entry; the examples
  that name none get one: in Route mode in the Trust zone ("Gatekeeper in
  the Trust Zone": 10.1.1.25 on the trust segment), behind NAT on the public
  side ("Incoming Calls with NAT": the phones behind the DIP register
  through it, so it sits on the untrust segment);
* the trust-side phone is the trust zone's address book host (or 10.1.1.5,
  made on the trust segment when the example names only ``any``); the
  untrust-side phone the untrust zone's other host. An address book host
  that no subnet or route of the configuration reaches ("Incoming Calls
  with NAT": IP_Phone2 2.2.2.5) is made on the only segment of its zone,
  on-link, and the gateway namespaces get an on-link /32 to it;
* an endpoint reaches the gatekeeper at its own address in its zone, else at
  the gatekeeper's MIP ("Outgoing Calls with NAT": 1.1.1.25);
* calls go from the trust phone to the untrust phone, or, where the
  configuration accepts incoming calls by DIP, the other way.

Extra hosts are ``<lab>-NAME`` namespaces recorded in the lab's state, so
``gwctl lab down`` removes them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from ops.lab import netns as labns
from ops.lab.h323msg import from_transport
from ops.lab.h323peer import MODES, RAS_PORT, CallLeg, Endpoint, Gatekeeper
from ops.lab.netns import LabError, run

DEFAULT_PHONE = 5            # host .5 of the trust subnet (the manual's 10.1.1.5)
DEFAULT_GATEKEEPER = 25      # host .25 (the manual's 10.1.1.25)


@dataclass(frozen=True, slots=True)
class Party:
    netns: str
    ip: str
    zone: str
    name: str


@dataclass(frozen=True, slots=True)
class H323Parties:
    gatekeeper: Party
    trust: Party
    untrust: Party
    gk_address: dict          # endpoint name -> the address it sends RAS to
    incoming: bool            # calls go untrust -> trust
    notes: tuple[str, ...] = ()

    @property
    def caller(self) -> Party:
        return self.untrust if self.incoming else self.trust

    @property
    def callee(self) -> Party:
        return self.trust if self.incoming else self.untrust


def _state_dir(state) -> Path | None:
    return Path(state.state_dir) if state.state_dir else None


def add_onlink_host(state, name: str, ip: str, segment, gateway_ip: str) -> str:
    """A host namespace ``<lab>-<name>`` with ``ip/32`` on ``segment``, its
    default route on-link via the gateway's address, and an on-link /32 to
    it in both gateway namespaces (the configuration has no route to it)."""
    ns = f"{state.lab}-{name}"
    plan = state.get_plan()
    if not labns.ns_exists(ns):
        st = labns.load_state(state.lab, _state_dir(state))
        st.namespaces.append(ns)
        labns.save_state(st, _state_dir(state))
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        end = f"x{name}"[:15]
        run(["ip", "-n", plan.switch, "link", "add", end, "type", "veth", "peer", "name", "eth0",
             "netns", ns])
        run(["ip", "-n", plan.switch, "link", "set", end, "master", segment.bridge, "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0"])
        run(["ip", "-n", ns, "route", "add", "default", "via", gateway_ip, "dev", "eth0", "onlink"])
    for g in plan.gateways:
        leg = next(p.ifname for p in g.legs if p.segment == segment.bridge)
        run(["ip", "-n", g.netns, "route", "replace", f"{ip}/32", "dev", leg])
    return ns


def _free_host(plan, seg, prefer: int, taken: set) -> str:
    owned = {str(a.address.ip) for a in plan.owned} | {str(h.address.ip) for h in plan.hosts} | taken
    owned |= {str(r.address.ip) for r in plan.routers}
    hosts = list(seg.network.hosts())
    for ip in [seg.network.network_address + prefer] + hosts[::-1]:
        if str(ip) not in owned and ip in seg.network and ip not in (seg.network.network_address,
                                                                       seg.network.broadcast_address):
            return str(ip)
    raise LabError(f"no free address on {seg.label}")


def choose_parties(state, config) -> H323Parties:
    """The gatekeeper and the two phones of a chapter 1 configuration (see
    the module's docstring); makes the hosts the configuration does not."""
    from ops.lab.mgcp import add_host

    plan = state.get_plan()
    notes: list[str] = []
    by_ip = {str(h.address.ip): h for h in plan.hosts}
    mips = {str(mp.host): str(mp.ip) for i in config.interfaces.values() for mp in i.mips}
    incoming = any(d.incoming for i in config.interfaces.values() for d in i.dips)
    nat = any(i.mode == "nat" for i in config.interfaces.values())
    segs = {z: [s for s in plan.segments if s.zone == z and s.gateway_ip is not None]
            for z in ("trust", "untrust")}
    taken: set[str] = set()

    def party_of(zone: str, name: str, ip: str) -> Party:
        h = by_ip.get(ip)
        if h is not None:
            return Party(h.netns, ip, zone, name)
        seg_list = [s for s in segs[zone] if IPv4Address(ip) in s.network]
        if seg_list:
            seg = seg_list[0]
            ns = add_host(state.lab, name.lower()[:8], f"{ip}/{seg.network.prefixlen}", seg.bridge,
                          str(seg.gateway_ip.ip), _state_dir(state))
            notes.append(f"{zone} {name} {ip} made on {seg.label}")
            return Party(ns, ip, zone, name)
        if len(segs[zone]) != 1:
            raise LabError(f"{zone}/{name} {ip}: no segment to place it on")
        seg = segs[zone][0]
        ns = add_onlink_host(state, name.lower()[:8], ip, seg, str(seg.gateway_ip.ip))
        notes.append(f"{zone} {name} {ip}: no subnet or route of the configuration reaches it; "
                     f"made on-link on {seg.label} with an on-link /32 in the gateway namespaces")
        return Party(ns, ip, zone, name)

    gk = None
    phones: dict[str, Party] = {}
    for (zone, name), entry in config.addresses.items():
        ip = str(entry.ip.ip)
        if zone not in segs:
            continue
        if name.lower() == "gatekeeper" and entry.is_host:
            gk = party_of(zone, name, ip)
        elif zone not in phones and (entry.is_host or ip in by_ip):
            phones[zone] = party_of(zone, name, ip)
        taken.add(ip)
    if "trust" not in phones:
        seg = segs["trust"][0]
        ip = _free_host(plan, seg, DEFAULT_PHONE, taken)
        taken.add(ip)
        phones["trust"] = party_of("trust", "phone1", ip)
    if "untrust" not in phones:
        raise LabError("no untrust phone in the address book")
    if gk is None:
        zone = "untrust" if nat else "trust"
        seg = segs[zone][0]
        ip = _free_host(plan, seg, DEFAULT_GATEKEEPER if zone == "trust" else 254, taken)
        gk = party_of(zone, "gk", ip)
        notes.append(f"the example names no gatekeeper: one at {ip} in {zone}")
    gk_address = {}
    for p in (phones["trust"], phones["untrust"]):
        gk_address[p.name] = gk.ip if p.zone == gk.zone else mips.get(gk.ip, gk.ip)
    if gk.zone == "untrust" and phones["untrust"].ip not in by_ip:
        # Both on the public segment, the phone on-link: they talk directly.
        run(["ip", "-n", gk.netns, "route", "replace", f"{phones['untrust'].ip}/32", "dev", "eth0"])
        seg = next(s for s in segs["untrust"] if IPv4Address(gk.ip) in s.network)
        run(["ip", "-n", phones["untrust"].netns, "route", "replace", str(seg.network), "dev", "eth0"])
    return H323Parties(gk, phones["trust"], phones["untrust"], gk_address, incoming, tuple(notes))


def call_view(state, step: str, guid: str) -> dict:
    """The active node's H.323 call ``guid`` (``show calls``; the ALG keys
    calls by the callIdentifier) and its RTP/RTCP pinholes (``show
    pinholes``)."""
    from ops.lab import gateway_starter
    role = gateway_starter.active_role(state)
    if role is None:
        raise LabError("no node reports active")
    sock = gateway_starter.node_paths(state, state.get_plan())[role].socket
    calls = [c for c in gateway_starter.node_call(sock, "show", {"what": "calls"})
             if c and c.get("alg") == "h323" and c.get("call_id") == guid]
    holes = [h for h in gateway_starter.node_call(sock, "show", {"what": "pinholes"})
             if guid in str(h.get("call", "")) and h.get("kind") == "media"]
    return {"step": step, "guid": guid, "call": calls[0] if calls else None, "media_pinholes": holes}


@dataclass
class CallResult:
    mode: str
    caller: dict
    callee: dict | None

    def ok(self, min_ratio: float = 0.9) -> bool:
        c, d = self.caller, self.callee
        if d is None or c["error"] or d["error"]:
            return False
        return (c["connected"] and d["connected"] and c["released"] and d["released"]
                and c["rtp_sent"] > 0 and d["rtp_received"] >= min_ratio * c["rtp_sent"]
                and d["rtp_sent"] > 0 and c["rtp_received"] >= min_ratio * d["rtp_sent"])


@dataclass
class H323Report:
    lab: str
    parties: dict
    notes: list[str]
    registrations: dict = field(default_factory=dict)   # alias -> callSignalAddress the gatekeeper holds
    calls: list[CallResult] = field(default_factory=list)
    failover: dict | None = None
    # The active node's view right after a caller's step: (step, call guid,
    # its H.323 call or None, its RTP/RTCP pinholes).
    snapshots: list[dict] = field(default_factory=list)
    gatekeeper_errors: list[str] = field(default_factory=list)
    error: str | None = None

    def ok(self, min_ratio: float = 0.9) -> bool:
        return self.error is None and bool(self.calls) and all(c.ok(min_ratio) for c in self.calls)


def run_calls(state, config, *, modes: tuple[str, ...] = MODES, calls: int | None = None,
              seconds: float = 3.0, stagger: float = 0.3, failover: str | None = None,
              failover_at: float | None = None, disengage_first: bool = False,
              h245_channels: tuple[int, int] = (1, 1), snapshot: bool = False) -> H323Report:
    """Gatekeeper and both phones in their namespaces; both register; then
    ``calls`` calls (default one per mode, modes taken in turn), started
    ``stagger`` s apart and held ``seconds`` with RTP both ways; with
    ``failover`` ("graceful" or "crash") the pair fails over ``failover_at``
    s after the first call starts (default: the middle of the span). With
    ``disengage_first`` each caller sends DRQ before ReleaseComplete.
    ``h245_channels``: the caller's and the callee's H.245 logical channel
    numbers. With ``snapshot`` the active node's view of the call (``show
    calls``, ``show pinholes``) is recorded once H.245 is closed and after
    the caller's DCF."""
    from ops.lab import gateway_starter

    parties = choose_parties(state, config)
    rep = H323Report(state.lab, {k: asdict(getattr(parties, k)) for k in ("gatekeeper", "trust", "untrust")}
                     | {"caller": parties.caller.name, "callee": parties.callee.name},
                     list(parties.notes))
    n = calls if calls is not None else len(modes)
    gk = Gatekeeper(parties.gatekeeper.netns, parties.gatekeeper.ip).start()
    eps: list[Endpoint] = []
    try:
        caller = Endpoint(parties.caller.netns, parties.caller.ip, parties.caller.name, media_base=20000)
        eps.append(caller)
        callee = Endpoint(parties.callee.netns, parties.callee.ip, parties.callee.name, media_base=30000)
        eps.append(callee)
        for ep in eps:
            ep.register((parties.gk_address[ep.name], RAS_PORT))
        rep.registrations = {a: [f"{x[0]}:{x[1]}" for x in map(from_transport, r.signal) if x]
                             for a, r in gk.registrations.items()}
        callee.serve(seconds)
        legs: list[CallLeg | None] = [None] * n
        threads = []

        caller.h245_channel, callee.h245_channel = h245_channels

        def on_step(step: str, leg: CallLeg) -> None:
            if snapshot:
                rep.snapshots.append(call_view(state, step, leg.guid))

        def place(i: int) -> None:
            legs[i] = caller.call(parties.callee.name, modes[i % len(modes)], seconds,
                                  disengage_first=disengage_first, on_step=on_step)

        t0 = time.monotonic()
        for i in range(n):
            t = threading.Thread(target=place, args=(i,), daemon=True)
            t.start()
            threads.append(t)
            time.sleep(stagger)
        if failover:
            at = failover_at if failover_at is not None else (n * stagger + seconds) / 2
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            res = gateway_starter.failover(state, crash=failover == "crash")
            rep.failover = asdict(res)
        for t in threads:
            t.join(seconds + 60)
        time.sleep(0.5)
        answered = {leg.guid: leg for leg in callee.answered}
        for leg in legs:
            if leg is None:
                rep.calls.append(CallResult("?", asdict(CallLeg("caller", "?", error="did not finish")), None))
                continue
            other = answered.get(leg.guid)
            rep.calls.append(CallResult(leg.mode, asdict(leg), asdict(other) if other else None))
        for ep in eps:
            try:
                ep.unregister()
            except Exception as exc:        # reported, the calls' results stand
                rep.notes.append(f"{ep.name}: unregistration failed: {exc}")
    except (LabError, OSError, RuntimeError) as exc:
        rep.error = f"{type(exc).__name__}: {exc}"
    finally:
        for ep in eps:
            ep.close()
        rep.gatekeeper_errors = list(gk.errors)
        gk.close()
    return rep
