"""Loudness (ITU-R BS.1770 / EBU R128) measured with pyloudnorm, and the gain to a target.

pyloudnorm brings scipy (some 65 MB of a process and a second and a half to import): it is
imported by ``integrated_lufs`` only, which runs in the measuring worker (``MeasurePool``), a
process started on the first measurement and ended when it has had nothing to measure for
``MeasurePool.idle_s``. A server that measures nothing never loads it.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from loa.core.pcm import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, Samples

# Louder than broadcast's -23 for outdoor loudspeakers, yet with the headroom that speech's
# peaks need to reach the target unclipped (there is no limiter).
DEFAULT_TARGET_LUFS = -18.0
MAX_GAIN_DB = 20.0  # never lift a near-silent file into a roar of noise
MIN_MEASURABLE_S = 0.4  # one gating block

T = TypeVar("T")


def integrated_lufs(pcm: Samples) -> float | None:
    """Integrated loudness of 48 kHz mono audio, or None when too short or silent."""
    if len(pcm) < MIN_MEASURABLE_S * SAMPLE_RATE:
        return None
    import pyloudnorm  # scipy: loaded where a measurement runs, never by an idle server

    value = float(pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(pcm.astype(np.float64)))
    return value if np.isfinite(value) else None


def gain_to_target(measured_lufs: float | None, target_lufs: float) -> float:
    """Linear gain that brings ``measured_lufs`` to ``target_lufs`` (1.0 when unknown)."""
    if measured_lufs is None:
        return 1.0
    gain_db = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, target_lufs - measured_lufs))
    return float(10 ** (gain_db / 20))


def measure_file(path: str, label: str | None = None, max_s: float | None = None
                 ) -> tuple[float, float | None, float]:
    """Decode it (all of it, or its first ``max_s`` seconds): (duration s, integrated
    loudness LUFS or None, sample peak). Blocking and CPU-heavy (a 15-minute MP3 takes
    seconds): never call it on the event loop. Raises ``DecodeError``."""
    from loa.codecs.decode import (
        FrameDecoder,  # decode imports PyAV; keep this module light
    )

    decoder = FrameDecoder(path, label=label)
    limit = None if max_s is None else int(max_s * SAMPLE_RATE / FRAME_SAMPLES)
    frames = []
    try:
        for frame in decoder:
            frames.append(frame)
            if limit is not None and len(frames) >= limit:
                break
    finally:
        decoder.close()
    pcm = np.concatenate(frames) if frames else np.zeros(0, np.float32)
    peak = float(np.max(np.abs(pcm))) if len(pcm) else 0.0
    return len(pcm) / SAMPLE_RATE, integrated_lufs(pcm), peak


def _die_with_parent(parent: int, every_s: float = 1.0) -> None:
    """In the worker: exit within ``every_s`` of the server's death, however it died (a
    killed server would otherwise leave its worker behind, some 120 MB each, for good)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# Ctrl-C at a terminal signals the whole foreground process group: the server, which handles
# SIGINT, stops in order and ends its worker itself (``shutdown``, or concurrent.futures' exit
# hook), but the worker died of it mid-wait, printing a KeyboardInterrupt traceback. So the
# worker is born with SIGINT blocked (a signal mask survives fork and exec: what
# multiprocessing's resource tracker does for its own start), then ignores it for good.
_CTRL_C = frozenset({signal.SIGINT})


def _submit(pool: concurrent.futures.ProcessPoolExecutor, fn: Callable[..., T], *args: object
            ) -> concurrent.futures.Future[T]:
    """``pool.submit``, which spawns the worker when there is none, with SIGINT blocked in
    the calling thread meanwhile, so that a worker it spawns starts with SIGINT blocked."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _CTRL_C)
    try:
        return pool.submit(fn, *args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_init(parent: int) -> None:
    """In the worker, first: ignore SIGINT (the server ends the worker, ``_submit``), and
    exit with the server (``_die_with_parent``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CTRL_C)  # one pending now: ignored
    _die_with_parent(parent)


