"""Reports (báo cáo) per commune and period, from the broadcast log, the presence history and
the alerts: hours on air by bulletin class, endpoint availability, alerts and their reach.

Hours on air for the commune are the union over its zones (a programme heard in two villages
at once counts once); each zone's own hours are listed beside. A segment still on air counts
until the last second it was seen on air; one the server never closed (it was killed, crashed
or lost power) was closed at its next start, at that same second, and is counted so and listed
under ``unclean_stops``. The yearly report the Circular
asks for is this report over a calendar year.

A report reads months of history: ``report_scope`` copies what it covers on the event loop,
then ``commune_report`` runs in a worker thread (its store reads go through the store's own
thread), and so do the files made of it (``loa.monitoring.report_files``: CSV, Excel).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from loa.control.endpoints import EndpointRegistry
from loa.control.store import Store
from loa.core.clock import STATION_TZ
from loa.core.endpoint import EndpointInfo
from loa.core.i18n import N_
from loa.core.percentiles import percentile
from loa.core.text import one_line
from loa.core.zones import ZoneTree
from loa.playout.programme import EndReason

# bulletin classes by the priority they played at (see DESIGN.md's table)
CLASSES = (("emergency", 100), ("live", 70), ("priority", 60), ("normal", 50), ("fill", 10))
ALERT_TITLE_CHARS = 80  # as the alert's programme is named (loa.control.alerts.manager)


def bulletin_class(priority: int) -> str | None:
    for name, floor in CLASSES:
        if priority >= floor:
            return name
    return None


def _union_s(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def online_s(history: list[tuple[float, bool]], start: float, end: float) -> float:
    """Seconds online within [start, end) from (at, online) transitions, oldest first; before
    the first transition the endpoint counts as offline."""
    total, online, since = 0.0, False, start
    for at, state in history:
        if at >= end:
            break
        if at > start:
            if online:
                total += at - since
            since = at
        online = state
    if online:
        total += end - max(since, start)
    return total


def alert_words(record: Mapping[str, Any], media_titles: Mapping[str, str]) -> str | None:
    """What an alert said, from its stored record, as its programme was named
    (``AlertManager._title``, less its "Cảnh báo: "): its CAP headline or event, the start
    of its text, its library item's title (``media_titles``: by id) or its file's name;
    None for an alert of no words (live from a mount, the attention tone alone), which a
    report names by its ``content`` kind instead. One line, at most ``ALERT_TITLE_CHARS``
    characters."""
    cap = record.get("cap") or {}
    content = record.get("content") or {}
    kind = content.get("kind")
    what: Any = cap.get("headline") or cap.get("event") if isinstance(cap, dict) else None
    if not (isinstance(what, str) and what.strip()):
        if kind == "text":
            what = content.get("text")
        elif kind == "media" and "id" in content:
            what = media_titles.get(str(content["id"])) or content["id"]
        elif kind in ("file", "media", "cap_resource"):
            what = content.get("name") or PurePosixPath(str(content.get("path") or "")).name
        if not (isinstance(what, str) and what.strip()):
            what = record.get("fallback_text")
    if not (isinstance(what, str) and what.strip()):
        return None
    text = one_line(what)
    if len(text) > ALERT_TITLE_CHARS:
        text = text[:ALERT_TITLE_CHARS - 1].rstrip() + "…"
    return text


@dataclass(frozen=True, slots=True)
class ReportScope:
    """What a commune's report covers, copied from the zone tree and the registry on the
    event loop, so that the report can be computed in a worker thread while they change."""
    commune_id: str
    name: str
    admin_code: str | None
    zone_ids: tuple[str, ...]
    endpoints: tuple[EndpointInfo, ...]  # sorted by id


def report_scope(zones: ZoneTree, registry: EndpointRegistry, commune: str) -> ReportScope:
    """On the loop (cheap: one pass over the registry). Raises ZoneError."""
    root = zones.get(commune)
    eps = sorted(registry.in_zone(commune), key=lambda e: e.id)
    return ReportScope(root.id, root.name, root.admin_code,
                       tuple(z.id for z in zones.subtree(commune)),
                       tuple(e.info for e in eps))


def commune_report(store: Store, scope: ReportScope, start: float, end: float, now: float
                   ) -> dict[str, Any]:
    """The report for ``scope`` over [start, end). Blocking (it reads the store): run it in a
    worker thread. Raises ValueError for an empty period.

    Durations are given twice: in hours (``on_air_hours``, ``online_h``: 4 decimals, as the
    Circular's forms count) and in whole seconds (``on_air_seconds``, ``online_s``), so that
    a reader shows a 10 s alert as 0:00:10 rather than as 0.00 h. Each alert has its
    ``title`` (``alert_words``: what it said; None for a live or tone-only alert) and its
    ``content`` kind and ``mount`` (a live alert's)."""
    if end <= start:
        raise ValueError(N_("the period must end after it starts"))
    zone_ids = list(scope.zone_ids)
    end_eff = min(end, now)

    per_class: dict[str, list[tuple[float, float]]] = {c: [] for c, _ in CLASSES}
    per_zone: dict[str, dict[str, float]] = {z: dict.fromkeys(per_class, 0.0) for z in zone_ids}
    unclean = []
    for zone, kind, priority, _label, a, b, reason in store.broadcast_between(zone_ids, start,
                                                                             end):
        if reason == EndReason.UNCLEAN_STOP.value:
            unclean.append({"zone": zone, "kind": kind, "priority": priority,
                            "started_at": a, "last_seen_at": b})
        cls = bulletin_class(priority)
        a, b = max(a, start), min(b, end)
        if cls is None or b <= a:
            continue
        per_class[cls].append((a, b))
        per_zone[zone][cls] += b - a
    seconds = {c: _union_s(iv) for c, iv in per_class.items()}
    hours = {c: round(v / 3600, 4) for c, v in seconds.items()}
    total_s = _union_s([i for c, iv in per_class.items() if c != "fill" for i in iv])
    on_air_total = round(total_s / 3600, 4)

    eps = scope.endpoints
    histories = store.presence([e.id for e in eps], end_eff)
    availability = []
    up_total = span_total = 0.0
    for ep in eps:
        a = max(start, ep.created_at or start)
        span = max(0.0, end_eff - a)
        up = online_s(histories[ep.id], a, end_eff) if span else 0.0
        up_total += up
        span_total += span
        availability.append({"endpoint": ep.id, "name": ep.name, "zone": ep.zone_id,
                             "online_h": round(up / 3600, 4), "online_s": round(up),
                             "availability_pct": round(100 * up / span, 2) if span else None})

    ids = {e.id for e in eps}
    alerts = []
    media_titles: dict[str, str] | None = None  # read once, if an alert plays a library item
    for rec in store.load_alerts():
        at = float(rec.get("created_at") or 0)
        if not start <= at < end:
            continue
        targeted = [e for e in rec.get("targeted", []) if e in ids]
        hit_zones = [z for z in rec.get("zones", []) if z in zone_ids]
        if not targeted and not hit_zones and not rec.get("all"):
            continue
        reach = rec.get("reached_ms", {})
        times = [reach[e] for e in targeted if e in reach]
        content = rec.get("content") or {}
        if media_titles is None and content.get("kind") == "media" and "id" in content:
            media_titles = {str(m.get("id")): str(m.get("title") or m.get("filename") or "")
                            for m in store.list_media()}
        alerts.append({
            "id": rec["id"], "title": alert_words(rec, media_titles or {}),
            "content": content.get("kind"), "mount": content.get("mount"),
            "class": rec.get("class"), "status": rec.get("status"),
            "created_at": at, "targeted": len(targeted), "reached": len(times),
            "reach_pct": round(100 * len(times) / len(targeted), 2) if targeted else None,
            "reach_p50_ms": percentile(times, 50),
            "reach_max_ms": round(max(times), 3) if times else None,
        })
    return {
        "commune": {"id": scope.commune_id, "name": scope.name,
                    "admin_code": scope.admin_code},
        "period": {"start": start, "end": end,
                   "start_iso": datetime.fromtimestamp(start, STATION_TZ).isoformat(),
                   "end_iso": datetime.fromtimestamp(end, STATION_TZ).isoformat()},
        "on_air_hours": {"by_class": hours, "total_without_fill": on_air_total,
                         "by_zone": {z: {c: round(v / 3600, 4) for c, v in cl.items()}
                                     for z, cl in per_zone.items()}},
        "on_air_seconds": {"by_class": {c: round(v) for c, v in seconds.items()},
                           "total_without_fill": round(total_s),
                           "by_zone": {z: {c: round(v) for c, v in cl.items()}
                                       for z, cl in per_zone.items()}},
        "availability": {"endpoints": len(eps),
                         "pct": round(100 * up_total / span_total, 2) if span_total else None,
                         "per_endpoint": availability},
        # segments the server never closed: on air until last_seen_at, then it stopped
        # uncleanly (killed, crashed, power cut)
        "unclean_stops": unclean,
        "alerts": {"count": len(alerts),
                   "targeted": sum(a["targeted"] for a in alerts),
                   "reached": sum(a["reached"] for a in alerts), "list": alerts},
    }


def render_report(store: Store, scope: ReportScope, start: float, end: float, now: float
                  ) -> str:
    """The report as JSON text, ready to send (as files: ``loa.monitoring.report_files``).
    Blocking: for a worker thread."""
    return json.dumps(commune_report(store, scope, start, end, now), ensure_ascii=False)
