"""``loa command``: one control command (volume, mute, power, reboot, play, stop, move) to the
endpoints of a zone, or to one endpoint, through a running server's API (which sends it over
MQTT); ``loa commands <batch>``: what became of each command of a batch (acknowledged,
pending, failed), endpoint by endpoint."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from loa.cli.client import (
    ApiClient,
    CliExit,
    add_client_parser,
    add_list_options,
    status_word,
)
from loa.cli.show import NONE, local_time, named, page, table
from loa.cli.text import _, ngettext
from loa.core.i18n import N_

# the order in which a batch's commands are listed: what needs looking at first
STATUS_ORDER = ("failed", "expired", "pending", "sent", "acked", "superseded", "cancelled")
OPS = ("volume", "mute", "unmute", "power", "reboot", "play", "stop", "move")
# the ops said in words (volume, power and move with their value: ``describe_op``)
OP_WORDS = {"mute": N_("mute"), "unmute": N_("unmute"), "reboot": N_("reboot"),
            "play": N_("play the stream"), "stop": N_("stop the stream"),
            "power": N_("power"), "volume": N_("volume"), "move": N_("move")}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``command`` and ``commands`` to the subcommands ``sub``."""
    cmd = add_client_parser(sub, "command", _("a command to the endpoints of a zone, or to "
                                              "one endpoint"), _("an operator token"))
    target = cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("--zone", help=_("every endpoint of this zone and below"))
    target.add_argument("--endpoint", help=_("one endpoint"))
    cmd.add_argument("op", choices=OPS, help=_("what to do: {ops}", ops=", ".join(OPS)))
    cmd.add_argument("value", nargs="?", help=_("volume 0-100 (or zone), power on|off, "
                                                "move ZONE"))
    cmd.set_defaults(run=run)

    outcomes = add_client_parser(sub, "commands", _("what became of a batch of commands: "
                                                    "acknowledged, pending, failed"),
                                 _("any token"))
    outcomes.add_argument("batch", nargs="?", help=_("the batch id that loa command printed"))
    outcomes.add_argument("--endpoint", help=_("the commands of one endpoint instead"))
    add_list_options(outcomes)
    outcomes.set_defaults(run=run_outcomes)


def command_body(op: str, value: str | None) -> dict[str, object]:
    """The API body of ``op`` with ``value``. Raises ``CliExit`` (2) when ``value`` does not
    fit ``op``: volume not a number from 0 to 100 (or "zone"), power neither on nor off, move
    without a zone."""
    body: dict[str, object] = {"op": op}
    if op == "volume":
        if value in (None, "zone"):
            body["volume_pct"] = None
        else:
            try:
                body["volume_pct"] = int(str(value).rstrip("%"))
            except ValueError:
                raise CliExit(2, _("volume needs a number from 0 to 100, e.g. volume 60; "
                                   "got {value!r}", value=value)) from None
    elif op == "power":
        if value not in ("on", "off"):
            raise CliExit(2, _("power needs on or off, e.g. power off"))
        body["on"] = value == "on"
    elif op == "move":
        if not value:
            raise CliExit(2, _("move needs a zone, e.g. move phu-my-2"))
        body["zone"] = value
    return body


def run(args: argparse.Namespace) -> int:
    """Send the command; exit status 0 when the server took it, 1 when refused, 2 when
    ``value`` does not fit ``op``."""
    body = command_body(args.op, args.value)
    path = (f"/api/v1/zones/{quote(args.zone, safe='')}/commands" if args.zone
            else f"/api/v1/endpoints/{quote(args.endpoint, safe='')}/commands")
    zones = [args.zone] if args.zone else []
    if args.op == "move" and args.value:
        zones.append(args.value)
    with ApiClient(args) as api:
        answer = api.call("POST", path, body)
        data = api.check(answer, zones)
        if api.as_json:
            return api.show(answer, "")
        cmds: list[dict[str, Any]] = data.get("commands") or []
        batch = data.get("batch")
        where = (_("zone {zone}", zone=named(args.zone, api.zone_name(args.zone))) if args.zone
                 else _("endpoint {endpoint}", endpoint=args.endpoint))
        if not cmds:
            return api.show(answer, _("{where} has no endpoints: nothing was sent.",
                                      where=where))
        counts = summary(cmds)
        lines = [ngettext("Sent {op} to {n} endpoint of {where}: batch {batch}.",
                          "Sent {op} to {n} endpoints of {where}: batch {batch}.", len(cmds),
                          op=describe_op(cmds[0]), where=where, batch=batch),
                 counts_line(counts)]
        if counts.get("pending"):
            lines.append(_("Pending commands go out when their endpoint comes online."))
        lines.append(_("Follow them with: loa commands {batch}", batch=batch))
        return api.show(answer, "\n".join(lines))


