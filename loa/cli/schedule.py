"""``loa schedule add|list|rm``: the schedule of a running server. An item plays a media
library file, text read aloud or a station's relay (tiếp sóng) on zones, in a window that
recurs by an RFC 5545 rule, in local time (Asia/Ho_Chi_Minh).

Dates are checked here before anything is sent: ``2026-12-01T06:00`` (ISO 8601, local time)
or ``01/12/2026 06:00`` (day first, as written in Vietnam); a date that is neither is refused
with the format and an example."""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from loa.cli.client import (
    ApiClient,
    add_client_parser,
    add_client_subparser,
    add_list_options,
    client_options,
)
from loa.cli.show import NONE, content_text, duration, local_time, page, table
from loa.cli.text import _

EXAMPLE_TIME = "2026-12-01T06:00"


def local_datetime(value: str) -> str:
    """An argparse type: a local date and time as ISO 8601 without an offset
    (``2026-12-01T06:00:00``), from ``2026-12-01T06:00``, ``2026-12-01 06:00`` or
    ``01/12/2026 06:00`` (a date alone is its midnight; an ISO offset is kept). Raises
    ``argparse.ArgumentTypeError`` naming the format with an example."""
    text = value.strip()
    day_first = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?",
                             text)
    try:
        if day_first:
            d, m, y, hh, mm, ss = day_first.groups()
            moment = datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_(
            "{value!r} is not a date and time: write YYYY-MM-DDTHH:MM in local time, e.g. "
            "{example} (or DD/MM/YYYY HH:MM, e.g. 01/12/2026 06:00)", value=value,
            example=EXAMPLE_TIME)) from None
    return moment.isoformat(timespec="seconds")


