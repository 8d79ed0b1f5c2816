"""Decisions per second of the policy/NAT engine, against a trivial baseline.

Usage: python bench/bench_policy.py [example.cfg] [--n N]

The baseline (a dict lookup per flow, in the same run) makes the figure
comparable across noisy machines: the ratio is what to watch."""

from __future__ import annotations

import argparse
import random
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import MappingProxyType

from gateway.config.model import (Address, AddressRef, Config, Interface, Mip, Policy, Route,
                                  Zone)
from gateway.policy import Engine, Flow

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLE = ROOT / "examples" / "ch1-outgoing-calls-with-nat.cfg"


def builtin_config() -> Config:
    """ch. 1 "Example: Outgoing Calls with NAT", built directly."""
    A = IPv4Address
    ifs = (Interface("ethernet1", "trust", IPv4Interface("10.1.1.1/24"), mode="nat"),
           Interface("ethernet3", "untrust", IPv4Interface("1.1.1.1/24"),
                     mips=(Mip(A("1.1.1.5"), A("10.1.1.5")), Mip(A("1.1.1.25"), A("10.1.1.25")))))
    addrs = {("trust", "IP_Phone1"): Address("trust", "IP_Phone1", IPv4Interface("10.1.1.5/32")),
             ("trust", "gatekeeper"): Address("trust", "gatekeeper", IPv4Interface("10.1.1.25/32")),
             ("untrust", "IP_Phone2"): Address("untrust", "IP_Phone2", IPv4Interface("2.2.2.5/32"))}
    pols = (
        Policy(1, "trust", "untrust", AddressRef("name", "IP_Phone1"), AddressRef("name", "IP_Phone2"), "h.323", "permit"),
        Policy(2, "trust", "untrust", AddressRef("name", "gatekeeper"), AddressRef("name", "IP_Phone2"), "h.323", "permit"),
        Policy(3, "untrust", "trust", AddressRef("name", "IP_Phone2"), AddressRef("mip", "1.1.1.5"), "h.323", "permit"),
        Policy(4, "untrust", "trust", AddressRef("name", "IP_Phone2"), AddressRef("mip", "1.1.1.25"), "h.323", "permit"),
    )
    zones = {z: Zone(z, block=(z == "untrust")) for z in ("trust", "untrust", "dmz", "global")}
    return Config(MappingProxyType(zones), MappingProxyType({i.name: i for i in ifs}),
                  MappingProxyType(addrs), pols,
                  (Route(IPv4Network("0.0.0.0/0"), "ethernet3", A("1.1.1.250")),))


def load(path: Path | None) -> tuple[Config, str]:
    if path is not None or DEFAULT_EXAMPLE.exists():
        path = path or DEFAULT_EXAMPLE
        from gateway.config import load_file
        return load_file(str(path)), str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return builtin_config(), "built-in ch. 1 Outgoing Calls with NAT"


def flows(config: Config, n: int) -> list[Flow]:
    """A mix of permitted and denied flows over the config's own addresses."""
    rnd = random.Random(7)
    ifaces = sorted(config.interfaces)
    addrs = [a.ip.ip for a in config.addresses.values()]
    addrs += [m.ip for i in config.interfaces.values() for m in i.mips]
    addrs += [IPv4Address(rnd.getrandbits(32)) for _ in range(8)]
    ports = [1720, 1719, 5060, 2427, 2727, 80]
    return [Flow(rnd.choice(ifaces), rnd.choice(addrs), rnd.choice(addrs),
                 rnd.choice(("udp", "tcp")), rnd.randrange(1024, 65536), rnd.choice(ports))
            for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", type=Path)
    ap.add_argument("--n", type=int, default=50_000)
    args = ap.parse_args()
    config, name = load(args.config)
    engine = Engine(config)
    batch = flows(config, args.n)
    table = {f: i for i, f in enumerate(batch[:1000])}

    def baseline() -> float:
        get = table.get
        t = time.perf_counter()
        for f in batch:
            get(f)
        return time.perf_counter() - t

    def engine_run() -> tuple[float, int]:
        decide = engine.decide
        t = time.perf_counter()
        permits = 0
        for f in batch:
            if decide(f).action == "permit":
                permits += 1
        return time.perf_counter() - t, permits

    base = min(baseline() for _ in range(3))
    runs = [engine_run() for _ in range(3)]
    best, permits = min(runs)
    rate, base_rate = len(batch) / best, len(batch) / base
    print(f"config: {name}")
    print(f"flows: {len(batch)} ({permits} permitted)")
    print(f"decide(): {rate:,.0f} decisions/s ({best / len(batch) * 1e6:.2f} us each)")
    print(f"baseline dict lookup: {base_rate:,.0f} lookups/s")
    print(f"ratio: decide() costs {base_rate / rate:.1f}x a dict lookup")


if __name__ == "__main__":
    main()