def summary(cmds: list[dict[str, Any]]) -> dict[str, int]:
    """How many commands are in each status."""
    counts: dict[str, int] = {}
    for c in cmds:
        counts[str(c.get("status"))] = counts.get(str(c.get("status")), 0) + 1
    return counts


def counts_line(counts: dict[str, int]) -> str:
    """``acknowledged 3 · pending 1 · failed 0`` (the three always, the others when any)."""
    shown = ["acked", "pending", "failed"] + [s for s in STATUS_ORDER
                                              if s not in ("acked", "pending", "failed")
                                              and counts.get(s)]
    shown += [s for s in counts if s not in shown]
    return " · ".join(f"{status_word(s)} {counts.get(s, 0)}" for s in shown)


def run_outcomes(args: argparse.Namespace) -> int:
    """Show a batch's (or an endpoint's) commands; exit status 0, 1 when refused or when the
    batch has no commands, 2 without a batch or an endpoint."""
    if not args.batch and not args.endpoint:
        raise CliExit(2, _("name a batch (loa command prints it) or --endpoint ID"))
    query = {"batch": args.batch} if args.batch else {"endpoint": args.endpoint}
    with ApiClient(args) as api:
        answer = api.call("GET", f"/api/v1/commands?{urlencode(query)}")
        data = api.check(answer)
        cmds: list[dict[str, Any]] = data.get("commands") or []
        if not cmds and not api.as_json:
            raise CliExit(1, _("no commands for {what} (a batch is kept while the server "
                               "runs)", what=args.batch or args.endpoint))
        if api.as_json:
            return api.show(answer, "")
        names = endpoint_names(api)
        order = {s: i for i, s in enumerate(STATUS_ORDER)}
        cmds.sort(key=lambda c: (order.get(str(c.get("status")), len(order)),
                                 str(c.get("endpoint"))))
        rows = [[named(c.get("endpoint"), names.get(str(c.get("endpoint")))),
                 describe_op(c), status_word(c.get("status")), c.get("attempts"),
                 NONE if c.get("ack_ms") is None else f"{c['ack_ms']:.0f}",
                 local_time(c.get("created_at")), c.get("error")] for c in cmds]
        shown, footer = page(rows, args.limit, args.offset)
        ops = sorted({describe_op(c) for c in cmds})
        head = (ngettext("Batch {batch}: {op} to {n} endpoint.",
                         "Batch {batch}: {op} to {n} endpoints.", len(cmds), batch=args.batch,
                         op=", ".join(ops)) + "\n" if args.batch else "")
        head += counts_line(summary(cmds))
        ack = data.get("ack_ms")
        if isinstance(ack, dict) and ack:
            head += "  " + _("(acknowledged after p50 {p50} ms, p99 {p99} ms)",
                             p50=_ms(ack.get("p50")), p99=_ms(ack.get("p99")))
        human = (head + "\n" + table([_("ENDPOINT"), _("COMMAND"), _("STATUS"), _("ATTEMPTS"),
                                      _("ACK MS"), _("SENT AT"), _("ERROR")], shown) + footer)
        return api.show(answer, human)


def describe_op(c: dict[str, Any]) -> str:
    """A command of the API (``{"op", "args"}``) in words, in the user's language: ``volume
    60%``, ``switch off``, ``move to zone phu-my-2``, ``mute``; an op this version does not
    know as the API names it."""
    op, a = str(c.get("op")), c.get("args") or {}
    if op == "volume":
        pct = a.get("volume_pct")
        return _("volume {pct}%", pct=pct) if pct is not None else _("volume of the zone")
    if op == "power" and "on" in a:
        return _("switch on") if a["on"] else _("switch off")
    if op == "move" and a.get("zone"):
        return _("move to zone {zone}", zone=a["zone"])
    word = OP_WORDS.get(op)
    return _(word) if word else op


def endpoint_names(api: ApiClient) -> dict[str, str]:
    """Endpoint id → name, from the registry (empty when it cannot be read)."""
    answer = api.call("GET", "/api/v1/endpoints")
    if not answer.ok or not isinstance(answer.data, dict):
        return {}
    return {str(e.get("id")): str(e.get("name") or "") for e in answer.data.get("endpoints", [])}


def _ms(value: object) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else NONE
