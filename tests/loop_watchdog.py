"""A watchdog on every event loop of the test suite: a test fails when any single callback or
task step holds its loop for more than ``LIMIT_MS`` (issue 10: "the loop is sacred").

It wraps ``asyncio.events.Handle._run``, through which the standard event loop runs every
callback, task step and I/O handler, and judges each step by its own work, not by time the
machine gave to other processes (the suite must not be flaky on a busy 2-core machine):

- CPU time of the loop's thread during the step (``CLOCK_THREAD_CPUTIME_ID``); plus
- time the thread spent blocked of its own accord (a sleep, disk or socket I/O, a lock): the
  step's wall time minus its CPU time, counted only when the kernel did not preempt the thread
  during the step (``ru_nivcsw`` unchanged). A preempted step is judged by its CPU time alone,
  since its wall time then includes other processes' turns.

A test that blocks on purpose says so with ``@pytest.mark.loop_blocking("why")``; the reason is
required, and the few such tests are listed by ``grep -rn loop_blocking tests``.
"""

from __future__ import annotations

import asyncio.events
import gc
import resource
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

LIMIT_MS = 20.0
_LIMIT_NS = int(LIMIT_MS * 1e6)
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


@dataclass(frozen=True)
class SlowStep:
    """One loop step over the limit: what ran, and how its time splits (ms)."""

    what: str
    own_ms: float
    cpu_ms: float
    wall_ms: float
    preempted: bool
    gc_ms: float

    def __str__(self) -> str:
        how = "preempted, judged by CPU" if self.preempted else "not preempted"
        return (f"{self.what}: {self.own_ms:.1f} ms of its own work "
                f"(CPU {self.cpu_ms:.1f} ms, wall {self.wall_ms:.1f} ms, {how}; "
                f"garbage collection {self.gc_ms:.1f} ms)")


class LoopWatchdog:
    """Collects the slow steps of every loop in the process; ``take()`` empties the list."""

    def __init__(self) -> None:
        self._slow: list[SlowStep] = []
        self._lock = threading.Lock()
        self._original: Any = None
        self._gc_ns = 0  # garbage collection time on the loop's thread, cumulative
        self._gc_start = 0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter_ns()
        elif self._gc_start:
            self._gc_ns += time.perf_counter_ns() - self._gc_start
            self._gc_start = 0

    def install(self) -> None:
        original = self._original = asyncio.events.Handle._run
        perf = time.perf_counter_ns
        cpu = time.thread_time_ns
        usage = resource.getrusage
        watchdog = self

        def _run(handle: asyncio.events.Handle) -> None:
            nivcsw0 = usage(_RUSAGE_THREAD).ru_nivcsw
            gc0 = watchdog._gc_ns
            wall0, cpu0 = perf(), cpu()
            try:
                original(handle)
            finally:
                wall_ns = perf() - wall0
                if wall_ns > _LIMIT_NS:
                    watchdog._judge(handle, wall_ns, cpu() - cpu0,
                                    usage(_RUSAGE_THREAD).ru_nivcsw != nivcsw0,
                                    watchdog._gc_ns - gc0)

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]  # the hook itself
        gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None
            gc.callbacks.remove(self._on_gc)

    def _judge(self, handle: asyncio.events.Handle, wall_ns: int, cpu_ns: int,
               preempted: bool, gc_ns: int) -> None:
        own_ns = cpu_ns if preempted else wall_ns
        if own_ns <= _LIMIT_NS:
            return
        step = SlowStep(_describe(handle), own_ns / 1e6, cpu_ns / 1e6, wall_ns / 1e6, preempted,
                        gc_ns / 1e6)
        with self._lock:
            self._slow.append(step)

    def take(self) -> list[SlowStep]:
        with self._lock:
            slow, self._slow = self._slow, []
        return slow


def _describe(handle: asyncio.events.Handle) -> str:
    cb = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        return f"task {task.get_name()} ({getattr(coro, '__qualname__', coro)}){where}"
    return repr(handle)


WATCHDOG = LoopWatchdog()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "loop_blocking(reason): this test blocks its event loop on purpose "
                   "(the loop watchdog lets it; say why)")
    WATCHDOG.install()


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported so far lives for the whole run: keep it out of the full collections
    # that would otherwise land, 60-100 ms each, in whatever loop step allocates next (the
    # server does the same at its start).
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    WATCHDOG.uninstall()


def _check(item: pytest.Item, phase: str) -> None:
    slow = WATCHDOG.take()
    marker = item.get_closest_marker("loop_blocking")
    if marker is not None:
        if not marker.args or not str(marker.args[0]).strip():
            raise pytest.UsageError(f"{item.nodeid}: loop_blocking needs a reason")
        return
    if slow:
        lines = "\n  ".join(str(s) for s in slow[:10])
        more = f"\n  … and {len(slow) - 10} more" if len(slow) > 10 else ""
        pytest.fail(f"the event loop was held for over {LIMIT_MS:g} ms during {phase}:\n  "
                    f"{lines}{more}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    WATCHDOG.take()  # whatever ran between tests is nobody's
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
