"""The ``loa`` parser, built from one module per subcommand, and the dispatch to the chosen one.

Each subcommand module has ``register(subparsers)``, which adds its parser and sets
``run(args) -> exit status`` as that parser's default. ``COMMANDS`` gives the order in which
``loa --help`` lists them. The process's language is chosen before the parser is built (its
help is translated): ``loa.cli.text``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from loa import __version__
from loa.cli import (
    alert,
    audit,
    bench,
    command,
    endpoints,
    listen,
    live,
    loadtest,
    media,
    report,
    schedule,
    serve,
    status,
    users,
    zones,
)
from loa.cli.client import CACERT_HELP, DEFAULT_URL, CliExit
from loa.cli.text import _, use
from loa.core.i18n import language_from_env

if TYPE_CHECKING:
    Register = Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]

COMMANDS: Sequence[Register] = (
    serve.register, status.register, zones.register, live.register, alert.register, media.register,
    schedule.register, endpoints.register, command.register, report.register,
    users.register, audit.register, listen.register, loadtest.register, bench.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``loa`` parser with every subcommand of ``COMMANDS``; a parsed namespace carries the
    subcommand's name as ``command`` and its ``run``. ``--url``, ``--token``, ``--cacert`` and
    ``--json`` may come before the subcommand as well (``loa.cli.client``)."""
    parser = argparse.ArgumentParser(
        prog="loa", description=_("Loa: IP loudspeaker broadcast server"),
        epilog=_("The commands that call a server find it through LOA_URL (else the server "
                 "of this folder, else {url}) and take their token from LOA_TOKEN. Messages "
                 "are in Vietnamese; LANG=en_US.UTF-8 (or LANGUAGE=en) for English.",
                 url=DEFAULT_URL))
    parser.add_argument("--version", action="version", version=f"loa {__version__}",
                        help=_("show program's version number and exit"))
    parser.add_argument("--url", default=argparse.SUPPRESS,
                        help=_("the server, for the commands that call one"))
    parser.add_argument("--token", default=argparse.SUPPRESS, help=_("its token"))
    parser.add_argument("--cacert", metavar="FILE", default=argparse.SUPPRESS,
                        help=_(CACERT_HELP))
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help=_("print the API's JSON as it came, for scripts"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def run_command_line(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand; returns its exit
    status. A usage error exits with status 2 (``SystemExit``), as argparse does, whether the
    parser finds it or the subcommand does (by raising ``argparse.ArgumentTypeError``); a
    ``CliExit`` ends with its status, its message on stderr."""
    use(language_from_env(dict(os.environ)))
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except CliExit as exc:
        if exc.message:
            print(f"loa {args.command}: {exc.message}", file=sys.stderr)
        return exc.status
