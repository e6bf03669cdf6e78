"""Durable records in SQLite (WAL): alerts with their history, the audit log (hash-chained:
``loa.control.audit``), the broadcast log, the endpoint registry and its presence history,
schedules, media metadata, accounts and their personal tokens, and a few settings.

Threading: one writer thread owns the SQLite connection and runs every statement, one at a
time, in the order they were submitted; the event loop, once it serves, never waits for
the disk.

- Writes are write-behind. ``save_alert``, ``audit``, ``log_broadcast``… encode their rows on
  the caller's thread (what you pass is what is written, whatever happens to it afterwards;
  ``save_endpoints`` alone takes immutable states and makes and encodes their records on the
  writer thread), queue
  the statement and return at once. A write that fails is logged (which statement and
  why, never its data) and counted in ``failed_writes``; it never raises into the caller, so
  an emergency alert plays whatever the disk does, and the writes queued after it still run.
- Reads queue behind the writes submitted before them, so they see every one of them.
  The ``*_async`` reads are for code on the event loop: their answer comes back through
  ``call_soon_threadsafe``. The plain reads block their caller until the answer is there:
  they are for start-up (before serving), worker threads (reports), the CLI and tests, never
  for the event loop while it serves.
- A write the disk refuses for want of room (SQLite's "database or disk is full", a write
  error: ``ENOSPC``, ``EFBIG`` under a file-size limit) is not lost: it is held, in memory,
  with every write submitted after it (their order kept), and retried every
  ``RETRY_INTERVAL_S`` until the disk takes it. ``held_writes`` counts them and ``disk_error``
  says why while the disk refuses (the "disk full" alarm reads both). The hold is bounded
  (``HELD_MAX``): a later write of the same record (an alert's, a setting's, a schedule
  item's…) replaces the one held, and beyond the bound the oldest held writes are given up,
  logged and counted in ``lost_writes`` (so are those still held when the store closes).
  While writes are held, reads do not see them.
- Each write is its own transaction. ``with store.transaction():`` makes the writes of a
  block one transaction: all of them are on the disk, or none (a CSV import's rows and its
  audit entry; a crash between two commits would keep one without the other).
- ``await flush()`` tries the held writes once more, then waits until everything queued so
  far is written (or held, or failed); ``close()`` drains the queue (bounded by a deadline),
  tries the held writes a last time, and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import itertools
import json
import logging
import queue
import sqlite3
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from loa.control import audit as audit_chain
from loa.core.disk import is_disk_full

log = logging.getLogger(__name__)

T = TypeVar("T")
Db = sqlite3.Connection
Reply = Callable[[Any, BaseException | None], None]

CLOSE_DEADLINE_S = 5.0  # how long close() waits for the queue to drain
FAILURE_LOG_INTERVAL_S = 1.0  # repeated write failures are logged at most this often
ID_CHUNK = 500  # ids per IN (…) list, under SQLite's bound-parameter limit
HELD_MAX = 10_000  # writes held while the disk refuses them; beyond, the oldest are lost
RETRY_INTERVAL_S = 1.0  # how often held writes are tried again
# SQLite's primary result codes that mean the disk did not take a write
DISK_RESULT_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})
OPEN = "on air"  # the end_reason of an open segment, as the report reads it

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    zone TEXT,
    address TEXT,
    hash TEXT,
    zones TEXT
);
CREATE INDEX IF NOT EXISTS audit_subject ON audit(subject);
CREATE TABLE IF NOT EXISTS broadcast_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    zone TEXT NOT NULL,
    programme TEXT NOT NULL,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    label TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    duration_s REAL NOT NULL,
    end_reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS broadcast_log_zone ON broadcast_log(zone, started_at);
CREATE TABLE IF NOT EXISTS broadcast_open (
    zone TEXT PRIMARY KEY,
    programme TEXT NOT NULL,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    label TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    online INTEGER NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS presence_endpoint ON presence(endpoint, at);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_tokens (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    data TEXT NOT NULL
);
"""

SAVE_ENDPOINT = ("INSERT INTO endpoints(id, data) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET "
                 "data=excluded.data")
BROADCAST_COLS = ("zone", "programme", "kind", "priority", "label", "started_at", "ended_at",
                  "duration_s", "end_reason")

BroadcastRow = tuple[str, str, str, int, str, float, float, str]
# (zone, programme, kind, priority, label, started_at): a segment on air now
OpenRow = tuple[str, str, str, int, str, float]
PresenceRow = tuple[str, bool, float, str]

CONTAINS_FUNCTION = "loa_contains"  # SQL: loa_contains(folded needle, text, …) (``contains``)
ALARM_ACTIONS = ("alarm.raised", "alarm.cleared")  # the audit actions of ``AlarmBoard``


def fold(text: str) -> str:
    """Text as a search compares it: composed (NFC: a decomposed ``ả`` is ``ả``) and without
    case (``casefold``: ``Đ`` is ``đ``), which SQLite's own LIKE does for ASCII only."""
    return unicodedata.normalize("NFC", text).casefold()


