"""``loa audit verify``: check the audit log's hash chain (``loa.control.audit``) and name the
first entry that breaks it.

It reads the database in the data folder itself (read-only, beside a running server or
without one), not through the server's API: a check of the server's records should not take
the server's word for them. The folder: ``--data-dir``, else ``LOA_DATA_DIR``, else
``./loa-data`` (as ``loa serve`` picks it). Exit status: 0 whole; 1 broken; 2 no database
there, or one that cannot be read."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from pathlib import Path

from loa.cli import local_server
from loa.cli.client import CliExit, emit
from loa.cli.text import _, ngettext
from loa.control.audit import ChainCheck, ChainProblem, verify

DATABASE = "loa.sqlite3"  # in the data folder (loa.app)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit`` and its subcommand ``verify`` to the subcommands ``sub``."""
    text = _("the audit log of this machine's server")
    audit = sub.add_parser("audit", help=text, description=text)
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    check = _("check that no audit entry was changed or removed (reads the data folder)")
    verify_parser = asub.add_parser("verify", help=check, description=check)
    verify_parser.add_argument("--data-dir", help=_("data folder (default ./loa-data, or "
                                                    "LOA_DATA_DIR)"))
    verify_parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                               help=_("print the result as JSON, for scripts"))
    audit.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verify the chain; exit status 0 whole, 1 broken, 2 no readable database."""
    folder = Path(args.data_dir) if args.data_dir else \
        local_server.data_dir_from_env(dict(os.environ))
    path = Path(os.path.abspath(folder / DATABASE))
    try:
        found = verify(path)
    except FileNotFoundError:
        raise CliExit(2, _("no database at {path}: give the server's data folder with "
                           "--data-dir (or LOA_DATA_DIR)", path=str(path))) from None
    except sqlite3.Error as exc:
        raise CliExit(2, _("cannot read {path}: {error}", path=str(path),
                           error=str(exc))) from None
    if getattr(args, "json", False):
        emit(json.dumps({"whole": found.whole, "entries": found.entries,
                         "bad_id": found.bad_id,
                         "problem": found.problem.value if found.problem else None,
                         "message": found.describe(),
                         "head": {"id": found.last_id, "hash": found.head}}))
    else:
        emit(said(found))
    return 0 if found.whole else 1


def said(found: ChainCheck) -> str:
    """The finding, for people."""
    if found.problem is None:
        return ngettext("The audit log is whole: {n} entry.",
                        "The audit log is whole: {n} entries, each chained to the one before.",
                        found.entries)
    if found.problem is ChainProblem.REMOVED:
        last = (found.bad_id or 0) - 1
        why = (_("entry #{first} was removed", first=last) if found.missing_from == last else
               _("entries #{first} to #{last} were removed", first=found.missing_from,
                 last=last))
    elif found.problem is ChainProblem.EDITED:
        why = _("it does not match its hash: it was edited, or the entry before it replaced")
    elif found.problem is ChainProblem.END_REMOVED:
        why = _("it was the newest entry written, and it is gone: the log now ends at "
                "#{last}", last=found.last_id)
    elif found.problem is ChainProblem.APPENDED:
        why = _("it was added after the newest entry Loa wrote")
    else:
        why = _("the chain's head is missing from the database")
    return ngettext("The audit log is broken at entry #{id}: {why}. The {n} entry before it "
                    "is whole.",
                    "The audit log is broken at entry #{id}: {why}. The {n} entries before it "
                    "are whole.", found.entries, id=found.bad_id, why=why)
