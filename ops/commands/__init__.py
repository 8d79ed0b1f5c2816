"""Subcommands of ``gwctl``: each module here defines ``register(subparsers)``
which adds its subcommand(s) and sets ``func`` (returns the exit status)."""
