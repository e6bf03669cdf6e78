"""The store: one writer thread, write-behind in submission order, failures that are logged
and counted but never raised, and a close that drains the queue."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from loa.control.store import Store, StoreClosed


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "loa.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    s = Store(path)
    yield s
    s.close()


def on_disk(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What another connection (another process, after a crash) finds in the file."""
    with sqlite3.connect(path) as db:
        return list(db.execute(sql))


async def test_writes_return_at_once_run_in_order_and_flush_makes_them_visible(
    store: Store, path: Path,
) -> None:
    # another connection holds the write lock: a write that waited for the disk would hang here
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    for i in range(100):
        store.audit("tester", "step", "order", {"i": i})
    store.set_value("k", "first")
    store.set_value("k", "second")  # the later write wins
    store.save_alert("a1", "pending", {"id": "a1", "note": "pending"})
    store.save_alert("a1", "active", {"id": "a1", "note": "active"})
    store.save_schedule("s1", {"id": "s1"})
    store.delete_schedule("s1")
    assert store.queued >= 100  # all waiting behind the lock, none lost
    assert on_disk(path, "SELECT COUNT(*) FROM audit") == [(0,)]
    other.execute("COMMIT")
    other.close()

    await store.flush()
    assert store.queued == 0 and store.failed_writes == 0
    details = on_disk(path, "SELECT detail FROM audit ORDER BY id")
    assert [json.loads(str(d))["i"] for (d,) in details] == list(range(100))
    assert on_disk(path, "SELECT value FROM kv WHERE key = 'k'") == [("second",)]
    assert on_disk(path, "SELECT status FROM alerts") == [("active",)]
    assert on_disk(path, "SELECT COUNT(*) FROM schedules") == [(0,)]
    # reads queue behind the writes before them, on the loop and off it
    store.audit("tester", "last", "order")
    newest = await store.audit_log_async("order", limit=2)
    assert [e["action"] for e in newest] == ["last", "step"]
    assert (await store.get_alert_async("a1")) == {"id": "a1", "note": "active"}
    assert store.get_value("k") == "second"


