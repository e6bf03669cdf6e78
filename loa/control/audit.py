"""The audit log's hash chain, and where its entries come from.

Each audit entry records who (a configured token's name or an account's username), what (the
action and its subject, with a JSON detail), where (``zone``, the zone it acted on: the
smallest zone holding every zone it touched, none for what belongs to no zone; and ``zones``,
every zone it touched, so that an action on two communes is filed under each of them as well
as under the district that holds both) and from which address. Each is chained to the one
before it: its ``hash`` is the SHA-256 (hex) of the previous entry's hash followed by the
entry's canonical JSON (``entry_json``: its id, time, actor, action, subject, zone, address
and detail text, and its zones' text when it has any, keys sorted, no spaces, UTF-8), the
first entry's previous hash being ``GENESIS``. (Entries written before ``zones`` existed
have none, and their JSON has no ``zones`` key: their hashes are what they were.) So an entry
edited in the database no longer matches its hash, and one removed breaks the link of the
next. The newest entry's id and hash are also
kept in the ``kv`` table (``HEAD_KEY``), so that removing the newest entries shows too. (Whoever
can rewrite the whole file can recompute the chain: copy the head elsewhere to detect that.)

The chain is computed where the entry is written, on the store's writer thread, in the same
transaction as the entry (``append``): the previous hash is read from the database, so a
rolled-back or held write never leaves the chain out of step. ``verify`` reads a database
file (read-only) and names the first entry that breaks the chain.

``AUDIT_SOURCE``: the client a request comes from and the zones it acts on, set by the API for
the request's task; ``Store.audit`` takes the address and zone from it for entries that do
not name them, so that the entries written by the domain code a handler calls (an alert's
trigger) say where and from where too.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

GENESIS = "0" * 64  # the previous hash of the first entry
HEAD_KEY = "audit_head"  # kv: {"id", "hash"} of the newest entry
COLUMNS = ("id", "at", "actor", "action", "subject", "zone", "address", "detail", "zones")
# missing from databases written before the chain (issue 14): added, and the entries sealed
CHAIN_COLUMNS = ("zone", "address", "hash")
# missing from databases written before the touched zones were kept: added, nothing resealed
# (an entry without zones hashes as it did)
LATER_COLUMNS = ("zones",)


@dataclass(slots=True)
class AuditSource:
    """Where the entries written while serving one request come from: the client's
    ``address``, the ``zone`` the request acts on (the smallest holding every zone it
    touched; None until a scope check names one) and ``zones``, every zone it touched (home
    zones, in the order the checks named them, each once)."""

    address: str | None = None
    zone: str | None = None
    zones: list[str] = field(default_factory=list)


AUDIT_SOURCE: contextvars.ContextVar[AuditSource | None] = contextvars.ContextVar(
    "loa_audit_source", default=None)


def entry_json(row_id: int, at: float, actor: str, action: str, subject: str,
               zone: str | None, address: str | None, detail: str,
               zones: str | None = None) -> str:
    """The entry's canonical JSON, as hashed: ``detail`` and ``zones`` are the JSON texts as
    stored; an entry without zones (None) has no ``zones`` key, as before they were kept."""
    entry: dict[str, object] = {"id": row_id, "at": at, "actor": actor, "action": action,
                                "subject": subject, "zone": zone, "address": address,
                                "detail": detail}
    if zones is not None:
        entry["zones"] = zones
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def zones_text(zones: list[str] | tuple[str, ...] | None) -> str | None:
    """The touched zones as stored (a compact JSON list), None for none."""
    if not zones:
        return None
    return json.dumps(list(zones), separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: str, entry: str) -> str:
    """SHA-256 (hex) of the previous hash followed by the entry's canonical JSON."""
    return hashlib.sha256((previous + entry).encode()).hexdigest()


def _head(db: sqlite3.Connection, before_id: int) -> str:
    """The hash of the newest entry before ``before_id`` (``GENESIS`` for none)."""
    row = db.execute("SELECT hash FROM audit WHERE id < ? ORDER BY id DESC LIMIT 1",
                     (before_id,)).fetchone()
    return str(row[0]) if row and row[0] else GENESIS


def _set_head(db: sqlite3.Connection, row_id: int, digest: str) -> None:
    db.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
               "value=excluded.value", (HEAD_KEY, json.dumps({"id": row_id, "hash": digest})))


def append(db: sqlite3.Connection, *, at: float, actor: str, action: str, subject: str,
           zone: str | None, address: str | None, detail: str,
           zones: str | None = None) -> None:
    """Write one entry chained to the newest (on the writer thread, inside the write's
    transaction): insert it, hash it with its id, and move the head to it. (The insert
    comes first: it takes the write lock, waiting for it as every write does; a read first
    would make SQLite refuse the upgrade at once while another connection writes.)"""
    cur = db.execute("INSERT INTO audit(at, actor, action, subject, zone, address, detail, "
                     "zones, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '')",
                     (at, actor, action, subject, zone, address, detail, zones))
    row_id = cur.lastrowid
    assert row_id is not None
    previous = _head(db, row_id)
    digest = chain_hash(previous, entry_json(row_id, at, actor, action, subject, zone, address,
                                             detail, zones))
    db.execute("UPDATE audit SET hash = ? WHERE id = ?", (digest, row_id))
    _set_head(db, row_id, digest)