def contains(needle: str, *texts: Any) -> bool:
    """Whether any of ``texts`` (None counts as empty) holds ``needle`` (already ``fold``-ed),
    whatever its case: the store's SQL function ``loa_contains``."""
    return any(needle in fold(str(t)) for t in texts if t is not None)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """What a page of a log asks for: entries from ``since`` to ``until`` (unix s; None: no
    bound), of ``zones`` (None: every entry, those of no zone too), holding ``text`` (any
    case; "": any), at most ``limit`` of them, and where the page starts: ``before`` an
    entry id (older ones, newest first; the first page without it) or ``after`` one (newer
    ones, oldest first). ``subject``: the audit log's entries about that subject only."""

    since: float | None = None
    until: float | None = None
    zones: list[str] | None = None
    text: str = ""
    limit: int = 200
    before: int | None = None
    after: int | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class LogPage:
    """A page of a log: its entries, and ``next``, the id to ask the following page from in
    the same direction (as ``before``, or as ``after`` for a page asked ``after``); None at
    the end."""

    entries: list[dict[str, Any]]
    next: int | None


def encode(data: Any) -> str:
    """A record as the JSON text the store keeps."""
    return json.dumps(data, ensure_ascii=False)


class StoreClosed(RuntimeError):
    """A read asked of a store that has been closed."""


