"""The example configurations a lab is built from (``examples/``): an
example's name resolved to its file, and what a lab of a configuration cannot
do for want of hosts, with the examples that would make it work."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def resolve_config(name: str) -> Path:
    """An example name (``ch2-incoming-call-with-mip``) or a path."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    for candidate in (EXAMPLES / name, EXAMPLES / f"{name}.cfg"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in EXAMPLES.glob("*.cfg"))) or "none"
    raise SystemExit(f"gwctl lab: no configuration {name!r} (examples: {known})")


def hosts_lacking(config, plan, path: Path) -> str | None:
    """What a lab of ``config`` cannot do for want of hosts, and what to do
    about it; None when it has the two hosts a call needs.

    The manual prints some examples as one command (chapter 2's "UDP Flooding
    Protection" and "SIP Connection Maximum" are a ``set zone ... screen``
    line): no interface, no address book, so the lab has nothing to place in
    it. For a screen, the examples whose lab has a host or an address of the
    gateway where the screen applies are named: the screen's line added to
    one of them makes a lab that exercises it."""
    from ops.lab.plan import PlanError, build_plan
    if len(plan.hosts) >= 2:
        return None
    have = (f"only one host ({plan.hosts[0].label})" if plan.hosts else "no hosts")
    why = ("it configures no interface and no address book host" if not plan.segments
           and not config.addresses else
           "its address book names fewer than two hosts on its segments")
    out = (f"{path.stem}: the lab has {have}: {why}, so there is nothing to place a call "
           f"between. The lab holds the gateway pair"
           + (" and its segments" if plan.segments else " alone (no segment)")
           + ": `gwctl lab status` and `gwctl lab failover` work; `gwctl lab call`, "
             "`mgcp-call` and `h323-call` need two hosts.")
    screens = [(z.name, "udp-flood", s.dst_ip) for z in config.zones.values() for s in z.udp_flood] + \
              [(z.name, "limit-session", None) for z in config.zones.values()
               if z.limit_session_per_source]
    if not screens:
        return out
    from gateway.config import load_file
    bases = []
    # Examples of the same chapter first (a chapter 2 screen beside SIP calls).
    chapter = path.stem.split("-")[0]
    for cand in sorted(EXAMPLES.glob("*.cfg"), key=lambda c: (not c.stem.startswith(chapter), c.stem)):
        if cand.resolve() == path.resolve():
            continue
        try:
            cfg = load_file(cand)
            cplan = build_plan(cfg, lab="x")
        except (PlanError, ValueError, OSError):
            continue
        if len(cplan.hosts) < 2:
            continue
        held = {a.address.ip for a in cplan.owned} | {h.address.ip for h in cplan.hosts}
        if all(any(h.zone == zone for h in cplan.hosts) and (ip is None or ip in held)
               for zone, _kind, ip in screens):
            bases.append(cand.stem)
    what = ", ".join(f"{kind} screen on zone {z}" + (f" (dst-ip {ip})" if ip else "")
                     for z, kind, ip in screens)
    if bases:
        out += (f" Its {what} applies to a network it does not describe; the screen's lines "
                f"added to an example with hosts there make a lab that exercises it, e.g. "
                f"`cat examples/{bases[0]}.cfg {path} > /tmp/{path.stem}-lab.cfg; "
                f"gwctl lab up /tmp/{path.stem}-lab.cfg`"
                + (f" (also: {', '.join(bases[1:4])})" if len(bases) > 1 else "") + ".")
    else:
        out += f" Its {what} applies to a network no example describes."
    return out
