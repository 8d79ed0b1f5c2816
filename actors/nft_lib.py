"""nftables commands run in this process through libnftables (the library
the ``nft`` tool is built on), with the tool as the fallback.

Why: the media offload (actors/kernel_media.py) changes the kernel's flows
several times a second and must take a closed call's flows out at once
(manual ch. 4: after a DLCX the connection's pinholes are gone, and so must
its media be). Starting ``nft`` costs ~3-6 ms of CPU and ~20 ms of wall time
per batch on these machines; the same batch through the library in this
process costs ~125 us (measured: 1,000 add+delete batches). ctypes releases
the interpreter lock for the call.

:func:`runner` gives a callable with :func:`subprocess.run`'s signature that
runs ``nft -f -`` and ``nft [-j] list ...`` in-process and hands every other
command to ``subprocess.run``; without the library (another libc, no
libnftables1) it is ``subprocess.run`` itself."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import subprocess
import threading

log = logging.getLogger("voip_alg.ingest")

_OUTPUT_JSON = 1 << 4             # enum nft_output_flags: NFT_CTX_OUTPUT_JSON


def _load():
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    lib = ctypes.CDLL(name)
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class NftLib:
    """Two library contexts (text and JSON output), one command at a time
    each: a context holds its output buffers between a command and their
    reading."""

    def __init__(self, lib=None) -> None:
        self.lib = lib if lib is not None else _load()
        self._ctx = {}
        for json_out in (False, True):
            ctx = self.lib.nft_ctx_new(0)
            if not ctx:
                raise OSError("nft_ctx_new failed")
            if json_out:
                self.lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON)
            self.lib.nft_ctx_buffer_output(ctx)
            self.lib.nft_ctx_buffer_error(ctx)
            self._ctx[json_out] = (ctx, threading.Lock())
        self.commands = 0

    def command(self, text: str, json_out: bool = False) -> tuple[int, str, str]:
        """``(returncode, stdout, stderr)`` of one ``nft -f`` buffer."""
        ctx, lock = self._ctx[json_out]
        with lock:
            rc = self.lib.nft_run_cmd_from_buffer(ctx, text.encode())
            # Reading a buffer also empties it for the next command.
            out = (self.lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
            err = (self.lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        self.commands += 1
        return (0 if rc == 0 else 1), out, err

    def run(self, args, input=None, **kw) -> subprocess.CompletedProcess:
        """``subprocess.run`` for ``nft -f -`` and ``nft [-j] list|delete|flush ...``;
        anything else is run as a process."""
        args = list(args)
        if args[:1] != ["nft"]:
            return subprocess.run(args, input=input, **kw)
        rest = args[1:]
        json_out = rest[:1] == ["-j"]
        if json_out:
            rest = rest[1:]
        if rest == ["-f", "-"]:
            text = input if isinstance(input, str) else (input or b"").decode()
        elif rest and not any(a.startswith("-") for a in rest):
            text = " ".join(rest)
        else:
            return subprocess.run(args, input=input, **kw)
        rc, out, err = self.command(text, json_out)
        return subprocess.CompletedProcess(args, rc, out, err)


_SHARED: NftLib | None | bool = None       # False: the library is not usable here
_SHARED_LOCK = threading.Lock()


def runner():
    """The process's in-library runner, or ``subprocess.run`` without the library."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            try:
                _SHARED = NftLib()
            except (OSError, AttributeError) as exc:
                log.info("nftables library not usable (%s): nft runs as a process", exc)
                _SHARED = False
        return _SHARED.run if _SHARED else subprocess.run
