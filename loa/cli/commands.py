"""The ``loa`` parser, built from one module per subcommand, and the dispatch to the chosen one.

Each subcommand module has ``register(subparsers)``, which adds its parser and sets
``run(args) -> exit status`` as that parser's default. ``COMMANDS`` gives the order in which
``loa --help`` lists them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from loa import __version__
from loa.cli import (
    alert,
    bench,
    command,
    endpoints,
    listen,
    loadtest,
    media,
    report,
    schedule,
    serve,
)

if TYPE_CHECKING:
    Register = Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]

COMMANDS: Sequence[Register] = (
    serve.register, listen.register, loadtest.register, alert.register, media.register,
    schedule.register, endpoints.register, command.register, report.register, bench.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``loa`` parser with every subcommand of ``COMMANDS``; a parsed namespace carries the
    subcommand's name as ``command`` and its ``run``."""
    parser = argparse.ArgumentParser(prog="loa", description="Loa: IP loudspeaker broadcast server")
    parser.add_argument("--version", action="version", version=f"loa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def run_command_line(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand; returns its exit
    status. A usage error exits with status 2 (``SystemExit``), as argparse does, whether the
    parser finds it or the subcommand does (by raising ``argparse.ArgumentTypeError``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