def refuse_doomed_rows(path: Path) -> None:
    """The database refuses some rows, as a full or failing disk would refuse them all (a
    read-only file would not do: the tests may run as root)."""
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TRIGGER refuse_audit BEFORE INSERT ON audit WHEN NEW.action = 'doomed'
            BEGIN SELECT RAISE(ABORT, 'disk says no'); END;
            CREATE TRIGGER refuse_log BEFORE INSERT ON broadcast_log WHEN NEW.label = 'doomed'
            BEGIN SELECT RAISE(ABORT, 'disk says no'); END;
        """)


async def test_a_refused_write_is_logged_and_counted_never_raised_and_later_writes_go_on(
    store: Store, path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.to_thread(refuse_doomed_rows, path)
    caplog.set_level(logging.ERROR, logger="loa.control.store")
    store.audit("op", "before", "s")
    store.audit("op", "doomed", "s", {"password": "hunter2-secret"})  # returns, raises nothing
    store.audit("op", "after", "s")
    row = ("an-binh", "Bản tin", "file", 50, "", 1.0, 2.0, "completed")
    store.log_broadcast([row, (*row[:4], "doomed", *row[5:])])  # one batch: all or nothing
    store.log_broadcast([row])
    await store.flush()

    assert store.failed_writes == 2
    assert [e["action"] for e in await store.audit_log_async("s")] == ["after", "before"]
    assert len(await store.broadcast_log_async("an-binh")) == 1  # the refused batch left nothing
    assert store.last_error is not None and "disk says no" in store.last_error
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert refused and "audit doomed s" in refused[0] and "disk says no" in refused[0]
    assert "hunter2-secret" not in caplog.text  # what failed is named, its data never shown


def test_close_drains_the_queue_and_later_writes_are_dropped_not_raised(
    path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """(Not on an event loop: close() blocks its caller while it drains, by design.)"""
    store = Store(path)
    store.log_presence([(f"loa-{i:03d}", i % 2 == 0, float(i), "test") for i in range(500)])
    for i in range(300):
        store.save_endpoint(f"loa-{i:03d}", {"id": f"loa-{i:03d}", "zone": "an-binh"})
    store.close()  # nothing flushed before: close writes what is queued
    store.audit("op", "too-late", "s")
    assert store.dropped_writes == 1 and "too-late" in caplog.text
    with pytest.raises(StoreClosed):
        store.audit_log()
    asyncio.run(store.flush())  # a closed store has nothing left to wait for

    again = Store(path)
    try:
        assert len(again.load_endpoints()) == 300
        history = again.presence(["loa-000", "loa-499"], until=1e9)
        assert history == {"loa-000": [(0.0, True)], "loa-499": [(499.0, False)]}
        assert again.audit_log() == []
    finally:
        again.close()


def test_a_database_that_cannot_be_opened_fails_at_construction(tmp_path: Path) -> None:
    (tmp_path / "loa.sqlite3").mkdir()  # a folder where the file should be
    with pytest.raises(sqlite3.Error):
        Store(tmp_path / "loa.sqlite3")


async def test_a_transaction_writes_all_of_its_block_or_nothing_and_holds_no_other_task(
    store: Store, path: Path,
) -> None:
    """The writes of a ``transaction()`` block reach the disk together, or none of them; a
    write another task makes meanwhile is its own."""
    await asyncio.to_thread(refuse_doomed_rows, path)
    inside = asyncio.Event()
    other_done = asyncio.Event()

    async def other_task() -> None:
        await inside.wait()
        store.audit("other", "meanwhile", "t")  # not caught in the block
        other_done.set()

    other = asyncio.create_task(other_task())
    with store.transaction():
        store.save_endpoints([{"id": "loa-001", "zone": "an-binh"}], dict)
        inside.set()
        await other_done.wait()
        await store.flush()  # a read: it waits for what is queued, the block's writes are not
        assert on_disk(path, "SELECT action FROM audit") == [("meanwhile",)]
        assert on_disk(path, "SELECT id FROM endpoints") == []
        with store.transaction():  # an inner block joins the outer one
            store.audit("op", "endpoint.import", "t")
        await store.flush()
        assert on_disk(path, "SELECT id FROM endpoints") == []
    await other
    with store.transaction():
        store.save_endpoints([{"id": "loa-002", "zone": "an-binh"}], dict)
        store.audit("op", "doomed", "t")  # refused: the endpoint row goes with it
    await store.flush()
    assert store.failed_writes == 1
    assert store.last_error is not None and "transaction of 2 writes" in store.last_error
    assert on_disk(path, "SELECT id FROM endpoints") == [("loa-001",)]
    assert [e["action"] for e in await store.audit_log_async("t")] == [
        "endpoint.import", "meanwhile"]


async def fill_the_disk(store: Store, full: bool = True) -> None:
    """Emulates a full disk as SQLite meets one: ``PRAGMA max_page_count`` on the store's own
    connection (a per-connection setting) caps the database at its present size, so every
    write that needs a new page fails with SQLITE_FULL, "database or disk is full", the
    error a full filesystem gives. ``full=False`` gives the room back. (The writes below carry
    kilobytes each, so that each needs new pages, as on a real full disk every write does.)"""
    def cap(db: sqlite3.Connection) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages if full else 1 << 30}")
    await store._read_async("fill the disk", cap)


BIG = {"text": "lũ " * 3000}  # about 9 kB: new pages for every write


async def test_writes_the_disk_refuses_are_held_in_order_and_written_once_it_has_room(
    store: Store, path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store.audit("op", "before", "d")
    await store.flush()
    await fill_the_disk(store)
    store.save_alert("a1", "active", {"id": "a1", "status": "active", **BIG})
    for i in range(5):
        store.audit("op", f"step {i}", "d", BIG)
    store.save_alert("a1", "completed", {"id": "a1", "status": "completed", **BIG})
    await store.flush()
    # held, in memory: the alert once (its later record replaced the earlier), five audits
    assert store.held_writes == 6 and store.failed_writes == 0 and store.lost_writes == 0
    assert store.disk_error is not None and "database or disk is full" in store.disk_error
    assert "the disk refuses writes" in caplog.text
    assert on_disk(path, "SELECT COUNT(*) FROM alerts") == [(0,)]
    # reads still answer, without the held writes
    assert [e["action"] for e in await store.audit_log_async("d")] == ["before"]

    await fill_the_disk(store, full=False)
    await store.flush()  # tries the held writes again
    assert store.held_writes == 0 and store.disk_error is None and store.lost_writes == 0
    assert on_disk(path, "SELECT status FROM alerts") == [("completed",)]
    assert [a for (a,) in on_disk(path, "SELECT action FROM audit ORDER BY id")] == [
        "before", *(f"step {i}" for i in range(5))]


async def test_the_hold_is_bounded_and_what_it_gives_up_is_counted_and_logged(
    path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store(path, held_max=3)
    try:
        await fill_the_disk(store)
        for i in range(5):
            store.audit("op", f"step {i}", "d", BIG)
        await store.flush()
        assert store.held_writes == 3 and store.lost_writes == 2 and store.failed_writes == 2
        assert "held for room on the disk are lost" in caplog.text
    finally:
        await asyncio.to_thread(store.close)  # the disk still full: the held ones are lost
    assert store.lost_writes == 5 and store.held_writes == 0
    assert on_disk(path, "SELECT COUNT(*) FROM audit") == [(0,)]
