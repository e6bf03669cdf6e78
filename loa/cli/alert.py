"""``loa alert``: trigger, list or cancel an alert (bản tin khẩn cấp / ưu tiên / thông thường)
on a running server from a shell, for the official on duty. The body is the API's
``POST /api/v1/alerts``; a local audio file is uploaded with it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from loa.cli.client import (
    ApiClient,
    CliExit,
    add_client_parser,
    add_list_options,
    emit,
    status_word,
)
from loa.cli.show import NONE, content_text, local_time, page, table
from loa.cli.text import _
from loa.core.i18n import N_

CLASS_WORDS = {"emergency": N_("emergency"), "priority": N_("priority"), "normal": N_("normal")}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alert`` to the subcommands ``sub``."""
    alert = add_client_parser(sub, "alert", _("trigger, list or cancel an alert on a running "
                                              "server"), _("a token with the alert right"))
    where = alert.add_mutually_exclusive_group()
    where.add_argument("--zones", help=_("comma-separated zone ids"))
    where.add_argument("--all", action="store_true", help=_("every zone"))
    what = alert.add_mutually_exclusive_group()
    what.add_argument("--text", help=_("text read aloud (Vietnamese)"))
    what.add_argument("--file", help=_("an audio file to upload, from this folder (or, if it "
                                       "is not a local file, a path in the server's media "
                                       "folder)"))
    what.add_argument("--mount", help=_("a live mount, after the attention tone"))
    alert.add_argument("--voice", default="vi", help=_("vi, vi-vn-x-central or vi-vn-x-south"))
    alert.add_argument("--class", dest="cls", default="emergency",
                       choices=["normal", "priority", "emergency"])
    alert.add_argument("--repeat", type=int, default=1, help=_("how many times the message "
                                                               "plays"))
    alert.add_argument("--no-tone", action="store_true", help=_("no attention tone"))
    alert.add_argument("--expires-in", type=float, help=_("seconds until it expires"))
    alert.add_argument("--list", action="store_true", help=_("list alerts instead"))
    alert.add_argument("--cancel", metavar="ID", help=_("cancel an alert instead"))
    add_list_options(alert)
    alert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List, cancel or trigger; exit status 0 done, 1 refused or unreachable, 2 when a
    trigger names no zones (neither ``--zones`` nor ``--all``) or its ``--file`` is neither a
    local file nor one of the server's media folder (the local file is said missing first)."""
    if not args.list and not args.cancel and not args.zones and not args.all:
        raise CliExit(2, _("say where: --zones Z1,Z2 or --all (see: loa zones)"))
    upload: Path | None = None
    if args.file:
        candidate = Path(os.path.abspath(Path(args.file).expanduser()))
        upload = candidate if candidate.is_file() else None
    with ApiClient(args) as api:
        if args.list:
            return list_alerts(api, args)
        if args.cancel:
            answer = api.call("DELETE", f"/api/v1/alerts/{quote(args.cancel, safe='')}")
            data = api.check(answer)
            alert = data.get("alert") or {}
            return api.show(answer, _("Alert {id}: {status}.", id=alert.get("id"),
                                      status=status_word(alert.get("status"))))
        if args.text:
            content: dict[str, str] = {"kind": "text", "text": args.text, "voice": args.voice}
        elif upload is not None:
            content = {"kind": "upload"}
        elif args.file:
            content = {"kind": "file", "path": args.file}
        elif args.mount:
            content = {"kind": "live", "mount": args.mount}
        else:
            content = {"kind": "tone"}
        zones = [z.strip() for z in args.zones.split(",") if z.strip()] if args.zones else []
        body: dict[str, object] = {
            "class": args.cls, "zones": zones, "all": args.all, "content": content,
            "repeat": args.repeat, "tone": not args.no_tone}
        if args.expires_in:
            body["expires_in_s"] = args.expires_in
        if upload is not None:
            answer = api.call("POST", "/api/v1/alerts", files={"audio": upload},
                              fields={"spec": json.dumps(body, ensure_ascii=False)})
        else:
            answer = api.call("POST", "/api/v1/alerts", body)
        if content["kind"] == "file" and not answer.ok and answer.status in (400, 404) \
                and Path(args.file).name in answer.error:
            # no such file here, nor in the server's media folder: the local file is what
            # the user most likely meant, so it is said first, as a usage error (2)
            if api.as_json:
                emit(answer.text)
            raise CliExit(2, _("file not found: {path}", path=os.path.abspath(args.file))
                          + "\n" + _("(Nor is there such a file in the server's media "
                                     "folder: {error})", error=answer.error))
        try:
            data = api.check(answer, zones)
        except CliExit:
            if content["kind"] == "file":  # refused for another reason: say this too
                print(_("(There is no local file {path} to upload either.)",
                        path=os.path.abspath(args.file)), file=sys.stderr)
            raise
        return api.show(answer, triggered(data))


def triggered(data: dict[str, Any]) -> str:
    """What a trigger shows: the alert, where, how far it reached, how to cancel it."""
    alert = data.get("alert") or {}
    reach = alert.get("reach") or {}
    lines = [_("Alert {id} ({cls}, priority {priority}): {status}, on {where}.",
               id=alert.get("id"), cls=class_word(alert.get("class")),
               priority=alert.get("priority"), status=status_word(alert.get("status")),
               where=where_text(alert)),
             _("Endpoints targeted {targeted}, reached so far {reached}.",
               targeted=reach.get("targeted", 0), reached=reach.get("reached", 0))]
    for warning in alert.get("warnings") or []:
        lines.append(_("Warning: {text}", text=warning))
    for error in data.get("errors") or []:
        lines.append(_("Error: {text}", text=error))
    lines.append(_("Cancel it with: loa alert --cancel {id}", id=alert.get("id")))
    return "\n".join(lines)


def list_alerts(api: ApiClient, args: argparse.Namespace) -> int:
    """``alert --list``: a table, newest first as the API lists them."""
    answer = api.call("GET", "/api/v1/alerts")
    data = api.check(answer)
    alerts: list[dict[str, Any]] = data.get("alerts") or []
    rows = []
    for a in alerts:
        reach = a.get("reach") or {}
        rows.append([a.get("id"), class_word(a.get("class")), status_word(a.get("status")),
                     where_text(a), content_text(a.get("content")),
                     local_time(a.get("created_at")),
                     f"{reach.get('reached', 0)}/{reach.get('targeted', 0)}"])
    shown, footer = page(rows, args.limit, args.offset)
    return api.show(answer, table([_("ID"), _("CLASS"), _("STATUS"), _("WHERE"), _("PLAYS"),
                                   _("AT"), _("REACHED")], shown) + footer)


def class_word(cls: object) -> str:
    """An alert class in words."""
    word = CLASS_WORDS.get(str(cls))
    return _(word) if word else str(cls)


def where_text(alert: dict[str, Any]) -> str:
    """The zones (or endpoints) an alert is on; "every zone" for ``all``."""
    if alert.get("all"):
        return _("every zone")
    named = list(alert.get("zones") or []) + list(alert.get("endpoints") or [])
    return ", ".join(str(n) for n in named) or NONE
