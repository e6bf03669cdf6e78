"""``loa media add|list|rm``: the media library of a running server (upload an audio file,
list the items, delete one that is not playing)."""

from __future__ import annotations

import argparse

from loa.cli.client import add_client_parser, call_api


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``media`` and its subcommands to the subcommands ``sub``."""
    media = add_client_parser(sub, "media", "the media library of a running server",
                              "an operator token")
    msub = media.add_subparsers(dest="media_command", required=True)
    madd = msub.add_parser("add", help="upload an audio file")
    madd.add_argument("file")
    madd.add_argument("--title", default="")
    madd.add_argument("--tags", default="", help="comma-separated")
    msub.add_parser("list", help="list the library")
    mrm = msub.add_parser("rm", help="delete an item (refused while it plays)")
    mrm.add_argument("id")
    media.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The one API call of the subcommand; exit status as ``call_api``'s."""
    if args.media_command == "add":
        return call_api(args, "POST", "/api/v1/media", files={"file": args.file},
                        fields={"title": args.title, "tags": args.tags})
    if args.media_command == "list":
        return call_api(args, "GET", "/api/v1/media")
    return call_api(args, "DELETE", f"/api/v1/media/{args.id}")
