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
import enum
import functools
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from loa.control.endpoints import EndpointError, EndpointRegistry
from loa.control.fleet.control import FleetControl
from loa.control.programmes import ProgrammeFactory, save_resource
from loa.control.store import Store
from loa.core.clock import NS_PER_S, STATION_TZ, Clock
from loa.core.content import (
    ALERT_KINDS,
    DEFAULT_VOICE,
    FILE_LIKE,
    CapResourceContent,
    ContentError,
    ContentSpec,
    FileContent,
    LiveContent,
    TextContent,
    ToneContent,
    content_from_json,
    parse_content,
)
from loa.core.counters import Counters
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.core.priority import Priority
from loa.core.zones import Zone, ZoneTree, alert_group_id
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
from loa.protocol.cap import (
    CapError,
    CapInfo,
    CapMessage,
    CapMsgType,
    CapScope,
    CapStatus,
    in_circle,
    in_polygon,
)
from loa.protocol.cap import alert_class as cap_alert_class
from loa.protocol.cap import describe as cap_describe
from loa.protocol.cap import spoken_text as cap_spoken_text

log = logging.getLogger(__name__)

MAX_REPEAT = 10
MAX_GAP_S = 60.0
SLOWEST_SHOWN = 10
EXPIRY_CHECK_NS = NS_PER_S


class AlertClass(enum.Enum):
    """The alert classes of Circular 39/2020/TT-BTTTT: normal (thông thường), priority (ưu
    tiên), emergency (khẩn cấp); ``CLASS_PRIORITY`` maps each to its request priority."""

    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"


CLASS_PRIORITY = {
    AlertClass.NORMAL: int(Priority.SCHEDULED),
    AlertClass.PRIORITY: int(Priority.PRIORITY_BULLETIN),
    AlertClass.EMERGENCY: int(Priority.EMERGENCY),
}


class AlertStatus(enum.Enum):
    """An alert's life: PENDING, ACTIVE, then one final status (``FINAL``)."""

    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


FINAL = {AlertStatus.COMPLETED, AlertStatus.CANCELLED, AlertStatus.EXPIRED}
# a final status is also why the alert's requests end (the broadcast log's reason)
END_REASON = {AlertStatus.COMPLETED: EndReason.COMPLETED,
              AlertStatus.CANCELLED: EndReason.CANCELLED,
              AlertStatus.EXPIRED: EndReason.EXPIRED}


class AlertPhase(enum.Enum):
    """What an alert's requests play: its tone and message, then (a mount alert) the live
    mount until cancelled."""

    MESSAGE = "message"
    LIVE = "live"


class AlertError(ValueError):
    """A bad alert: the message says what to fix."""


