"""The audit log's hash chain, and where its entries come from.

Each audit entry records who (a configured token's name or an account's username), what (the
action and its subject, with a JSON detail), where (the zone it acted on: the smallest zone
holding every zone it touched; none for what belongs to no zone) and from which address. Each
is chained to the one before it: its ``hash`` is the SHA-256 (hex) of the previous entry's
hash followed by the entry's canonical JSON (``entry_json``: its id, time, actor, action,
subject, zone, address and detail text, keys sorted, no spaces, UTF-8), the first entry's
previous hash being ``GENESIS``. So an entry edited in the database no longer matches its
hash, and one removed breaks the link of the next. The newest entry's id and hash are also
kept in the ``kv`` table (``HEAD_KEY``), so that removing the newest entries shows too. (Whoever
can rewrite the whole file can recompute the chain: copy the head elsewhere to detect that.)

The chain is computed where the entry is written, on the store's writer thread, in the same
transaction as the entry (``append``): the previous hash is read from the database, so a
rolled-back or held write never leaves the chain out of step. ``verify`` reads a database
file (read-only) and names the first entry that breaks the chain.

``AUDIT_SOURCE``: the client a request comes from and the zone it acts on, set by the API for
the request's task; ``Store.audit`` takes the address and zone from it for entries that do
not name them, so that the entries written by the domain code a handler calls (an alert's
trigger) say where and from where too.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

GENESIS = "0" * 64  # the previous hash of the first entry
HEAD_KEY = "audit_head"  # kv: {"id", "hash"} of the newest entry
COLUMNS = ("id", "at", "actor", "action", "subject", "zone", "address", "detail")
ADDED_COLUMNS = ("zone", "address", "hash")  # missing from databases written before issue 14


@dataclass(slots=True)
class AuditSource:
    """Where the entries written while serving one request come from: the client's
    ``address`` and the ``zone`` the request acts on (None until a scope check names one)."""

    address: str | None = None
    zone: str | None = None


AUDIT_SOURCE: contextvars.ContextVar[AuditSource | None] = contextvars.ContextVar(
    "loa_audit_source", default=None)


def entry_json(row_id: int, at: float, actor: str, action: str, subject: str,
               zone: str | None, address: str | None, detail: str) -> str:
    """The entry's canonical JSON, as hashed: ``detail`` is the JSON text as stored."""
    return json.dumps({"id": row_id, "at": at, "actor": actor, "action": action,
                       "subject": subject, "zone": zone, "address": address, "detail": detail},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: str, entry: str) -> str:
    """SHA-256 (hex) of the previous hash followed by the entry's canonical JSON."""
    return hashlib.sha256((previous + entry).encode()).hexdigest()


def _head(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return str(row[0]) if row and row[0] else GENESIS


def _set_head(db: sqlite3.Connection, row_id: int, digest: str) -> None:
    db.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
               "value=excluded.value", (HEAD_KEY, json.dumps({"id": row_id, "hash": digest})))


def append(db: sqlite3.Connection, *, at: float, actor: str, action: str, subject: str,
           zone: str | None, address: str | None, detail: str) -> None:
    """Write one entry chained to the newest (on the writer thread, inside the write's
    transaction): insert it, hash it with its id, and move the head to it."""
    previous = _head(db)
    cur = db.execute("INSERT INTO audit(at, actor, action, subject, zone, address, detail, "
                     "hash) VALUES (?, ?, ?, ?, ?, ?, ?, '')",
                     (at, actor, action, subject, zone, address, detail))
    row_id = cur.lastrowid
    assert row_id is not None
    digest = chain_hash(previous, entry_json(row_id, at, actor, action, subject, zone, address,
                                             detail))
    db.execute("UPDATE audit SET hash = ? WHERE id = ?", (digest, row_id))
    _set_head(db, row_id, digest)


def migrate(db: sqlite3.Connection) -> None:
    """Give a database written before the chain its columns, and chain the entries it has
    (in one transaction): they are sealed as they are at the upgrade."""
    have = {row[1] for row in db.execute("PRAGMA table_info(audit)")}
    missing = [c for c in ADDED_COLUMNS if c not in have]
    if not missing:
        return
    db.execute("BEGIN")
    try:
        for column in missing:
            db.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
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


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What ``verify`` found: ``entries`` read; ``bad_id``, the first entry that breaks the
    chain (None when it is whole); ``problem``, what is wrong there (English)."""

    entries: int
    bad_id: int | None = None
    problem: str = ""

    @property
    def whole(self) -> bool:
        return self.bad_id is None


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
    for row in db.execute(f"SELECT {', '.join(COLUMNS)}, hash FROM audit ORDER BY id"):
        row_id, stored = row[0], row[-1]
        if row_id != last_id + 1:
            gone = (f"entry #{last_id + 1}" if row_id == last_id + 2
                    else f"entries #{last_id + 1}-#{row_id - 1}")
            return ChainCheck(count, row_id, f"{gone} removed: #{row_id} follows "
                              + (f"#{last_id}" if last_id else "nothing"))
        expected = chain_hash(previous, entry_json(*row[:-1]))
        if stored != expected:
            return ChainCheck(count, row_id, f"entry #{row_id} does not match its hash: it was "
                                             "edited, or the entry before it was replaced")
        previous, last_id, count = expected, row_id, count + 1
    found = db.execute("SELECT value FROM kv WHERE key = ?", (HEAD_KEY,)).fetchone()
    if found is not None:
        head = json.loads(found[0])
        if head.get("id") != last_id or head.get("hash") != previous:
            newest = head.get("id")
            return ChainCheck(count, newest if isinstance(newest, int) else last_id,
                              f"the newest entry written was #{newest}, but the log ends at "
                              f"#{last_id}: entries at its end were removed or replaced")
    elif count:
        return ChainCheck(count, last_id, "the chain's head is missing from the kv table")
    return ChainCheck(count)
