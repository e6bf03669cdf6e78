"""Endpoints (cụm loa): each belongs to one zone; its streams resolve through that zone.

The registry lives in memory and is kept in SQLite (each change queued to the store's writer
thread) with each endpoint's MQTT credential hash.
Moving an endpoint moves its open connections to the new zone's streams in place: no reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar, overload

from loa.control.spreadsheet import Row, Table, TableError, decimal, decode, read_table
from loa.control.store import Store
from loa.core.endpoint import EndpointInfo
from loa.core.i18n import N_, Explained, Message
from loa.core.text import nearest_ids
from loa.core.zones import ZoneError, ZoneTree, home_zone_id, is_alert_group
from loa.playout.fanout import Subscriber
from loa.playout.zone_channel import ZoneChannel
from loa.protocol.credentials import hash_password, new_password
from loa.protocol.mqtt import ENDPOINT_ID
from loa.protocol.native import WS_OPCODE_TEXT, ws_frame

log = logging.getLogger(__name__)

CSV_FIELDS = ("id", "name", "zone", "lat", "lon", "address", "admin_code")  # as exported
# What a header cell may say for each column, as ``spreadsheet.column_key`` reduces it (no
# case, no accents): the names Loa exports, and those a Vietnamese station writes.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "endpoint", "endpoint_id", "ma", "ma_loa", "ma_cum_loa", "ma_thiet_bi"),
    "name": ("name", "ten", "ten_loa", "ten_cum_loa"),
    "zone": ("zone", "zone_id", "vung", "ma_vung", "khu_vuc"),
    "lat": ("lat", "latitude", "vi_do"),
    "lon": ("lon", "lng", "long", "longitude", "kinh_do"),
    "address": ("address", "dia_chi"),
    "admin_code": ("admin_code", "ma_hanh_chinh", "ma_don_vi_hanh_chinh", "ma_dvhc"),
}
MAX_CSV_ROWS = 20_000


class EndpointError(Explained, ValueError):
    """An unknown endpoint, or a bad id, field or CSV row; the message says which."""

    pass


# An import error about one line: the line, and what is wrong with it (a Message or a text)
LINE_ERROR = N_("line {line}: {error}")


def located(message: Message, language: str) -> tuple[int | None, str]:
    """An import error as the line it names (1-based; None for one about the whole file) and
    what it says of that line in ``language``, for answers that list the errors by line:
    ``LINE_ERROR`` (a row's error, the csv module's) gives its line and its error alone;
    another message with a ``line`` field (a header, bytes the encoding cannot decode, a row
    changed while the import ran) gives that line and the message, less a leading "line
    n: " as ``LINE_ERROR`` says it; any other, None and the message."""
    line = message.fields.get("line")
    if not isinstance(line, int):
        return None, message.say(language)
    if message.msgid == LINE_ERROR and "error" in message.fields:
        error = message.fields["error"]
        return line, error.say(language) if isinstance(error, Message) else \
            Message(str(error)).say(language)
    text = message.say(language)
    prefix = Message(LINE_ERROR, {"line": line, "error": ""}).say(language)
    return line, text[len(prefix):] if text.startswith(prefix) and text != prefix else text


def _message_of(exc: Exception) -> Message:
    """What ``exc`` says, still to be said in its reader's language: an ``Explained`` error's
    Message, else its text (translated only if it is a msgid of the catalogue)."""
    return exc.message if isinstance(exc, Explained) else Message(str(exc))


T = TypeVar("T")


class _InfoField(Generic[T]):
    """An attribute of ``Endpoint`` that is the field of the same name of its ``info``: read
    from the frozen record; set by replacing the record, so ``info`` is always one whole
    snapshot. ``T``: that field's type in ``EndpointInfo``."""

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, ep: None, owner: type) -> _InfoField[T]: ...

    @overload
    def __get__(self, ep: Endpoint, owner: type) -> T: ...

    def __get__(self, ep: Endpoint | None, owner: type) -> _InfoField[T] | T:
        if ep is None:
            return self
        value: T = getattr(ep.info, self.name)
        return value

    def __set__(self, ep: Endpoint, value: T) -> None:
        change: dict[str, Any] = {self.name: value}  # T was checked at the assignment
        ep.info = replace(ep.info, **change)