def level_gain(lufs: float | None, peak: float, target_lufs: float) -> float:
    """To the target, but never so far that the peaks would clip (there is no limiter)."""
    headroom = 1.0 / peak if peak > 0 else 1.0
    return min(gain_to_target(lufs, target_lufs), headroom)


# The measuring worker holds some 120 MB (scipy, PyAV; the resource-tracker process that
# multiprocessing starts with the first one, ~13 MB, stays for good). It ends after this long
# with nothing to measure; the next measurement starts another, which costs that measurement
# 1.2-1.5 s more (spawn, PyAV, scipy; measured 2026-11-30 on the development VM; warm, a 5 s
# file takes 0.03 s). Five minutes keep it warm through a run of uploads or bulletins;
# ``warm`` starts it ahead of a measurement that is known to come.
WORKER_IDLE_S = 300.0


class MeasurePool:
    """``measure_file`` in a worker process of its own, started on first use, shared, and
    ended once it has had nothing to measure for ``idle_s`` seconds.

    A thread would do for the decoding, but the loudness filter (scipy's ``lfilter`` inside
    pyloudnorm) holds the GIL for tens of milliseconds on a long file, and the event loop would
    wait for it. ``measure`` blocks its caller: call it from a worker thread, never the loop.
    The worker is spawned (never forked from a threaded server), so a script that embeds Loa
    needs the usual ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, idle_s: float = WORKER_IDLE_S) -> None:
        self.idle_s = idle_s
        self.started = 0  # workers started so far (for tests and diagnosis)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._busy = 0  # measurements under way
        self._timer: threading.Timer | None = None

    @property
    def running(self) -> bool:
        """Whether a worker process is up (started and not yet ended for idleness)."""
        return self._pool is not None

    def _acquire(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            self._busy += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pool is None:
                # multiprocessing (1 MB) is imported by the first worker, not by an idle server
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init, initargs=(os.getpid(),))
                self.started += 1
            return self._pool

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0 and self._pool is not None:
                self._timer = threading.Timer(self.idle_s, self._retire)
                self._timer.daemon = True
                self._timer.start()

    def _retire(self) -> None:
        """The idle timer: end the worker unless a measurement came since it was armed (then
        this timer is no longer the armed one)."""
        with self._lock:
            if self._busy or self._timer is not threading.current_thread():
                return
            pool, self._pool, self._timer = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True)

    def start(self) -> None:
        """Start the worker now rather than at the first measurement. Blocking (about a
        second): the worker imports the codecs. It ends after ``idle_s`` unused, as ever."""
        pool = self._acquire()
        try:
            _submit(pool, _ready).result()
        finally:
            self._release()

    def warm(self) -> None:
        """Start the worker, and its imports, without waiting for them: for a caller that
        knows a measurement will follow (an alert's message after its attention tone).
        Spawning is blocking work (a fork and exec): call it beside the loop."""
        pool = self._acquire()
        try:
            _submit(pool, _ready)
        finally:
            self._release()

    def measure(self, path: str, label: str | None = None, max_s: float | None = None
                ) -> tuple[float, float | None, float]:
        """As ``measure_file``; raises ``DecodeError`` as it does."""
        from concurrent.futures.process import BrokenProcessPool  # brings multiprocessing

        pool = self._acquire()
        try:
            return _submit(pool, measure_file, path, label, max_s).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            return measure_file(path, label, max_s)  # the worker died: measure here once
        finally:
            self._release()

    def shutdown(self) -> None:
        """End the worker (if any) and wait for it."""
        with self._lock:
            pool, self._pool = self._pool, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _ready() -> bool:
    """In the worker: import what a measurement needs now, not at the first measurement."""
    import pyloudnorm  # noqa: F401  # imported for its cost, used by measure_file

    from loa.codecs import decode  # noqa: F401  # imported for its cost, as above

    return True


MEASURER = MeasurePool()


# Files outside the library are levelled on their first minute: an alert's message must not
# wait for a 15-minute file to be decoded twice (a bulletin's level is steady; measured
# 2026-11-30, the whole file took 6.3 s, the first minute ~0.3 s).
LEVEL_ON_FIRST_S = 60.0


class Leveller:
    """Gains for files outside the library (text read aloud, alert uploads), measured once
    per path on their first ``LEVEL_ON_FIRST_S`` seconds.

    ``gain_for`` decodes: call it beside the loop (a file reader's thread does). Thread-safe:
    two threads measuring the same path at once both get the same answer.
    """

    def __init__(self, target_lufs: float) -> None:
        self.target_lufs = target_lufs
        self._gains: dict[str, float] = {}

    def warm(self) -> None:
        """Start the measuring worker beside the loop, without waiting, when it is not running:
        for a file that will be measured soon (an alert's message, whose attention tone plays
        meanwhile: the worker's start, ~1.3 s, then costs the listeners nothing)."""
        if not MEASURER.running:
            threading.Thread(target=MEASURER.warm, name="loudness-warm", daemon=True).start()

    def gain_for(self, path: str) -> float:
        """Linear gain to the target, peak-safe. Raises ``DecodeError`` for a bad file."""
        gain = self._gains.get(path)
        if gain is None:
            _, lufs, peak = MEASURER.measure(path, max_s=LEVEL_ON_FIRST_S)
            gain = self._gains[path] = level_gain(lufs, peak, self.target_lufs)
        return gain


class SlowAgc:
    """Brings a live feed toward the target level, slowly, the way a station's processor does.

    Open loop: the gain is (target − the input's level over the last few seconds of audible
    frames), approached at no more than ``rate_db_per_s`` and capped at ±``max_gain_db``.
    Silence leaves the gain alone, and a frame whose peaks would clip is turned down at once.
    The level is unweighted mean square, close to LUFS for speech and music around 1 kHz.
    """

    SILENCE_MS = 1e-5  # -50 dBFS
    SETTLE_FRAMES = 25  # 0.5 s of audio before the first correction

    def __init__(self, target_lufs: float, max_gain_db: float = 12.0,
                 window_frames: int = 150, rate_db_per_s: float = 2.0) -> None:
        self.target_lufs = target_lufs
        self.max_gain_db = max_gain_db
        self.gain_db = 0.0
        # Once a tick on the loop: the window's mean is a running sum over a list of floats,
        # not a numpy mean of the ring (a numpy reduction of 150 numbers costs ~10 us in call
        # overhead; this, well under one). The sum is taken afresh each time the ring wraps,
        # so rounding cannot pile up over a long broadcast.
        self._ring = [0.0] * window_frames
        self._sum = 0.0
        self._count = 0
        self._step_db = rate_db_per_s * FRAME_MS / 1000  # per frame

    def process(self, samples: Samples) -> Samples:
        """One frame in, the same frame at the current gain out (float32; ``samples`` itself
        while the gain is 0 dB)."""
        ms = float(np.dot(samples, samples)) / len(samples)
        ring = self._ring
        if ms > self.SILENCE_MS:
            i = self._count % len(ring)
            self._sum += ms - ring[i]
            ring[i] = ms
            self._count += 1
            if i == len(ring) - 1:
                self._sum = math.fsum(ring)
        if self._count >= self.SETTLE_FRAMES:
            n = min(self._count, len(ring))
            level_db = 10 * math.log10(max(self._sum, self.SILENCE_MS) / n)
            want = max(-self.max_gain_db, min(self.max_gain_db, self.target_lufs - level_db))
            delta = max(-self._step_db, min(self._step_db, want - self.gain_db))
            self.gain_db += delta
        if self.gain_db == 0.0:
            return samples
        gain = 10 ** (self.gain_db / 20)
        peak = max(float(samples.max()), -float(samples.min())) * gain  # no |x| array made
        if peak > 0.99:
            gain *= 0.99 / peak
        return (samples * np.float32(gain)).astype(np.float32, copy=False)
