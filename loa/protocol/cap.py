"""CAP 1.2 (OASIS Common Alerting Protocol) in: parsed safely, mapped to an alert.

Safety first: the XML parser (defusedxml) refuses DTDs, entity declarations and external
references, so neither an external-entity read nor an entity-expansion bomb gets anywhere, and
a document over ``MAX_CAP_BYTES`` is refused before parsing.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

MAX_CAP_BYTES = 256 * 1024
NS = "urn:oasis:names:tc:emergency:cap:1.2"
_Q = "{" + NS + "}"
EARTH_RADIUS_KM = 6371.0

_Code = TypeVar("_Code", bound=enum.StrEnum)


class CapError(ValueError):
    """The CAP message is refused; the message says why."""


class CapStatus(enum.StrEnum):
    """CAP 1.2 §3.2.1 <status>: how the message is to be handled."""

    ACTUAL = "Actual"  # act on it
    EXERCISE = "Exercise"  # for the designated exercise participants only
    SYSTEM = "System"  # the alerting network's own messages
    TEST = "Test"  # technical testing only: to be discarded
    DRAFT = "Draft"  # a template, not to be acted on


class CapMsgType(enum.StrEnum):
    """CAP 1.2 §3.2.1 <msgType>: what the message does."""

    ALERT = "Alert"
    UPDATE = "Update"  # supersedes the messages in <references>
    CANCEL = "Cancel"  # cancels the messages in <references>
    ACK = "Ack"
    ERROR = "Error"


class CapScope(enum.StrEnum):
    """CAP 1.2 §3.2.1 <scope>: who the message is for."""

    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


@dataclass
class CapResource:
    """A CAP 1.2 §3.2.3 <resource>: the audio to play, by ``uri`` or inline (``deref``,
    decoded from <derefUri>); ``digest`` is checked by ``verify_resource``."""

    description: str
    mime_type: str
    uri: str | None
    deref: bytes | None
    digest: str | None  # SHA-1, hex (CAP 1.2 §3.2.3)


@dataclass
class CapArea:
    """A CAP 1.2 §3.2.4 <area>: polygons and circles in WGS 84 (lat, lon), radii in km,
    and (valueName, value) geocodes."""

    description: str
    polygons: list[list[tuple[float, float]]] = field(default_factory=list)  # (lat, lon)
    circles: list[tuple[float, float, float]] = field(default_factory=list)  # lat, lon, km
    geocodes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class CapInfo:
    """A CAP 1.2 §3.2.2 <info> block. urgency, severity and certainty are kept as the
    document's strings (empty if absent); ``expires`` as parsed from ISO 8601."""

    language: str
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str
    description: str
    instruction: str
    expires: datetime | None
    resources: list[CapResource]
    areas: list[CapArea]


@dataclass
class CapMessage:
    """A CAP 1.2 §3.2.1 <alert>: identity, handling codes, the (sender, identifier) pairs
    it updates or cancels, and its info blocks."""

    identifier: str
    sender: str
    sent: str
    status: CapStatus
    msg_type: CapMsgType
    scope: CapScope
    references: list[tuple[str, str]]  # (sender, identifier)
    infos: list[CapInfo]

    @property
    def key(self) -> tuple[str, str]:
        return (self.sender, self.identifier)

    def info(self) -> CapInfo | None:
        """The Vietnamese info block if there is one, else the first."""
        for info in self.infos:
            if info.language.lower().startswith("vi"):
                return info
        return self.infos[0] if self.infos else None


def _text(el: Element, name: str, required: bool = False) -> str:
    child = el.find(_Q + name)
    value = (child.text or "").strip() if child is not None else ""
    if required and not value:
        raise CapError(f"CAP <{name}> is missing")
    return value


def _choice(el: Element, name: str, kind: type[_Code]) -> _Code:
    """A required element whose value is one of a CAP 1.2 code list (exact, case and all)."""
    value = _text(el, name, True)
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise CapError(f"CAP <{name}> must be one of {allowed}, not {value!r}") from None


def _point(pair: str) -> tuple[float, float]:
    lat, lon = (float(v) for v in pair.split(","))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(pair)
    return lat, lon


