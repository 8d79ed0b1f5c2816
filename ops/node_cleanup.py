"""``gatewayd --cleanup --node-file FILE``: take away what a node of that
file may have left on this host, whoever stopped it and however.

gatewayd's supervisor (actors/fence.py) does this when gatewayd dies, but
it runs in the service's cgroup: ``systemctl stop`` and a watchdog kill end
it together with gatewayd, possibly before it is done. The unit runs this
as ``ExecStopPost=`` after every exit. It removes, from what the node file
and its configuration name (not from what is found: other software's
addresses and rules on the same devices are left alone):

- the pair's addresses (interface IPs, MIPs, DIP pool addresses) on the
  mapped devices: a standby that restarts, or a stopped node, must not
  answer ARP for them (ARCHITECTURE.md "High availability");
- the raw-table NFQUEUE rules, and then, unless ``set flow queue-bypass``
  (fail open, manual ch. 2 "set flow"), IPv4 forwarding on their devices,
  as the supervisor does (fail closed; gatewayd turns it on at start);
- the traffic-shaping trees and DSCP table (actors/shaping.py);
- the per-source screen's nftables table (actors/kernel_screen.py);
- the media offload's nftables table and raw-table rules (actors/kernel_media.py), or its
  tc filters and pinned program (actors/kernel_media_bpf.py).

Every step tolerates what is already gone: running it twice, or after the
supervisor, changes nothing more."""

from __future__ import annotations

import sys


def cleanup(settings, cfg, *, shaping: bool = True) -> dict:
    from actors.addresses import AddressManager
    from actors.fence import (remove_addresses, remove_nft_tables, remove_rules, remove_tc_filters, rule_devices,
                              set_forwarding)
    from actors import kernel_media
    from actors.kernel_screen import table_name
    from actors.ingest import NfqueueWorker
    from gateway.datapath import Datapath
    from gateway.policy import Engine

    engine = Engine(cfg)
    addrs = [[dev, str(addr)] for dev, addr, _ in
             AddressManager(cfg, engine, settings.interfaces).entries]
    linux_to_cfg = {linux: name for name, linux in settings.interfaces.items()}
    worker = NfqueueWorker(settings.queue, linux_to_cfg, Datapath(cfg, engine),
                           bypass=cfg.flow.queue_bypass, install=False, overload=None)
    specs = worker.rule_specs()
    report = {"addresses": remove_addresses(addrs), "addresses_named": len(addrs),
              "rules": remove_rules(specs), "forwarding_off": [], "shaping": False,
              "nft": remove_nft_tables([f"inet {table_name(settings.queue)}"]), "media": 0}
    if cfg.flow.media_offload:
        # The media offload's rules and table (its rules first: they accept
        # what the table marks).
        from actors.kernel_media_bpf import filter_specs, pin_path
        report["media"] = (remove_rules(kernel_media.rule_specs(settings.queue, linux_to_cfg))
                           + remove_nft_tables([f"inet {kernel_media.table_name(settings.queue)}"])
                           + remove_tc_filters(filter_specs(linux_to_cfg), [pin_path(settings.queue)]))
    if specs and not cfg.flow.queue_bypass:
        devs = rule_devices(specs)
        failed = set_forwarding(devs, False)
        report["forwarding_off"] = [d for d in devs if d not in failed]
    if shaping:
        from actors.shaping import TrafficShaper
        shaper = TrafficShaper(cfg, settings.interfaces)
        if shaper.wanted:
            shaper.remove()
            report["shaping"] = True
    return report


def run_cleanup(node_file: str, config: str | None) -> int:
    from gateway.config import ConfigError, load_file
    from gateway.nodefile import NodeFileError, parse_node_file
    try:
        with open(node_file) as f:
            settings = parse_node_file(f.read(), node_file)
    except (OSError, NodeFileError) as exc:
        print(f"gatewayd --cleanup: {exc}", file=sys.stderr)
        return 1
    path = config or settings.config
    try:
        cfg = load_file(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print(f"gatewayd --cleanup: {path} has errors; nothing was removed", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gatewayd --cleanup: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    r = cleanup(settings, cfg)
    print(f"gatewayd --cleanup: node {settings.node}: removed {r['addresses']} of "
          f"{r['addresses_named']} address(es), {r['rules']} NFQUEUE rule(s)"
          + (f"; forwarding off on {', '.join(r['forwarding_off'])}" if r["forwarding_off"] else "")
          + ("; shaping removed" if r["shaping"] else "")
          + ("; source-rate screen removed" if r["nft"] else "")
          + ("; media offload removed" if r["media"] else ""), file=sys.stderr)
    return 0
