"""A watchdog on the event loop: every callback and task step that holds the loop for more than
a limit is caught, with what ran and how its time split (issue 10: "the loop is sacred").

It wraps ``asyncio.events.Handle._run``, through which the standard event loop runs every
callback, task step and I/O handler (uvloop runs its own handles, so the server gives up uvloop
while the watchdog is on), and judges each step by its own work, not by time the machine gave
to other processes (it must not cry wolf on a busy 2-core machine):

- CPU time of the loop's thread during the step (``CLOCK_THREAD_CPUTIME_ID``); plus
- time the thread spent blocked of its own accord (a sleep, disk or socket I/O, a lock, the GIL
  held by another thread): the step's wall time minus its CPU time, counted only when the
  kernel preempted no thread of the process during the step (``ru_nivcsw`` of the process
  unchanged). A preempted step is judged by its CPU time alone, since its wall time then
  includes other processes' turns: the loop's own thread's, or those of a worker thread that
  held the GIL the loop was waiting for;
- less the time the loop's thread was ready to run but waited for a CPU (its run-queue delay,
  ``/proc/thread-self/schedstat``): after a wait of its own (the GIL handed over, a socket
  closed) a thread on a busy machine can wait tens of ms to be scheduled again without
  being preempted — that is the machine's time, not the step's;
- less the run-queue delay of the process's other threads during the step: the GIL the loop
  waits for is handed to a worker thread that must first be scheduled, and on a busy machine
  that thread can wait tens of ms for a CPU, unpreempted, while the loop's thread sleeps on the
  GIL (seen in CI: a ``loa serve`` step of 60 ms with 0.3 ms of CPU, two test workers on two
  cores). Read for every step from each thread's ``schedstat`` (the list of threads refreshed
  every 100 ms): a few µs a thread.

- less the time the step spent starting a child process (``subprocess.Popen``, which
  ``asyncio.create_subprocess_exec`` calls on the loop): the parent waits, suspended, until the
  child has run ``exec``, and on a busy machine the child can wait tens of ms for a CPU (seen in
  CI: a test's step of 61 ms with 0.7 ms of CPU). That wait is the child's, not the step's.
  So is a new thread's (``threading.Thread.start`` waits until the thread runs: a default
  executor's first ``asyncio.to_thread``; seen in a fresh clone's suite: a step of 54 ms with
  0.4 ms of CPU, in a server's start-up).

Garbage-collection time inside the step is shown beside it (it counts: it held the loop).

The test suite runs every loop of its own process under it (``tests/loop_watchdog.py``), and
``loa serve`` does when ``LOA_LOOP_WATCHDOG_MS`` is set (each slow step is logged, and
appended to ``LOA_LOOP_WATCHDOG_FILE`` when that is set: how the suite watches the servers it
starts as processes).
"""

from __future__ import annotations

import asyncio.events
import gc
import logging
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LIMIT_MS = 20.0
_ASYNCIO_DIR = os.path.dirname(asyncio.events.__file__)
_RUSAGE_SELF = resource.RUSAGE_SELF  # every thread of the process
_RUSAGE_THREAD = resource.RUSAGE_THREAD  # the loop's own thread (Linux)


@dataclass(frozen=True)
class SlowStep:
    """One loop step over the limit: what ran, and how its time splits (ms)."""

    what: str
    own_ms: float
    cpu_ms: float
    wall_ms: float
    preempted: bool
    gc_ms: float

    queued_ms: float = 0.0  # waiting for a CPU while ready to run
    kernel_ms: float = 0.0  # of the CPU time, in the kernel (system calls, page faults, IRQs)
    faults: int = 0  # page faults of the loop's thread (minor and major)
    others_queued_ms: float = 0.0  # the process's other threads waiting for a CPU meanwhile
    spawn_ms: float = 0.0  # starting child processes (waiting for their exec)

    def __str__(self) -> str:
        how = "preempted, judged by CPU" if self.preempted else "not preempted"
        return (f"{self.what}: {self.own_ms:.1f} ms of its own work "
                f"(CPU {self.cpu_ms:.1f} ms of which kernel {self.kernel_ms:.1f} ms, "
                f"{self.faults} page faults; wall {self.wall_ms:.1f} ms, {how}; "
                f"waiting for a CPU {self.queued_ms:.1f} ms, its other threads "
                f"{self.others_queued_ms:.1f} ms; starting processes {self.spawn_ms:.1f} ms; "
                f"garbage collection {self.gc_ms:.1f} ms)")


