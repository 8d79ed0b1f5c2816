"""Serve the web interface with cheroot (the WSGI server of CherryPy: a
thread pool, TLS through Python's ssl module) on the node file's management
address only."""

from __future__ import annotations

import logging
import ssl

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

log = logging.getLogger("gateway.web")


class WebServerError(Exception):
    pass


def make_server(app, host: str, port: int, certificate: str, private_key: str,
                threads: int = 16) -> wsgi.Server:
    # Load the pair once here so a wrong file is reported before serving
    # (the adapter would only fail at the first connection).
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certificate, private_key)
    except FileNotFoundError as exc:
        raise WebServerError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise WebServerError(f"TLS: the certificate {certificate} and key {private_key} do not load: "
                             f"{exc.reason or exc}") from None
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="gwctl-web")
    adapter = BuiltinSSLAdapter(certificate, private_key)
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    server.ssl_adapter = adapter
    return server
