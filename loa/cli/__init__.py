"""The ``loa`` command (``loa.cli:main``, also ``python -m loa``): one module per subcommand.

``serve`` runs the server; ``listen``, ``loadtest`` and ``bench`` measure one; ``zones``,
``live``, ``alert``, ``media``, ``schedule``, ``endpoints``, ``command``/``commands``,
``report`` and ``users`` call a running server's API through ``client`` and show its answers
through ``show``, in the language ``text`` picked; ``audit verify`` reads the data folder.
``commands`` builds the parser from them and dispatches.

This file imports nothing of its own package at import time: importing one subcommand module
runs it first, and it must not pull in every other one.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``loa`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status. Usage
    errors, ``--help`` and ``--version`` exit through ``SystemExit`` (status 2, 0, 0).

    A reader that goes away early (``loa endpoints list | head``) ends the command quietly
    with status 1, as Python's documentation of SIGPIPE recommends; so does Ctrl-C, with
    status 130."""
    from loa.cli.commands import run_command_line

    try:
        status = run_command_line(argv)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush is quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return status