def seconds(value: str) -> float:
    """An argparse type: a length in seconds from ``1800``, ``90s``, ``30m``, ``1h`` or
    ``1h30m``. Raises ``argparse.ArgumentTypeError`` with examples."""
    text = value.strip().lower()
    try:
        number = float(text)
    except ValueError:
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?",
                             text)
        if not text or parts is None:
            raise argparse.ArgumentTypeError(_(
                "{value!r} is not a length: give seconds (1800) or 30m, 1h, 1h30m",
                value=value)) from None
        h, m, s = (float(p) if p else 0.0 for p in parts.groups())
        number = h * 3600 + m * 60 + s
    if number <= 0:
        raise argparse.ArgumentTypeError(_("a length must be more than 0 s, e.g. 30m"))
    return number


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``schedule`` and its subcommands to the subcommands ``sub``."""
    token = _("an operator token")
    sched = add_client_parser(sub, "schedule", _("the schedule of a running server"), token)
    common = client_options(token)
    ssub = sched.add_subparsers(dest="schedule_command", required=True, metavar="SUBCOMMAND")
    sadd = add_client_subparser(ssub, "add", _("add an item"), common)
    sadd.add_argument("--title", default="")
    sadd.add_argument("--zones", required=True, help=_("comma-separated zone ids"))
    sadd.add_argument("--start", required=True, type=local_datetime,
                      help=_("local time, e.g. {example}", example=EXAMPLE_TIME))
    sadd.add_argument("--duration", type=seconds, required=True,
                      help=_("the window: seconds, or 30m, 1h"))
    sadd.add_argument("--rrule", help=_('RFC 5545, e.g. "FREQ=DAILY" or '
                                        '"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"'))
    sadd.add_argument("--class", dest="cls", default="normal", choices=["normal", "priority"])
    group = sadd.add_mutually_exclusive_group(required=True)
    group.add_argument("--media", help=_("a media library id (see: loa media list)"))
    group.add_argument("--text", help=_("text read aloud"))
    group.add_argument("--relay", help=_("a station's stream URL (tiếp sóng)"))
    sadd.add_argument("--missed", default="skip", choices=["skip", "late"],
                      help=_("after a restart, skip a missed slot or play it late"))
    sadd.add_argument("--late-minutes", type=int, default=0)
    slist = add_client_subparser(ssub, "list", _("list the items and their next slots"), common)
    add_list_options(slist)
    srm = add_client_subparser(ssub, "rm", _("delete an item"), common)
    srm.add_argument("id")
    sched.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The subcommand's API call, shown; exit status 0 done, 1 refused or unreachable."""
    with ApiClient(args) as api:
        if args.schedule_command == "list":
            answer = api.call("GET", "/api/v1/schedules")
            data = api.check(answer)
            items: list[dict[str, Any]] = data.get("schedules") or []
            titles = media_titles(api) if any(
                (s.get("content") or {}).get("kind") == "media" for s in items) else {}
            rows = [[s.get("id"), s.get("title"), s.get("zones"),
                     content_text(s.get("content"), titles),
                     local_time(s.get("start"), seconds=False), duration(s.get("duration_s")),
                     s.get("rrule"), local_time(s.get("next"), seconds=False)
                     if s.get("next") else (_("draft") if s.get("draft") else NONE)]
                    for s in items]
            shown, footer = page(rows, args.limit, args.offset)
            return api.show(answer, table([_("ID"), _("TITLE"), _("ZONES"), _("PLAYS"),
                                           _("START"), _("LENGTH"), _("REPEATS"), _("NEXT")],
                                          shown) + footer)
        if args.schedule_command == "rm":
            answer = api.call("DELETE", f"/api/v1/schedules/{quote(args.id, safe='')}")
            api.check(answer)
            return api.show(answer, _("Deleted {id}.", id=args.id))
        if args.media:
            content: dict[str, str] = {"kind": "media", "id": args.media}
        elif args.text:
            content = {"kind": "text", "text": args.text}
        else:
            content = {"kind": "relay", "url": args.relay}
        zones = [z.strip() for z in args.zones.split(",") if z.strip()]
        answer = api.call("POST", "/api/v1/schedules", {
            "title": args.title, "zones": zones, "start": args.start,
            "duration_s": args.duration, "rrule": args.rrule, "class": args.cls,
            "content": content, "missed": args.missed, "late_minutes": args.late_minutes})
        data = api.check(answer, zones)
        item = data.get("schedule") or {}
        lines = [_("Added {id}: {title}; next on air {next}.", id=item.get("id"),
                   title=item.get("title") or NONE,
                   next=local_time(data.get("next"), seconds=False))]
        running = None if api.as_json else under_way(api, str(item.get("id")))
        if running is not None:
            lines.append(_("Its slot of {start} was already under way: it starts now, late, "
                           "and ends with its window at {end}.",
                           start=local_time(running.get("start"), seconds=False),
                           end=local_time(running.get("end"), seconds=False)))
        for other in data.get("conflicts") or []:
            lines.append(_("Conflicts with: {other}", other=conflict_text(other)))
        return api.show(answer, "\n".join(lines))


def media_titles(api: ApiClient) -> dict[str, str]:
    """Library id → title, of the items the caller sees (empty when it cannot be read)."""
    answer = api.call("GET", "/api/v1/media")
    listed = answer.data.get("media") if answer.ok and isinstance(answer.data, dict) else None
    return {str(m.get("id")): str(m.get("title") or "") for m in listed or []
            if isinstance(m, dict)}


def under_way(api: ApiClient, item_id: str) -> dict[str, Any] | None:
    """The item's slot whose window is open now (``GET schedules/occurrences``: ``start``
    and ``end`` in unix seconds), or None (none, or it cannot be read)."""
    now = time.time()
    query = urlencode({"from": f"{now:.3f}", "to": f"{now + 1:.3f}"})
    answer = api.call("GET", f"/api/v1/schedules/occurrences?{query}")
    found = answer.data.get("occurrences") if answer.ok and isinstance(answer.data,
                                                                        dict) else None
    for occurrence in found or []:
        start = occurrence.get("start") if isinstance(occurrence, dict) else None
        if occurrence.get("item") == item_id and isinstance(start, (int, float)) \
                and start <= now:
            return dict(occurrence)
    return None


def conflict_text(other: object) -> str:
    """A conflicting item as the API names it (``{"item", "title", "slot"}``): its id, title
    and the slot that overlaps, in local time."""
    if isinstance(other, dict):
        return f"{other.get('item')} {other.get('title') or ''} " \
               f"({local_time(other.get('slot'), seconds=False)})".replace("  ", " ")
    return str(other)
