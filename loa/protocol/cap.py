"""CAP 1.2 (OASIS Common Alerting Protocol) in: parsed safely, mapped to an alert.

Safety first: the XML parser (defusedxml) refuses DTDs, entity declarations and external
references, so neither an external-entity read nor an entity-expansion bomb gets anywhere, and
a document over ``MAX_CAP_BYTES`` is refused before parsing.

Strict where the standard is, lenient where a refusal would silence an emergency: a code outside
CAP 1.2's lists (``status``, ``msgType``, ``scope``; ``category``, ``urgency``, ``severity``,
``certainty`` in ``<info>``) or an unreadable time refuses the message; a time without a UTC
offset is read in the station's time zone and the message is marked non-conforming; a broken
optional ``<resource>`` is kept with its ``problem``, for the alert to read its text instead.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

from loa.core.clock import STATION_TZ
from loa.core.i18n import N_, Explained

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

MAX_CAP_BYTES = 256 * 1024
NS = "urn:oasis:names:tc:emergency:cap:1.2"
_Q = "{" + NS + "}"
EARTH_RADIUS_KM = 6371.0
# CAP 1.2 §3.3.2: "YYYY-MM-DDThh:mm:ssXzh:zm" (xs:dateTime; fractions of a second allowed)
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})?")
# xs:base64Binary: XML whitespace may stand between the characters (76-column MIME lines)
_XML_SPACE = re.compile(r"[ \t\r\n]+")

_Code = TypeVar("_Code", bound=enum.StrEnum)


class CapError(Explained, ValueError):
    """The CAP message is refused; the message says why."""


class CapTooLarge(CapError):
    """A CAP message over ``MAX_CAP_BYTES`` (HTTP 413)."""


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


class CapCategory(enum.StrEnum):
    """CAP 1.2 §3.2.2 <category>: the kind of event (one or more per <info>)."""

    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class CapUrgency(enum.StrEnum):
    """CAP 1.2 §3.2.2 <urgency>: when to act."""

    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class CapSeverity(enum.StrEnum):
    """CAP 1.2 §3.2.2 <severity>: how bad it is."""

    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class CapCertainty(enum.StrEnum):
    """CAP 1.2 §3.2.2 <certainty>: how sure the sender is."""

    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


@dataclass
class CapResource:
    """A CAP 1.2 §3.2.3 <resource>: the audio to play, by ``uri`` or inline (``deref``,
    decoded from <derefUri>); ``digest`` is checked by ``verify_resource``. ``problem`` says
    why inline data could not be read (``deref`` is then None): a resource is optional, so a
    broken one does not refuse its message."""

    description: str
    mime_type: str
    uri: str | None
    deref: bytes | None
    digest: str | None  # SHA-1, hex (CAP 1.2 §3.2.3)
    problem: str | None = None


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
    """A CAP 1.2 §3.2.2 <info> block, its codes checked against CAP 1.2's lists; ``effective``
    and ``expires`` are aware datetimes (None if absent)."""

    language: str
    categories: list[CapCategory]
    event: str
    urgency: CapUrgency
    severity: CapSeverity
    certainty: CapCertainty
    headline: str
    description: str
    instruction: str
    effective: datetime | None
    expires: datetime | None
    resources: list[CapResource]
    areas: list[CapArea]


@dataclass
class CapMessage:
    """A CAP 1.2 §3.2.1 <alert>: identity, handling codes, the (sender, identifier) pairs
    it updates or cancels, and its info blocks. ``nonconforming`` lists what in it breaks
    CAP 1.2 without stopping it from being read (a time without a UTC offset)."""

    identifier: str
    sender: str
    sent: str
    status: CapStatus
    msg_type: CapMsgType
    scope: CapScope
    references: list[tuple[str, str]]  # (sender, identifier)
    infos: list[CapInfo]
    nonconforming: list[str] = field(default_factory=list)

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
        raise CapError(N_("CAP <{name}> is missing"), name=name)
    return value


def _code(name: str, value: str, kind: type[_Code]) -> _Code:
    """``value`` as a member of a CAP 1.2 code list (exact, case and all); CapError naming
    the allowed values if it is not one."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise CapError(N_("CAP <{name}> must be one of {allowed}, not {value!r}"), name=name,
                       allowed=allowed, value=value) from None


def _choice(el: Element, name: str, kind: type[_Code]) -> _Code:
    """A required element whose value is one of a CAP 1.2 code list."""
    return _code(name, _text(el, name, True), kind)


def _choices(el: Element, name: str, kind: type[_Code]) -> list[_Code]:
    """A required, repeatable element whose every value is one of a CAP 1.2 code list."""
    values = [(c.text or "").strip() for c in el.findall(_Q + name)]
    if not values:
        raise CapError(N_("CAP <{name}> is missing"), name=name)
    return [_code(name, value, kind) for value in values]


def _time(el: Element, name: str, local_tz: tzinfo, nonconforming: list[str],
          required: bool = False) -> datetime | None:
    """A CAP 1.2 §3.3.2 date and time, aware. One without a UTC offset is read in
    ``local_tz`` and one with "Z" as UTC, each noted in ``nonconforming``; one that is not a
    date and time at all raises CapError."""
    text = _text(el, name, required)
    if not text:
        return None
    match = _DATETIME.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        when = datetime.fromisoformat(match[1])
    except ValueError:
        raise CapError(N_("CAP <{name}> {text!r} is not a date and time as CAP 1.2 writes them "
                          "(2026-11-26T10:00:00+07:00)"), name=name, text=text) from None
    zone = match[2]
    if zone is None:
        nonconforming.append(f"<{name}> {text} has no UTC offset (CAP 1.2 §3.3.2 requires "
                             f"one): read as {local_tz} time")
        return when.replace(tzinfo=local_tz)
    if zone == "Z":
        nonconforming.append(f'<{name}> {text} uses "Z" (CAP 1.2 §3.3.2 writes UTC as '
                             "-00:00): read as UTC")
        return when.replace(tzinfo=UTC)
    return datetime.fromisoformat(match[1] + zone)


