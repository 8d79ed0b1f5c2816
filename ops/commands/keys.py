"""gwctl keys: create the CURVE key pair a node uses for HA replication."""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "keys", help="create a CURVE key pair for HA replication",
        description="Create NAME.key (public, give it to the peer node) and NAME.key_secret "
                    "(keep it on this node, mode 0600) in DIR. Each node of a pair has its own "
                    "pair; the node file names its own .key_secret and the peer's .key. "
                    "A node refuses (and logs) replication connections from any other key.")
    p.add_argument("dir", metavar="DIR", help="directory to write the key files into")
    p.add_argument("--name", required=True, help="node name, e.g. gw-a")
    p.add_argument("--force", action="store_true", help="overwrite an existing key pair")
    p.set_defaults(func=run)


def run(args) -> int:
    import zmq.auth
    pub = os.path.join(args.dir, f"{args.name}.key")
    sec = os.path.join(args.dir, f"{args.name}.key_secret")
    if not args.force and (os.path.exists(pub) or os.path.exists(sec)):
        print(f"gwctl keys: {pub} or {sec} exists; use --force to replace the pair", file=sys.stderr)
        return 1
    # The secret is written under umask 077, so it is never readable by
    # others, not even between its creation and a chmod.
    old = os.umask(0o077)
    try:
        os.makedirs(args.dir, mode=0o700, exist_ok=True)
        pub, sec = zmq.auth.create_certificates(args.dir, args.name)
        os.chmod(sec, 0o600)
        os.chmod(pub, 0o644)         # the public half is meant to be copied to the peer
    except OSError as exc:
        print(f"gwctl keys: cannot write the key pair in {args.dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    finally:
        os.umask(old)
    print(f"public key: {pub}\nsecret key: {sec} (mode 0600)")
    return 0
