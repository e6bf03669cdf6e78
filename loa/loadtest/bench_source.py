"""The benchmark's own live source: Ogg/Opus with timed marker beeps, pushed Icecast-style.

Both servers under comparison get byte-identical input, paced on absolute 20 ms deadlines, and
the source notes when it sent each beep. A probe listener that decodes the stream finds the
beeps again; their playout time minus their send time is the delay a listener hears. Each
second carries a 100 ms beep whose frequency names the second modulo 20, so a listener many
seconds behind live (an Icecast burst) is still matched to the right beep.
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np

from loa.codecs.encoder import create_encoder
from loa.codecs.ogg import OggOpusPager
from loa.core.clock import MonotonicClock
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES, SAMPLE_RATE

BEEP_EVERY_FRAMES = 50  # one a second
BEEP_FRAMES = 5  # 100 ms
BEEP_CYCLE = 20
BEEP_LEVEL = 0.5


def beep_hz(index: int) -> float:
    return 500.0 + 100.0 * (index % BEEP_CYCLE)


def marker_frame(frame_index: int) -> np.ndarray:
    beep, offset = divmod(frame_index, BEEP_EVERY_FRAMES)
    if offset >= BEEP_FRAMES:
        return np.zeros(FRAME_SAMPLES, dtype=np.float32)
    t = (np.arange(FRAME_SAMPLES) + offset * FRAME_SAMPLES) / SAMPLE_RATE
    return (BEEP_LEVEL * np.sin(2 * np.pi * beep_hz(beep) * t)).astype(np.float32)


class BenchSource:
    def __init__(self, host: str, port: int, path: str, password: str,
                 bitrate_bps: int = 32_000) -> None:
        self.host, self.port, self.path, self.password = host, port, path, password
        self.bitrate_bps = bitrate_bps
        self.beep_sent_ns: dict[int, int] = {}  # beep number -> monotonic ns it was sent
        self.pages = 0
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        auth = base64.b64encode(f"source:{self.password}".encode()).decode()
        writer.write((f"PUT {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                      f"Authorization: Basic {auth}\r\nContent-Type: audio/ogg\r\n"
                      "Ice-Public: 0\r\nExpect: 100-continue\r\n\r\n").encode())
        status = await asyncio.wait_for(reader.readline(), 10)
        if b" 100 " not in status and b" 200 " not in status:
            raise RuntimeError(f"source refused by {self.host}:{self.port}: {status!r}")
        self._writer = writer
        self._reader = reader
        self._task = asyncio.create_task(self._run(writer))

    async def _run(self, writer: asyncio.StreamWriter) -> None:
        clock = MonotonicClock()
        encoder = create_encoder("opus", self.bitrate_bps)
        pager = OggOpusPager(serial=0xBE7C)
        writer.write(pager.headers)
        deadline = clock.now_ns()
        frame = 0
        try:
            while True:
                samples = marker_frame(frame)
                data = b"".join(pager.page(p.data, p.duration_samples)
                                for p in encoder.encode(samples, frame * FRAME_SAMPLES, 0))
                await clock.sleep_until(deadline)
                if frame % BEEP_EVERY_FRAMES == 0:
                    self.beep_sent_ns[frame // BEEP_EVERY_FRAMES] = time.monotonic_ns()
                writer.write(data)
                self.pages += 1
                frame += 1
                deadline += FRAME_NS
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    raise RuntimeError("the server stopped reading the source")
        except (ConnectionError, RuntimeError) as exc:
            self.error = str(exc)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._writer.close()


# A beep counts only if heard (nearly) whole: this many 10 ms blocks of it at least, of its
# ten. One heard from part-way (a listener that joined during it, a gap inside it) would put
# its onset late by as much as it lacks: up to 90 ms more delay than any listener hears.
WHOLE_BEEP_BLOCKS = BEEP_FRAMES * 2 - 2


def find_beeps(pcm: np.ndarray) -> list[tuple[int, int]]:
    """(sample index of onset, beep number modulo the cycle) for each beep heard whole (at
    least ``WHOLE_BEEP_BLOCKS`` of its 10 ms blocks)."""
    block = 480  # 10 ms
    n = len(pcm) // block
    if n == 0:
        return []
    env = np.sqrt(np.mean(pcm[: n * block].reshape(n, block) ** 2, axis=1))
    on = env > BEEP_LEVEL / 8
    out = []
    i = 1
    while i < n:
        if on[i] and not on[i - 1]:
            run = int(np.argmin(np.append(on[i:], False)))  # blocks on from i
            if run < WHOLE_BEEP_BLOCKS and i + run < n:  # cut short (not by the pcm's end)
                i += max(run, 1)
                continue
            start = i * block
            # refine the onset to the sample inside the block
            seg = np.abs(pcm[start - block : start + block])
            first = int(np.argmax(seg > BEEP_LEVEL / 4))
            onset = start - block + first
            win = pcm[onset + 480 : onset + 480 + 3840]  # 80 ms after the attack
            if len(win) == 3840:
                spec = np.abs(np.fft.rfft(win * np.hanning(len(win))))
                hz = np.argmax(spec) * SAMPLE_RATE / len(win)
                k = int(round((hz - 500.0) / 100.0)) % BEEP_CYCLE
                out.append((onset, k))
            i += BEEP_FRAMES * 2  # skip past this beep
        else:
            i += 1
    return out


def playout_delays_ms(pcm: np.ndarray, first_audio_ns: int, beep_sent_ns: dict[int, int]
                      ) -> list[float]:
    """For a player that starts at its first audio packet and plays on at real time: the delay
    from the source sending each beep to the listener hearing it."""
    delays = []
    for onset, k in find_beeps(pcm):
        heard_ns = first_audio_ns + onset * 1_000_000_000 // SAMPLE_RATE
        candidates = [sent for b, sent in beep_sent_ns.items()
                      if b % BEEP_CYCLE == k and sent <= heard_ns]
        if candidates:
            delays.append((heard_ns - max(candidates)) / 1e6)
    return delays
