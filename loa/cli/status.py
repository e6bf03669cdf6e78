"""``loa status`` and ``loa alarms``: a running server at a glance, for the engineer on duty.

``status`` reads ``GET /api/v1/status`` (the caller's scope): the live sources and relays and
whether they send, the endpoints online, the MQTT broker, listeners, how late the event loop
has run, the data disk, the emergency alerts playing and the newest alarms. ``alarms`` lists
every active alarm of the caller's scope (``GET /api/v1/alarms``, which evaluates the rules
anew). Both exit 0, or 1 when refused or unreachable; ``status --check`` exits 3 while any
alarm stands (for a monitoring script: the status and alarms said as ever).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from loa.cli.client import ApiClient, CliExit, add_client_parser, add_list_options
from loa.cli.show import NONE, local_time, page, pairs, table
from loa.cli.text import _
from loa.core.i18n import N_

# what each kind of alarm is about, in words (loa.monitoring.alarms.AlarmKind; the console's
# loa/web/pages/alarms.js says the same)
ALARM_KINDS = {
    "endpoint_offline": N_("Loudspeaker offline"),
    "zone_silent": N_("Zone silent"),
    "source_down": N_("Source not sending"),
    "underruns": N_("Audio underruns"),
    "supply_voltage": N_("Supply voltage out of range"),
    "relay_fault": N_("Protection relay tripped"),
    "broker_down": N_("Control broker (MQTT) unreachable"),
    "loop_lag": N_("Server overloaded"),
    "clock_resync": N_("Master clock resynchronised"),
    "disk_full": N_("Data disk full"),
}
# the subjects of the station's own alarms (loa/monitoring/alarms.py), in words
SUBJECTS = {"server": N_("the server"), "master clock": N_("the master clock"),
            "data disk": N_("the data disk")}
STATUS_ALARMS_SHOWN = 10  # the newest alarms ``status`` lists; ``alarms`` lists them all
CHECK_FAILED = 3  # ``status --check``'s exit status while an alarm stands


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` and ``alarms`` to the subcommands ``sub``."""
    status = add_client_parser(sub, "status", _("a running server at a glance: sources, "
                                                "endpoints online, broker, alarms"),
                               _("any token"))
    status.add_argument("--check", action="store_true",
                        help=_("exit with status 3 while any alarm stands (for monitoring)"))
    status.set_defaults(run=run_status)
    alarms = add_client_parser(sub, "alarms", _("the active alarms of a running server"),
                               _("any token"))
    add_list_options(alarms)
    alarms.set_defaults(run=run_alarms)


def run_status(args: argparse.Namespace) -> int:
    """Show the status; exit status 0 (3 with ``--check`` while an alarm stands), or 1 when
    refused or unreachable."""
    with ApiClient(args) as api:
        answer = api.call("GET", "/api/v1/status")
        data: dict[str, Any] = api.check(answer)
        api.show(answer, status_text(data, api.target.url))
    if getattr(args, "check", False) and data.get("alarms_total", len(data.get("alarms", []))):
        raise CliExit(CHECK_FAILED)
    return 0


def run_alarms(args: argparse.Namespace) -> int:
    """List the active alarms, newest raised first; exit status 0, or 1 when refused or
    unreachable."""
    with ApiClient(args) as api:
        answer = api.call("GET", "/api/v1/alarms")
        alarms: list[dict[str, Any]] = api.check(answer).get("alarms", [])
        alarms = sorted(alarms, key=lambda a: a.get("raised_at") or 0, reverse=True)
        shown, footer = page(alarms, args.limit, args.offset)
        human = (alarm_table(shown) + footer) if alarms else _("No active alarm.") + "\n"
        return api.show(answer, human)


def alarm_table(alarms: Sequence[dict[str, Any]]) -> str:
    """Alarms as a table: what, where, detail (said by the server in the caller's language),
    since when."""
    return table([_("ALARM"), _("WHERE"), _("DETAIL"), _("SINCE")],
                 [[kind_text(a.get("kind")), subject_text(a.get("subject")), a.get("detail"),
                   local_time(a.get("raised_at"))] for a in alarms])


def kind_text(kind: object) -> str:
    """An alarm's kind in words (the kind itself when this client does not know it)."""
    words = ALARM_KINDS.get(str(kind))
    return _(words) if words else str(kind)


def subject_text(subject: object) -> str:
    """An alarm's subject: an endpoint's or a zone's id, or the station's own in words."""
    words = SUBJECTS.get(str(subject))
    return _(words) if words else str(subject)


def status_text(data: dict[str, Any], url: str) -> str:
    """The human form of ``GET /api/v1/status``: a summary, the sources, the newest alarms."""
    fleet = data.get("fleet") or {}
    broker = (_("connected") if fleet.get("connected")
              else _("not connected: {error}", error=fleet.get("last_error") or _("connecting")))
    lag = (data.get("loop_lag_ms") or {}).get("max")
    store = data.get("store") or {}
    disk = (_("refuses writes: {error}", error=store["disk_error"]) if store.get("disk_error")
            else _("{queued} write(s) queued", queued=store.get("queued", 0)))
    alerts = data.get("alerts") or []
    summary = [
        (_("Server"), f"Loa {data.get('version', '?')}  {url}"),
        (_("Loudspeakers online"), _("{online} of {registered}",
                                     online=fleet.get("online", 0),
                                     registered=fleet.get("endpoints", 0))),
        (_("MQTT broker"), f"{fleet.get('broker') or NONE}  ({broker})"),
        (_("Commands awaiting acknowledgement"), fleet.get("commands_open", 0)),
        (_("Listeners"), data.get("listeners", 0)),
        (_("Event loop, worst delay in 10 s"),
         _("{ms} ms", ms=f"{lag:.1f}") if isinstance(lag, (int, float)) else NONE),
        (_("Data disk"), disk),
        (_("Emergency alerts playing"), len(alerts)),
    ]
    out = [pairs(summary, indent="")]
    mounts = data.get("mounts") or []
    if mounts:
        out.append("\n" + _("Live sources") + "\n")
        out.append(table([_("MOUNT"), _("STATE"), _("KIND"), _("TITLE")],
                         [[m.get("mount"), mount_state(m), m.get("kind") or NONE,
                           m.get("title") or NONE] for m in mounts]))
    relays = list((data.get("relays") or {}).values())
    if relays:
        out.append("\n" + _("Relays") + "\n")
        out.append(table([_("URL"), _("STATE"), _("LAST ERROR")],
                         [[r.get("url"), r.get("state"), r.get("last_error") or NONE]
                          for r in relays]))
    alarms = data.get("alarms") or []
    total = data.get("alarms_total", len(alarms))
    out.append("\n" + _("Active alarms: {count}", count=total) + "\n")
    if alarms:
        out.append(alarm_table(alarms[:STATUS_ALARMS_SHOWN]))
        if total > STATUS_ALARMS_SHOWN:
            out.append(_("… and {more} more: loa alarms --limit 0 lists them all.",
                         more=total - STATUS_ALARMS_SHOWN) + "\n")
    return "".join(out)


def mount_state(mount: dict[str, Any]) -> str:
    """A live mount's state in words: sending, connected but silent (stalled), or not
    connected."""
    if not mount.get("connected"):
        return _("not connected")
    return _("stalled (nothing received)") if mount.get("stalled") else _("receiving")