def migrate(db: sqlite3.Connection) -> None:
    """Give a database written before the chain its columns, and chain the entries it has
    (in one transaction): they are sealed as they are at the upgrade. A database written
    before the touched zones were kept gets their column alone: its chain stays as it is."""
    have = {row[1] for row in db.execute("PRAGMA table_info(audit)")}
    missing = [c for c in (*CHAIN_COLUMNS, *LATER_COLUMNS) if c not in have]
    if not missing:
        return
    db.execute("BEGIN")
    try:
        for column in missing:
            db.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
        if not any(c in missing for c in CHAIN_COLUMNS):
            db.execute("COMMIT")
            return
        previous, last = GENESIS, 0
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY id").fetchall()
        for row in rows:
            previous = chain_hash(previous, entry_json(*row))
            last = row[0]
            db.execute("UPDATE audit SET hash = ? WHERE id = ?", (previous, last))
        if last:
            _set_head(db, last, previous)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class ChainProblem(enum.Enum):
    """How the chain breaks at ``ChainCheck.bad_id``."""

    REMOVED = "removed"  # entries before it are missing (from ``ChainCheck.missing_from``)
    EDITED = "edited"  # it does not match its hash (edited, or the one before it replaced)
    END_REMOVED = "end removed"  # the newest entry written (``bad_id``) is gone
    APPENDED = "appended"  # it was added after the newest entry Loa wrote, by someone else
    NO_HEAD = "no head"  # the chain's head is missing from the kv table


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What ``verify`` found: ``entries`` read and found whole; ``bad_id``, the first entry
    where the chain breaks (None when it is whole), and how (``problem``): for REMOVED,
    the first missing id is ``missing_from``; for END_REMOVED, ``bad_id`` is the newest entry
    written, which the log no longer ends with (it ends at ``last_id``). ``head``: the hash
    of the newest whole entry (keep it elsewhere: a later check must reach it)."""

    entries: int
    bad_id: int | None = None
    problem: ChainProblem | None = None
    missing_from: int | None = None
    last_id: int = 0
    head: str = GENESIS

    @property
    def whole(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        """The finding in English (the command line says it in the user's language)."""
        if self.problem is None:
            return f"whole: {self.entries} entries"
        if self.problem is ChainProblem.REMOVED:
            return f"entries #{self.missing_from}-#{(self.bad_id or 0) - 1} removed before " \
                   f"#{self.bad_id}"
        if self.problem is ChainProblem.EDITED:
            return f"entry #{self.bad_id} does not match its hash: edited, or the entry " \
                   "before it replaced"
        if self.problem is ChainProblem.APPENDED:
            return f"entry #{self.bad_id} was added after the newest entry Loa wrote"
        if self.problem is ChainProblem.END_REMOVED:
            return f"the newest entry written, #{self.bad_id}, is gone: the log ends at " \
                   f"#{self.last_id}"
        return "the chain's head is missing from the kv table"


def verify(path: Path) -> ChainCheck:
    """Check the audit chain of the database file at ``path``, opened read-only (a running
    server may hold it). Blocking. Raises ``sqlite3.Error`` when it cannot be read, or
    ``FileNotFoundError`` when there is no such file."""
    if not path.is_file():
        raise FileNotFoundError(str(path))
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return _verify(db)
    finally:
        db.close()


def _verify(db: sqlite3.Connection) -> ChainCheck:
    previous, last_id, count = GENESIS, 0, 0
    have = {row[1] for row in db.execute("PRAGMA table_info(audit)")}
    # a database not yet upgraded (read-only here) has no touched zones: none, as hashed
    columns = ", ".join(c if c in have or c not in LATER_COLUMNS else f"NULL AS {c}"
                        for c in COLUMNS)
    for row in db.execute(f"SELECT {columns}, hash FROM audit ORDER BY id"):
        row_id, stored = row[0], row[-1]
        if row_id != last_id + 1:
            return ChainCheck(count, row_id, ChainProblem.REMOVED, last_id + 1, last_id,
                              previous)
        expected = chain_hash(previous, entry_json(*row[:-1]))
        if stored != expected:
            return ChainCheck(count, row_id, ChainProblem.EDITED, last_id=last_id,
                              head=previous)
        previous, last_id, count = expected, row_id, count + 1
    found = db.execute("SELECT value FROM kv WHERE key = ?", (HEAD_KEY,)).fetchone()
    if found is None:
        return ChainCheck(count, last_id, ChainProblem.NO_HEAD, last_id=last_id,
                          head=previous) if count else ChainCheck(count)
    head = json.loads(found[0])
    newest = head.get("id")
    if not isinstance(newest, int) or newest > last_id:
        return ChainCheck(count, newest if isinstance(newest, int) else last_id,
                          ChainProblem.END_REMOVED, last_id=last_id, head=previous)
    if newest < last_id:
        return ChainCheck(newest, newest + 1, ChainProblem.APPENDED, last_id=last_id,
                          head=str(head.get("hash")))
    if head.get("hash") != previous:
        return ChainCheck(count - 1, last_id, ChainProblem.EDITED, last_id=last_id)
    return ChainCheck(count, last_id=last_id, head=previous)
