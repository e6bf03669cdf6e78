"""Relay (tiếp sóng): pull another station's HTTP/Icecast stream, reconnecting with backoff."""

from __future__ import annotations

import asyncio
import logging
import random

import aiohttp

from loa.codecs.decode import DecodeError, format_for_content_type
from loa.core.clock import NS_PER_S, Clock
from loa.core.counters import Counters
from loa.core.lifecycle import cancel_and_wait
from loa.playout.inputs.ingest import LiveIngest
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.programme import Programme, ProgrammeKind

log = logging.getLogger(__name__)

# A session that played this long counts as healthy: the next failure starts backoff afresh.
HEALTHY_SESSION_NS = 10 * NS_PER_S


class Backoff:
    """Exponential backoff with full jitter in [delay*(1-jitter), delay]; pure, seedable."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.5, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._delay_s = initial_s

    def next_delay_ns(self) -> int:
        """The next wait in ns (jittered), then grow the base delay by ``factor`` up to ``max_s``.
        """
        delay = self._delay_s * (1 - self.jitter * self._rng.random())
        self._delay_s = min(self._delay_s * self.factor, self.max_s)
        return int(delay * NS_PER_S)

    def reset(self) -> None:
        """Back to ``initial_s`` (after a healthy session)."""
        self._delay_s = self.initial_s


class Relay:
    """Keeps a URL flowing into a `LiveSource` until stopped.

    Each connection is decoded by a `LiveIngest` (format from the ``Content-Type``, else
    sniffed); when the stream ends or breaks, what arrived plays out while the relay waits its
    backoff and reconnects. Raises ValueError for a URL that is not http(s).
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        counters: Counters,
        live: LiveSettings,
        http: aiohttp.ClientSession,
        name: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"relay URL must be http:// or https://, not {url!r}")
        self.url = url
        self._clock = clock
        self._counters = counters
        self._http = http
        self.backoff = backoff or Backoff()
        self.source = LiveSource(f"relay/{url}", clock, counters, live)
        self.programme = Programme(name or f"Tiếp sóng {url}", ProgrammeKind.RELAY, self.source)
        self.connects = 0
        self.failures = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ``run`` as a task."""
        self._task = asyncio.create_task(self.run(), name=f"relay {self.url}")

    async def stop(self) -> None:
        """Cancel the task and wait for it (its decoder thread joined), and cut the source."""
        await cancel_and_wait(self._task)
        self._task = None
        self.source.disconnect()

    async def run(self) -> None:
        """Connect, decode into the LiveSource until the stream ends or fails, then wait a
        backoff delay on the injected clock and reconnect; forever, until cancelled. A session
        longer than 10 s resets the backoff; every end counts in ``relay_failures``."""
        while True:
            started_ns = self._clock.now_ns()
            try:
                await self._session()
                self.last_error = "stream ended"
            except (TimeoutError, aiohttp.ClientError, DecodeError, OSError) as exc:
                self.last_error = str(exc) or type(exc).__name__
            self.failures += 1
            self._counters.inc("relay_failures")
            if self._clock.now_ns() - started_ns > HEALTHY_SESSION_NS:
                self.backoff.reset()
            delay_ns = self.backoff.next_delay_ns()
            log.warning("relay %s: %s; reconnecting in %.1f s", self.url, self.last_error,
                        delay_ns / NS_PER_S)
            await self._clock.sleep_until(self._clock.now_ns() + delay_ns)

    async def _session(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=10)
        async with self._http.get(self.url, timeout=timeout,
                                  headers={"Icy-MetaData": "0"}) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=f"HTTP {resp.status}")
            ctype = resp.headers.get("Content-Type", "")
            try:
                fmt: str | None = format_for_content_type(ctype)
            except DecodeError:
                fmt = None  # sniffed from the bytes (a file server's generic type, say)
            ingest = LiveIngest(self.source, format=fmt, label=f"relay {self.url}")
            self.connects += 1
            ingest.start()
            log.info("relay %s connected (%s)", self.url, ctype or "unknown type")
            lost: Exception | None = None
            try:
                try:
                    async for chunk in resp.content.iter_any():
                        if not ingest.write(chunk):
                            await ingest.wait_writable()
                        if ingest.ended:
                            break
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    lost = exc  # what arrived before the cut still plays out
                ingest.finish_input()
                await ingest.wait_ended()  # the decoder hands over the tail of the stream
            finally:
                await ingest.stop()  # joins the decoder thread (cuts the source if cancelled)
            if ingest.error is not None:
                raise ingest.error
            if lost is not None:
                raise lost

    def describe(self) -> dict[str, object]:
        """Status snapshot: URL, connected, connects, failures and the last error."""
        return {"url": self.url, "connected": self.source.connected, "connects": self.connects,
                "failures": self.failures, "last_error": self.last_error}
