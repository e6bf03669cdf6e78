"""The loop watchdog over the whole test suite (issue 10: "the loop is sacred"): a test fails
when any single callback or task step holds an event loop for more than ``LIMIT_MS``, in this
process (``loa.monitoring.loop_watchdog``) or in a ``loa serve`` the test started as a process
(it inherits ``LOA_LOOP_WATCHDOG_MS`` and writes its slow steps to ``LOA_LOOP_WATCHDOG_FILE``).

A test that blocks on purpose says so with ``@pytest.mark.loop_blocking("why")``; the reason is
required, and the few such tests are listed by ``grep -rn loop_blocking tests``.

The limit is in CPU time of this machine at its best: a shared VM's CPU runs slower when its
neighbours on the host are busy (seen: whole runs where every step cost 1.5-2x its CPU time,
on an idle guest), which is time lost to other processes, not the step's own work. Before each
test a small fixed probe of Python work is timed (``_speed``); the limit is scaled by how much
slower it runs than the fastest it has run in this session, at most ``MAX_SLOWDOWN`` times.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import pytest

from loa.monitoring.loop_watchdog import LIMIT_MS, LoopWatchdog

WATCHDOG = LoopWatchdog(LIMIT_MS)
MAX_SLOWDOWN = 2.0  # a step over 40 ms fails however slow the machine is
_fastest_probe_ns = 0
_SERVERS_FILE = Path(tempfile.gettempdir()) / f"loa-loop-watchdog-{os.getpid()}.log"
_servers_seen = 0  # bytes of the servers' file already judged


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "loop_blocking(reason): this test blocks its event loop on purpose "
                   "(the loop watchdog lets it; say why)")
    config.addinivalue_line(
        "markers", "load_generator(reason): this test's own loop is a load generator (a "
                   "fleet of clients), judged by no limit; the `loa serve` processes it "
                   "measures still are")
    WATCHDOG.install()
    _SERVERS_FILE.write_text("")
    os.environ["LOA_LOOP_WATCHDOG_MS"] = f"{LIMIT_MS:g}"
    os.environ["LOA_LOOP_WATCHDOG_FILE"] = str(_SERVERS_FILE)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported so far lives for the whole run: keep it out of the full collections
    # that would otherwise land, 60-100 ms each, in whatever loop step allocates next (the
    # server does the same at its start).
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    WATCHDOG.uninstall()
    _SERVERS_FILE.unlink(missing_ok=True)


def _servers_slow() -> list[str]:
    global _servers_seen
    try:
        with _SERVERS_FILE.open("rb") as f:
            f.seek(_servers_seen)
            new = f.read()
    except FileNotFoundError:
        return []
    _servers_seen += len(new)
    return [line for line in new.decode(errors="replace").splitlines() if line.strip()]


def _check(item: pytest.Item, phase: str) -> None:
    slow = [str(s) for s in WATCHDOG.take()] + [f"(a loa serve process) {s}"
                                                for s in _servers_slow()]
    generator = item.get_closest_marker("load_generator")
    if generator is not None:
        if not generator.args or not str(generator.args[0]).strip():
            raise pytest.UsageError(f"{item.nodeid}: load_generator needs a reason")
        slow = [line for line in slow if line.startswith("(a loa serve process)")]
    marker = item.get_closest_marker("loop_blocking")
    if marker is not None:
        if not marker.args or not str(marker.args[0]).strip():
            raise pytest.UsageError(f"{item.nodeid}: loop_blocking needs a reason")
        return
    if slow:
        lines = "\n  ".join(slow[:10])
        more = f"\n  … and {len(slow) - 10} more" if len(slow) > 10 else ""
        limit_ms = WATCHDOG.limit_ns / 1e6
        pytest.fail(f"the event loop was held for over {limit_ms:.1f} ms during {phase} "
                    f"({LIMIT_MS:g} ms × the machine's slowdown now, "
                    f"{limit_ms / LIMIT_MS:.2f}):\n  {lines}{more}", pytrace=False)


def _probe_ns() -> int:
    """Thread CPU time of a fixed piece of Python work (~0.3 ms: objects made and summed)."""
    start = time.thread_time_ns()
    sum(len({"i": i, "s": str(i)}) for i in range(2000))
    return time.thread_time_ns() - start


def _speed() -> float:
    """How many times slower than its best this session the machine runs now (≥ 1)."""
    global _fastest_probe_ns
    now = min(_probe_ns() for _ in range(3))
    _fastest_probe_ns = min(_fastest_probe_ns, now) if _fastest_probe_ns else now
    return min(MAX_SLOWDOWN, max(1.0, now / _fastest_probe_ns))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    WATCHDOG.limit_ns = int(LIMIT_MS * _speed() * 1e6)
    WATCHDOG.take()  # whatever ran between tests is nobody's
    _servers_slow()
    result = yield
    _check(item, "setup")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    _check(item, "the test")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, None, None]:
    result = yield
    _check(item, "teardown")
    return result
