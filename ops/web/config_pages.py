"""The running configuration as the manual's WebUI pages (the manual gives
every example as CLI and as WebUI steps: "Network > Interfaces", "Network >
Zones", "Policy > Policy Elements > Addresses", "Network > Interfaces > Edit
> MIP/DIP", "Policies", "Screening"): each page a table of the objects and
the normalised CLI lines (gateway/config/render.py) that make them."""

from __future__ import annotations

import dataclasses

from gateway.config import render
from gateway.config.model import Config

PAGES = [("interfaces", "Interfaces"), ("zones", "Zones"), ("addresses", "Addresses"),
         ("mip-dip", "MIP/DIP"), ("policies", "Policies"), ("sip", "SIP"), ("mgcp", "MGCP"),
         ("h323", "H.323"), ("screens", "Screens")]


def _page_of(line: str) -> str | None:
    w = line.split()
    if len(w) < 2 or w[0] != "set":
        return None
    if w[1] == "interface":
        return "mip-dip" if len(w) > 3 and w[3] in ("mip", "dip") else "interfaces"
    if w[1] == "dip":
        return "mip-dip"
    if w[1] == "zone":
        return "screens" if "screen" in w else "zones"
    if w[1] == "address":
        return "addresses"
    if w[1] == "policy":
        return "policies"
    if w[1] == "sip" or w[1:3] == ["alg", "sip"]:
        return "sip"
    if w[1] == "mgcp" or w[1:3] == ["alg", "mgcp"]:
        return "mgcp"
    if w[1] in ("h323", "gatekeeper") or w[1:3] == ["alg", "h323"]:
        return "h323"
    return None


def _ref(r) -> str:
    return {"any": "any", "name": r.value}.get(r.kind, f"{r.kind.upper()}({r.value})")


def _settings(obj) -> list[tuple[str, str]]:
    return [(f.name.replace("_", " "), str(getattr(obj, f.name))) for f in dataclasses.fields(obj)]


def pages(cfg: Config) -> dict[str, dict]:
    """``{page: {"title", "headers", "rows", "lines"}}``."""
    lines: dict[str, list[str]] = {k: [] for k, _ in PAGES}
    for line in render(cfg).splitlines():
        page = _page_of(line)
        if page:
            lines[page].append(line)
    ifs = sorted(cfg.interfaces.values(), key=lambda i: i.name)
    out = {
        "interfaces": (["Name", "Zone", "IP", "Mode", "Manage"],
                       [[i.name, i.zone or "-", str(i.ip or i.unnumbered or "-"), i.mode or "-",
                         ", ".join(i.manage) or "-"] for i in ifs]),
        "zones": (["Name", "Virtual router", "Block intra-zone"],
                  [[z.name, z.vrouter, "yes" if z.block else "no"]
                   for z in sorted(cfg.zones.values(), key=lambda z: z.name)]),
        "addresses": (["Zone", "Name", "IP/Netmask", "Comment"],
                      [[a.zone, a.name, str(a.ip), a.comment or ""]
                       for a in sorted(cfg.addresses.values(), key=lambda a: (a.zone, a.name))]),
        "mip-dip": (["Interface", "Kind", "Address", "Maps to", "Incoming"],
                    [[i.name, "MIP", str(m.ip), f"{m.host}/{m.netmask}", "-"] for i in ifs for m in i.mips]
                    + [[i.name, f"DIP {d.id}", f"{d.first}-{d.last}", "-", "yes" if d.incoming else "no"]
                       for i in ifs for d in i.dips]),
        "policies": (["ID", "Name", "From", "To", "Source", "Destination", "Service", "NAT", "Action"],
                     [[str(p.id), p.name or "", p.from_zone, p.to_zone, _ref(p.src), _ref(p.dst), p.service,
                       ("src dip " + str(p.nat_dip)) if p.nat_dip is not None else ("src" if p.nat_src else "-"),
                       p.action] for p in cfg.policies]),
        "sip": (["Setting", "Value"], _settings(cfg.sip)),
        "mgcp": (["Setting", "Value"], _settings(cfg.mgcp)),
        # The H.323 ALG has no settings of its own in the configuration
        # language: the policies naming the h323 service enable it (manual ch. 1).
        "h323": (["ID", "From", "To", "Action"],
                 [[str(p.id), p.from_zone, p.to_zone, p.action] for p in cfg.policies
                  if p.service.lower().replace(".", "") == "h323"]),
        "screens": (["Zone", "UDP flood destination", "Threshold (packets/s)", "Sessions per source"],
                    [[z.name, str(f.dst_ip), str(f.threshold), str(z.limit_session_per_source or "-")]
                     for z in sorted(cfg.zones.values(), key=lambda z: z.name) for f in z.udp_flood]
                    + [[z.name, "-", "-", str(z.limit_session_per_source)]
                       for z in sorted(cfg.zones.values(), key=lambda z: z.name)
                       if z.limit_session_per_source and not z.udp_flood]),
    }
    return {k: {"title": t, "headers": out[k][0], "rows": out[k][1], "lines": lines[k]} for k, t in PAGES}