def disk_refused(exc: BaseException) -> bool:
    """Whether a failed statement failed because the disk did not take the write: SQLite's
    ``SQLITE_FULL`` (a full disk, or ``max_page_count``) or ``SQLITE_IOERR`` (a write error:
    ``EFBIG`` past a file-size limit, a failing disk), or an ``OSError`` that means a full
    disk. Such a write can succeed later; any other failure would fail again."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in DISK_RESULT_CODES
    return is_disk_full(exc)


@dataclass(eq=False)
class _Batch:
    """The writes of an open ``Store.transaction()`` block, queued together at its end."""

    store: Store
    writes: list[tuple[str, Callable[[Db], object]]] = field(default_factory=list)
    open: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)  # to_thread copies context


# The open transaction block of the running task (or thread): a context variable, so that
# the writes other tasks make meanwhile are not caught in it.
_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("loa_store_batch",
                                                                      default=None)


@dataclass(frozen=True, slots=True)
class _Job:
    what: str  # for the log if it fails: the statement and its key, never its data
    run: Callable[[Db], Any]
    reply: Reply | None = None  # a read's answer; None for a write
    # the record a write sets as a whole (a later write of it makes a held one useless)
    key: str | None = None


_RETRY = _Job("retry the held writes", lambda db: None)  # the writer's own wake-up


def _execute(sql: str, params: Sequence[Any]) -> Callable[[Db], object]:
    return lambda db: db.execute(sql, params)


def _execute_many(sql: str, rows: list[tuple[Any, ...]]) -> Callable[[Db], object]:
    return lambda db: db.executemany(sql, rows)


def _in_transaction(runs: list[Callable[[Db], object]]) -> Callable[[Db], None]:
    """One transaction for the statements: all of them or none."""
    def run(db: Db) -> None:
        db.execute("BEGIN")
        try:
            for statement in runs:
                statement(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # some errors (a full disk) have rolled it back already
                db.execute("ROLLBACK")
            raise
    return run


def _settle(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if fut.done():  # the reader was cancelled meanwhile
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class Store:
    """The SQLite database at ``path`` and the one thread that talks to it (see the module
    docstring for the threading model). ``held_max``: how many writes are held while the
    disk refuses them. Raises ``sqlite3.Error`` at construction if the database cannot be
    opened; after that, writes never raise and reads raise what their query raised, or
    ``StoreClosed``."""

    def __init__(self, path: Path, held_max: int = HELD_MAX) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.held_max = held_max  # writes held while the disk refuses them (oldest lost beyond)
        self.failed_writes = 0  # writes that never reached the disk (each was logged)
        self.lost_writes = 0  # of them: held for room, then given up (also in failed_writes)
        self.dropped_writes = 0  # writes submitted after close()
        self.last_error: str | None = None
        self.disk_error: str | None = None  # why the disk refuses writes now (None: it takes them)
        # writes waiting for room on the disk, in order (only the writer thread touches it)
        self._held: OrderedDict[object, _Job] = OrderedDict()
        self._retry_at_s = 0.0
        self._unique = itertools.count()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # nothing is queued behind the closing sentinel
        self._closed = False
        self._failure_logged_s = float("-inf")
        self._failures_unlogged = 0
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(path, opened),
                                        name=f"store-{path.name}", daemon=True)
        self._thread.start()
        opened.result()

    @property
    def queued(self) -> int:
        """Statements waiting for the writer thread."""
        return self._jobs.qsize()

    @property
    def held_writes(self) -> int:
        """Writes the disk refused, held for a retry (0 while it takes them)."""
        return len(self._held)

    async def flush(self) -> None:
        """Try the writes held for room on the disk once more, then wait until everything
        submitted so far is written, has failed, or is held."""
        try:
            await self._read_async("flush", self._retry_now)
        except StoreClosed:
            pass  # close() has drained the queue (or given up on it after its deadline)

    @property
    def closed(self) -> bool:
        """Closed: later writes are dropped (and logged), not raised."""
        return self._closed

    def close(self, deadline_s: float = CLOSE_DEADLINE_S) -> None:
        """Write what is queued, within ``deadline_s``, then close the database. Blocks its
        caller: from the event loop, run it in a thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._thread.join(deadline_s)
        if self._thread.is_alive():
            log.error("store %s: %d statement(s) still queued after %g s are left unwritten",
                      self.path, self.queued, deadline_s)

    # the writer thread

    def _run(self, path: Path, opened: concurrent.futures.Future[None]) -> None:
        try:
            db = sqlite3.connect(str(path), isolation_level=None)
            db.create_function(CONTAINS_FUNCTION, -1, contains, deterministic=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(f"BEGIN; {SCHEMA} COMMIT;")  # one commit for a new database
            audit_chain.migrate(db)  # a database from before the chain: sealed as it is
        except Exception as exc:
            opened.set_exception(exc)
            return
        opened.set_result(None)
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=RETRY_INTERVAL_S if self._held else None)
                except queue.Empty:  # only while writes are held: time to try them again
                    job = _RETRY
                if job is None:
                    break
                if self._held and time.monotonic() >= self._retry_at_s:
                    self._retry(db)
                if job is not _RETRY:
                    self._do(db, job)
            if self._held:
                self._retry(db)  # one last chance
            self._give_up(len(self._held), "the store closed with the disk still full")
            self._held.clear()
        finally:
            db.close()

    def _do(self, db: Db, job: _Job) -> None:
        if job.reply is None and self._held:  # behind the writes already waiting for room
            self._hold(job)
            return
        try:
            value = job.run(db)
        except Exception as exc:  # a refused statement must not end the writer
            if job.reply is not None:
                job.reply(None, exc)
            elif disk_refused(exc):
                self._disk_refused(job, exc)
            else:
                self._write_failed(job.what, exc)
            return
        if job.reply is not None:
            job.reply(value, None)

    def _disk_refused(self, job: _Job, exc: Exception) -> None:
        """The first write the disk refused: held, and the writes after it with it."""
        self.disk_error = f"{type(exc).__name__}: {exc}"
        self._retry_at_s = time.monotonic() + RETRY_INTERVAL_S
        log.error("store %s: the disk refuses writes (%s); %s and the writes after it are "
                  "held until it has room", self.path.name, self.disk_error, job.what)
        self._hold(job)

    def _hold(self, job: _Job) -> None:
        key = job.key if job.key is not None else next(self._unique)
        self._held.pop(key, None)  # a newer write of the same record replaces it
        self._held[key] = job
        over = len(self._held) - self.held_max
        for _ in range(max(0, over)):
            _, oldest = self._held.popitem(last=False)
            self._give_up(1, f"over {self.held_max} writes were held", oldest.what)

    def _retry_now(self, db: Db) -> None:
        if self._held:
            self._retry(db)

    def _retry(self, db: Db) -> None:
        """Write the held writes in order, until the disk refuses one again."""
        written = 0
        while self._held:
            key, job = next(iter(self._held.items()))
            try:
                job.run(db)
            except Exception as exc:
                if disk_refused(exc):
                    self.disk_error = f"{type(exc).__name__}: {exc}"
                    self._retry_at_s = time.monotonic() + RETRY_INTERVAL_S
                    break
                del self._held[key]
                self._write_failed(job.what, exc)
                continue
            del self._held[key]
            written += 1
        if not self._held and self.disk_error is not None:
            log.warning("store %s: the disk takes writes again; %d held write(s) written",
                        self.path.name, written)
            self.disk_error = None

    def _give_up(self, count: int, why: str, what: str = "") -> None:
        if not count:
            return
        self.lost_writes += count
        self.failed_writes += count
        now_s = time.monotonic()
        if now_s - self._failure_logged_s < FAILURE_LOG_INTERVAL_S:
            self._failures_unlogged += count
            return
        self._failure_logged_s, self._failures_unlogged = now_s, 0
        log.error("store %s: %d write(s) held for room on the disk are lost (%s)%s",
                  self.path.name, count, why, f": {what}" if what else "")

    def _write_failed(self, what: str, exc: Exception) -> None:
        self.failed_writes += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        now_s = time.monotonic()
        if now_s - self._failure_logged_s < FAILURE_LOG_INTERVAL_S:
            self._failures_unlogged += 1
            return
        more = self._failures_unlogged
        self._failure_logged_s, self._failures_unlogged = now_s, 0
        log.error("store %s: %s was not written (%s: %s)%s", self.path.name, what,
                  type(exc).__name__, exc,
                  f"; {more} more write(s) failed since the last report" if more else "")

    # submitting

    def _put(self, job: _Job) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._jobs.put(job)
            return True

    def _write(self, what: str, run: Callable[[Db], object], key: str | None = None) -> None:
        """Queue one write; ``key`` names the record it sets as a whole (held for room, a
        later write with the same key replaces it)."""
        batch = _BATCH.get()
        if batch is not None and batch.store is self:
            with batch.lock:
                if batch.open:
                    batch.writes.append((what, run))
                    return
        self._queue_write(what, [run], key)

    def _queue_write(self, what: str, runs: list[Callable[[Db], object]],
                     key: str | None = None) -> None:
        if not self._put(_Job(what, _in_transaction(runs), key=key)):
            self.dropped_writes += 1
            log.error("store %s is closed: %s was not written", self.path.name, what)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the writes of the block one transaction: every write this task (or thread)
        makes to this store inside it is held, and at the block's end they are queued as one
        job that commits all of them or none (a failure is logged and counted once, naming
        each write). Writes other tasks make meanwhile are not held: they may reach the disk
        first, so keep awaits out of the span from the block's first write to its end
        wherever another task may write the same records. An exception leaving the block
        does not drop the writes made before it (what they record has happened in memory):
        they are queued as they are. A block inside another one joins the outer one."""
        outer = _BATCH.get()
        if outer is not None and outer.store is self and outer.open:
            yield
            return
        batch = _Batch(self)
        token = _BATCH.set(batch)
        try:
            yield
        finally:
            _BATCH.reset(token)
            with batch.lock:
                batch.open = False
            if batch.writes:
                whats = [what for what, _ in batch.writes]
                what = whats[0] if len(whats) == 1 else \
                    f"transaction of {len(whats)} writes ({'; '.join(whats)})"
                self._queue_write(what, [run for _, run in batch.writes])

    def _read(self, what: str, run: Callable[[Db], T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a store read from inside the store's own thread")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def reply(value: Any, exc: BaseException | None) -> None:
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

        if not self._put(_Job(what, run, reply)):
            raise StoreClosed(f"store {self.path.name} is closed ({what})")
        return fut.result()

    async def _read_async(self, what: str, run: Callable[[Db], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def reply(value: Any, exc: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(_settle, fut, value, exc)
            except RuntimeError:  # the loop is closed: nobody waits for the answer any more
                pass

        if not self._put(_Job(what, run, reply)):
            raise StoreClosed(f"store {self.path.name} is closed ({what})")
        return await fut

    # alerts

    def save_alert(self, alert_id: str, status: str, data: dict[str, Any]) -> None:
        """Insert or replace an alert's record and status (write-behind)."""
        self._write(f"save_alert {alert_id}", _execute(
            "INSERT INTO alerts(id, status, data, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET status=excluded.status, data=excluded.data, "
            "updated_at=excluded.updated_at",
            (alert_id, status, encode(data), time.time())), key=f"alert {alert_id}")

    def load_alerts(self, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Every alert (or those in ``statuses``), oldest change first. Blocking."""
        return self._read("load_alerts", functools.partial(_load_alerts, statuses=statuses))

    async def load_alerts_async(self, statuses: tuple[str, ...] | None = None
                                ) -> list[dict[str, Any]]:
        """``load_alerts`` for code on the event loop."""
        return await self._read_async("load_alerts",
                                      functools.partial(_load_alerts, statuses=statuses))

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        """Blocking."""
        return self._read("get_alert", functools.partial(_get_alert, alert_id=alert_id))

    async def get_alert_async(self, alert_id: str) -> dict[str, Any] | None:
        """``get_alert`` for code on the event loop: the stored record, or None."""
        return await self._read_async("get_alert",
                                      functools.partial(_get_alert, alert_id=alert_id))

    # media library

    def save_media(self, media_id: str, data: dict[str, Any]) -> None:
        """Insert or replace a media item's metadata; ``created_at`` stays the first save's."""
        self._write(f"save_media {media_id}", _execute(
            "INSERT INTO media(id, data, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET data=excluded.data",
            (media_id, encode(data), time.time())), key=f"media {media_id}")

    def list_media(self) -> list[dict[str, Any]]:
        """Oldest first. Blocking (the media library reads it once, at start-up)."""
        return self._read("list_media", lambda db: [json.loads(r[0]) for r in db.execute(
            "SELECT data FROM media ORDER BY created_at")])

    def delete_media(self, media_id: str) -> None:
        """Delete a media item's record (write-behind; the file is the library's business)."""
        self._write(f"delete_media {media_id}",
                    _execute("DELETE FROM media WHERE id = ?", (media_id,)),
                    key=f"media {media_id}")

    # the endpoint registry and its presence history

    def save_endpoint(self, endpoint_id: str, data: dict[str, Any]) -> None:
        """Insert or replace one endpoint record (write-behind)."""
        self._write(f"save_endpoint {endpoint_id}",
                    _execute(SAVE_ENDPOINT, (endpoint_id, encode(data))),
                    key=f"endpoint {endpoint_id}")

    def save_endpoints(self, items: Sequence[T],
                       record: Callable[[T], dict[str, Any]]) -> None:
        """Many endpoint records in one transaction, each ``record(item)`` (a dict with its
        ``id``). Unlike the other writes, the records are made and encoded on the writer
        thread (4,000 of them took the loop 10-40 ms): pass values nobody changes afterwards
        (``Endpoint.state()``, made into records by ``record_of``)."""
        if items:
            def run(db: Db) -> object:
                records = [record(item) for item in items]
                return db.executemany(SAVE_ENDPOINT, [(r["id"], encode(r)) for r in records])
            self._write(f"save_endpoints ({len(items)})", run)

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint's record (write-behind; its presence history stays)."""
        self._write(f"delete_endpoint {endpoint_id}",
                    _execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,)),
                    key=f"endpoint {endpoint_id}")

    def load_endpoints(self) -> list[dict[str, Any]]:
        """Blocking (start-up)."""
        return self._read("load_endpoints", lambda db: [json.loads(r[0]) for r in db.execute(
            "SELECT data FROM endpoints ORDER BY id")])

    def log_presence(self, rows: list[PresenceRow]) -> None:
        """(endpoint, online, at, reason) transitions."""
        if rows:
            self._write(f"log_presence ({len(rows)})", _execute_many(
                "INSERT INTO presence(endpoint, online, at, reason) VALUES (?, ?, ?, ?)",
                [(e, int(o), at, r) for e, o, at, r in rows]))

    def presence(self, endpoints: list[str], until: float) -> dict[str, list[tuple[float, bool]]]:
        """Each endpoint's transitions (at, online) up to ``until``, oldest first. Blocking."""
        return self._read("presence", functools.partial(_presence, endpoints=list(endpoints),
                                                        until=until))

    # schedules

    def save_schedule(self, item_id: str, data: dict[str, Any]) -> None:
        """Insert or replace a schedule item (write-behind)."""
        self._write(f"save_schedule {item_id}", _execute(
            "INSERT INTO schedules(id, data) VALUES (?, ?) ON CONFLICT(id) DO "
            "UPDATE SET data=excluded.data", (item_id, encode(data))),
            key=f"schedule {item_id}")

    def delete_schedule(self, item_id: str) -> None:
        """Delete a schedule item (write-behind)."""
        self._write(f"delete_schedule {item_id}",
                    _execute("DELETE FROM schedules WHERE id = ?", (item_id,)),
                    key=f"schedule {item_id}")

    def load_schedules(self) -> list[dict[str, Any]]:
        """Blocking (start-up)."""
        return self._read("load_schedules", lambda db: [json.loads(r[0]) for r in db.execute(
            "SELECT data FROM schedules")])

    def set_value(self, key: str, value: str) -> None:
        """Set a setting in the key-value table (write-behind)."""
        self._write(f"set_value {key}", _execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
            "SET value=excluded.value", (key, value)), key=f"kv {key}")

    def get_value(self, key: str) -> str | None:
        """Blocking (start-up)."""
        def run(db: Db) -> str | None:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return str(row[0]) if row else None
        return self._read(f"get_value {key}", run)

    # broadcast log (nhật ký phát): ended segments, and the segments on air now (one per
    # zone at most), kept apart so that a crash leaves the latter to be closed at the next start

    def log_broadcast(self, rows: list[BroadcastRow]) -> None:
        """Ended segments: (zone, programme, kind, priority, label, started_at, ended_at,
        end_reason), times unix s. Each one's open record (same zone and start), if any, goes
        in the same transaction."""
        if rows:
            ended = [(z, s) for z, _, _, _, _, s, _, _ in rows]

            def run(db: Db) -> None:
                db.executemany(
                    f"INSERT INTO broadcast_log({', '.join(BROADCAST_COLS)}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(z, p, k, pr, lb, s, e, round(e - s, 3), r)
                     for z, p, k, pr, lb, s, e, r in rows])
                db.executemany("DELETE FROM broadcast_open WHERE zone = ? AND started_at = ?",
                               ended)
            self._write(f"log_broadcast ({len(rows)})", run)

    def open_broadcast(self, row: OpenRow) -> None:
        """A segment on air from now (zone, programme, kind, priority, label, started_at);
        it replaces the zone's previous open segment, if any."""
        self._write(f"open_broadcast {row[0]}", _execute(
            "INSERT INTO broadcast_open(zone, programme, kind, priority, label, started_at, "
            "seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(zone) DO UPDATE SET "
            "programme=excluded.programme, kind=excluded.kind, priority=excluded.priority, "
            "label=excluded.label, started_at=excluded.started_at, seen_at=excluded.seen_at",
            (*row, row[5])))

    def broadcasts_seen(self, at: float) -> None:
        """Every open segment was still on air at ``at`` (unix s): where a crash now would
        end it."""
        self._write("broadcasts_seen", _execute(
            "UPDATE broadcast_open SET seen_at = ? WHERE seen_at < ?", (at, at)),
            key="broadcasts_seen")

    def open_broadcasts(self) -> list[dict[str, Any]]:
        """The segments left open (zone, programme, kind, priority, label, started_at,
        seen_at). Blocking (start-up)."""
        return self._read("open_broadcasts", _open_broadcasts)

    def close_open_broadcasts(self, reason: str) -> None:
        """Move every open segment into the log, ended at the last time it was seen on air,
        for ``reason`` (one transaction, write-behind)."""
        cols = ", ".join(BROADCAST_COLS)

        def run(db: Db) -> None:
            db.execute(
                f"INSERT INTO broadcast_log({cols}) SELECT zone, programme, kind, priority, "
                "label, started_at, max(seen_at, started_at), "
                "round(max(seen_at, started_at) - started_at, 3), ? FROM broadcast_open "
                "ORDER BY started_at", (reason,))
            db.execute("DELETE FROM broadcast_open")
        self._write("close_open_broadcasts", run)

    def broadcast_between(self, zones: list[str], start: float, end: float
                          ) -> list[tuple[str, str, int, str, float, float, str]]:
        """(zone, kind, priority, label, started_at, ended_at, end_reason) overlapping
        [start, end): the ended segments, and those on air, ended so far at the last time they
        were seen on air (end_reason ``OPEN``). Blocking (reports run beside the loop)."""
        return self._read("broadcast_between", functools.partial(
            _broadcast_between, zones=list(zones), start=start, end=end))

    def broadcast_log(self, zone: str | None = None, since: float = 0.0, limit: int = 1000,
                      zones: list[str] | None = None) -> list[dict[str, Any]]:
        """Ended segments of ``zone`` (or every zone) from ``since`` (unix s), oldest first;
        ``zones``: only these zones' (None: every zone's). Blocking."""
        return self._read("broadcast_log", functools.partial(
            _broadcast_log, zone=zone, since=since, limit=limit, zones=zones))

    async def broadcast_log_async(self, zone: str | None = None, since: float = 0.0,
                                  limit: int = 1000, zones: list[str] | None = None
                                  ) -> list[dict[str, Any]]:
        """``broadcast_log`` for code on the event loop."""
        return await self._read_async("broadcast_log", functools.partial(
            _broadcast_log, zone=zone, since=since, limit=limit, zones=zones))

    # audit

    def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None,
              *, zone: str | None = None, address: str | None = None,
              zones: Sequence[str] | None = None) -> None:
        """Append an audit entry stamped with the wall time now (unix s), chained to the one
        before it (``loa.control.audit``); ``detail`` is encoded as JSON on the caller's thread.
        ``zone`` (where), ``zones`` (every zone it touched: the audit log of a scope holding
        any of them lists it) and ``address`` (from where) default to those of the request
        being served (``AUDIT_SOURCE``), if any."""
        source = audit_chain.AUDIT_SOURCE.get()
        if source is not None:
            zone = zone if zone is not None else source.zone
            zones = zones if zones is not None else source.zones
            address = address if address is not None else source.address
        touched = list(dict.fromkeys(zones or ()))
        self._write(f"audit {action} {subject}", functools.partial(
            audit_chain.append, at=time.time(), actor=actor, action=action, subject=subject,
            zone=zone, address=address, detail=encode(detail or {}),
            zones=audit_chain.zones_text(touched)))

    def audit_log(self, subject: str | None = None, limit: int = 200,
                  zones: list[str] | None = None) -> list[dict[str, Any]]:
        """Newest first: id, at, actor, action, subject, zone, zones (those it touched, []
        for none), address, detail. ``zones``: only the entries made in these zones, or that
        touched one of them (None: every entry). Blocking."""
        return self._read("audit_log", functools.partial(_audit_log, subject=subject,
                                                         limit=limit, zones=zones))

    async def audit_log_async(self, subject: str | None = None, limit: int = 200,
                              zones: list[str] | None = None) -> list[dict[str, Any]]:
        """``audit_log`` for code on the event loop: newest first."""
        return await self._read_async("audit_log", functools.partial(
            _audit_log, subject=subject, limit=limit, zones=zones))

    async def broadcast_page_async(self, query: LogQuery) -> LogPage:
        """A page of the broadcast log's ended segments (those of ``broadcast_log`` with
        their ``id``, the order they ended in): those overlapping [since, until] (ended at
        or after ``since``, started at or before ``until``) whose programme, label, kind or
        end reason holds ``query.text``; newest first (oldest first ``after`` an id)."""
        return await self._read_async("broadcast_page", functools.partial(
            _broadcast_page, query=query))

    async def audit_page_async(self, query: LogQuery) -> LogPage:
        """A page of the audit log (the entries of ``audit_log``): made from ``since`` to
        ``until`` (``at``), whose actor, action, subject or detail holds ``query.text``;
        newest first (oldest first ``after`` an id)."""
        return await self._read_async("audit_page", functools.partial(_audit_page,
                                                                      query=query))

    async def alarm_history_async(self, query: LogQuery) -> LogPage:
        """Alarms as they came and went, from the audit log's ``alarm.raised`` and
        ``alarm.cleared`` entries: each raise with what ended it, newest raise first
        (oldest first ``after`` an id), those whose subject or detail holds ``text``
        (``zones``, ``limit``, ``before`` as for the other logs). Each: ``id`` (the raise's
        entry), ``kind``, ``subject``, ``zone``, ``detail``, ``raised_at``, ``cleared_at``
        (None when no clear followed it), ``ended`` (``"cleared"``; ``"raised again"``: a
        later raise of the same alarm came first, the server having stopped meanwhile;
        None: nothing yet, it may still be raised). Those whose time overlaps [since,
        until]: raised at or before ``until``, and cleared at or after ``since`` (or not
        cleared; raised again: raised at or after ``since``)."""
        return await self._read_async("alarm_history", functools.partial(
            _alarm_history, query=query))

    # accounts (loa.control.accounts) and their personal tokens

    def save_user(self, username: str, data: dict[str, Any]) -> None:
        """Insert or replace an account's record (write-behind)."""
        self._write(f"save_user {username}", _execute(
            "INSERT INTO users(username, data) VALUES (?, ?) ON CONFLICT(username) DO UPDATE "
            "SET data=excluded.data", (username, encode(data))), key=f"user {username}")

    def delete_user(self, username: str) -> None:
        """Delete an account and its personal tokens, in one transaction (write-behind)."""
        def run(db: Db) -> None:
            db.execute("DELETE FROM user_tokens WHERE username = ?", (username,))
            db.execute("DELETE FROM users WHERE username = ?", (username,))
        self._write(f"delete_user {username}", run, key=f"user {username}")

    def load_users(self) -> list[dict[str, Any]]:
        """Every account's record. Blocking (start-up)."""
        return self._read("load_users", lambda db: [json.loads(r[0]) for r in db.execute(
            "SELECT data FROM users ORDER BY username")])

    def save_user_token(self, token_id: str, username: str, data: dict[str, Any]) -> None:
        """Insert or replace a personal token's record (its SHA-256, never the token)."""
        self._write(f"save_user_token {token_id}", _execute(
            "INSERT INTO user_tokens(id, username, data) VALUES (?, ?, ?) ON CONFLICT(id) DO "
            "UPDATE SET data=excluded.data", (token_id, username, encode(data))),
            key=f"user_token {token_id}")

    def delete_user_token(self, token_id: str) -> None:
        """Delete a personal token's record (write-behind)."""
        self._write(f"delete_user_token {token_id}",
                    _execute("DELETE FROM user_tokens WHERE id = ?", (token_id,)),
                    key=f"user_token {token_id}")

    def load_user_tokens(self) -> list[dict[str, Any]]:
        """Every personal token's record. Blocking (start-up)."""
        return self._read("load_user_tokens", lambda db: [json.loads(r[0]) for r in db.execute(
            "SELECT data FROM user_tokens ORDER BY rowid")])


