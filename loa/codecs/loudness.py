"""Loudness (ITU-R BS.1770 / EBU R128) measured with pyloudnorm, and the gain to a target."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import threading
import time

import numpy as np
import pyloudnorm

from loa.core.pcm import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, Samples

# Louder than broadcast's -23 for outdoor loudspeakers, yet with the headroom that speech's
# peaks need to reach the target unclipped (there is no limiter).
DEFAULT_TARGET_LUFS = -18.0
MAX_GAIN_DB = 20.0  # never lift a near-silent file into a roar of noise
MIN_MEASURABLE_S = 0.4  # one gating block


def integrated_lufs(pcm: Samples) -> float | None:
    """Integrated loudness of 48 kHz mono audio, or None when too short or silent."""
    if len(pcm) < MIN_MEASURABLE_S * SAMPLE_RATE:
        return None
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


def level_gain(lufs: float | None, peak: float, target_lufs: float) -> float:
    """To the target, but never so far that the peaks would clip (there is no limiter)."""
    headroom = 1.0 / peak if peak > 0 else 1.0
    return min(gain_to_target(lufs, target_lufs), headroom)


class MeasurePool:
    """``measure_file`` in a worker process of its own, started on first use and shared.

    A thread would do for the decoding, but the loudness filter (scipy's ``lfilter`` inside
    pyloudnorm) holds the GIL for tens of milliseconds on a long file, and the event loop would
    wait for it. ``measure`` blocks its caller: call it from a worker thread, never the loop.
    The worker is spawned (never forked from a threaded server), so a script that embeds Loa
    needs the usual ``if __name__ == "__main__":`` guard.
    """

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_die_with_parent, initargs=(os.getpid(),))
            return self._pool

    def start(self) -> None:
        """Blocking (about a second, once per process): the worker imports the codecs."""
        self._get().submit(_ready).result()

    def measure(self, path: str, label: str | None = None, max_s: float | None = None
                ) -> tuple[float, float | None, float]:
        """As ``measure_file``; raises ``DecodeError`` as it does."""
        pool = self._get()
        try:
            return pool.submit(measure_file, path, label, max_s).result()
        except concurrent.futures.process.BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            return measure_file(path, label, max_s)  # the worker died: measure here once

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _ready() -> bool:
    from loa.codecs import decode  # noqa: F401  # imported now, not at the first measurement

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
        self._ring = np.zeros(window_frames)
        self._count = 0
        self._step_db = rate_db_per_s * FRAME_MS / 1000  # per frame

    def process(self, samples: Samples) -> Samples:
        ms = float(np.dot(samples, samples)) / len(samples)
        if ms > self.SILENCE_MS:
            self._ring[self._count % len(self._ring)] = ms
            self._count += 1
        if self._count >= self.SETTLE_FRAMES:
            n = min(self._count, len(self._ring))
            level_db = 10 * np.log10(float(np.mean(self._ring[:n])))
            want = max(-self.max_gain_db, min(self.max_gain_db, self.target_lufs - level_db))
            delta = max(-self._step_db, min(self._step_db, want - self.gain_db))
            self.gain_db += delta
        if self.gain_db == 0.0:
            return samples
        gain = 10 ** (self.gain_db / 20)
        peak = float(np.max(np.abs(samples))) * gain
        if peak > 0.99:
            gain *= 0.99 / peak
        return (samples * np.float32(gain)).astype(np.float32, copy=False)