@dataclass(eq=False)
class Endpoint:
    """A registered loudspeaker cluster: its identity and place (``info``: leaf zone, name,
    WGS 84 degrees, address, administrative-unit code, registration time; each also an
    attribute of its own name, and assigning one replaces ``info``), its own volume override
    (%, None: the zone's), mute and power state, the Mosquitto $7$ hash of its MQTT password,
    and its live stream connections (``subscribers``)."""

    info: EndpointInfo  # frozen, replaced on change: safe to hand to a worker thread
    volume_pct: int | None = None  # the endpoint's own override of its zone's volume
    muted: bool = False
    power_on: bool = True
    secret_hash: str = ""  # MQTT password, Mosquitto $7$ hash
    subscribers: set[Subscriber] = field(default_factory=set)

    # info's fields, as attributes (the types are EndpointInfo's)
    zone_id = _InfoField[str]()
    name = _InfoField[str]()
    lat = _InfoField[float | None]()
    lon = _InfoField[float | None]()
    address = _InfoField[str]()
    admin_code = _InfoField[str]()
    created_at = _InfoField[float]()

    @property
    def id(self) -> str:
        """Its id: fixed, the registry's key."""
        return self.info.id

    def describe(self) -> dict[str, object]:
        """The API view: no credential hash, connections as a count."""
        i = self.info
        return {"id": i.id, "name": i.name, "zone": i.zone_id, "lat": i.lat, "lon": i.lon,
                "address": i.address, "admin_code": i.admin_code,
                "volume_pct": self.volume_pct, "muted": self.muted, "power_on": self.power_on,
                "created_at": i.created_at, "connections": len(self.subscribers)}

    def record(self) -> dict[str, Any]:
        """What the store keeps, credential hash included."""
        return record_of(self.state())

    def state(self) -> EndpointState:
        """What its record is made of, as immutable values: the record can be made from it
        on any thread (``record_of``)."""
        return (self.info, self.volume_pct, self.muted, self.power_on, self.secret_hash)


# An endpoint's stored state: info, volume override, muted, power on, credential hash
EndpointState = tuple[EndpointInfo, int | None, bool, bool, str]


def record_of(state: EndpointState) -> dict[str, Any]:
    """The store's record of an endpoint's ``state`` (``Endpoint.state``); thread-safe. Its
    zone is its home zone: an alert's run-time group is no zone to come back to after a
    restart."""
    i, volume_pct, muted, power_on, secret_hash = state
    return {"id": i.id, "zone": home_zone_id(i.zone_id), "name": i.name, "lat": i.lat, "lon": i.lon,
            "address": i.address, "admin_code": i.admin_code, "volume_pct": volume_pct,
            "muted": muted, "power_on": power_on, "secret_hash": secret_hash,
            "created_at": i.created_at}


