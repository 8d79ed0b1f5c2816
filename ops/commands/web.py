"""gwctl web NODE_FILE: the pair in a browser; gwctl web passwd: a password hash for the node file."""

from __future__ import annotations

import getpass
import logging
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "web", help="serve the web interface of a node (dashboard, calls, ladders, configuration, "
                    "operations) over TLS on its management address",
        description="Serve the browser interface described by the node file's [web] table: the "
                    "management address and port, the TLS certificate and key, the users (admin or "
                    "read-only, password hashes) and the control sockets of the nodes shown. It talks "
                    "to the nodes over their control channels, as gwctl does, so it runs as root or "
                    "as a member of the nodes' control group. `gwctl web passwd` makes a password hash.")
    p.add_argument("node_file", metavar="NODE_FILE|passwd",
                   help="the node file (TOML) with a [web] table; or `passwd` to hash a password")
    p.add_argument("--node", action="append", metavar="SOCKET",
                   help="a control socket to show (repeat for both nodes of a pair); default: [web] "
                        "nodes, else the node file's own")
    p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.node_file == "passwd":
        return passwd()
    from gateway.nodefile import NodeFileError, parse_node_file
    try:
        with open(args.node_file, encoding="utf-8") as f:
            settings = parse_node_file(f.read(), args.node_file)
    except OSError as exc:
        print(f"gwctl web: cannot read {args.node_file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except NodeFileError as exc:
        print(f"gwctl web: {exc}", file=sys.stderr)
        return 1
    web = settings.web
    if web is None:
        print(f"gwctl web: {args.node_file} has no [web] table (bind, certificate, private_key, "
              "[web.users]): see gateway/nodefile.py", file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from ops.web.app import create_app
    from ops.web.nodes import Pair
    from ops.web.server import WebServerError, make_server
    sockets = args.node or list(web.nodes) or [settings.socket_path()]
    app = create_app(web, Pair(sockets), settings.config)
    try:
        server = make_server(app, web.host, web.port, web.certificate, web.private_key)
        server.prepare()
    except WebServerError as exc:
        print(f"gwctl web: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gwctl web: cannot listen on {web.host}:{web.port}: {exc.strerror or exc} (is it an "
              "address of this host, and the port free?)", file=sys.stderr)
        return 1
    host = f"[{web.host}]" if ":" in web.host else web.host
    logging.getLogger("gateway.web").info("web: serving https://%s:%d/ for %s", host, web.port,
                                          ", ".join(sockets))
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def passwd() -> int:
    """Read a password (twice on a terminal, once from a pipe) and print its
    salted scrypt hash for the node file's [web.users]."""
    from werkzeug.security import generate_password_hash
    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if pw != getpass.getpass("again: "):
            print("gwctl web passwd: the two passwords differ", file=sys.stderr)
            return 1
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        print("gwctl web passwd: use at least 8 characters", file=sys.stderr)
        return 1
    print(generate_password_hash(pw, method="scrypt"))
    return 0