def _point(pair: str) -> tuple[float, float]:
    lat, lon = (float(v) for v in pair.split(","))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(pair)
    return lat, lon


def parse_cap(data: bytes, local_tz: tzinfo = STATION_TZ) -> CapMessage:
    """Parse a CAP 1.2 document (at most 256 KiB) with DTDs, entities and external
    references refused; times without a UTC offset are read in ``local_tz`` (and noted in
    ``nonconforming``). Raises CapError for unsafe or malformed XML, another root element,
    a missing required element, a code outside CAP 1.2's lists (naming the allowed ones),
    a time that is not one, or an unreadable area. A <resource> whose inline data cannot be
    read does not raise: it keeps its ``problem``."""
    if len(data) > MAX_CAP_BYTES:
        raise CapTooLarge(N_("CAP message of {size} bytes is over the {limit} byte limit"),
                          size=len(data), limit=MAX_CAP_BYTES)
    # imported by the first message, not by a server that never gets one (issue 17: RSS)
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except DefusedXmlException as exc:
        raise CapError(N_("refused unsafe XML ({kind}): no DTDs or entities"),
                       kind=type(exc).__name__) from None
    except ParseError as exc:
        raise CapError(N_("malformed XML: {problem}"), problem=str(exc)) from None
    if root.tag != _Q + "alert":
        raise CapError(N_("not a CAP 1.2 alert (root element {tag!r})"), tag=root.tag)
    refs = []
    for ref in _text(root, "references").split():
        parts = ref.split(",")
        if len(parts) >= 2:
            refs.append((parts[0], parts[1]))
    nonconforming: list[str] = []
    msg = CapMessage(
        identifier=_text(root, "identifier", True), sender=_text(root, "sender", True),
        sent=_text(root, "sent", True), status=_choice(root, "status", CapStatus),
        msg_type=_choice(root, "msgType", CapMsgType), scope=_choice(root, "scope", CapScope),
        references=refs, infos=[], nonconforming=nonconforming)
    _time(root, "sent", local_tz, nonconforming, required=True)
    try:
        msg.infos = [_info(el, local_tz, nonconforming) for el in root.findall(_Q + "info")]
    except CapError:
        raise
    except ValueError as exc:
        raise CapError(N_("bad value in <info>: {problem}"), problem=str(exc)) from None
    return msg


def _resource(r: Element) -> CapResource:
    res = CapResource(_text(r, "resourceDesc"), _text(r, "mimeType"), _text(r, "uri") or None,
                      None, _text(r, "digest").lower() or None)
    deref = _XML_SPACE.sub("", _text(r, "derefUri"))
    if deref:
        try:
            res.deref = base64.b64decode(deref, validate=True)
        except (ValueError, binascii.Error) as exc:
            res.problem = f"its <derefUri> is not base64 data ({exc})"
    return res


def _info(el: Element, local_tz: tzinfo, nonconforming: list[str]) -> CapInfo:
    categories = _choices(el, "category", CapCategory)
    urgency = _choice(el, "urgency", CapUrgency)
    severity = _choice(el, "severity", CapSeverity)
    certainty = _choice(el, "certainty", CapCertainty)
    effective = _time(el, "effective", local_tz, nonconforming)
    expires = _time(el, "expires", local_tz, nonconforming)
    resources = [_resource(r) for r in el.findall(_Q + "resource")]
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
        language=_text(el, "language") or "en-US", categories=categories,
        event=_text(el, "event"), urgency=urgency, severity=severity, certainty=certainty,
        headline=_text(el, "headline"), description=_text(el, "description"),
        instruction=_text(el, "instruction"), effective=effective, expires=expires,
        resources=resources, areas=areas)


def alert_class(info: CapInfo) -> str:
    """Immediate urgency, or Severe/Extreme severity, is an emergency (bản tin khẩn cấp)."""
    if info.urgency is CapUrgency.IMMEDIATE or info.severity in (CapSeverity.SEVERE,
                                                                 CapSeverity.EXTREME):
        return "emergency"
    if info.urgency is CapUrgency.EXPECTED or info.severity is CapSeverity.MODERATE:
        return "priority"
    return "normal"


def spoken_text(info: CapInfo) -> str:
    """What is read aloud: headline, description and instruction, joined by ". "."""
    return ". ".join(t for t in (info.headline, info.description, info.instruction) if t)


def verify_resource(res: CapResource, data: bytes) -> None:
    """Raise CapError if the bytes do not match the resource's SHA-1 <digest> (CAP 1.2
    §3.2.3); no digest, no check."""
    if res.digest and hashlib.sha1(data).hexdigest() != res.digest:  # noqa: S324  (CAP 1.2 names SHA-1)
        raise CapError(N_("resource {name!r}: digest does not match"),
                       name=res.description or res.uri)


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
    """The message's identity and codes, as the audit log and API answers show them; and
    ``nonconforming``, what in it breaks CAP 1.2, when something does."""
    out: dict[str, Any] = {"sender": msg.sender, "identifier": msg.identifier,
                           "sent": msg.sent, "status": msg.status.value,
                           "msgType": msg.msg_type.value, "scope": msg.scope.value}
    if msg.nonconforming:
        out["nonconforming"] = msg.nonconforming
    return out
