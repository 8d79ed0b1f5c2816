"""The gateway's configuration: the ScreenOS CLI of the manual, parsed into a
frozen :class:`Config`.

    from gateway.config import parse_text, load_file, render, ConfigError, Diagnostic
"""

from __future__ import annotations

import os

from gateway.config.diagnostics import ConfigError, Diagnostic
from gateway.config.model import Config
from gateway.config.parser import check_text, parse_text
from gateway.config.render import render

__all__ = ["Config", "ConfigError", "Diagnostic", "check_text", "load_file", "parse_text",
           "render"]


def load_file(path: str | os.PathLike[str]) -> Config:
    """Read and parse a configuration file (UTF-8); raises :class:`ConfigError`."""
    # newline="": line ends as written; the parser splits at LF (and CR LF) only.
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        text = handle.read()
    return parse_text(text, os.fspath(path))
