"""The audit log's hash chain (issue 14): every entry chained to the one before by SHA-256, so
that an entry edited, removed or added in the SQLite file behind Loa's back is found, and
named, by ``loa audit verify``; a database from before the chain is sealed at its upgrade."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from loa.app import LoaServer
from loa.control.audit import ChainProblem, verify
from loa.control.store import Store
from tests.cli.shell import environment
from tests.server.test_api import call


def written(folder: Path, entries: int = 5) -> Path:
    """A database with ``entries`` audit entries, closed (everything on the main file)."""
    path = folder / "loa.sqlite3"
    store = Store(path)
    for i in range(entries):
        store.audit("op", f"step {i + 1}", "s", {"i": i, "chữ": "Xã An Bình"},
                    zone="an-binh", address="10.0.0.7")
    store.close()
    return path


def edited(path: Path, name: str, *statements: str) -> Path:
    """A copy of the database with ``statements`` run on it, as someone with the file would."""
    copy = path.with_name(name)
    shutil.copy(path, copy)
    db = sqlite3.connect(copy)
    with db:
        for sql in statements:
            db.execute(sql)
    db.close()
    return copy


def test_the_chain_finds_an_edited_a_removed_and_an_added_entry(tmp_path: Path) -> None:
    path = written(tmp_path)
    whole = verify(path)
    assert whole.whole and whole.entries == 5 and whole.problem is None
    found = verify(edited(path, "edited.sqlite3",
                          "UPDATE audit SET actor = 'someone-else' WHERE id = 3"))
    assert (found.bad_id, found.problem, found.entries) == (3, ChainProblem.EDITED, 2)
    found = verify(edited(path, "detail.sqlite3",
                          "UPDATE audit SET detail = '{\"i\": 9}' WHERE id = 2"))
    assert (found.bad_id, found.problem) == (2, ChainProblem.EDITED)
    found = verify(edited(path, "removed.sqlite3", "DELETE FROM audit WHERE id = 3"))
    assert (found.bad_id, found.problem, found.missing_from) == (4, ChainProblem.REMOVED, 3)
    assert found.describe() == "entries #3-#3 removed before #4"
    # removed and renumbered, so that the ids leave no gap: the next link breaks
    found = verify(edited(path, "renumbered.sqlite3", "DELETE FROM audit WHERE id = 3",
                          "UPDATE audit SET id = id - 1 WHERE id > 3"))
    assert (found.bad_id, found.problem) == (3, ChainProblem.EDITED)
    found = verify(edited(path, "newest.sqlite3", "DELETE FROM audit WHERE id = 5"))
    assert (found.bad_id, found.problem, found.last_id) == (5, ChainProblem.END_REMOVED, 4)
    found = verify(edited(path, "added.sqlite3",
                          "INSERT INTO audit(at, actor, action, subject, detail, hash) "
                          "SELECT at, actor, action, subject, detail, hash FROM audit "
                          "WHERE id = 5"))
    assert (found.bad_id, found.problem) == (6, ChainProblem.EDITED)


def test_a_database_from_before_the_chain_is_sealed_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "loa.sqlite3"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
                   "actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, "
                   "detail TEXT NOT NULL)")
        db.executemany("INSERT INTO audit(at, actor, action, subject, detail) "
                       "VALUES (?, 'admin', ?, 's', '{}')", [(1.5, "old 1"), (2.5, "old 2")])
    db.close()
    store = Store(path)
    store.audit("admin", "new", "s")
    assert [e["action"] for e in store.audit_log()] == ["new", "old 2", "old 1"]
    store.close()
    found = verify(path)
    assert found.whole and found.entries == 3


async def test_loa_audit_verify_names_the_first_bad_entry(server: LoaServer,
                                                         tmp_path: Path) -> None:
    for volume in (40, 50, 60):
        status, _ = await call(server, "POST", "/api/v1/zones/an-binh/commands",
                               json={"op": "volume", "volume_pct": volume})
        assert status == 202
    await server.store.flush()
    data_dir = Path(server.config.data_dir)
    env = environment(LANG="en_US.UTF-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "loa", "audit", "verify", *args],
                              env=env, capture_output=True, text=True, timeout=30,
                              check=False)

    # beside the running server, read-only
    ran = await asyncio.to_thread(run, "--data-dir", str(data_dir))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("The audit log is whole: ")
    entries = await asyncio.to_thread(_count, server.store.path)
    await server.stop()
    # someone softens the record of the second volume change
    second = entries - 1
    await asyncio.to_thread(_run_sql, server.store.path,
                            f"UPDATE audit SET detail = '{{}}' WHERE id = {second}")
    ran = await asyncio.to_thread(run, "--data-dir", str(data_dir))
    assert ran.returncode == 1
    assert ran.stdout == (f"The audit log is broken at entry #{second}: it does not match its "
                          "hash: it was edited, or the entry before it replaced. The "
                          f"{second - 1} entries before it are whole.\n")
    ran = await asyncio.to_thread(run, "--data-dir", str(data_dir), "--json")
    assert ran.returncode == 1 and f'"bad_id": {second}' in ran.stdout
    # in Vietnamese by default; and a folder without a database says so
    ran = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "loa", "audit", "verify", "--data-dir", str(tmp_path / "none")],
        env=environment(), capture_output=True, text=True, timeout=30, check=False)
    assert ran.returncode == 2 and "không có cơ sở dữ liệu" in ran.stderr


def _count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
    finally:
        db.close()


def _run_sql(path: Path, sql: str) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(sql)
    db.close()
