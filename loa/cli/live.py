"""``loa live <zones> --mount studio`` puts zones on air for a live mount (a parent zone takes
its children along); ``loa live --release <zones>`` gives them back. One API call per zone:
``POST`` / ``DELETE /api/v1/zones/<zone>/live``.

Every zone is checked before any is taken, so a typo takes nothing (and the nearest valid
zones are suggested). With ``--json`` the output is one JSON object: each zone's API answer
under its id.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from loa.cli.client import ApiClient, CliExit, add_client_parser, emit
from loa.cli.show import named, table
from loa.cli.text import _


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``live`` to the subcommands ``sub``."""
    live = add_client_parser(sub, "live", _("put zones on air for a live mount, or release "
                                            "them"), _("an operator token"))
    live.add_argument("zones", nargs="+", metavar="ZONE",
                      help=_("zone ids, separated by spaces or commas (see: loa zones)"))
    live.add_argument("--mount", help=_("the live mount (default studio: what a source pushes "
                                        "to /live/studio); with --release, only this one's"))
    live.add_argument("--priority", type=int,
                      help=_("default 80 (district live); 70 for a commune's own"))
    live.add_argument("--release", action="store_true", help=_("give the zones back"))
    live.set_defaults(run=run)


def zone_list(values: list[str]) -> list[str]:
    """Zone ids from arguments separated by spaces or commas, each once, in order."""
    out: list[str] = []
    for value in values:
        for zone in value.split(","):
            zone = zone.strip()
            if zone and zone not in out:
                out.append(zone)
    return out


def run(args: argparse.Namespace) -> int:
    """Take or release each zone; exit status 0 when every zone was done, 1 when one was
    refused (the zones before it stay done) or a zone does not exist (none is touched), 2
    without zones."""
    zones = zone_list(args.zones)
    if not zones:
        raise CliExit(2, _("name at least one zone (see: loa zones)"))
    with ApiClient(args) as api:
        api.check_zones(zones)  # a typo takes nothing
        answers: dict[str, dict[str, Any]] = {}
        rows = []
        for zone in zones:
            path = f"/api/v1/zones/{quote(zone, safe='')}/live"
            if args.release:
                body = {"mount": args.mount} if args.mount else None
                answer = api.call("DELETE", path, body)
            else:
                body = {"mount": args.mount or "studio"}
                if args.priority is not None:
                    body["priority"] = args.priority
                answer = api.call("POST", path, body)
            if not answer.ok and answers:
                print(_("done before the refusal: {zones}", zones=", ".join(answers)),
                      file=sys.stderr)
            data = api.check(answer, [zone])
            answers[zone] = data
            rows.append(row(api, zone, data, answer.status, args.release))
        if api.as_json:
            emit(json.dumps(answers, ensure_ascii=False))
            return 0
        if args.release:
            emit(table([_("ZONE"), _("RELEASED")], rows))
        else:
            emit(table([_("ZONE"), _("MOUNT"), _("PRIORITY"), _("REQUEST"), _("SOURCE")], rows))
            if any(not (a.get("request", {}).get("programme") or {}).get("available")
                   for a in answers.values()):
                emit(_("No source is sending to the mount yet: the zones play it as soon as "
                       "the studio connects (ffmpeg … icecast://source:PASSWORD@host:port/live/"
                       "{mount}).", mount=args.mount or "studio"))
        return 0


def row(api: ApiClient, zone: str, data: dict[str, Any], status: int,
        release: bool) -> list[object]:
    """One zone's line of the table."""
    if release:
        released = data.get("released") or []
        return [named(zone, api.zone_name(zone)),
                ", ".join(str(r) for r in released) if isinstance(released, list) and released
                else _("nothing was live")]
    request = data.get("request")
    req: dict[str, Any] = request if isinstance(request, dict) else {}
    found = req.get("programme")
    programme: dict[str, Any] = found if isinstance(found, dict) else {}
    label = str(req.get("label", ""))
    mount = label.removeprefix("live/") if label.startswith("live/") else label
    state = _("sending") if programme.get("available") else _("waiting for a source")
    made = _("new") if status == 201 else _("already live")
    return [named(zone, api.zone_name(zone)), mount, req.get("priority"),
            f"{req.get('id')} ({made})", state]
