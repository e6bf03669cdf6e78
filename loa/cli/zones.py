"""``loa zones``: the zone tree of a running server (huyện → xã → thôn), with what each zone
plays and who listens: the ids every other command takes."""

from __future__ import annotations

import argparse
from typing import Any

from loa.cli.client import ApiClient, add_client_parser, add_list_options
from loa.cli.show import NONE, page, table
from loa.cli.text import _


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``zones`` to the subcommands ``sub``."""
    zones = add_client_parser(sub, "zones", _("the zone tree, what each zone plays, listeners"),
                              _("any token"))
    add_list_options(zones)
    zones.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List the zones as a tree; exit status 0, or 1 when refused or unreachable."""
    with ApiClient(args) as api:
        answer = api.call("GET", "/api/v1/zones")
        data = api.check(answer)
        listed: list[dict[str, Any]] = data.get("zones", [])
        by_id = {z["id"]: z for z in listed}
        rows = []
        for zone in tree_order(listed):
            depth = 0
            parent = zone.get("parent")
            while parent in by_id and depth < 16:
                depth += 1
                parent = by_id[parent].get("parent")
            on_air = zone.get("on_air") or {}
            playing = (f"{on_air.get('name')} [{on_air.get('priority')}]"
                       if on_air.get("name") else NONE)
            waiting = ", ".join(f"{r.get('label')} [{r.get('priority')}]"
                                for r in zone.get("waiting") or []) or NONE
            listeners = sum((zone.get("listeners") or {}).values())
            rows.append(["  " * depth + zone["id"], zone.get("name"),
                         f"{zone.get('volume_pct')}%", playing, waiting, listeners])
        shown, footer = page(rows, args.limit, args.offset)
        # WAITING: taken (for a live mount) but not playing, its source away: it plays again
        # when the source comes back, until released (loa live --release)
        human = table([_("ZONE"), _("NAME"), _("VOLUME"), _("ON AIR [PRIORITY]"),
                       _("WAITING FOR ITS SOURCE"), _("LISTENERS")], shown) + footer
        return api.show(answer, human)


def tree_order(zones: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``zones`` depth first from the roots, children in the server's order; a zone whose
    parent is not listed counts as a root."""
    ids = {z["id"] for z in zones}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for zone in zones:
        parent = zone.get("parent") if zone.get("parent") in ids else None
        children.setdefault(parent, []).append(zone)
    out: list[dict[str, Any]] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        zone = stack.pop()
        out.append(zone)
        stack.extend(reversed(children.get(zone["id"], [])))
    return out