def parse_cap(data: bytes) -> CapMessage:
    """Parse a CAP 1.2 document (at most 256 KiB) with DTDs, entities and external
    references refused. Raises CapError for unsafe or malformed XML, another root element,
    a missing required <alert> element, or an unreadable value in <info>."""
    if len(data) > MAX_CAP_BYTES:
        raise CapError(f"CAP message of {len(data)} bytes is over the {MAX_CAP_BYTES} byte limit")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(f"refused unsafe XML ({type(exc).__name__}): no DTDs or entities") from None
    except ParseError as exc:
        raise CapError(f"malformed XML: {exc}") from None
    if root.tag != _Q + "alert":
        raise CapError(f"not a CAP 1.2 alert (root element {root.tag!r})")
    refs = []
    for ref in _text(root, "references").split():
        parts = ref.split(",")
        if len(parts) >= 2:
            refs.append((parts[0], parts[1]))
    try:
        infos = [_info(el) for el in root.findall(_Q + "info")]
    except (ValueError, binascii.Error) as exc:
        raise CapError(f"bad value in <info>: {exc}") from None
    return CapMessage(
        identifier=_text(root, "identifier", True), sender=_text(root, "sender", True),
        sent=_text(root, "sent", True), status=_choice(root, "status", CapStatus),
        msg_type=_choice(root, "msgType", CapMsgType), scope=_choice(root, "scope", CapScope),
        references=refs, infos=infos)


def _info(el: Element) -> CapInfo:
    expires = _text(el, "expires")
    resources = []
    for r in el.findall(_Q + "resource"):
        deref = _text(r, "derefUri")
        resources.append(CapResource(
            _text(r, "resourceDesc"), _text(r, "mimeType"), _text(r, "uri") or None,
            base64.b64decode(deref, validate=True) if deref else None,
            _text(r, "digest").lower() or None))
    areas = []
    for a in el.findall(_Q + "area"):
        area = CapArea(_text(a, "areaDesc"))
        for p in a.findall(_Q + "polygon"):
            area.polygons.append([_point(pair) for pair in (p.text or "").split()])
        for c in a.findall(_Q + "circle"):
            centre, radius = (c.text or "").split()
            area.circles.append((*_point(centre), float(radius)))
        for g in a.findall(_Q + "geocode"):
            area.geocodes.append((_text(g, "valueName"), _text(g, "value")))
        areas.append(area)
    return CapInfo(
        language=_text(el, "language") or "en-US", event=_text(el, "event"),
        urgency=_text(el, "urgency"), severity=_text(el, "severity"),
        certainty=_text(el, "certainty"), headline=_text(el, "headline"),
        description=_text(el, "description"), instruction=_text(el, "instruction"),
        expires=datetime.fromisoformat(expires) if expires else None,
        resources=resources, areas=areas)


def alert_class(info: CapInfo) -> str:
    """Immediate urgency, or Severe/Extreme severity, is an emergency (bản tin khẩn cấp)."""
    if info.urgency == "Immediate" or info.severity in ("Severe", "Extreme"):
        return "emergency"
    if info.urgency == "Expected" or info.severity == "Moderate":
        return "priority"
    return "normal"


def spoken_text(info: CapInfo) -> str:
    """What is read aloud: headline, description and instruction, joined by ". "."""
    return ". ".join(t for t in (info.headline, info.description, info.instruction) if t)


def verify_resource(res: CapResource, data: bytes) -> None:
    """Raise CapError if the bytes do not match the resource's SHA-1 <digest> (CAP 1.2
    §3.2.3); no digest, no check."""
    if res.digest and hashlib.sha1(data).hexdigest() != res.digest:  # noqa: S324  (CAP 1.2 names SHA-1)
        raise CapError(f"resource {res.description or res.uri!r}: digest does not match")


def in_polygon(lat: float, lon: float, polygon: list[tuple[float, float]]) -> bool:
    """Ray casting; CAP polygons are closed rings of (lat, lon)."""
    inside = False
    n = len(polygon)
    for i in range(n):
        (y1, x1), (y2, x2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x_cross:
                inside = not inside
    return inside


def in_circle(lat: float, lon: float, circle: tuple[float, float, float]) -> bool:
    """Whether a point lies within a CAP circle (lat, lon, radius in km): great-circle
    (haversine) distance on a 6371 km sphere."""
    clat, clon, radius_km = circle
    p1, p2 = math.radians(lat), math.radians(clat)
    dp, dl = p2 - p1, math.radians(clon - lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h)) <= radius_km


def describe(msg: CapMessage) -> dict[str, Any]:
    """The message's identity and codes, as the audit log and API answers show them."""
    return {"sender": msg.sender, "identifier": msg.identifier, "sent": msg.sent,
            "status": msg.status.value, "msgType": msg.msg_type.value, "scope": msg.scope.value}
