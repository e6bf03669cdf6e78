"""Alerts (bản tin): the class decides the priority, every targeted zone switches at its next
packet, and each endpoint's first alert packet is recorded as proof of reach.

Classes follow Circular 39: normal (bản tin thông thường), priority (bản tin ưu tiên),
emergency (bản tin khẩn cấp, level 100, above everything). Overlapping alerts queue as any
requests do: by priority, then by time. An alert is an attention tone, then its message (text
read aloud, an audio file, or a live mount), repeated with a gap; it expires at ``expires_at``.
An alert with an ``effective_at`` still ahead waits for it (PENDING) on the server's clock.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from loa.control.alerts.model import (
    END_REASON,
    FINAL,
    Alert,
    AlertClass,
    AlertError,
    AlertPhase,
    AlertSpec,
    AlertStatus,
)
from loa.control.endpoints import EndpointError, EndpointRegistry
from loa.control.fleet.control import FleetControl
from loa.control.programmes import ProgrammeFactory
from loa.control.store import Store
from loa.core.clock import NS_PER_S, STATION_TZ, Clock
from loa.core.content import (
    DEFAULT_VOICE,
    FILE_LIKE,
    CapResourceContent,
    ContentError,
    FileContent,
    LiveContent,
    MediaContent,
    TextContent,
    ToneContent,
    content_from_json,
)
from loa.core.counters import Counters
from loa.core.i18n import N_
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.core.text import one_line
from loa.core.zones import Zone, ZoneTree, alert_group_id, home_zone_id
from loa.playout.engine import Engine
from loa.playout.inputs.file import FileSource
from loa.playout.inputs.push import Mounts
from loa.playout.inputs.sequence import (
    PartFactory,
    Pending,
    SequenceSource,
    SilenceFor,
    TwoTone,
)
from loa.playout.programme import EndReason, FrameSource, Programme, ProgrammeKind
from loa.playout.zone_channel import Request

log = logging.getLogger(__name__)

EXPIRY_CHECK_NS = NS_PER_S


class AlertManager:
    """Owns the alerts: triggers them (from the API or CAP 1.2 messages), places their
    requests on the engine at the class's priority, prepares messages beside the loop, raises
    and restores volume, records reach, expires and cancels them, and persists each to the
    store. Times are ns on ``clock``; creation and expiry times are unix seconds from ``wall``."""

    def __init__(self, engine: Engine, zones: ZoneTree, endpoints: EndpointRegistry,
                 mounts: Mounts, store: Store, programmes: ProgrammeFactory, clock: Clock,
                 counters: Counters, *, tone_s: float = 2.0, gap_s: float = 2.0,
                 wall: Callable[[], float] = time.time,
                 fleet: FleetControl | None = None) -> None:
        self.engine = engine
        self.zones = zones
        self.endpoints = endpoints
        self.mounts = mounts
        self.store = store
        self.programmes = programmes  # content -> its message file and parts
        self.clock = clock
        self.counters = counters
        self.tone_s = tone_s
        self.gap_s = gap_s
        self.wall = wall
        self.alerts: dict[str, Alert] = {}
        self.fleet = fleet  # volume commands over MQTT
        self._expiry_task: asyncio.Task[None] | None = None

    # lifecycle

    def start(self) -> None:
        """Start the once-a-second expiry task."""
        self._expiry_task = asyncio.create_task(self._expire_loop(), name="alert-expiry")

    async def stop(self) -> None:
        """Stop the expiry task, the waits for effective times and any message still being
        prepared (alerts stay as stored)."""
        await cancel_and_wait(self._expiry_task)
        self._expiry_task = None
        for alert in self.alerts.values():
            await cancel_and_wait(alert.waiting)
            await cancel_and_wait(alert.preparing)

    async def resume(self) -> list[Alert]:
        """Alerts that were active when the server stopped play again, unless expired; one
        still waiting for its effective time waits again."""
        resumed = []
        for rec in self.store.load_alerts((AlertStatus.PENDING.value, AlertStatus.ACTIVE.value)):
            try:
                content = content_from_json(rec["content"])
            except ContentError:
                content = ToneContent()  # unreadable: the attention tone alone
            spec = AlertSpec(AlertClass(rec["class"]), rec["zones"], rec["all"], content,
                             rec["tone"], rec["repeat"], rec["gap_s"], rec["expires_at"],
                             rec["source"], rec.get("cap"), rec.get("endpoints", []),
                             effective_at=rec.get("effective_at"),
                             fallback_text=rec.get("fallback_text"))
            alert = Alert(rec["id"], spec, rec["triggered_by"], rec["created_at"],
                          history=rec.get("history", []))
            self.alerts[alert.id] = alert
            if spec.expires_at is not None and spec.expires_at <= self.wall():
                self._set_status(alert, AlertStatus.EXPIRED, "expired while the server was down")
                continue
            try:
                await self._start(alert, note="resumed after a restart")
                resumed.append(alert)
            except AlertError as exc:
                self._set_status(alert, AlertStatus.CANCELLED, f"could not resume: {exc}")
        return resumed

    # operations

    async def trigger(self, spec: AlertSpec, actor: str, received_ns: int | None = None, *,
                      warnings: Sequence[str] = ()) -> Alert:
        """Put an alert on air: its attention tone starts on every targeted zone at the next
        tick; its message (text read aloud, a file, a CAP resource) is prepared beside the loop
        and follows the tone as soon as it is ready. An ``effective_at`` still ahead makes it
        wait (PENDING) until then. ``warnings`` (what was already passed over) start its
        warnings and history. Raises ``AlertError`` for a bad spec."""
        alert = Alert(secrets.token_hex(6), spec, actor, self.wall(), warnings=list(warnings))
        alert.received_ns = received_ns or self.clock.now_ns()
        alert.history += [{"at": alert.created_at, "status": alert.status.value, "note": w}
                          for w in warnings]
        self.alerts[alert.id] = alert
        self.store.audit(actor, "alert.trigger", alert.id, spec.to_json(),
                         zones=self._touched(alert))
        try:
            await self._start(alert, note=f"triggered by {actor}")
        except AlertError:
            del self.alerts[alert.id]
            raise
        return alert

    def cancel(self, alert_id: str, actor: str) -> Alert:
        """Cancel an alert (audited); a finished one is returned unchanged. KeyError if unknown."""
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise KeyError(alert_id)
        if alert.status not in FINAL:
            self.store.audit(actor, "alert.cancel", alert.id, zones=self._touched(alert))
            self._finish(alert, AlertStatus.CANCELLED, f"cancelled by {actor}")
        return alert

    async def _start(self, alert: Alert, note: str) -> None:
        """On air now; or, its effective time still ahead, checked now (zones, content) and
        PENDING until then, on a task of its own that sleeps on the server's clock."""
        effective = alert.spec.effective_at
        if effective is None or effective <= self.wall():
            await self._activate(alert, note)
            return
        self._target_zones(alert.spec)
        self._check_content(alert.spec)
        when = datetime.fromtimestamp(effective, STATION_TZ).isoformat()
        self._set_status(alert, AlertStatus.PENDING, f"{note}; waits until it takes effect "
                                                     f"at {when}")
        alert.waiting = asyncio.create_task(self._when_effective(alert),
                                            name=f"alert-{alert.id}-effective")

    async def _when_effective(self, alert: Alert) -> None:
        """Sleep on the clock until the alert's effective time (in steps of at most a
        second, so a corrected wall clock is followed), then put it on air."""
        effective = alert.spec.effective_at
        assert effective is not None
        while (left_s := effective - self.wall()) > 0:
            step_ns = max(1, min(int(left_s * NS_PER_S), EXPIRY_CHECK_NS))
            await self.clock.sleep_until(self.clock.now_ns() + step_ns)
        alert.received_ns = self.clock.now_ns()  # its reach is timed from here
        try:
            await self._activate(alert, note="took effect")
        except AlertError as exc:
            self._set_status(alert, AlertStatus.CANCELLED, f"could not start: {exc}")

    def on_played(self, endpoint_id: str, programme_id: int, now_ns: int) -> None:
        """An endpoint reports it started playing ``programme_id`` at ``now_ns``: kept, in ms
        from activation, for the alert carrying that programme (the first report counts)."""
        for alert in self.alerts.values():
            if alert.programme is not None and alert.programme.id == programme_id:
                alert.played_ms.setdefault(endpoint_id, (now_ns - alert.activated_ns) / 1e6)

    async def get(self, alert_id: str) -> Alert | dict[str, Any] | None:
        """A live alert, or the record of an older one (read on the store's thread)."""
        return self.alerts.get(alert_id) or await self.store.get_alert_async(alert_id)

    # internals

    def _title(self, spec: AlertSpec, limit: int = 80) -> str:
        """What the alert is called wherever its programme shows (the console, the broadcast
        log, the status): its CAP headline, the start of its text, its file's or library
        item's title, or its live mount; never an id alone."""
        headline = (spec.cap or {}).get("headline") or (spec.cap or {}).get("event")
        content = spec.content
        if isinstance(headline, str) and headline.strip():
            what = headline
        elif isinstance(content, TextContent):
            what = content.text
        elif isinstance(content, MediaContent):
            item = self.programmes.media.get(content.id)
            what = item.title if item is not None else content.id
        elif isinstance(content, FileContent):
            what = content.name or Path(content.path).name
        elif isinstance(content, LiveContent):
            what = f"trực tiếp từ {content.mount}"
        else:
            what = content.kind.value
        what = one_line(what)
        if len(what) > limit:
            what = what[:limit - 1].rstrip() + "…"
        return f"Cảnh báo: {what}"

    def _touched(self, alert: Alert) -> list[str]:
        """The zones an alert plays on, for its audit entries (the audit log of each of them
        lists it): its zones (the roots for every zone) and its single endpoints' home
        zones."""
        spec = alert.spec
        zones = [z.id for z in self.zones.roots()] if spec.all_zones else list(spec.zones)
        registry = self.endpoints.endpoints
        zones += [registry[e].zone_id for e in spec.endpoints if e in registry]
        return list(dict.fromkeys(home_zone_id(z) for z in zones))

    def _target_zones(self, spec: AlertSpec) -> list[str]:
        if spec.all_zones:
            return [z.id for z in self.zones.roots()]
        for z in spec.zones:
            if z not in self.zones:
                raise AlertError(N_("unknown zone {zone!r}"), zone=z)
        return list(dict.fromkeys(spec.zones))

    async def _activate(self, alert: Alert, note: str) -> None:
        spec = alert.spec
        try:  # a file is looked for now (a stat, beside the loop): a wrong name fails at once
            spec.content = await self.programmes.resolve(spec.content)
        except ContentError as exc:
            raise AlertError(exc.message) from None
        zone_ids = self._target_zones(spec)
        covered = {z.id for zid in zone_ids for z in self.zones.subtree(zid)}
        singles = []
        for eid in dict.fromkeys(spec.endpoints):
            try:
                ep = self.endpoints.get(eid)
            except EndpointError:
                raise AlertError(N_("unknown endpoint {endpoint!r}"), endpoint=eid) from None
            if ep.zone_id not in covered:
                singles.append(ep)
        alert.targeted = sorted({e.id for e in self.endpoints.endpoints.values()
                                 if e.zone_id in covered} | {e.id for e in singles})
        parts = self._parts(alert)
        zone_ids += self._group_endpoints(alert, singles)
        alert.zone_ids = zone_ids
        programme = Programme(self._title(spec), ProgrammeKind.ALERT, SequenceSource(parts))
        programme.reach = {}
        if self._has_message(spec):
            programme.message_reach = {}
        alert.programme = programme
        alert.activated_ns = self.clock.now_ns()
        ended = functools.partial(self._request_ended, alert)
        for zid in zone_ids:
            req = self.engine.request(zid, programme, alert.priority, label=f"alert/{alert.id}")
            req.on_end.append(ended)
            alert.requests.append(req)
        self._volume(alert, raise_it=True)
        self.counters.inc("alerts_triggered", cls=spec.cls.value)
        self._set_status(alert, AlertStatus.ACTIVE, note)
        if self._has_message(spec):
            alert.preparing = asyncio.create_task(self._prepare(alert),
                                                  name=f"alert-{alert.id}-message")

    def _group_endpoints(self, alert: Alert, singles: list[Any]) -> list[str]:
        """Endpoints targeted one by one move, with their open connections, into a zone of
        their own under their home zone for the alert's length; they move back after."""
        groups: dict[str, list[Any]] = {}
        for ep in singles:
            groups.setdefault(ep.zone_id, []).append(ep)
        out = []
        for home_id, eps in groups.items():
            home = self.zones.get(home_id)
            gid = alert_group_id(home_id, alert.id)
            self.zones.add_child(Zone(gid, f"{home.name} (cảnh báo {alert.id})", home_id,
                                      volume_pct=home.volume_pct,
                                      alert_volume_pct=home.alert_volume_pct))
            self.engine.add_channel(self.zones.get(gid))
            for ep in eps:
                alert.moved[ep.id] = home_id
                self.endpoints.move(ep.id, gid)
            out.append(gid)
        return out

    def _ungroup_endpoints(self, alert: Alert) -> None:
        for eid, home_id in alert.moved.items():
            ep = self.endpoints.endpoints.get(eid)
            if ep is not None and ep.zone_id == alert_group_id(home_id, alert.id):
                self.endpoints.move(eid, home_id)
        for gid in {alert_group_id(home, alert.id) for home in alert.moved.values()}:
            if gid in self.zones:
                self.engine.remove_channel(gid)
                self.zones.remove_leaf(gid)
        alert.moved.clear()

    @staticmethod
    def _has_message(spec: AlertSpec) -> bool:
        return spec.content.kind in FILE_LIKE

    def _check_content(self, spec: AlertSpec) -> None:
        """What can be judged at once, without I/O: raises ``AlertError``."""
        try:
            self.programmes.check(spec.content)
        except ContentError as exc:
            raise AlertError(exc.message) from None

    def _parts(self, alert: Alert) -> list[PartFactory]:
        """Tone, message, gap, tone, message …: the message parts wait (in silence) for the
        message while it is being prepared."""
        spec = alert.spec
        self._check_content(spec)
        tone: list[PartFactory] = [lambda: TwoTone(self.tone_s)] if spec.tone else []
        if not self._has_message(spec):
            return tone or [lambda: SilenceFor(1)]
        message: PartFactory = functools.partial(self._message_part, alert)
        gap_frames = int(spec.gap_s * SAMPLE_RATE / FRAME_SAMPLES)
        parts: list[PartFactory] = []
        for i in range(spec.repeat):
            if i:
                parts.append(lambda: SilenceFor(gap_frames))
            parts += tone + [message]
        return parts

    def _message_part(self, alert: Alert) -> FrameSource:
        pending = Pending(functools.partial(self._message_on_air, alert))
        if alert.message is not None:
            pending.resolve(self._file_part(alert, alert.message))
        elif alert.message_failed:
            pending.fail()
        else:
            alert.pending.append(pending)
        return pending

    def _message_on_air(self, alert: Alert, now_ns: int) -> None:
        prog = alert.programme
        if prog is not None and not prog.message_started_ns:
            prog.message_started_ns = now_ns  # the first repeat's, kept

    def _file_part(self, alert: Alert, path: Path) -> FileSource:
        return self.programmes.file_source(path, alert.spec.content)

    async def _prepare(self, alert: Alert) -> None:
        """Make the message ready (synthesis, download, a decode check) beside the loop, then
        hand it to the message parts waiting for it. A message that cannot be made (a disk
        with no room for the text read aloud or the resource included) falls back to the
        alert's text read aloud if it has one, else leaves the tone alone, with the reason in
        the alert's warnings. (The alert's records never fail it: the store holds what the
        disk refuses.)"""
        content = alert.spec.content
        try:
            path = await self.programmes.audio_file(content)
        except (ContentError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            fallback = None if isinstance(content, TextContent) else (
                content.fallback_text if isinstance(content, CapResourceContent) else None
            ) or alert.spec.fallback_text
            if fallback:
                why = f"{exc}; the alert's text is read aloud instead"
                alert.warnings.append(why)  # in the history too, saved once the text is ready
                alert.history.append({"at": self.wall(), "status": alert.status.value,
                                      "note": why})
                alert.spec.content = TextContent(" ".join(fallback.split()), DEFAULT_VOICE)
                await self._prepare(alert)
                return
            alert.warnings.append(f"{exc}; only the attention tone plays")
            log.error("alert %s: its message cannot play: %s", alert.id, exc)
            alert.message_failed = True
            for pending in alert.pending:
                pending.fail()
            alert.pending.clear()
            self._note(alert, f"message failed: {exc}")
            return
        alert.message = path
        for pending in alert.pending:
            pending.resolve(self._file_part(alert, path))
        alert.pending.clear()
        self._note(alert, f"message ready after "
                          f"{(self.clock.now_ns() - alert.received_ns) / 1e6:.0f} ms")

    def _note(self, alert: Alert, note: str) -> None:
        """A line in the alert's history, kept with its record (written beside the loop)."""
        alert.history.append({"at": self.wall(), "status": alert.status.value, "note": note})
        self.store.save_alert(alert.id, alert.status.value, alert.record())

    def _request_ended(self, alert: Alert, req: Request, why: EndReason) -> None:
        if alert.status in FINAL:
            return
        content = alert.spec.content
        if why is EndReason.COMPLETED and isinstance(content, LiveContent) \
                and alert.phase is AlertPhase.MESSAGE:
            # the tone has played: now the live mount, at the alert's priority, until cancelled
            alert.phase = AlertPhase.LIVE
            mount = self.mounts.get(content.mount)
            self.engine.request(req.zone_id, mount.programme, alert.priority,
                                label=f"alert/{alert.id}")
            alert.history.append({"at": self.wall(), "status": AlertStatus.ACTIVE.value,
                                  "note": f"live from /live/{mount.name} on {req.zone_id}"})
            return
        if why is EndReason.COMPLETED and not any(
                r.id in self.engine.requests for r in alert.requests):
            self._finish(alert, AlertStatus.COMPLETED, "played in full")

    def _finish(self, alert: Alert, status: AlertStatus, note: str) -> None:
        alert.reach_ms()  # keep the proof before the programme goes
        alert.message_reach_ms()
        if alert.preparing is not None:
            alert.preparing.cancel()  # stop() awaits it
        if alert.waiting is not None and alert.waiting is not asyncio.current_task():
            alert.waiting.cancel()  # stop() awaits it
        for req in list(self.engine.requests.values()):
            if req.label == f"alert/{alert.id}":
                self.engine.release(req.id, reason=END_REASON[status])
        self._volume(alert, raise_it=False)
        self._ungroup_endpoints(alert)
        self._set_status(alert, status, note)

    def _set_status(self, alert: Alert, status: AlertStatus, note: str) -> None:
        alert.status = status
        alert.history.append({"at": self.wall(), "status": status.value, "note": note})
        self.store.save_alert(alert.id, status.value, alert.record())
        self.store.audit("loa", f"alert.{status.value}", alert.id, {"note": note},
                         zones=self._touched(alert))
        log.info("alert %s %s: %s", alert.id, status.value, note)

    def _volume(self, alert: Alert, raise_it: bool) -> None:
        """Tell the endpoints of the targeted zones to raise their volume (and unmute), then
        restore it: over MQTT, and as a control message on the native protocol for streams."""
        if self.fleet is not None:
            self.fleet.alert_volume([z for z in alert.zone_ids if z in self.zones], alert.id,
                                    raise_it,
                                    lambda zid: self._other_alert_covers(alert, zid))
        for zid in alert.zone_ids:
            if zid not in self.zones:
                continue
            for zone in self.zones.subtree(zid):
                if not raise_it and self._other_alert_covers(alert, zone.id):
                    continue
                pct = zone.alert_volume_pct if raise_it else zone.volume_pct
                self.engine.channels[zone.id].control(json.dumps(
                    {"type": "volume", "volume_pct": pct, "alert": alert.id,
                     "reason": "alert" if raise_it else "alert-ended"}))

    def zone_alerting(self, zone_id: str) -> bool:
        """An active alert covers this zone (the fleet re-raises a returning endpoint)."""
        return self._other_alert_covers(None, zone_id)

    def _other_alert_covers(self, alert: Alert | None, zone_id: str) -> bool:
        for other in self.alerts.values():
            if other is alert or other.status is not AlertStatus.ACTIVE:
                continue
            zones = [z for z in other.zone_ids if z in self.zones]
            if any(zone_id in {z.id for z in self.zones.subtree(zid)} for zid in zones):
                return True
        return False

    async def _expire_loop(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now_ns() + EXPIRY_CHECK_NS)
            now = self.wall()
            for alert in list(self.alerts.values()):
                exp = alert.spec.expires_at
                if alert.status not in FINAL and exp is not None and exp <= now:
                    self._finish(alert, AlertStatus.EXPIRED, "expired")
