"""Address takeover: the active node owns the gateway's addresses.

On promotion the node adds the addresses the configuration owns (interface
IPs with their prefix, MIPs and DIP pool addresses as /32) to its Linux
interfaces and announces them with gratuitous ARP, so hosts and routers on
each segment send to the new active at once; on demotion it removes them, so
the standby never answers for them. The interface map comes from the node
file (``ethernet3`` -> the Linux name).

The ARP announcements are sent from a thread of their own (scapy takes a
moment to load): the takeover itself is the ``ip addr`` changes, which are
done before ``acquire`` returns."""

from __future__ import annotations

import logging
import subprocess
import threading
from ipaddress import IPv4Address, IPv4Interface
from typing import Iterable

log = logging.getLogger("gateway.addresses")


class AddressManager:
    def __init__(self, config, engine, iface_map: dict[str, str], fence=None) -> None:
        # actors.fence.Fence: told what is held before it is added and after
        # it is removed, and each lease renewal (None: unfenced).
        self.fence = fence
        self.iface_map = dict(iface_map)
        self.entries: list[tuple[str, IPv4Interface, bool]] = []   # (dev, address, announce)
        iface_ip = {name: i.ip for name, i in config.interfaces.items() if i.ip is not None}
        seen = set()
        for ifname, addrs in engine.owned_addresses_by_interface().items():
            dev = self.iface_map.get(ifname)
            if dev is None:
                log.warning("addresses: interface %s is not mapped to a Linux interface in the node "
                            "file; its addresses (%s) are not taken over", ifname,
                            ", ".join(map(str, addrs)))
                continue
            for ip in addrs:
                own = iface_ip.get(ifname)
                addr = own if own is not None and own.ip == ip else IPv4Interface(f"{ip}/32")
                if (dev, addr) not in seen:
                    seen.add((dev, addr))
                    self.entries.append((dev, addr, True))
        self.held = False

    def lease(self, until: float | None) -> None:
        """The node's lease now ends at monotonic time ``until``: past it the
        supervisor removes the addresses if they are still held."""
        if self.fence is not None:
            self.fence.lease(until)

    def acquire(self) -> None:
        if self.fence is not None:
            self.fence.hold([(dev, addr) for dev, addr, _ in self.entries])
        # One ip process for all of them: each fork and exec costs a loaded
        # node milliseconds of the takeover.
        _ip_batch([f"addr replace {addr} dev {dev}" for dev, addr, _ in self.entries])
        self.held = True
        announce = [(dev, addr.ip) for dev, addr, ann in self.entries if ann]
        if announce:
            threading.Thread(target=gratuitous_arp, args=(announce,), daemon=True,
                             name="garp").start()
        log.info("addresses: took over %d address(es)", len(self.entries))

    def release(self) -> None:
        # -force: go on past addresses already gone (the supervisor may have
        # removed them when the lease ended).
        _ip_batch([f"addr del {addr} dev {dev}" for dev, addr, _ in self.entries], check=False)
        self.held = False
        if self.fence is not None:
            self.fence.hold([])
        log.info("addresses: released %d address(es)", len(self.entries))


def _ip_batch(commands: list[str], check: bool = True) -> None:
    if not commands:
        return
    r = subprocess.run(["ip", "-force", "-batch", "-"], input="".join(c + "\n" for c in commands),
                       capture_output=True, text=True, timeout=10)
    if r.returncode and check:
        log.error("addresses: ip -batch failed: %s", r.stderr.strip())


def gratuitous_arp(announce: Iterable[tuple[str, IPv4Address]], count: int = 2) -> None:
    """Broadcast ARP request and reply forms for each (device, address): hosts
    update their caches whichever form their stack honours (RFC 5227 §3)."""
    try:
        from scapy.all import ARP, Ether, get_if_hwaddr, sendp  # noqa: PLC0415 (slow import)
    except Exception as exc:   # scapy missing is a packaging bug; the takeover still stands
        log.error("addresses: cannot send gratuitous ARP: %s", exc)
        return
    for dev, ip in announce:
        try:
            mac = get_if_hwaddr(dev)
            frames = [Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                      ARP(op=op, hwsrc=mac, psrc=str(ip), hwdst="ff:ff:ff:ff:ff:ff" if op == 2 else
                          "00:00:00:00:00:00", pdst=str(ip)) for op in (1, 2)]
            sendp(frames * count, iface=dev, verbose=False)
        except Exception as exc:
            log.warning("addresses: gratuitous ARP for %s on %s failed: %s", ip, dev, exc)
