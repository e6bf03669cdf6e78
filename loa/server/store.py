"""Durable records in SQLite (WAL): alerts with their history, and the audit log.

Writes are a few rows per operator action, so they run on the event loop; nothing on the
audio path touches the database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

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
    detail TEXT NOT NULL
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
"""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # alerts

    def save_alert(self, alert_id: str, status: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO alerts(id, status, data, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET status=excluded.status, data=excluded.data, "
            "updated_at=excluded.updated_at",
            (alert_id, status, json.dumps(data, ensure_ascii=False), time.time()),
        )

    def load_alerts(self, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            rows = self._db.execute(
                f"SELECT data FROM alerts WHERE status IN ({marks}) ORDER BY updated_at",
                statuses)
        else:
            rows = self._db.execute("SELECT data FROM alerts ORDER BY updated_at")
        return [json.loads(r[0]) for r in rows]

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return json.loads(row[0]) if row else None

    # media library

    def save_media(self, media_id: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO media(id, data, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET data=excluded.data",
            (media_id, json.dumps(data, ensure_ascii=False), time.time()))

    def get_media(self, media_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM media WHERE id = ?", (media_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_media(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT data FROM media ORDER BY created_at")
        return [json.loads(r[0]) for r in rows]

    def delete_media(self, media_id: str) -> None:
        self._db.execute("DELETE FROM media WHERE id = ?", (media_id,))

    # the endpoint registry and its presence history

    def save_endpoint(self, endpoint_id: str, data: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO endpoints(id, data) VALUES (?, ?) ON CONFLICT(id) DO "
                         "UPDATE SET data=excluded.data",
                         (endpoint_id, json.dumps(data, ensure_ascii=False)))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._db.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))

    def load_endpoints(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in
                self._db.execute("SELECT data FROM endpoints ORDER BY id")]

    def log_presence(self, rows: list[tuple[str, bool, float, str]]) -> None:
        """(endpoint, online, at, reason) transitions."""
        with self._db:
            self._db.executemany(
                "INSERT INTO presence(endpoint, online, at, reason) VALUES (?, ?, ?, ?)",
                [(e, int(o), at, r) for e, o, at, r in rows])

    def presence(self, endpoints: list[str], until: float) -> dict[str, list[tuple[float, bool]]]:
        """Each endpoint's transitions (at, online) up to ``until``, oldest first."""
        out: dict[str, list[tuple[float, bool]]] = {e: [] for e in endpoints}
        for i in range(0, len(endpoints), 500):
            chunk = endpoints[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for e, online, at in self._db.execute(
                    f"SELECT endpoint, online, at FROM presence WHERE endpoint IN ({marks}) "
                    "AND at < ? ORDER BY at, id", (*chunk, until)):
                out[e].append((at, bool(online)))
        return out

    # schedules

    def save_schedule(self, item_id: str, data: dict[str, Any]) -> None:
        self._db.execute("INSERT INTO schedules(id, data) VALUES (?, ?) ON CONFLICT(id) DO "
                         "UPDATE SET data=excluded.data",
                         (item_id, json.dumps(data, ensure_ascii=False)))

    def delete_schedule(self, item_id: str) -> None:
        self._db.execute("DELETE FROM schedules WHERE id = ?", (item_id,))

    def load_schedules(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT data FROM schedules")]

    def set_value(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                         "SET value=excluded.value", (key, value))

    def get_value(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # broadcast log (nhật ký phát)

    def log_broadcast(self, rows: list[tuple[str, str, str, int, str, float, float, str]]) -> None:
        """(zone, programme, kind, priority, label, started_at, ended_at, end_reason)."""
        with self._db:
            self._db.executemany(
                "INSERT INTO broadcast_log(zone, programme, kind, priority, label, started_at, "
                "ended_at, duration_s, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(z, p, k, pr, lb, s, e, round(e - s, 3), r) for z, p, k, pr, lb, s, e, r in rows])

    def broadcast_between(self, zones: list[str], start: float, end: float
                          ) -> list[tuple[str, str, int, str, float, float]]:
        """(zone, kind, priority, label, started_at, ended_at) overlapping [start, end)."""
        marks = ",".join("?" * len(zones))
        return list(self._db.execute(
            f"SELECT zone, kind, priority, label, started_at, ended_at FROM broadcast_log "
            f"WHERE zone IN ({marks}) AND started_at < ? AND ended_at > ? ORDER BY started_at",
            (*zones, end, start)))

    def broadcast_log(self, zone: str | None = None, since: float = 0.0, limit: int = 1000
                      ) -> list[dict[str, Any]]:
        cols = "zone, programme, kind, priority, label, started_at, ended_at, duration_s, end_reason"
        if zone:
            rows = self._db.execute(
                f"SELECT {cols} FROM broadcast_log WHERE zone = ? AND started_at >= ? "
                "ORDER BY id LIMIT ?", (zone, since, limit))
        else:
            rows = self._db.execute(
                f"SELECT {cols} FROM broadcast_log WHERE started_at >= ? ORDER BY id LIMIT ?",
                (since, limit))
        names = [c.strip() for c in cols.split(",")]
        return [dict(zip(names, row, strict=True)) for row in rows]

    # audit

    def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None
              ) -> None:
        self._db.execute(
            "INSERT INTO audit(at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), actor, action, subject, json.dumps(detail or {}, ensure_ascii=False)))

    def audit_log(self, subject: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if subject:
            rows = self._db.execute(
                "SELECT at, actor, action, subject, detail FROM audit WHERE subject = ? "
                "ORDER BY id DESC LIMIT ?", (subject, limit))
        else:
            rows = self._db.execute(
                "SELECT at, actor, action, subject, detail FROM audit ORDER BY id DESC LIMIT ?",
                (limit,))
        return [{"at": at, "actor": actor, "action": action, "subject": subj,
                 "detail": json.loads(detail)} for at, actor, action, subj, detail in rows]