@dataclass
class AlertSpec:
    """What to broadcast, where and how: the class, target zones (or ``all_zones``) and
    single endpoints, the content (``ALERT_KINDS``, or a CAP resource), the attention tone,
    ``repeat`` (1-10 times) with ``gap_s`` seconds between; expiry and the time it takes
    effect (it waits until then) as unix time; ``fallback_text``, read aloud when the
    message's audio cannot be had (a CAP alert's text)."""

    cls: AlertClass
    zones: list[str]
    all_zones: bool
    content: ContentSpec
    tone: bool = True
    repeat: int = 1
    gap_s: float = 2.0
    expires_at: float | None = None  # unix time
    source: str = "api"
    cap: dict[str, Any] | None = None  # sender, identifier, … when it came as CAP
    endpoints: list[str] = field(default_factory=list)  # single endpoints, beside the zones
    effective_at: float | None = None  # unix time; None: at once
    fallback_text: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec as stored and shown (``class``, ``all`` as the API names them)."""
        return {"class": self.cls.value, "zones": self.zones, "all": self.all_zones,
                "endpoints": self.endpoints,
                "content": self.content.to_json(), "tone": self.tone, "repeat": self.repeat,
                "gap_s": self.gap_s, "expires_at": self.expires_at,
                "effective_at": self.effective_at, "source": self.source, "cap": self.cap,
                "fallback_text": self.fallback_text}


def _is_number(value: object) -> bool:
    """A finite JSON number (not a bool, not NaN or infinity, which Python's JSON accepts)."""
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def parse_spec(body: dict[str, Any], *, default_gap_s: float, now: float) -> AlertSpec:
    """Check an API body and build its spec. ``now`` is unix time (``expires_in_s`` is
    relative to it); an absent class means emergency. Raises AlertError saying what to fix."""
    try:
        cls = AlertClass(str(body.get("class", "emergency")).lower())
    except ValueError:
        raise AlertError('class must be "normal", "priority" or "emergency"') from None
    zones = body.get("zones") or []
    if isinstance(zones, str):
        zones = [z for z in zones.split(",") if z]
    all_zones = bool(body.get("all", False))
    if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
        raise AlertError('"zones" must be a list of zone ids')
    endpoints = body.get("endpoints") or []
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
        raise AlertError('"endpoints" must be a list of endpoint ids')
    if not zones and not all_zones and not endpoints:
        raise AlertError('say where: "zones": [...], "endpoints": [...] or "all": true')
    try:
        content = parse_content(body.get("content") or {"kind": "tone"}, ALERT_KINDS)
    except ContentError as exc:
        raise AlertError(str(exc)) from None
    repeat = body.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise AlertError(f"repeat must be an integer from 1 to {MAX_REPEAT}")
    gap_s = body.get("gap_s", default_gap_s)
    if not _is_number(gap_s) or not 0 <= gap_s <= MAX_GAP_S:
        raise AlertError(f"gap_s must be from 0 to {MAX_GAP_S:g} seconds")
    expires_at = body.get("expires_at")
    if body.get("expires_in_s") is not None:
        if not _is_number(body["expires_in_s"]):
            raise AlertError("expires_in_s must be a number of seconds")
        expires_at = now + float(body["expires_in_s"])
    if expires_at is not None and (not _is_number(expires_at) or expires_at <= now):
        raise AlertError("expires_at must be a unix time in the future")
    return AlertSpec(cls, zones, all_zones, content, bool(body.get("tone", True)), repeat,
                     float(gap_s), expires_at, endpoints=endpoints)


@dataclass(eq=False)
class Alert:
    """One triggered alert: its spec, status and history, the programme and requests
    that carry it, and proof of reach per endpoint (ms from activation; ns on the injected
    clock for the raw timestamps)."""

    id: str
    spec: AlertSpec
    triggered_by: str
    created_at: float
    status: AlertStatus = AlertStatus.PENDING
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    targeted: list[str] = field(default_factory=list)  # endpoint ids in the targeted zones
    activated_ns: int = 0
    programme: Programme | None = None
    requests: list[Request] = field(default_factory=list)
    reached_ms: dict[str, float] = field(default_factory=dict)  # kept after the programme ends
    message_reached_ms: dict[str, float] = field(default_factory=dict)  # the same, the message
    played_ms: dict[str, float] = field(default_factory=dict)
    phase: AlertPhase = AlertPhase.MESSAGE
    zone_ids: list[str] = field(default_factory=list)  # where its requests are, groups included
    moved: dict[str, str] = field(default_factory=dict)  # endpoint -> its home zone
    received_ns: int = 0  # when the trigger arrived (Clock ns): reach is measured from here
    message: Path | None = None  # the message's audio, once prepared
    message_failed: bool = False
    pending: list[Pending] = field(default_factory=list)  # message parts waiting for it
    preparing: asyncio.Task[None] | None = None
    waiting: asyncio.Task[None] | None = None  # for its effective time

    @property
    def priority(self) -> int:
        return CLASS_PRIORITY[self.spec.cls]

    def reach_ms(self) -> dict[str, float]:
        """Per endpoint: activation to the first alert packet (the tone) on its socket."""
        reach = self.programme.reach if self.programme is not None else None
        if reach is not None:
            for eid, ns in reach.items():
                self.reached_ms.setdefault(eid, (ns - self.activated_ns) / 1e6)
        return self.reached_ms

    def message_reach_ms(self) -> dict[str, float]:
        """Per endpoint: activation to the message's first packet on its socket."""
        reach = self.programme.message_reach if self.programme is not None else None
        if reach is not None:
            for eid, ns in reach.items():
                self.message_reached_ms.setdefault(eid, (ns - self.activated_ns) / 1e6)
        return self.message_reached_ms

    async def message_ready(self) -> None:
        """Wait until the message is prepared (or has failed); at once if there is none."""
        if self.preparing is not None:
            await asyncio.shield(self.preparing)

    def timing_ms(self) -> dict[str, float | None]:
        """From the trigger's arrival at the API (ms): ``activated`` (its requests placed),
        ``tone_on_air`` and ``message_on_air`` (the tick that first played each, whoever
        listens), ``tone_first`` and ``message_first`` (the first packet of each written to an
        endpoint's socket; None while no endpoint has had one)."""
        prog = self.programme
        base = self.received_ns or self.activated_ns

        def ms(ns: int | None) -> float | None:
            return round((ns - base) / 1e6, 3) if ns else None

        return {
            "activated": ms(self.activated_ns),
            "tone_on_air": ms(prog.first_pulled_ns if prog is not None else None),
            "message_on_air": ms(prog.message_started_ns if prog is not None else None),
            "tone_first": ms(min((prog.reach or {}).values(), default=None)
                             if prog is not None else None),
            "message_first": ms(min((prog.message_reach or {}).values(), default=None)
                                if prog is not None else None),
        }

    def reach_from_call_ms(self) -> dict[str, dict[str, float]]:
        """Per endpoint, from the trigger's arrival at the API: the first tone packet and the
        message's first packet on its socket (ms)."""
        shift = (self.activated_ns - (self.received_ns or self.activated_ns)) / 1e6
        return {"tone": {e: round(ms + shift, 3) for e, ms in self.reach_ms().items()},
                "message": {e: round(ms + shift, 3)
                            for e, ms in self.message_reach_ms().items()}}

    def describe(self, full: bool = False) -> dict[str, Any]:
        """JSON view with reach counts and timing; ``full`` adds the slowest endpoints (up to
        10), the first 100 not reached, and the history."""
        reach = self.reach_ms()
        reached = [e for e in self.targeted if e in reach]
        missing = [e for e in self.targeted if e not in reach]
        out: dict[str, Any] = {
            "id": self.id, "status": self.status.value, **self.spec.to_json(),
            "priority": self.priority, "triggered_by": self.triggered_by,
            "created_at": self.created_at,
            "reach": {"targeted": len(self.targeted), "reached": len(reached),
                      "not_reached": len(missing), "played": len(self.played_ms),
                      "message_reached": len(self.message_reach_ms())},
            "warnings": self.warnings,
            "timing_ms": self.timing_ms(),
        }
        if full:
            slowest = sorted(reached, key=lambda e: reach[e], reverse=True)[:SLOWEST_SHOWN]
            out["reach"]["slowest"] = [{"endpoint": e, "written_ms": round(reach[e], 3),
                                        "played_ms": self.played_ms.get(e)} for e in slowest]
            out["reach"]["not_reached_endpoints"] = missing[:100]
            out["history"] = self.history
        return out

    def record(self) -> dict[str, Any]:
        """What the store keeps: the full description plus reach and play times per endpoint."""
        d = self.describe(full=True)
        d["targeted"] = self.targeted
        d["reached_ms"] = self.reach_ms()
        d["message_reached_ms"] = self.message_reach_ms()
        d["played_ms"] = self.played_ms
        return d


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
        """Load the CAP identifiers already seen (a blocking read, at start-up) and start the
        once-a-second expiry task."""
        self._cap_seen()  # read the CAP messages already seen now, at start-up (it blocks)
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
        self.store.audit(actor, "alert.trigger", alert.id, spec.to_json())
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
            self.store.audit(actor, "alert.cancel", alert.id)
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

    # CAP 1.2

    async def handle_cap(self, msg: CapMessage, actor: str, *, test_zone: str | None,
                         upload_dir: Path, received_ns: int | None = None
                         ) -> tuple[int, dict[str, Any]]:
        """Act on a parsed CAP message. Returns (HTTP status, body): 201 on air, 202
        ``scheduled`` (its <effective> time ahead) or ``logged``, 200 a duplicate or a Cancel,
        422 valid CAP that cannot be placed (``error`` says why). An Update or Cancel first
        ends the alerts of the messages it references, whatever then becomes of it (an
        Update's ``superseded``); what breaks CAP 1.2 in it is listed in ``nonconforming``
        (and in the alert's warnings)."""
        subject = f"cap:{msg.sender}:{msg.identifier}"
        seen = self._cap_seen().get(msg.key)
        if seen is not None:
            return 200, {"result": "duplicate", "alert": seen}
        self.store.audit(actor, "cap.received", subject, cap_describe(msg))
        superseded = self._supersede(msg, actor)
        if msg.msg_type is CapMsgType.CANCEL:
            self._remember(msg, "cancel")
            status, body = 200, {"result": "cancelled", "alerts": superseded}
        else:
            try:
                status, body = await self._play_cap(msg, actor, test_zone, upload_dir,
                                                    received_ns)
            except AlertError as exc:  # no <info>, no zone in its area, …
                status, body = 422, {"error": str(exc)}
            if msg.msg_type is CapMsgType.UPDATE:
                body["superseded"] = superseded
        if msg.nonconforming:
            body["nonconforming"] = msg.nonconforming
        return status, body

    def _supersede(self, msg: CapMessage, actor: str) -> list[str]:
        """An Update or Cancel ends the live alerts of the messages it references (CAP 1.2
        §3.2.1 <msgType>): their ids."""
        if msg.msg_type not in (CapMsgType.UPDATE, CapMsgType.CANCEL):
            return []
        ended = [a.id for a in self._cap_alerts(set(msg.references))]
        for aid in ended:
            self.cancel(aid, f"{actor} (CAP {msg.msg_type.value} {msg.identifier})")
        return ended

    async def _play_cap(self, msg: CapMessage, actor: str, test_zone: str | None,
                        upload_dir: Path, received_ns: int | None
                        ) -> tuple[int, dict[str, Any]]:
        """An Alert or Update put on air (or scheduled, or logged). Raises AlertError when
        it cannot be placed."""
        if msg.msg_type not in (CapMsgType.ALERT, CapMsgType.UPDATE):
            self._remember(msg, "logged")
            return 202, {"result": "logged",
                         "reason": f"msgType {msg.msg_type.value} plays nothing"}
        info = msg.info()
        if info is None:
            raise AlertError("CAP alert has no <info> block")
        endpoints: list[str] = []
        if msg.status is CapStatus.ACTUAL and msg.scope is CapScope.PUBLIC:
            zones, endpoints = self._cap_targets(info)
            if not zones and not endpoints:
                raise AlertError("no zone or endpoint lies in the alert's area")
        elif msg.status in (CapStatus.EXERCISE, CapStatus.TEST) and test_zone:
            zones = [test_zone]
        else:
            self._remember(msg, "logged")
            return 202, {"result": "logged",
                         "reason": f"status {msg.status.value}, scope {msg.scope.value}: "
                                   "log only"}
        expires_at = info.expires.timestamp() if info.expires else None
        effective_at = info.effective.timestamp() if info.effective else None
        if expires_at is not None and expires_at <= self.wall():
            self._remember(msg, "logged")
            return 202, {"result": "logged", "reason": "already expired"}
        if expires_at is not None and effective_at is not None and effective_at >= expires_at:
            self._remember(msg, "logged")
            return 202, {"result": "logged", "reason": "it expires before it takes effect"}
        content, warnings = await self._cap_content(info, upload_dir)
        text = " ".join(cap_spoken_text(info).split())
        spec = AlertSpec(AlertClass(cap_alert_class(info)), zones, False, content, True, 1,
                         self.gap_s, expires_at, source="cap",
                         cap={**cap_describe(msg), "event": info.event}, endpoints=endpoints,
                         effective_at=effective_at, fallback_text=text or None)
        notes = [f"non-conforming CAP: {n}" for n in msg.nonconforming] + warnings
        alert = await self.trigger(spec, actor, received_ns, warnings=notes)
        self._cap_seen()[msg.key] = alert.id
        if alert.status is AlertStatus.PENDING:
            return 202, {"result": "scheduled", "alert": alert.describe(full=True),
                         "errors": alert.warnings}
        return 201, {"result": "playing", "alert": alert.describe(full=True),
                     "errors": alert.warnings}

    def _cap_seen(self) -> dict[tuple[str, str], str]:
        seen = getattr(self, "_seen", None)
        if seen is None:
            seen = {}
            for rec in self.store.load_alerts():
                cap = rec.get("cap")
                if cap:
                    seen[(cap["sender"], cap["identifier"])] = rec["id"]
            self._seen: dict[tuple[str, str], str] = seen
        return seen

    def _remember(self, msg: CapMessage, what: str) -> None:
        self._cap_seen()[msg.key] = what

    def _cap_alerts(self, refs: set[tuple[str, str]]) -> list[Alert]:
        return [a for a in self.alerts.values() if a.spec.cap and a.status not in FINAL
                and (a.spec.cap["sender"], a.spec.cap["identifier"]) in refs]

    def _cap_targets(self, info: CapInfo) -> tuple[list[str], list[str]]:
        """Zones whose administrative-unit code is a geocode of the area; and the endpoints
        whose coordinates lie inside its polygons and circles."""
        codes = {value for area in info.areas for _, value in area.geocodes}
        found = {z.id for z in self.zones if z.admin_code and z.admin_code in codes}
        inside = []
        for ep in self.endpoints.endpoints.values():
            if ep.lat is None or ep.lon is None:
                continue
            for area in info.areas:
                if any(in_polygon(ep.lat, ep.lon, p) for p in area.polygons) or any(
                        in_circle(ep.lat, ep.lon, c) for c in area.circles):
                    inside.append(ep.id)
                    break
        return self._outermost(found), sorted(inside)

    def _outermost(self, found: set[str]) -> list[str]:
        # a zone whose ancestor is also targeted adds nothing
        out = []
        for zid in found:
            parent = self.zones.get(zid).parent_id
            covered = False
            while parent is not None:
                if parent in found:
                    covered = True
                    break
                parent = self.zones.get(parent).parent_id
            if not covered:
                out.append(zid)
        return sorted(out)

    async def _cap_content(self, info: CapInfo, upload_dir: Path
                           ) -> tuple[ContentSpec, list[str]]:
        """The message of a CAP alert, and why audio resources were passed over: its first
        usable audio resource (inline data checked against its digest and saved now, else
        its URI, fetched while the tone plays), else its text read aloud, else the tone
        alone. A <resource> is optional: one that cannot be used (not base64, a wrong
        digest, a disk that refuses it) never refuses the alert."""
        text = " ".join(cap_spoken_text(info).split())
        warnings: list[str] = []
        for res in info.resources:
            if not res.mime_type.startswith("audio/"):
                continue
            name = res.description or "CAP audio"
            if res.deref is not None:
                try:
                    path = await asyncio.to_thread(save_resource, upload_dir, res.deref,
                                                   res.digest, name)
                except CapError as exc:
                    warnings.append(f"{exc}: passed over")
                except OSError as exc:
                    warnings.append(f"resource {name!r} cannot be saved ({exc}): passed over")
                else:
                    return FileContent(str(path), name), warnings
            elif res.problem:
                warnings.append(f"resource {name!r}: {res.problem}: passed over")
            if res.uri:
                return CapResourceContent(res.uri, str(upload_dir), res.digest, name,
                                          text), warnings
        if text:
            if warnings:
                warnings.append("the alert's text is read aloud instead")
            return TextContent(text, DEFAULT_VOICE), warnings
        if warnings:
            warnings.append("the alert has no text to read: only the attention tone plays")
        return ToneContent(), warnings

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

    def _target_zones(self, spec: AlertSpec) -> list[str]:
        if spec.all_zones:
            return [z.id for z in self.zones.roots()]
        for z in spec.zones:
            if z not in self.zones:
                raise AlertError(f"unknown zone {z!r}")
        return list(dict.fromkeys(spec.zones))

    async def _activate(self, alert: Alert, note: str) -> None:
        spec = alert.spec
        try:  # a file is looked for now (a stat, beside the loop): a wrong name fails at once
            spec.content = await self.programmes.resolve(spec.content)
        except ContentError as exc:
            raise AlertError(str(exc)) from None
        zone_ids = self._target_zones(spec)
        covered = {z.id for zid in zone_ids for z in self.zones.subtree(zid)}
        singles = []
        for eid in dict.fromkeys(spec.endpoints):
            try:
                ep = self.endpoints.get(eid)
            except EndpointError:
                raise AlertError(f"unknown endpoint {eid!r}") from None
            if ep.zone_id not in covered:
                singles.append(ep)
        alert.targeted = sorted({e.id for e in self.endpoints.endpoints.values()
                                 if e.zone_id in covered} | {e.id for e in singles})
        parts = self._parts(alert)
        zone_ids += self._group_endpoints(alert, singles)
        alert.zone_ids = zone_ids
        programme = Programme(f"Cảnh báo {alert.id}", ProgrammeKind.ALERT, SequenceSource(parts))
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
            raise AlertError(str(exc)) from None

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
        hand it to the message parts waiting for it. A message that cannot be made leaves the
        tone alone, with the reason in the alert's warnings."""
        content = alert.spec.content
        try:
            path = await self.programmes.audio_file(content)
        except (ContentError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            fallback = None if isinstance(content, TextContent) else (
                content.fallback_text if isinstance(content, CapResourceContent) else None
            ) or alert.spec.fallback_text
            if fallback:
                alert.warnings.append(f"{exc}; the alert's text is read aloud instead")
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
        self.store.audit("loa", f"alert.{status.value}", alert.id, {"note": note})
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
