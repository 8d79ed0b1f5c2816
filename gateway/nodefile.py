"""The node file: what binds one gateway node to its host.

The manual's configuration names interfaces the ScreenOS way (``ethernet1``,
``ethernet3``); the node file maps them to Linux interfaces and holds what is
particular to one node of the pair: its name, journal directory, control
socket, NFQUEUE number, and the HA endpoints and CURVE keys. It is TOML::

    node = "gw-a"
    config = "/etc/voip-alg-gateway/gateway.cfg"
    journal = "/var/lib/voip-alg-gateway/gw-a"
    queue = 0
    control_group = "voipops"          # optional: who besides root may use gwctl

    [interfaces]
    ethernet1 = "eth1"
    ethernet3 = "eth3"

    [ha]
    bind = "tcp://169.254.100.1:7800"
    peer = "tcp://169.254.100.2:7800"
    key = "/etc/voip-alg-gateway/keys/gw-a.key_secret"   # from `gwctl keys`
    peer_key = "/etc/voip-alg-gateway/keys/gw-b.key"
    # curve = false                    # only for a lab on one host; default true

    [journal_retention]                # optional; these are the defaults
    snapshot_every = 30000             # journaled records between two snapshots
    snapshots_kept = 2
    keep_for = "30m"                   # journal kept at least this long (s, m, h, d)...
    max_disk = "8GiB"                  # ...unless journal + snapshots exceed this (KiB, MiB, GiB)
    # snapshot_interval = "8s"         # also a snapshot once this long has passed since the last

    [metrics]                          # optional; no endpoint unless set
    listen = "127.0.0.1:9478"          # Prometheus endpoint http://ADDRESS:PORT/metrics

    [web]                              # optional: `gwctl web`, the browser interface
    bind = "192.0.2.10:8443"           # a management address of this host (never 0.0.0.0) and port
    certificate = "web/cert.pem"       # TLS certificate chain (PEM) and its private key
    private_key = "web/key.pem"
    nodes = ["/run/voip-alg-gateway/gw-a.sock"]   # optional: control sockets shown (default: this node's)
    idle_timeout = "15m"               # optional: a login lasts this long without a request

    [web.users]                        # password hashes from `gwctl web passwd`
    alice = { role = "admin", password = "scrypt:32768:8:1$..." }
    bob = { role = "read-only", password = "pbkdf2:sha256:600000$..." }

A restart folds at most ``snapshot_every`` records after the newest snapshot
(a record holds the events one step made for one entity: a SIP call is ~9
records and ~31 events, so 30,000 records are ~3,300 calls: with 32k live
calls a restart takes ~1.7 s, bench/bench_snapshots.py; a child process
writes the snapshots, so taking them often costs the datapath little); the
journal of the last ``keep_for`` serves a standby catching up and ``gwctl
replay``/``history``.
At 400 calls/s (~2.3-4 KiB per call) 30 minutes is ~2-3 GiB: a day at that
rate stays under 8 GiB. ``snapshot_interval`` (off unless set) takes a
snapshot also once that long has passed since the last one with any new
record, so the tail a restart folds is at most the records of that interval:
at 400 calls/s (~3,600 records/s) "4s" bounds it to ~14,000 records instead
of ``snapshot_every``.

Relative paths are relative to the node file's directory."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Mapping


class NodeFileError(ValueError):
    """The node file is wrong; the message names the file, the key and a hint."""


@dataclass(frozen=True, slots=True)
class HaSettings:
    bind: str
    peer: str
    key: str | None = None
    peer_key: str | None = None
    curve: bool = True


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """Snapshots and journal retention (``[journal_retention]``)."""

    snapshot_every: int = 30_000        # journaled records between two snapshots (module docstring)
    snapshots_kept: int = 2
    keep_for: float = 30 * 60.0         # seconds of journal kept at least...
    max_disk: int = 8 * 1024 ** 3       # ...unless journal + snapshots exceed this many bytes
    snapshot_interval: float | None = None   # seconds; also snapshot this long after the last (None: off)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus endpoint (``[metrics]``): where gatewayd serves it."""

    host: str                           # an IPv4 or IPv6 address literal
    port: int


