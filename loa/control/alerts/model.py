"""The alert itself: its class (Circular 39's bulletin classes), status and phase, the spec
an API call or a CAP message gives, and the record of one triggered alert with its proof of
reach per endpoint."""

from __future__ import annotations

import asyncio
import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loa.core.content import (
    ALERT_KINDS,
    ContentError,
    ContentSpec,
    parse_content,
)
from loa.core.i18n import N_, Explained
from loa.core.priority import Priority
from loa.playout.inputs.sequence import (
    Pending,
)
from loa.playout.programme import EndReason, Programme
from loa.playout.zone_channel import Request

MAX_REPEAT = 10
MAX_GAP_S = 60.0
SLOWEST_SHOWN = 10


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


class AlertError(Explained, ValueError):
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


def shown_content(content: dict[str, Any]) -> dict[str, Any]:
    """An alert's content (its JSON) as the API shows it: a file the server keeps for it (an
    uploaded message, a CAP resource: an absolute path on the server) by its file name, in
    ``path`` as in ``name``, never by where it lies on the server's disk; any other content
    as it is."""
    path = content.get("path")
    if content.get("kind") != "file" or not isinstance(path, str) or \
            not Path(path).is_absolute():
        return content
    name = content.get("name") or Path(path).name
    return {**content, "path": name, "name": name}


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
        raise AlertError(N_('class must be "normal", "priority" or "emergency"')) from None
    zones = body.get("zones") or []
    if isinstance(zones, str):
        zones = [z for z in zones.split(",") if z]
    all_zones = bool(body.get("all", False))
    if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
        raise AlertError(N_('"zones" must be a list of zone ids'))
    endpoints = body.get("endpoints") or []
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
        raise AlertError(N_('"endpoints" must be a list of endpoint ids'))
    if not zones and not all_zones and not endpoints:
        raise AlertError(N_('say where: "zones": [...], "endpoints": [...] or "all": true'))
    try:
        content = parse_content(body.get("content") or {"kind": "tone"}, ALERT_KINDS)
    except ContentError as exc:
        raise AlertError(exc.message) from None
    repeat = body.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise AlertError(N_("repeat must be an integer from 1 to {max}"), max=MAX_REPEAT)
    gap_s = body.get("gap_s", default_gap_s)
    if not _is_number(gap_s) or not 0 <= gap_s <= MAX_GAP_S:
        raise AlertError(N_("gap_s must be from 0 to {max:g} seconds"), max=MAX_GAP_S)
    expires_at = body.get("expires_at")
    if body.get("expires_in_s") is not None:
        if not _is_number(body["expires_in_s"]):
            raise AlertError(N_("expires_in_s must be a number of seconds"))
        expires_at = now + float(body["expires_in_s"])
    if expires_at is not None and (not _is_number(expires_at) or expires_at <= now):
        raise AlertError(N_("expires_at must be a unix time in the future"))
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
        spec = self.spec.to_json()
        out: dict[str, Any] = {
            "id": self.id, "status": self.status.value, **spec,
            "content": shown_content(spec["content"]),
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
        d["content"] = self.spec.content.to_json()  # where the file is, to play it again
        d["targeted"] = self.targeted
        d["reached_ms"] = self.reach_ms()
        d["message_reached_ms"] = self.message_reach_ms()
        d["played_ms"] = self.played_ms
        return d
