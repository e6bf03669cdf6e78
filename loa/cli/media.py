"""``loa media add|list|rm``: the media library of a running server (upload an audio file,
list the items, delete one that is not playing)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from loa.cli.client import (
    ApiClient,
    add_client_parser,
    add_client_subparser,
    add_list_options,
    client_options,
    local_file,
)
from loa.cli.show import NONE, duration, local_time, page, table
from loa.cli.text import _


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``media`` and its subcommands to the subcommands ``sub``."""
    token = _("an operator token")
    media = add_client_parser(sub, "media", _("the media library of a running server"), token)
    common = client_options(token)
    msub = media.add_subparsers(dest="media_command", required=True, metavar="SUBCOMMAND")
    madd = add_client_subparser(msub, "add", _("upload an audio file"), common)
    madd.add_argument("file", help=_("an audio file (MP3, Ogg, WAV, M4A…), from this folder"))
    madd.add_argument("--title", default="")
    madd.add_argument("--tags", default="", help=_("comma-separated"))
    mlist = add_client_subparser(msub, "list", _("list the library"), common)
    add_list_options(mlist)
    mrm = add_client_subparser(msub, "rm", _("delete an item (refused while it plays)"), common)
    mrm.add_argument("id")
    media.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The subcommand's API call, shown; exit status 0 done, 1 refused or unreachable, 2 when
    the file to upload is missing."""
    upload = local_file(args.file) if args.media_command == "add" else None
    with ApiClient(args) as api:
        if upload is not None:
            answer = api.call("POST", "/api/v1/media", files={"file": upload},
                              fields={"title": args.title, "tags": args.tags})
            data = api.check(answer)
            item = data.get("media") or {}
            return api.show(answer, added(item, bool(data.get("created")), args.title,
                                          args.tags))
        if args.media_command == "list":
            answer = api.call("GET", "/api/v1/media")
            data = api.check(answer)
            items: list[dict[str, Any]] = data.get("media") or []
            rows = [[m.get("id"), m.get("title"), m.get("filename"),
                     duration(m.get("duration_s")), lufs(m), m.get("tags"),
                     local_time(m.get("created_at"))] for m in items]
            shown, footer = page(rows, args.limit, args.offset)
            return api.show(answer, table([_("ID"), _("TITLE"), _("FILE"), _("LENGTH"),
                                           _("LOUDNESS"), _("TAGS"), _("ADDED")], shown)
                            + footer)
        answer = api.call("DELETE", f"/api/v1/media/{quote(args.id, safe='')}")
        api.check(answer)
        return api.show(answer, _("Deleted {id}.", id=args.id))


def added(item: dict[str, Any], created: bool, title: str, tags: str) -> str:
    """What ``media add`` says: the new item; or the item that already held the same audio
    (the library keeps one item per recording), saying so when the ``title`` or ``tags``
    given differ from its own: they were not applied."""
    shown = item.get("title") or item.get("filename")
    if created:
        return _("Added {id}: {title} ({length}, {lufs}).", id=item.get("id"), title=shown,
                 length=duration(item.get("duration_s")), lufs=lufs(item))
    said = _("Already in the library as {id}: {title}.", id=item.get("id"), title=shown)
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    if (title and title != item.get("title")) or (wanted and wanted != item.get("tags")):
        said += "\n" + _("The title and tags given were not applied: the item keeps its own "
                         "(tags: {tags}).", tags=", ".join(item.get("tags") or []) or NONE)
    return said


def lufs(item: dict[str, Any]) -> str:
    """The item's measured loudness, ``-16.2 LUFS``, or ``NONE``."""
    value = item.get("loudness_lufs")
    return f"{value:.1f} LUFS" if isinstance(value, (int, float)) else NONE