def _coord(value: Any, name: str, limit: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EndpointError(N_("{name} {value!r} is not a number"), name=name,
                            value=value) from None
    if not math.isfinite(v) or not -limit <= v <= limit:
        raise EndpointError(N_("{name} {value!r} must be from -{limit:g} to {limit:g}"),
                            name=name, value=value, limit=limit)
    return v


def _text(value: Any, name: str, limit: int = 200) -> str:
    text = "" if value is None else str(value).strip()
    if len(text) > limit:
        raise EndpointError(N_("{name} is over {limit} characters"), name=name, limit=limit)
    return text


@dataclass(frozen=True, slots=True)
class CsvRow:
    """A checked CSV line for an endpoint that exists: the fields it names, converted."""
    line: int
    id: str
    zone_id: str
    fields: dict[str, Any]  # name, lat, lon, address, admin_code: those the row has
    # the endpoint's info as planned from, and as the row makes it (when the plan had it)
    before: EndpointInfo | None = None
    after: EndpointInfo | None = None


@dataclass(frozen=True, slots=True)
class CsvNew:
    """A checked CSV line for a new endpoint: the endpoint, made."""
    line: int
    endpoint: Endpoint
    password: str  # its MQTT password, shown once


@dataclass
class CsvPlan:
    """What an import would do: errors (then nothing is done; each a Message, said in its
    reader's language), or new endpoints and changes to existing ones."""
    errors: list[Message] = field(default_factory=list)
    new: list[CsvNew] = field(default_factory=list)
    changes: list[CsvRow] = field(default_factory=list)
    # the new endpoints by id, made with the plan in its thread, for the registry to take in
    # one C-level step (``EndpointRegistry.import_csv``)
    made: dict[str, Endpoint] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CsvChange:
    """A checked CSV line for an endpoint that exists, as a dry run shows it: what the import
    would change, each field (``zone`` among them) as (now, then); empty when the line says
    what the registry holds already."""
    line: int
    id: str
    zone_id: str  # the zone it would be in
    changes: dict[str, tuple[Any, Any]]


@dataclass
class CsvPreview:
    """What an import would do (``EndpointRegistry.preview_csv``): errors (each a Message;
    then it would take nothing), or the endpoints it would make (without credentials) and
    its changes to those that exist."""
    errors: list[Message] = field(default_factory=list)
    new: list[CsvNew] = field(default_factory=list)
    changes: list[CsvChange] = field(default_factory=list)


@dataclass
class CsvImport:
    """The outcome of ``EndpointRegistry.import_csv``: with errors (each a Message, said in
    its reader's language), nothing was taken."""
    created: list[Endpoint]
    updated: list[Endpoint]
    errors: list[Message]
    passwords: dict[str, str]  # new endpoint id → its MQTT password (shown once)


def plan_csv_import(data: str | bytes, existing: frozenset[str], zones: Mapping[str, str],
                    now: float, charset: str | None = None, *, secrets: bool = True,
                    infos: Mapping[str, EndpointInfo] | None = None) -> CsvPlan:
    """Decode (bytes: see ``spreadsheet.decode``; ``charset`` from the Content-Type), parse
    and check a CSV import against a snapshot of the registry (its ids, and the zones
    endpoints may live in, id → name: the names tell a row with an unknown zone the
    nearest ones), and make the new endpoints with their passwords (``secrets`` False:
    without, password and hash empty, for a dry run). The separator is guessed and the
    header matched to ``CSV_COLUMNS`` as ``spreadsheet.read_table`` does; a coordinate may
    use a decimal comma. With ``infos`` (the existing endpoints' ``EndpointInfo``, by id:
    frozen, a snapshot) each change carries the info it was planned from and the info it
    makes. Pure and thread-safe: the registry runs it in a worker thread."""
    try:
        text = data if isinstance(data, str) else decode(data, charset)
        table = read_table(text, CSV_COLUMNS, ("id", "zone"))
    except TableError as exc:
        return CsvPlan([exc.message])
    return _plan_rows(table, existing, zones, now, secrets, infos)


def preview_csv_import(data: str | bytes, existing: Mapping[str, Endpoint],
                       zones: Mapping[str, str], now: float, charset: str | None = None
                       ) -> CsvPreview:
    """``plan_csv_import`` without credentials, and what each line for an endpoint that
    exists would change in it (``existing``: the registry's endpoints by id, read as they
    are: a change made meanwhile may or may not show, as in any preview). For a worker
    thread."""
    plan = plan_csv_import(data, frozenset(existing), zones, now, charset, secrets=False)
    if plan.errors:
        return CsvPreview(plan.errors)
    changes = []
    for row in plan.changes:
        ep = existing[row.id]
        changed = {name: (getattr(ep, name), value) for name, value in row.fields.items()
                   if getattr(ep, name) != value}
        if row.zone_id != ep.zone_id:
            changed["zone"] = (ep.zone_id, row.zone_id)
        changes.append(CsvChange(row.line, row.id, row.zone_id, changed))
    return CsvPreview([], plan.new, changes)


NEAREST_LOOKUPS = 5  # unknown zone values of one import told their nearest zones


def unknown_zone(zone_id: str, zones: Mapping[str, str],
                 cache: dict[str, str]) -> ZoneError:
    """The error for a row naming ``zone_id``, which is none of ``zones`` (id → name): with
    the nearest zones, by id or by name without accents (``nearest_ids``: ``an-bihn``,
    ``An Bình``), as "unknown zone 'x'; the nearest: an-binh (Xã An Bình)". Each value is
    looked up once per import (``cache``: value → the nearest, listed), and only the first
    ``NEAREST_LOOKUPS`` values are (each costs a ratio per zone and name: 10 ms against a
    district's 200 zones, 0.4 s against 10,000, in the planner's worker thread)."""
    listed = cache.get(zone_id)
    if listed is None:
        near = nearest_ids(zone_id, zones) if zone_id and len(cache) < NEAREST_LOOKUPS else []
        listed = cache[zone_id] = ", ".join(f"{z} ({zones[z]})" if zones[z] else z
                                            for z in near)
    if listed:
        return ZoneError(N_("unknown zone {zone!r}; the nearest: {near}"), zone=zone_id,
                         near=listed)
    return ZoneError(N_("unknown zone {zone!r}"), zone=zone_id)


def _records(table: Table, errors: list[Message]) -> Iterator[Row]:
    """The table's records, until one the csv module refuses (added to ``errors``)."""
    try:
        yield from table.rows()
    except TableError as exc:
        errors.append(exc.message)


def _plan_rows(table: Table, existing: frozenset[str], zones: Mapping[str, str], now: float,
               secrets: bool, infos: Mapping[str, EndpointInfo] | None) -> CsvPlan:
    def column(key: str) -> str:
        """A column as the file's header names it (``vi_do`` for ``lat``), for its errors."""
        i = table.columns.get(key)
        named = table.header[i].strip() if i is not None and i < len(table.header) else ""
        return named or key

    plan = CsvPlan()
    seen: dict[str, int] = {}  # id → the line it was first on
    near_cache: dict[str, str] = {}  # one unknown zone on 150 lines is looked up once
    for count, record in enumerate(_records(table, plan.errors), start=1):
        if count > MAX_CSV_ROWS:
            plan.errors.append(Message(N_("over {limit} rows"), {"limit": MAX_CSV_ROWS}))
            break
        n, row = record.line, record.values
        try:
            eid = row.get("id", "")
            if not ENDPOINT_ID.match(eid):
                raise EndpointError(N_("{column} {id!r} must be 1-64 of A-Z a-z 0-9 . _ -"),
                                    column=column("id"), id=eid)
            if eid in seen:
                raise EndpointError(N_("{column} {id!r} appears twice (first on line {first})"),
                                    column=column("id"), id=eid, first=seen[eid])
            seen[eid] = n
            zone_id = row.get("zone", "")
            if not zone_id:
                raise ZoneError(N_("{column} is empty: give a zone id (see: loa zones)"),
                                column=column("zone"))
            if zone_id not in zones:
                raise unknown_zone(zone_id, zones, near_cache)
            lat = _coord(decimal(row.get("lat", "")), column("lat"), 90)
            lon = _coord(decimal(row.get("lon", "")), column("lon"), 180)
            name, address, admin_code = (_text(row.get(key), column(key), limit)
                                         for key, limit in (("name", 200), ("address", 200),
                                                            ("admin_code", 16)))
        except ValueError as exc:
            plan.errors.append(Message(LINE_ERROR, {"line": n, "error": _message_of(exc)}))
            continue
        if plan.errors:
            continue  # nothing will be taken: spare the hashing
        if eid in existing:
            values = {"name": name, "lat": lat, "lon": lon, "address": address,
                      "admin_code": admin_code}
            fields: dict[str, Any] = {k: v for k, v in values.items() if k in row}
            before = infos.get(eid) if infos is not None else None
            after = replace(before, zone_id=zone_id, **fields) if before is not None else None
            plan.changes.append(CsvRow(n, eid, zone_id, fields, before, after))
            continue
        password = new_password() if secrets else ""
        ep = Endpoint(EndpointInfo(eid, zone_id, name, lat, lon, address, admin_code, now),
                      secret_hash=hash_password(password) if secrets else "")
        plan.new.append(CsvNew(n, ep, password))
    if plan.errors:
        return CsvPlan(plan.errors)
    plan.made = {n.endpoint.id: n.endpoint for n in plan.new}
    return plan


def _same_place(now: EndpointInfo, before: EndpointInfo | None) -> bool:
    """Whether an endpoint's info is as an import planned it from: the same, or differing
    only by an alert's run-time group taking it or letting it go (its home zone the same)."""
    if before is None or now is before:
        return True
    return replace(now, zone_id=home_zone_id(now.zone_id)) == \
        replace(before, zone_id=home_zone_id(before.zone_id))


class EndpointRegistry:
    """The endpoints by id, saved to the store on every change. It moves an endpoint's
    live connections when its zone changes (through ``channels``), calls ``on_removed``
    when one is deleted and ``on_credentials`` when one gets a new MQTT password hash (added,
    rotated, imported). Raises EndpointError (unknown endpoint, bad field) or ZoneError."""

    def __init__(self, zones: ZoneTree, channels: dict[str, ZoneChannel],
                 store: Store | None = None) -> None:
        self._zones = zones
        self._channels = channels
        self._store = store
        self.endpoints: dict[str, Endpoint] = {}
        self.on_removed: list[Any] = []  # callbacks(endpoint id)
        self.on_credentials: list[Any] = []  # callbacks(endpoint ids): Loa's broker follows

    def load(self) -> None:
        """The saved registry; an endpoint whose zone is gone from the tree waits in the
        first root zone (and says so) rather than being lost."""
        if self._store is None:
            return
        for rec in self._store.load_endpoints():
            zone_id = rec["zone"]
            if zone_id not in self._zones:
                log.error("endpoint %s: zone %r is gone; it waits in %r", rec["id"], zone_id,
                          self._zones.roots()[0].id)
                zone_id = self._zones.roots()[0].id
            self.endpoints[rec["id"]] = Endpoint(
                EndpointInfo(rec["id"], zone_id, rec.get("name", ""), rec.get("lat"),
                             rec.get("lon"), rec.get("address", ""), rec.get("admin_code", ""),
                             float(rec.get("created_at", 0.0))),
                rec.get("volume_pct"), bool(rec.get("muted")), bool(rec.get("power_on", True)),
                rec.get("secret_hash", ""))

    def save(self, ep: Endpoint) -> None:
        """Write the endpoint's record (write-behind; nothing without a store)."""
        if self._store is not None:
            self._store.save_endpoint(ep.id, ep.record())

    def save_many(self, eps: list[Endpoint]) -> None:
        """One store write for them all (a zone command, an import): their states taken on
        the loop, their records made on the store's writer thread."""
        if self._store is not None and eps:
            self._store.save_endpoints([ep.state() for ep in eps], record_of)

    def secret_hash(self, endpoint_id: str) -> str | None:
        """The endpoint's MQTT password hash, or None if unknown or without one (the broker's
        authentication asks this)."""
        ep = self.endpoints.get(endpoint_id)
        return ep.secret_hash if ep is not None and ep.secret_hash else None

    def rotate_secret(self, endpoint_id: str) -> str:
        """A new MQTT password for the endpoint, returned once; only its hash is kept."""
        ep = self.get(endpoint_id)
        password = new_password()
        ep.secret_hash = hash_password(password)
        self.save(ep)
        self._credentials_changed(ep.id)
        return password

    def update(self, endpoint_id: str, fields: dict[str, Any]) -> Endpoint:
        """Name, place and address fields; the zone moves through ``move``. Every field is
        checked before any is taken: one that is not valid raises (``Explained``) and leaves
        the endpoint as it was, in memory as in the store."""
        ep = self.get(endpoint_id)
        changes: dict[str, Any] = {}
        for name in ("name", "address"):
            if name in fields:
                changes[name] = _text(fields[name], name)
        if "admin_code" in fields:
            changes["admin_code"] = _text(fields["admin_code"], "admin_code", 16)
        for name, limit in (("lat", 90), ("lon", 180)):
            if name in fields:
                changes[name] = _coord(fields[name], name, limit)
        ep.info = replace(ep.info, **changes)  # all at once, once all are good
        self.save(ep)
        return ep

    async def import_csv(self, data: str | bytes, charset: str | None = None) -> CsvImport:
        """Rows of id,name,zone,lat,lon,address,admin_code (a header line names the columns,
        in any case, with or without accents, in English or Vietnamese: see ``CSV_COLUMNS``;
        id and zone are required). Bytes are decoded as ``spreadsheet.decode`` says
        (``charset``: the request's, if it named one); the separator is guessed. All rows are
        checked first; with any error nothing is taken. An existing id is updated in place
        (its zone moves) and keeps its credentials; a new one gets an MQTT password, returned
        once.

        Decoding, parsing, checking and hashing the new passwords (tens of ms for 1,000
        rows), making the new endpoints and their store records run in a worker thread
        against a snapshot of the registry; the result is applied on the loop in one step,
        the new endpoints in a few C-level operations (4,000 took the loop 20-40 ms one at
        a time, 2026-12-01), with one store write for the lot (inside the caller's
        ``Store.transaction()`` if it opened one)."""
        infos = {eid: ep.info for eid, ep in self.endpoints.items()}
        zones = self._zone_names()
        plan = await asyncio.to_thread(plan_csv_import, data, frozenset(infos), zones,
                                       time.time(), charset, infos=infos)
        if plan.errors:
            return CsvImport([], [], plan.errors, {})
        # the registry may have changed while the plan was being made
        endpoints = self.endpoints
        added = endpoints.keys() & plan.made.keys()
        gone = {row.id for row in plan.changes} - endpoints.keys()
        edited = {row.id for row in plan.changes
                  if row.id not in gone and not _same_place(endpoints[row.id].info, row.before)}
        if added or gone or edited:
            stale = [Message(N_("line {line}: endpoint {endpoint!r} was added while the "
                                "import ran"), {"line": new.line, "endpoint": new.endpoint.id})
                     for new in plan.new if new.endpoint.id in added]
            stale += [Message(N_("line {line}: endpoint {endpoint!r} was removed while the "
                                 "import ran"), {"line": row.line, "endpoint": row.id})
                      for row in plan.changes if row.id in gone]
            stale += [Message(N_("line {line}: endpoint {endpoint!r} was changed while the "
                                 "import ran"), {"line": row.line, "endpoint": row.id})
                      for row in plan.changes if row.id in edited]
            return CsvImport([], [], stale, {})
        endpoints.update(plan.made)
        created = list(plan.made.values())
        passwords = {new.endpoint.id: new.password for new in plan.new}
        if created:
            self._credentials_changed(*plan.made)
        updated: list[Endpoint] = []
        moved = carried = 0
        for row in plan.changes:
            ep = endpoints[row.id]
            now = ep.info
            old_zone = now.zone_id
            # an alert's group keeps an endpoint whose home the row names, till the alert ends
            zone = old_zone if home_zone_id(old_zone) == row.zone_id else row.zone_id
            after = row.after
            ep.info = after if now is row.before and after is not None and \
                after.zone_id == zone else replace(now, zone_id=zone, **row.fields)
            updated.append(ep)
            if zone != old_zone:
                moved += 1
                if ep.subscribers:
                    carried += len(ep.subscribers)
                    self._carry(ep, zone)
        if moved:
            log.info("CSV import moved %d endpoints with %d open connections", moved, carried)
        self.save_many(created + updated)
        return CsvImport(created, updated, [], passwords)

    async def preview_csv(self, data: str | bytes, charset: str | None = None) -> CsvPreview:
        """What ``import_csv`` would do with the same rows, doing nothing: its errors (the
        same), or the endpoints it would make and what it would change in those that exist
        (``preview_csv_import``, in a worker thread; no password is made or hashed)."""
        return await asyncio.to_thread(preview_csv_import, data, dict(self.endpoints),
                                       self._zone_names(), time.time(), charset)

    def _zone_names(self) -> dict[str, str]:
        """The zones endpoints may live in (not alert groups), id → name: a snapshot for
        a worker thread."""
        return {z.id: z.name for z in self._zones if not is_alert_group(z.id)}

    def get(self, endpoint_id: str) -> Endpoint:
        """The endpoint, or EndpointError if unknown."""
        try:
            return self.endpoints[endpoint_id]
        except KeyError:
            raise EndpointError(N_("unknown endpoint {endpoint!r}"),
                                endpoint=endpoint_id) from None

    def add(self, endpoint_id: str, zone_id: str, name: Any = "", lat: Any = None,
            lon: Any = None, address: Any = "", admin_code: Any = "") -> Endpoint:
        """A new endpoint with a fresh credential hash (see ``rotate_secret`` for a password
        to give the device)."""
        if not ENDPOINT_ID.match(endpoint_id):
            raise EndpointError(N_("endpoint id {endpoint!r} must be 1-64 of A-Z a-z 0-9 . _ -"),
                                endpoint=endpoint_id)
        if endpoint_id in self.endpoints:
            raise EndpointError(N_("endpoint {endpoint!r} exists already"),
                                endpoint=endpoint_id)
        self._zones.get(zone_id)
        ep = Endpoint(EndpointInfo(endpoint_id, zone_id, _text(name, "name"),
                                   _coord(lat, "lat", 90), _coord(lon, "lon", 180),
                                   _text(address, "address"),
                                   _text(admin_code, "admin_code", 16), time.time()),
                      secret_hash=hash_password(new_password()))
        self.endpoints[endpoint_id] = ep
        self.save(ep)
        self._credentials_changed(endpoint_id)
        return ep

    def _credentials_changed(self, *endpoint_ids: str) -> None:
        for callback in self.on_credentials:
            callback(endpoint_ids)

    def remove(self, endpoint_id: str) -> None:
        """Forget an endpoint: close its stream connections, delete its record and tell the
        ``on_removed`` callbacks. EndpointError if unknown."""
        ep = self.get(endpoint_id)
        for sub in list(ep.subscribers):
            sub.close()
        del self.endpoints[endpoint_id]
        if self._store is not None:
            self._store.delete_endpoint(endpoint_id)
        for callback in self.on_removed:
            callback(endpoint_id)

    def in_zone(self, zone_id: str) -> list[Endpoint]:
        """Endpoints of the zone and every zone below it."""
        below = {z.id for z in self._zones.subtree(zone_id)}
        return [ep for ep in self.endpoints.values() if ep.zone_id in below]

    def attach(self, ep: Endpoint, sub: Subscriber) -> None:
        """Count a stream connection as the endpoint's; it is forgotten when the feed drops it."""
        ep.subscribers.add(sub)

        def gone(s: Subscriber) -> None:
            ep.subscribers.discard(s)

        sub.on_gone = gone

    def detach(self, ep: Endpoint, sub: Subscriber) -> None:
        """Forget a stream connection of the endpoint (it closed)."""
        ep.subscribers.discard(sub)

    def move(self, endpoint_id: str, zone_id: str) -> Endpoint:
        """Re-home the endpoint and carry its live connections to the new zone's streams."""
        ep = self.get(endpoint_id)
        self._zones.get(zone_id)
        old = ep.zone_id
        if self._move(ep, zone_id) and not is_alert_group(zone_id) and not is_alert_group(old):
            self.save(ep)  # alert groups are not saved
        return ep

    def _move(self, ep: Endpoint, zone_id: str) -> bool:
        """Move it and its connections (the zone exists); False if it was there already."""
        if zone_id == ep.zone_id:
            return False
        old, ep.zone_id = ep.zone_id, zone_id
        self._carry(ep, zone_id)
        log.info("endpoint %s moved from %s to %s with %d open connections", ep.id, old, zone_id,
                 len(ep.subscribers))
        return True

    def _carry(self, ep: Endpoint, zone_id: str) -> None:
        """Its open connections to the streams of ``zone_id`` (where it has just moved)."""
        channel = self._channels[zone_id]
        for sub in list(ep.subscribers):
            if sub.feed is not None:
                sub.feed.remove(sub)
            # Ogg: the new zone's header pages start a new chained logical stream.
            header = None
            if sub.format_name == "ws":
                notice = f'{{"type":"zone","zone":"{zone_id}"}}'.encode()
                header = ws_frame(WS_OPCODE_TEXT, notice)
            channel.join(sub, header)
