"""The ``loa`` command (``loa.cli:main``, also ``python -m loa``): one module per subcommand.

``serve`` runs the server; ``listen``, ``loadtest`` and ``bench`` measure one; ``alert``,
``media``, ``schedule``, ``endpoints``, ``command`` and ``report`` call a running server's API
through ``client``. ``commands`` builds the parser from them and dispatches.

This file imports nothing of its own package at import time: importing one subcommand module
runs it first, and it must not pull in every other one.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``loa`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status. Usage
    errors, ``--help`` and ``--version`` exit through ``SystemExit`` (status 2, 0, 0)."""
    from loa.cli.commands import run_command_line

    return run_command_line(argv)
