"""One listener's heard delay, decomposed: a diagnostic beside `loa bench`, not part of it.

Starts one server of `loa bench`'s kinds (``loa``, ``loa-burst0``, ``icecast``,
``icecast-burst0``) with the bench's live Ogg/Opus source pushed to it, waits as the bench
does (``SOURCE_WARMUP_S``, nobody listening: the first run is a first listener's), then listens
``--runs`` times for ``--seconds`` each with the bench's decoding probe. For each run it
prints the heard delay of every beep (ms from the source sending it to a player that starts at
the first audio packet hearing it: `playout_delays_ms`) and how each packet arrived against
that player's clock (ms: negative, before it is played; positive, a gap a real player would
have). Run from the repository (or a worktree of the commit to measure):

    PYTHONPATH=. .venv/bin/python tools/heard_delay.py loa-burst0 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import numpy as np

from loa.codecs.ogg import OggReader
from loa.core.pcm import FRAME_NS
from loa.loadtest.bench import FANOUT_KINDS, SOURCE_WARMUP_S, Probe, live_server
from loa.loadtest.bench_source import playout_delays_ms


class TimedProbe(Probe):
    """The bench's probe, noting when each audio packet arrived (monotonic ns)."""

    arrivals: list[int]

    async def run(self, seconds: float) -> None:
        self.arrivals = []
        reader = OggReader()
        async with aiohttp.ClientSession() as http, http.get(self.url) as resp:
            end = time.monotonic() + seconds
            async for chunk in resp.content.iter_any():
                now = time.monotonic_ns()
                for _, _, packet, bos in reader.feed(chunk):
                    if bos or packet.startswith((b"OpusHead", b"OpusTags")):
                        continue
                    if not self.first_audio_ns:
                        self.first_audio_ns = now
                    self.arrivals.append(now)
                    self.decoder.decode(packet)
                if time.monotonic() > end:
                    return


async def main(kind: str, runs: int, seconds: float) -> None:
    async with live_server(kind) as (_, source, url):
        await asyncio.sleep(SOURCE_WARMUP_S)  # on air a while, nobody listening, as in the bench
        for run in range(runs):
            probe = TimedProbe(url)
            await probe.run(seconds)
            delays = playout_delays_ms(probe.decoder.pcm(), probe.first_audio_ns,
                                       source.beep_sent_ns)
            arrived = np.array(probe.arrivals, dtype=np.int64)
            against = (arrived - (arrived[0] + np.arange(len(arrived)) * FRAME_NS)) / 1e6
            print(f"{kind} run {run}: heard delay ms {np.round(delays, 1).tolist()}; "
                  f"packets against the player's clock ms: min {against.min():.1f}, "
                  f"p50 {np.median(against):.1f}, max {against.max():.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=FANOUT_KINDS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    asyncio.run(main(args.kind, args.runs, args.seconds))