class LoopWatchdog:
    """Collects the slow steps of every loop in the process; ``take()`` empties the list."""

    def __init__(self, limit_ms: float = LIMIT_MS,
                 on_slow: Callable[[SlowStep], None] | None = None) -> None:
        self.limit_ns = int(limit_ms * 1e6)
        self.on_slow = on_slow  # told of each slow step as it happens (from the loop's thread)
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
        queued = run_queue_clock()
        others = others_run_queue_clock()
        spawning = _spawn_clock()
        watchdog = self

        def _run(handle: asyncio.events.Handle) -> None:
            nivcsw0 = usage(_RUSAGE_SELF).ru_nivcsw
            thread0 = usage(_RUSAGE_THREAD)
            gc0 = watchdog._gc_ns
            queued0 = queued()
            others0 = others()
            spawn0 = spawning()
            wall0, cpu0 = perf(), cpu()
            try:
                original(handle)
            finally:
                wall_ns = perf() - wall0
                if wall_ns > watchdog.limit_ns:
                    thread1 = usage(_RUSAGE_THREAD)
                    watchdog._judge(handle, wall_ns, cpu() - cpu0,
                                    usage(_RUSAGE_SELF).ru_nivcsw != nivcsw0,
                                    watchdog._gc_ns - gc0, queued() - queued0,
                                    int((thread1.ru_stime - thread0.ru_stime) * 1e9),
                                    thread1.ru_minflt + thread1.ru_majflt
                                    - thread0.ru_minflt - thread0.ru_majflt,
                                    max(0, others() - others0), spawning() - spawn0)

        # the hook itself: typeshed types _run with a stray second self
        asyncio.events.Handle._run = _run  # type: ignore[method-assign, assignment]
        gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None
            gc.callbacks.remove(self._on_gc)

    def _judge(self, handle: asyncio.events.Handle, wall_ns: int, cpu_ns: int,
               preempted: bool, gc_ns: int, queued_ns: int = 0, kernel_ns: int = 0,
               faults: int = 0, others_queued_ns: int = 0, spawn_ns: int = 0) -> None:
        own_ns = cpu_ns if preempted else max(
            cpu_ns, wall_ns - queued_ns - others_queued_ns - spawn_ns)
        if own_ns <= self.limit_ns:
            return
        step = SlowStep(_describe(handle), own_ns / 1e6, cpu_ns / 1e6, wall_ns / 1e6, preempted,
                        gc_ns / 1e6, queued_ns / 1e6, kernel_ns / 1e6, faults,
                        others_queued_ns / 1e6, spawn_ns / 1e6)
        with self._lock:
            self._slow.append(step)
        if self.on_slow is not None:
            self.on_slow(step)

    def take(self) -> list[SlowStep]:
        with self._lock:
            slow, self._slow = self._slow, []
        return slow


