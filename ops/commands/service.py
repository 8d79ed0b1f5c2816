"""gwctl install-service: the systemd unit for a node, and a sample node file.

Writes under ``--root`` (default ``/``, a DESTDIR for packaging and tests):

- ``etc/systemd/system/voip-alg-gateway@.service`` (ops/systemd/), with the
  path of this installation's gatewayd in place of ``@GATEWAYD@``;
- ``etc/voip-alg-gateway/NODE.toml``, a node file to edit (kept if present);
- ``etc/voip-alg-gateway/gateway.cfg``, the manual's MIP example as a
  starting configuration (kept if present).

It never runs systemctl: it prints what to run."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

UNIT_NAME = "voip-alg-gateway@.service"
UNIT_SOURCE = Path(__file__).resolve().parents[1] / "systemd" / UNIT_NAME
SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "ch2-incoming-call-with-mip.cfg"
ETC = "etc/voip-alg-gateway"
STATE = "/var/lib/voip-alg-gateway"
METRICS_PORT = 9478


def register(sub) -> None:
    p = sub.add_parser(
        "install-service", help="install the systemd unit and a sample node file",
        description=f"Install {UNIT_NAME} (one node per instance: voip-alg-gateway@NODE reads "
                    f"/{ETC}/NODE.toml) and a sample node file and configuration to edit. Existing "
                    "node files and configurations are kept. Prints the systemctl commands to run; "
                    "runs none.")
    p.add_argument("--node", default="gw-a", help="node name (default gw-a): the unit's instance "
                                                 "and the node file's name")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="install under DIR instead of / (packaging, tests)")
    p.add_argument("--gatewayd", metavar="PATH", help="gatewayd to run (default: the one next to "
                                                      "this gwctl's Python)")
    p.set_defaults(func=run)


def default_gatewayd() -> str:
    # Not resolved: a virtual environment's python is a symlink out of it.
    return str(Path(sys.executable).absolute().with_name("gatewayd"))


def render_unit(gatewayd: str, template: str | None = None) -> str:
    """The unit with ``gatewayd`` in its commands. systemd splits a command
    line at spaces and expands ``%``: a path with either is refused (no
    quoting games), ``%`` is escaped."""
    if not os.path.isabs(gatewayd):
        raise ValueError(f"gatewayd path {gatewayd!r} is not absolute")
    if re.search(r"[\s\"'\\;]", gatewayd):
        raise ValueError(f"gatewayd path {gatewayd!r} has a space, quote, backslash or ';': "
                         "systemd would split or reinterpret it; install into a plain path")
    text = template if template is not None else UNIT_SOURCE.read_text()
    return text.replace("@GATEWAYD@", gatewayd.replace("%", "%%"))


def sample_node_file(node: str) -> str:
    return f"""\
# Node file of {node} (gateway/nodefile.py). Edit, then:
#   systemctl enable --now voip-alg-gateway@{node}
node = "{node}"
config = "/{ETC}/gateway.cfg"           # the ScreenOS-language configuration
journal = "{STATE}/{node}"
queue = 0                               # NFQUEUE number
# control_group = "voipops"             # who besides root may use gwctl

[interfaces]                            # configuration interface = Linux interface
ethernet1 = "eth1"
ethernet3 = "eth3"

# The pair (both nodes), from `gwctl keys /{ETC}/keys --name {node}`:
# [ha]
# bind = "tcp://169.254.100.1:7800"
# peer = "tcp://169.254.100.2:7800"
# key = "/{ETC}/keys/{node}.key_secret"
# peer_key = "/{ETC}/keys/PEER.key"

[metrics]                               # Prometheus: http://127.0.0.1:{METRICS_PORT}/metrics
listen = "127.0.0.1:{METRICS_PORT}"
"""


def _write(path: Path, text: str, *, keep: bool, mode: int = 0o644) -> str:
    if keep and path.exists():
        return f"kept     {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return f"{'updated' if existed else 'wrote':<8} {path}"


def install(root: str, node: str, gatewayd: str) -> list[str]:
    from gateway.nodefile import parse_node_file
    base = Path(root)
    unit = render_unit(gatewayd)
    sample = sample_node_file(node)
    parse_node_file(sample, f"/{ETC}/{node}.toml")        # what is written must start as written
    done = [_write(base / "etc/systemd/system" / UNIT_NAME, unit, keep=False)]
    done.append(_write(base / ETC / f"{node}.toml", sample, keep=True, mode=0o640))
    if SAMPLE_CONFIG.exists():
        cfg = ("# The manual's incoming call with a MIP example (ch. 2): replace with this\n"
               "# gateway's configuration; check it with `gwctl config check FILE`.\n"
               + SAMPLE_CONFIG.read_text())
        done.append(_write(base / ETC / "gateway.cfg", cfg, keep=True, mode=0o640))
    return done


def run(args) -> int:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.node):
        print(f"gwctl install-service: node name {args.node!r}: letters, digits, '-', '_', '.' "
              "(it names the unit instance and the node file)", file=sys.stderr)
        return 2
    gatewayd = args.gatewayd or default_gatewayd()
    if not os.access(gatewayd, os.X_OK):
        print(f"gwctl install-service: {gatewayd} is not an executable gatewayd (run "
              "ops/bootstrap.sh setup first, or pass --gatewayd PATH)", file=sys.stderr)
        return 1
    try:
        done = install(args.root, args.node, gatewayd)
    except (OSError, ValueError) as exc:
        print(f"gwctl install-service: {exc}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    print(f"next: edit /{ETC}/{args.node}.toml and /{ETC}/gateway.cfg, then\n"
          f"  systemctl daemon-reload\n"
          f"  systemctl enable --now voip-alg-gateway@{args.node}\n"
          f"  gwctl status          # finds the node's socket in /run/voip-alg-gateway\n"
          f"  journalctl -u voip-alg-gateway@{args.node} -g 'drop \\['   # drops by code")
    return 0