# the queries, run on the writer thread


def _load_alerts(db: Db, statuses: tuple[str, ...] | None) -> list[dict[str, Any]]:
    if statuses:
        marks = ",".join("?" * len(statuses))
        rows = db.execute(
            f"SELECT data FROM alerts WHERE status IN ({marks}) ORDER BY updated_at", statuses)
    else:
        rows = db.execute("SELECT data FROM alerts ORDER BY updated_at")
    return [json.loads(r[0]) for r in rows]


def _get_alert(db: Db, alert_id: str) -> dict[str, Any] | None:
    row = db.execute("SELECT data FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return json.loads(row[0]) if row else None


def _presence(db: Db, endpoints: list[str], until: float
              ) -> dict[str, list[tuple[float, bool]]]:
    out: dict[str, list[tuple[float, bool]]] = {e: [] for e in endpoints}
    for i in range(0, len(endpoints), ID_CHUNK):
        chunk = endpoints[i:i + ID_CHUNK]
        marks = ",".join("?" * len(chunk))
        for e, online, at in db.execute(
                f"SELECT endpoint, online, at FROM presence WHERE endpoint IN ({marks}) "
                "AND at < ? ORDER BY at, id", (*chunk, until)):
            out[e].append((at, bool(online)))
    return out


def _broadcast_between(db: Db, zones: list[str], start: float, end: float
                       ) -> list[tuple[str, str, int, str, float, float, str]]:
    marks = ",".join("?" * len(zones))
    return list(db.execute(
        f"SELECT zone, kind, priority, label, started_at, ended_at, end_reason "
        f"FROM broadcast_log WHERE zone IN ({marks}) AND started_at < ? AND ended_at > ? "
        f"UNION ALL SELECT zone, kind, priority, label, started_at, seen_at, ? "
        f"FROM broadcast_open WHERE zone IN ({marks}) AND started_at < ? AND seen_at > ? "
        f"ORDER BY started_at", (*zones, end, start, OPEN, *zones, end, start)))


def _open_broadcasts(db: Db) -> list[dict[str, Any]]:
    cols = ("zone", "programme", "kind", "priority", "label", "started_at", "seen_at")
    return [dict(zip(cols, row, strict=True)) for row in db.execute(
        f"SELECT {', '.join(cols)} FROM broadcast_open ORDER BY started_at")]


def _broadcast_log(db: Db, zone: str | None, since: float, limit: int,
                   zones: list[str] | None) -> list[dict[str, Any]]:
    cols = ", ".join(BROADCAST_COLS)
    where, params = _zones_clause(zones)
    if zone:
        where.append("zone = ?")
        params.append(zone)
    where.append("started_at >= ?")
    rows = db.execute(f"SELECT {cols} FROM broadcast_log WHERE {' AND '.join(where)} "
                      "ORDER BY id LIMIT ?", (*params, since, limit))
    return [dict(zip(BROADCAST_COLS, row, strict=True)) for row in rows]


AUDIT_COLS = "id, at, actor, action, subject, zone, zones, address, detail"


def _audit_entry(row: Sequence[Any]) -> dict[str, Any]:
    """An audit row (``AUDIT_COLS``) as the logs answer it."""
    rid, at, actor, action, subject, zone, zones, address, detail = row
    return {"id": rid, "at": at, "actor": actor, "action": action, "subject": subject,
            "zone": zone, "zones": json.loads(zones) if zones else [], "address": address,
            "detail": json.loads(detail)}


def _audit_log(db: Db, subject: str | None, limit: int, zones: list[str] | None
               ) -> list[dict[str, Any]]:
    where, params = _audit_zones_clause(zones)
    if subject:
        where.append("subject = ?")
        params.append(subject)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = db.execute(f"SELECT {AUDIT_COLS} FROM audit {clause}ORDER BY id DESC LIMIT ?",
                      (*params, limit))
    return [_audit_entry(row) for row in rows]


def _zones_clause(zones: list[str] | None) -> tuple[list[str], list[Any]]:
    """A WHERE condition keeping the rows of ``zones`` (none for None: every row)."""
    if zones is None:
        return [], []
    return [f"zone IN ({','.join('?' * len(zones))})"], list(zones)


def _audit_zones_clause(zones: list[str] | None, table: str = "audit"
                        ) -> tuple[list[str], list[Any]]:
    """A WHERE condition keeping the audit entries (of ``table``, a name or an alias) made in
    ``zones`` or that touched one of them (none for None: every entry)."""
    if zones is None:
        return [], []
    marks = ",".join("?" * len(zones))
    return [f"({table}.zone IN ({marks}) OR EXISTS (SELECT 1 FROM json_each({table}.zones) "
            f"WHERE json_each.value IN ({marks})))"], [*zones, *zones]


def _page_clause(query: LogQuery, bounds: list[str], fields: list[str], audit: bool = False
                 ) -> tuple[list[str], list[Any], str]:
    """The WHERE conditions and parameters of a log page (``bounds``: conditions on
    ``since`` then ``until``, each with one ``?``; ``fields``: the columns ``text`` is
    looked for in; ``audit``: the audit log's, whose entries are kept by their touched zones
    too) and its ORDER BY."""
    where, params = _audit_zones_clause(query.zones) if audit else _zones_clause(query.zones)
    for condition, bound in zip(bounds, (query.since, query.until), strict=True):
        if bound is not None:
            where.append(condition)
            params.append(bound)
    if query.text:
        where.append(f"{CONTAINS_FUNCTION}(?, {', '.join(fields)})")
        params.append(fold(query.text))
    order = "id DESC"
    if query.after is not None:
        where.append("id > ?")
        params.append(query.after)
        order = "id"
    elif query.before is not None:
        where.append("id < ?")
        params.append(query.before)
    return where, params, order


def _paged(rows: list[dict[str, Any]], limit: int) -> LogPage:
    """The first ``limit`` of ``rows`` (read ``limit + 1``: one more says there are more)."""
    if len(rows) > limit:
        return LogPage(rows[:limit], rows[limit - 1]["id"])
    return LogPage(rows, None)


def _broadcast_page(db: Db, query: LogQuery) -> LogPage:
    where, params, order = _page_clause(query, ["ended_at >= ?", "started_at <= ?"],
                                        ["programme", "label", "kind", "end_reason"])
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    cols = ("id", *BROADCAST_COLS)
    rows = db.execute(f"SELECT {', '.join(cols)} FROM broadcast_log {clause}ORDER BY {order} "
                      "LIMIT ?", (*params, query.limit + 1))
    return _paged([dict(zip(cols, row, strict=True)) for row in rows], query.limit)


def _audit_page(db: Db, query: LogQuery) -> LogPage:
    where, params, order = _page_clause(query, ["at >= ?", "at <= ?"],
                                        ["actor", "action", "subject", "detail"], audit=True)
    if query.subject is not None:
        where.append("subject = ?")
        params.append(query.subject)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = db.execute(f"SELECT {AUDIT_COLS} FROM audit {clause}ORDER BY {order} LIMIT ?",
                      (*params, query.limit + 1))
    return _paged([_audit_entry(row) for row in rows], query.limit)


def _alarm_history(db: Db, query: LogQuery) -> LogPage:
    where, params = _audit_zones_clause(query.zones, "r")
    where.append("r.action = ?")
    params.append(ALARM_ACTIONS[0])
    if query.until is not None:
        where.append("r.at <= ?")
        params.append(query.until)
    if query.text:
        where.append(f"{CONTAINS_FUNCTION}(?, r.subject, r.detail)")
        params.append(fold(query.text))
    order = "DESC"
    if query.after is not None:
        where.append("r.id > ?")
        params.append(query.after)
        order = ""
    elif query.before is not None:
        where.append("r.id < ?")
        params.append(query.before)
    ended: list[Any] = []
    if query.since is not None:
        # the end (the next entry of the same alarm: its clear, or a raise again) at or after
        # since; or none yet
        ended = ["WHERE n.id IS NULL OR (n.action = ? AND n.at >= ?) OR (n.action = ? AND "
                 "raised.at >= ?)", ALARM_ACTIONS[1], query.since, ALARM_ACTIONS[0],
                 query.since]
    # each raise with the next entry of the same alarm (subject and kind) after it
    rows = db.execute(
        "WITH raised AS (SELECT r.id, r.at, r.subject, r.zone, r.detail, "
        "(SELECT min(e.id) FROM audit e WHERE e.subject = r.subject AND e.id > r.id "
        "AND e.action IN (?, ?) AND json_extract(e.detail, '$.kind') = "
        "json_extract(r.detail, '$.kind')) AS next_id "
        f"FROM audit r WHERE {' AND '.join(where)}) "
        "SELECT raised.id, raised.at, raised.subject, raised.zone, raised.detail, n.action, "
        f"n.at FROM raised LEFT JOIN audit n ON n.id = raised.next_id {ended[0] if ended else ''}"
        f" ORDER BY raised.id {order} LIMIT ?",
        (*ALARM_ACTIONS, *params, *ended[1:], query.limit + 1))
    out = []
    for rid, at, subject, zone, detail, next_action, next_at in rows:
        data = json.loads(detail)
        cleared = next_action == ALARM_ACTIONS[1]
        out.append({"id": rid, "kind": data.get("kind"), "subject": subject, "zone": zone,
                    "detail": data.get("detail", ""), "raised_at": at,
                    "cleared_at": next_at if cleared else None,
                    "ended": "cleared" if cleared else
                    "raised again" if next_action is not None else None})
    return _paged(out, query.limit)