@dataclass(frozen=True, slots=True)
class WebUser:
    name: str
    role: str                          # "admin" or "read-only"
    password: str                      # a salted hash (werkzeug format: method$salt$hash)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The browser interface (``[web]``): served on one management address
    with TLS, to the users listed, each an administrator or read-only."""

    host: str
    port: int
    certificate: str
    private_key: str
    users: tuple[WebUser, ...]
    nodes: tuple[str, ...] = ()        # control sockets; () = this node's own
    idle_timeout: float = 15 * 60.0


@dataclass(frozen=True, slots=True)
class NodeSettings:
    node: str
    config: str
    journal: str
    interfaces: Mapping[str, str]
    queue: int = 0
    control_socket: str | None = None
    control_group: str | None = None
    ha: HaSettings | None = None
    retention: RetentionSettings = RetentionSettings()
    metrics: MetricsSettings | None = None
    web: WebSettings | None = None
    source: str = field(default="<node file>", compare=False)

    def socket_path(self, run_dir: str = "/run/voip-alg-gateway") -> str:
        return self.control_socket or os.path.join(run_dir, f"{self.node}.sock")


_TOP = {"node", "config", "journal", "interfaces", "queue", "control_socket", "control_group", "ha",
        "journal_retention", "metrics", "web"}
_WEB = {"bind", "certificate", "private_key", "nodes", "idle_timeout", "users"}
WEB_ROLES = ("admin", "read-only")
# Password hash methods accepted (werkzeug.security's): a salted, slow hash.
_HASH_METHODS = ("scrypt", "pbkdf2")
_HA = {"bind", "peer", "key", "peer_key", "curve"}
_RETENTION = {"snapshot_every", "snapshots_kept", "keep_for", "max_disk", "snapshot_interval"}
_METRICS = {"listen"}
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = {"KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4}


def _duration(path: str, key: str, v, table: str = "journal_retention") -> float:
    if isinstance(v, str) and len(v) > 1 and v[-1] in _DURATION:
        try:
            n = float(v[:-1])
        except ValueError:
            n = -1.0
        if n > 0:
            return n * _DURATION[v[-1]]
    raise NodeFileError(f"{path}: [{table}] '{key}' = {v!r}: a duration such as \"30m\", "
                        "\"2h\" or \"1d\" (s, m, h, d)")


def _size(path: str, key: str, v) -> int:
    if isinstance(v, str):
        for unit, mult in _SIZE.items():
            if v.endswith(unit):
                try:
                    n = float(v[:-len(unit)])
                except ValueError:
                    break
                if n > 0:
                    return int(n * mult)
    raise NodeFileError(f"{path}: [journal_retention] '{key}' = {v!r}: a size such as \"8GiB\" or "
                        "\"500MiB\" (KiB, MiB, GiB, TiB)")


def _table(path: str, name: str, value, keys, example: str = "") -> dict:
    """``value`` as the TOML table ``[name]`` holding only ``keys``, or the
    NodeFileError naming the table and what it may hold."""
    if not isinstance(value, dict):
        raise NodeFileError(f"{path}: [{name}] must be a table{', e.g. ' + example if example else ''}")
    bad = set(value) - set(keys)
    if bad:
        raise NodeFileError(f"{path}: unknown key(s) in [{name}]: {', '.join(sorted(bad))}; "
                            f"expected {', '.join(sorted(keys))}")
    return value


def _retention(path: str, r) -> RetentionSettings:
    r = _table(path, "journal_retention", r, _RETENTION)
    d = RetentionSettings()
    every = r.get("snapshot_every", d.snapshot_every)
    if type(every) is not int or every < 1000:
        raise NodeFileError(f"{path}: [journal_retention] 'snapshot_every' is a number of journal "
                            "records, at least 1000 (e.g. 30000)")
    kept = r.get("snapshots_kept", d.snapshots_kept)
    if type(kept) is not int or not 1 <= kept <= 100:
        raise NodeFileError(f"{path}: [journal_retention] 'snapshots_kept' is 1..100 (e.g. 2)")
    keep_for = _duration(path, "keep_for", r["keep_for"]) if "keep_for" in r else d.keep_for
    max_disk = _size(path, "max_disk", r["max_disk"]) if "max_disk" in r else d.max_disk
    interval = _duration(path, "snapshot_interval", r["snapshot_interval"]) \
        if "snapshot_interval" in r else d.snapshot_interval
    return RetentionSettings(every, kept, keep_for, max_disk, interval)


def parse_listen(value) -> MetricsSettings:
    """``ADDRESS:PORT`` (IPv6: ``[ADDRESS]:PORT``) -> MetricsSettings; raises
    ValueError saying what is wrong. An address literal, not a host name:
    the metrics endpoint has no authentication and the web interface serves
    a management address only, so where they listen must be plain to read
    (a loopback or management address)."""
    if not isinstance(value, str):
        raise ValueError("want a string ADDRESS:PORT")
    m = re.fullmatch(r"\[([^\]]*)\]:([0-9]+)|([^:\[\]]*):([0-9]+)", value)
    if m is None:
        raise ValueError("want ADDRESS:PORT (IPv6: [ADDRESS]:PORT)")
    host, port = (m.group(1), m.group(2)) if m.group(2) is not None else (m.group(3), m.group(4))
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IPv4 or IPv6 address") from None
    if m.group(1) is not None and addr.version != 6:
        raise ValueError(f"brackets are for IPv6 addresses, not {host!r}")
    if len(port) > 5 or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is not 1..65535")
    return MetricsSettings(str(addr), int(port))


def _line_of(text: str, table: str, key: str) -> int | None:
    """The line (1-based) of ``key = ...`` in ``[table]``: TOML's reader
    gives no positions for values it accepted."""
    current = ""
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[] \t").split("]")[0].strip()
        elif current == table and re.match(rf"{re.escape(key)}\s*=", stripped):
            return n
    return None


def _metrics(path: str, text: str, m) -> MetricsSettings | None:
    where = f"{path}:{_line_of(text, 'metrics', 'listen') or '?'}"
    m = _table(path, "metrics", m, _METRICS, '[metrics] listen = "127.0.0.1:9478"')
    if "listen" not in m:
        return None
    try:
        return parse_listen(m["listen"])
    except ValueError as exc:
        raise NodeFileError(f"{where}: [metrics] listen = {m['listen']!r}: {exc}; e.g. "
                            "\"127.0.0.1:9478\" (loopback) or \"[fd00::1]:9478\"") from None


def _bind(path: str, v) -> tuple[str, int]:
    """[web] bind: ADDRESS:PORT as ``[metrics] listen`` reads it, and never
    the unspecified address (the web interface answers on a management
    address only)."""
    hint = ("a management address of this host and a port, e.g. \"192.0.2.10:8443\" or "
            "\"[2001:db8::10]:8443\"")
    try:
        where = parse_listen(v)
    except ValueError as exc:
        raise NodeFileError(f"{path}: [web] 'bind' = {v!r}: {exc}; {hint}") from None
    if ipaddress.ip_address(where.host).is_unspecified:
        raise NodeFileError(f"{path}: [web] 'bind' = {v!r}: the web interface is served on a "
                            f"management address only, not on every address; {hint}")
    return where.host, where.port


def _web(path: str, w, rel) -> WebSettings:
    w = _table(path, "web", w, _WEB)
    if "bind" not in w:
        raise NodeFileError(f"{path}: [web] needs 'bind', the management address and port to serve on")
    host, port = _bind(path, w["bind"])
    for key in ("certificate", "private_key"):
        if not isinstance(w.get(key), str) or not w[key]:
            raise NodeFileError(f"{path}: [web] needs '{key}': the TLS {key.replace('_', ' ')} file "
                                "(PEM); the web interface is served over TLS only")
    nodes = w.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(n, str) and n for n in nodes):
        raise NodeFileError(f"{path}: [web] 'nodes' is a list of control socket paths, e.g. "
                            "[\"/run/voip-alg-gateway/gw-a.sock\"]")
    idle = _duration(path, "idle_timeout", w["idle_timeout"], "web") if "idle_timeout" in w else 15 * 60.0
    users = w.get("users")
    if not isinstance(users, dict) or not users:
        raise NodeFileError(f"{path}: [web.users] must list at least one user, e.g. "
                            "alice = { role = \"admin\", password = \"<hash from `gwctl web passwd`>\" }")
    out = []
    for name, u in sorted(users.items()):
        where = f"{path}: [web.users] '{name}'"
        if not isinstance(u, dict) or set(u) - {"role", "password"}:
            raise NodeFileError(f"{where}: want {{ role = \"admin\" or \"read-only\", password = HASH }}")
        if u.get("role") not in WEB_ROLES:
            raise NodeFileError(f"{where}: role {u.get('role')!r} is not one of {', '.join(WEB_ROLES)}")
        pw = u.get("password")
        method = pw.split("$", 1)[0] if isinstance(pw, str) else ""
        if not isinstance(pw, str) or pw.count("$") != 2 or not method.startswith(_HASH_METHODS):
            raise NodeFileError(f"{where}: 'password' must be a salted hash (scrypt or pbkdf2, "
                                "method$salt$hash), never the password itself: make one with "
                                "`gwctl web passwd`")
        out.append(WebUser(name, u["role"], pw))
    return WebSettings(host, port, rel(w["certificate"]), rel(w["private_key"]), tuple(out),
                       tuple(rel(n) for n in nodes), idle)


def parse_node_file(text: str, path: str = "<node file>") -> NodeSettings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NodeFileError(f"{path}: not valid TOML: {exc}") from None
    base = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()

    def rel(p: str) -> str:
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    unknown = set(data) - _TOP
    if unknown:
        raise NodeFileError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                            f"expected one of {', '.join(sorted(_TOP))}")
    for key in ("node", "config", "journal"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise NodeFileError(f"{path}: '{key}' is required and must be a string")
    ifaces = data.get("interfaces", {})
    if not isinstance(ifaces, dict) or not all(isinstance(v, str) for v in ifaces.values()):
        raise NodeFileError(f"{path}: [interfaces] maps configuration names to Linux names, "
                            "e.g. ethernet1 = \"eth1\"")
    for linux in ifaces.values():
        if len(linux) > 15:
            raise NodeFileError(f"{path}: Linux interface name '{linux}' is longer than 15 characters")
    queue = data.get("queue", 0)
    if not isinstance(queue, int) or not 0 <= queue <= 65535:
        raise NodeFileError(f"{path}: 'queue' must be an NFQUEUE number 0..65535")
    group = data.get("control_group")
    if group is not None and (not isinstance(group, str) or not group):
        raise NodeFileError(f"{path}: 'control_group' is the name of a Unix group, e.g. \"voipops\"")
    ha = None
    if "ha" in data:
        h = _table(path, "ha", data["ha"], _HA)
        for key in ("bind", "peer"):
            if not isinstance(h.get(key), str) or "://" not in h[key]:
                raise NodeFileError(f"{path}: [ha] '{key}' must be a ZeroMQ endpoint such as "
                                    "tcp://169.254.100.1:7800")
        curve = h.get("curve", True)
        if not isinstance(curve, bool):
            raise NodeFileError(f"{path}: [ha] 'curve' is true or false")
        if curve and not (h.get("key") and h.get("peer_key")):
            raise NodeFileError(f"{path}: [ha] needs 'key' and 'peer_key' (create them with "
                                "`gwctl keys DIR --name NODE`), or curve = false")
        ha = HaSettings(h["bind"], h["peer"], rel(h["key"]) if h.get("key") else None,
                        rel(h["peer_key"]) if h.get("peer_key") else None, curve)
    retention = _retention(path, data["journal_retention"]) if "journal_retention" in data \
        else RetentionSettings()
    metrics = _metrics(path, text, data["metrics"]) if "metrics" in data else None
    web = _web(path, data["web"], rel) if "web" in data else None
    return NodeSettings(node=data["node"], config=rel(data["config"]), journal=rel(data["journal"]),
                        interfaces=dict(ifaces), queue=queue, retention=retention, metrics=metrics,
                        web=web,
                        control_socket=rel(data["control_socket"]) if data.get("control_socket") else None,
                        control_group=data.get("control_group"), ha=ha, source=path)
