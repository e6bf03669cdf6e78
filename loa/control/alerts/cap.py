"""CAP 1.2 messages (OASIS Common Alerting Protocol, v1.2) turned into alerts: duplicates
recognised, Updates and Cancels superseding what they reference, the area matched to zones by
geocode and to endpoints by polygon and circle, and the message's audio resource chosen (or
its text read aloud)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loa.control.alerts.manager import AlertManager
from loa.control.alerts.model import (
    FINAL,
    Alert,
    AlertClass,
    AlertError,
    AlertSpec,
    AlertStatus,
)
from loa.control.programmes import save_resource
from loa.core.content import (
    DEFAULT_VOICE,
    CapResourceContent,
    ContentSpec,
    FileContent,
    TextContent,
    ToneContent,
)
from loa.core.i18n import N_, SOURCE_LANGUAGE, say, translate
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

# (zones, endpoints) -> None: raises when the sender may not play (or end) an alert on them
# (its scope, issue 14)
Guard = Callable[[list[str], list[str]], None]


class CapAlerts:
    """Receives parsed CAP messages for an ``AlertManager``: ``start()`` reads the messages
    already seen (a blocking read, at start-up); ``handle_cap`` acts on one."""

    def __init__(self, manager: AlertManager) -> None:
        self.manager = manager

    def start(self) -> None:
        """Read the CAP identifiers already seen (blocking: at start-up)."""
        self._cap_seen()

    async def handle_cap(self, msg: CapMessage, actor: str, *, test_zone: str | None,
                         upload_dir: Path, received_ns: int | None = None,
                         guard: Guard | None = None, language: str = SOURCE_LANGUAGE
                         ) -> tuple[int, dict[str, Any]]:
        """Act on a parsed CAP message. Returns (HTTP status, body): 201 on air, 202
        ``scheduled`` (its <effective> time ahead) or ``logged``, 200 a duplicate or a Cancel,
        422 valid CAP that cannot be placed (``error`` says why). An Update or Cancel first
        ends the alerts of the messages it references, whatever then becomes of it (an
        Update's ``superseded``); what breaks CAP 1.2 in it is listed in ``nonconforming``
        (and in the alert's warnings). ``guard`` is asked about every alert the message would
        end and the one it would play, once its area is resolved to zones and endpoints; what
        it raises (the sender's scope) is raised before that alert is ended or played.
        ``language`` is the language of the ``error`` and ``reason`` texts
        (``loa.core.i18n``; English by default)."""
        subject = f"cap:{msg.sender}:{msg.identifier}"
        seen = self._cap_seen().get(msg.key)
        if seen is not None:
            return 200, {"result": "duplicate", "alert": seen}
        self.manager.store.audit(actor, "cap.received", subject, cap_describe(msg))
        superseded = self._supersede(msg, actor, guard)
        if msg.msg_type is CapMsgType.CANCEL:
            self._remember(msg, "cancel")
            status, body = 200, {"result": "cancelled", "alerts": superseded}
        else:
            try:
                status, body = await self._play_cap(msg, actor, test_zone, upload_dir,
                                                    received_ns, guard, language)
            except AlertError as exc:  # no <info>, no zone in its area, …
                status, body = 422, {"error": say(exc, language)}
            if msg.msg_type is CapMsgType.UPDATE:
                body["superseded"] = superseded
        if msg.nonconforming:
            body["nonconforming"] = msg.nonconforming
        return status, body

    def _supersede(self, msg: CapMessage, actor: str, guard: Guard | None) -> list[str]:
        """An Update or Cancel ends the live alerts of the messages it references (CAP 1.2
        §3.2.1 <msgType>) that have its own <status>: a Test or Exercise cancel never ends an
        Actual alert. Returns their ids."""
        if msg.msg_type not in (CapMsgType.UPDATE, CapMsgType.CANCEL):
            return []
        ending = [a for a in self._cap_alerts(set(msg.references))
                  if a.spec.cap is not None and a.spec.cap.get("status") == msg.status.value]
        if guard is not None:
            for alert in ending:
                guard(alert.spec.zones, alert.spec.endpoints)
        ended = [a.id for a in ending]
        for aid in ended:
            self.manager.cancel(aid, f"{actor} (CAP {msg.msg_type.value} {msg.identifier})")
        return ended

    async def _play_cap(self, msg: CapMessage, actor: str, test_zone: str | None,
                        upload_dir: Path, received_ns: int | None, guard: Guard | None,
                        language: str) -> tuple[int, dict[str, Any]]:
        """An Alert or Update put on air (or scheduled, or logged: the ``reason`` in
        ``language``). Raises AlertError when it cannot be placed."""
        if msg.msg_type not in (CapMsgType.ALERT, CapMsgType.UPDATE):
            self._remember(msg, "logged")
            return 202, {"result": "logged",
                         "reason": translate(language, N_("msgType {type} plays nothing"),
                                             type=msg.msg_type.value)}
        info = msg.info()
        if info is None:
            raise AlertError(N_("CAP alert has no <info> block"))
        endpoints: list[str] = []
        if msg.status is CapStatus.ACTUAL and msg.scope is CapScope.PUBLIC:
            zones, endpoints = self._cap_targets(info)
            if not zones and not endpoints:
                raise AlertError(N_("no zone or endpoint lies in the alert's area"))
        elif msg.status in (CapStatus.EXERCISE, CapStatus.TEST) and test_zone:
            zones = [test_zone]
        else:
            self._remember(msg, "logged")
            return 202, {"result": "logged",
                         "reason": translate(language,
                                             N_("status {status}, scope {scope}: log only"),
                                             status=msg.status.value, scope=msg.scope.value)}
        expires_at = info.expires.timestamp() if info.expires else None
        effective_at = info.effective.timestamp() if info.effective else None
        if expires_at is not None and expires_at <= self.manager.wall():
            self._remember(msg, "logged")
            return 202, {"result": "logged",
                         "reason": translate(language, N_("already expired"))}
        if expires_at is not None and effective_at is not None and effective_at >= expires_at:
            self._remember(msg, "logged")
            return 202, {"result": "logged",
                         "reason": translate(language, N_("it expires before it takes effect"))}
        if guard is not None:  # before its resources are fetched
            guard(zones, endpoints)
        content, warnings = await self._cap_content(info, upload_dir)
        text = " ".join(cap_spoken_text(info).split())
        spec = AlertSpec(AlertClass(cap_alert_class(info)), zones, False, content, True, 1,
                         self.manager.gap_s, expires_at, source="cap",
                         cap={**cap_describe(msg), "event": info.event,
                              "headline": info.headline}, endpoints=endpoints,
                         effective_at=effective_at, fallback_text=text or None)
        notes = [f"non-conforming CAP: {n}" for n in msg.nonconforming] + warnings
        alert = await self.manager.trigger(spec, actor, received_ns, warnings=notes)
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
            for rec in self.manager.store.load_alerts():
                cap = rec.get("cap")
                if cap:
                    seen[(cap["sender"], cap["identifier"])] = rec["id"]
            self._seen: dict[tuple[str, str], str] = seen
        return seen

    def _remember(self, msg: CapMessage, what: str) -> None:
        self._cap_seen()[msg.key] = what

    def _cap_alerts(self, refs: set[tuple[str, str]]) -> list[Alert]:
        return [a for a in self.manager.alerts.values() if a.spec.cap and a.status not in FINAL
                and (a.spec.cap["sender"], a.spec.cap["identifier"]) in refs]

    def _cap_targets(self, info: CapInfo) -> tuple[list[str], list[str]]:
        """Zones whose administrative-unit code is a geocode of the area; and the endpoints
        whose coordinates lie inside its polygons and circles."""
        codes = {value for area in info.areas for _, value in area.geocodes}
        found = {z.id for z in self.manager.zones if z.admin_code and z.admin_code in codes}
        inside = []
        for ep in self.manager.endpoints.endpoints.values():
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
            parent = self.manager.zones.get(zid).parent_id
            covered = False
            while parent is not None:
                if parent in found:
                    covered = True
                    break
                parent = self.manager.zones.get(parent).parent_id
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