def run_queue_clock() -> Callable[[], int]:
    """A function giving the calling thread's total run-queue delay (ns: time it was ready to
    run and waited for a CPU; the second field of ``/proc/thread-self/schedstat``, Linux).
    Each thread reads its own file, opened once and re-read with ``pread`` (a few µs). Where
    the kernel keeps no such count, it always answers 0 (nothing is subtracted)."""
    local = threading.local()

    def queued_ns() -> int:
        fd = getattr(local, "fd", None)
        if fd is None:
            try:
                fd = local.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            except OSError:
                fd = local.fd = -1
        if fd < 0:
            return 0
        try:
            return int(os.pread(fd, 96, 0).split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    return queued_ns


_spawn_local = threading.local()  # per thread: ns spent starting processes and threads
_spawn_hooked = False


def _timed(start_child: Callable[..., Any]) -> Callable[..., Any]:
    """``start_child`` that adds the time it takes to the calling thread's ``_spawn_local``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return start_child(*args, **kwargs)
        finally:
            _spawn_local.ns = getattr(_spawn_local, "ns", 0) + time.perf_counter_ns() - start

    return timed


def _spawn_clock() -> Callable[[], int]:
    """A function giving the calling thread's total time (ns) spent starting child processes
    (``subprocess.Popen._execute_child``: the fork and the wait for the child's ``exec``) and
    threads (``threading.Thread.start``: the wait until the new thread runs), hooked once per
    process."""
    global _spawn_hooked
    if not _spawn_hooked:
        _spawn_hooked = True
        popen: Any = subprocess.Popen
        popen._execute_child = _timed(popen._execute_child)
        thread: Any = threading.Thread
        thread.start = _timed(thread.start)

    def spent_ns() -> int:
        return int(getattr(_spawn_local, "ns", 0))

    return spent_ns


# How often the list of the process's threads is read again (``others_run_queue_clock``).
THREADS_REFRESH_NS = 100_000_000


def others_run_queue_clock() -> Callable[[], int]:
    """A function giving the total run-queue delay (ns) of the process's threads other than the
    calling one, as ``run_queue_clock`` reads each (``/proc/self/task/<tid>/schedstat``, kept
    open; the list of threads read again at most every ``THREADS_REFRESH_NS``). A thread gone
    drops out of the sum, one come in enters it whole: a difference of two readings is a rough
    measure, ≥ 0 only after ``max(0, …)``. 0 where the kernel keeps no such count."""
    local = threading.local()

    def total_ns() -> int:
        fds: dict[str, int] | None = getattr(local, "fds", None)
        now = time.monotonic_ns()
        if fds is None:
            fds = local.fds = {}
            local.listed_ns = 0
            local.own = str(threading.get_native_id())
        if now - local.listed_ns > THREADS_REFRESH_NS:
            local.listed_ns = now
            try:
                tids = set(os.listdir("/proc/self/task")) - {local.own}
            except OSError:
                tids = set()
            for tid in set(fds) - tids:
                os.close(fds.pop(tid))
            for tid in tids - set(fds):
                try:
                    fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                except OSError:
                    pass  # ended meanwhile
        total = 0
        for tid, fd in list(fds.items()):
            try:
                total += int(os.pread(fd, 96, 0).split()[1])
            except (OSError, IndexError, ValueError):  # the thread ended
                os.close(fds.pop(tid))
        return total

    return total_ns


def _describe(handle: asyncio.events.Handle) -> str:
    cb = getattr(handle, "_callback", None)
    task = getattr(cb, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        return f"task {task.get_name()} ({getattr(coro, '__qualname__', coro)}){_where(coro)}"
    return repr(handle)


def _where(coro: Any) -> str:
    """Where the step stopped: the task's own line, then, down its chain of awaits, the
    innermost coroutine's line outside asyncio itself (where the step ended: the await after
    the slow work)."""
    frames = []
    for _ in range(50):  # bounded: a chain of awaits is short
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        if not frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if coro is None:
            break
    if not frames:
        return ""
    first, last = frames[0], frames[-1]
    where = f" at {first.f_code.co_filename}:{first.f_lineno}"
    if last is not first:
        where += (f", in {last.f_code.co_name} at {last.f_code.co_filename}:"
                  f"{last.f_lineno}")
    return where


def install_from_env(env: dict[str, str]) -> LoopWatchdog | None:
    """``LOA_LOOP_WATCHDOG_MS=20`` (and optionally ``LOA_LOOP_WATCHDOG_FILE=path``): watch this
    process's loops, logging each slow step at ERROR and appending it to the file. Returns the
    watchdog, or None when the variable is unset. Raises ValueError for a bad limit."""
    raw = env.get("LOA_LOOP_WATCHDOG_MS")
    if not raw:
        return None
    limit_ms = float(raw)
    if not limit_ms > 0:
        raise ValueError(f"LOA_LOOP_WATCHDOG_MS must be a positive number of ms, not {raw!r}")
    path = env.get("LOA_LOOP_WATCHDOG_FILE")
    log = logging.getLogger(__name__)

    def report(step: SlowStep) -> None:
        log.error("the event loop was held: %s", step)
        if path:
            try:
                with open(path, "a", encoding="utf-8") as f:  # rare, and already a failure
                    f.write(f"{step}\n")
            except OSError as exc:  # a full disk must not stop the loop it watches
                log.error("the slow step was not written to %s: %s", path, exc)

    watchdog = LoopWatchdog(limit_ms, report)
    watchdog.install()
    return watchdog
