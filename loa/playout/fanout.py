"""Fan-out: the same immutable bytes to every subscriber, never awaiting any one of them.

Each subscriber's transport gets a high-water mark equal to its backlog. The transport calls
``pause_writing`` on its protocol the moment a write takes it over that mark; the next check
sees ``writing_paused`` and cuts the subscriber off, so one slow endpoint costs the others
nothing. (aiohttp's ``BaseProtocol`` and our raw stream protocol both expose ``transport`` and
``writing_paused``; a closed connection shows as ``transport is None``.)
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from loa.core.counters import Counters, LatencyWindow

log = logging.getLogger(__name__)

MIN_BACKLOG_BYTES = 16 * 1024


class WritableProtocol(Protocol):
    """What fan-out needs of a connection's protocol: its transport (None once lost) and
    whether the transport has paused writing (it went over the high-water mark)."""

    transport: Any  # asyncio.Transport, None once the connection is lost

    @property
    def writing_paused(self) -> bool: ...


class Subscriber:
    """One listener connection on one feed."""

    __slots__ = ("protocol", "label", "format_name", "feed", "on_gone", "endpoint_id")

    def __init__(self, protocol: WritableProtocol, label: str, format_name: str,
                 endpoint_id: str | None = None) -> None:
        self.protocol = protocol
        self.label = label
        self.format_name = format_name
        self.endpoint_id = endpoint_id
        self.feed: Feed | None = None
        self.on_gone: Callable[[Subscriber], None] | None = None

    def close(self) -> None:
        """Close the connection (buffered bytes are still flushed); no-op once it is lost."""
        tr = self.protocol.transport
        if tr is not None:
            tr.close()


def tune_socket(transport: Any, sndbuf_bytes: int) -> None:
    """Small kernel send buffer (bounded delay and memory per endpoint), no Nagle delay."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sndbuf_bytes > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf_bytes)
    except OSError:
        pass  # not a TCP socket (tests over pipes): nothing to tune


class Audience:
    """How many subscribers every feed that shares this counts, all zones and formats
    together: the engine's one look (a single int) at whether anyone listens at all.
    ``on_first`` is called when a subscriber joins an audience of none (``ZoneChannel.join``
    calls it before the join, to make it see what is on air now); calling it twice for one
    join is harmless."""

    __slots__ = ("listeners", "on_first")

    def __init__(self) -> None:
        self.listeners = 0
        self.on_first: Callable[[], None] | None = None

    def joined(self) -> None:
        """One subscriber more."""
        self.listeners += 1
        if self.listeners == 1 and self.on_first is not None:
            self.on_first()

    def left(self) -> None:
        """One subscriber fewer."""
        self.listeners -= 1


class Feed:
    """One zone stream in one wire format, with its subscribers and a short join burst."""

    def __init__(
        self,
        name: str,
        counters: Counters,
        latency: LatencyWindow,
        *,
        burst_packets: int,
        backlog_bytes: int,
        now_ns: Callable[[], int],
        batch_ladder: Sequence[tuple[int, int]] = (),
        audience: Audience | None = None,
    ) -> None:
        """``batch_ladder``: the write batch by audience size, ascending ``(above, packets)``
        pairs: a feed with more than ``above`` subscribers writes ``packets`` packets at a time
        (the highest rung it passes wins); with no rung passed (or none given), every packet
        at once. Raises ValueError if the thresholds descend. ``audience``: a count shared with
        other feeds, kept up to date as subscribers join and leave."""
        self.name = name  # e.g. "an-binh-1/ogg", for logs and counters
        self.counters = counters
        self.latency = latency
        self.backlog_bytes = max(backlog_bytes, MIN_BACKLOG_BYTES)
        self._now_ns = now_ns
        self._subscribers: dict[Subscriber, None] = {}  # insertion-ordered set
        self.audience = audience if audience is not None else Audience()
        self._burst: deque[bytes] = deque(maxlen=max(burst_packets, 0) or None)
        self._burst_enabled = burst_packets > 0
        self.packets_published = 0
        self.packets_sent = 0  # packets written to listeners (each listener counts)
        self.writes_sent = 0  # transport writes (each listener counts): send() calls, roughly
        # Batching applies only to an audience larger than a rung's threshold: a few listeners
        # cost little per write and get every packet the moment it exists (a batch adds up to
        # its length to what they hear); a larger audience gets fewer, larger writes, and the
        # largest the fewest: the send() per listener per write is what costs at scale.
        self.batch_ladder: tuple[tuple[int, int], ...] = tuple(
            (max(0, above), max(1, n)) for above, n in batch_ladder)
        thresholds = [above for above, _ in self.batch_ladder]
        if thresholds != sorted(thresholds):
            raise ValueError(f"batch ladder thresholds must ascend: {self.batch_ladder}")
        self._pending: list[bytes] = []  # packets of the batch being gathered
        self._pending_capture_ns = 0

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribers(self) -> list[Subscriber]:
        """A copy of the subscribers, in join order."""
        return list(self._subscribers)

    def add(self, sub: Subscriber, header: bytes) -> None:
        """Join: the stream's header, then the recent burst, in one write."""
        tr = sub.protocol.transport
        if tr is None:
            return
        tr.set_write_buffer_limits(high=self.backlog_bytes)
        sub.feed = self
        if sub not in self._subscribers:
            self.audience.joined()
        self._subscribers[sub] = None
        data = header + b"".join(self._burst) if self._burst_enabled else header
        if data:
            tr.write(data)
        self.counters.inc("subscribers_joined", feed=self.name)

    def remove(self, sub: Subscriber) -> None:
        """Forget a subscriber (its connection is left open). The last one to leave clears
        the burst and any half-gathered batch, so a later joiner gets no stale audio."""
        if sub in self._subscribers:
            del self._subscribers[sub]
            self.audience.left()
            sub.feed = None
            if not self._subscribers:
                self._burst.clear()  # a later joiner must not get stale audio
                self._pending.clear()
                self._pending_capture_ns = 0

    @property
    def batch_packets(self) -> int:
        """Packets a write for the audience now (1: every packet at once): the ``packets`` of
        the highest rung of ``batch_ladder`` whose ``above`` the subscribers outnumber."""
        n = len(self._subscribers)
        for above, packets in reversed(self.batch_ladder):
            if n > above:
                return packets
        return 1

    @property
    def batch_above(self) -> int:
        """Subscribers above which batching may start: the lowest rung's threshold (0 with
        no rung)."""
        return self.batch_ladder[0][0] if self.batch_ladder else 0

    @property
    def batching(self) -> bool:
        """Whether packets are gathered into batches now (``batch_packets`` > 1)."""
        return self.batch_packets > 1

    def publish(self, data: bytes, capture_ns: int = 0, *, burst: bool = True) -> None:
        """Write ``data`` to every subscriber. ``capture_ns`` > 0 records server-added latency.

        While ``batching``, audio packets (``burst``) are held and written together,
        ``batch_packets`` (its size for the audience now) a write per subscriber: fewer send()
        calls, at the price of up to a batch of latency. When the audience shrinks to a smaller
        batch, what is held goes out with the next packet once it reaches the new size (at once
        when unbatched), then whole batches of that size; nothing is lost or reordered.
        ``burst=False`` (notices, control messages) is written at once, ahead of a
        half-gathered batch.
        """
        self.packets_published += 1
        packets = 1
        if burst:
            size = self.batch_packets
            if size > 1 or self._pending:
                pending = self._pending
                pending.append(data)
                if capture_ns and not self._pending_capture_ns:
                    self._pending_capture_ns = capture_ns  # the oldest packet's: the worst
                if len(pending) < size:
                    return
                packets = len(pending)
                if self._burst_enabled:
                    self._burst.extend(pending)
                data = b"".join(pending) if packets > 1 else pending[0]
                capture_ns = self._pending_capture_ns
                pending.clear()
                self._pending_capture_ns = 0
            elif self._burst_enabled:
                self._burst.append(data)
        if not self._subscribers:
            return
        self.packets_sent += len(self._subscribers) * packets
        self.writes_sent += len(self._subscribers)
        dropped: list[Subscriber] | None = None
        for sub in self._subscribers:
            proto = sub.protocol
            tr = proto.transport
            if tr is None:
                (dropped := dropped or []).append(sub)
                continue
            tr.write(data)
            if proto.writing_paused:
                (dropped := dropped or []).append(sub)
        if capture_ns > 0:
            # After the last write: the worst subscriber's server-added latency for this packet.
            self.latency.add(self._now_ns() - capture_ns)
        if dropped:
            self._drop(dropped)

    def _drop(self, subs: list[Subscriber]) -> None:
        for sub in subs:
            self.remove(sub)
            tr = sub.protocol.transport
            if tr is None:
                self.counters.inc("subscribers_left", feed=self.name)
            else:
                # Over its backlog: abort (discarding the backlog) rather than let it grow.
                self.counters.inc("subscribers_cut", feed=self.name, reason="slow")
                log.warning("cut slow listener %s on %s (backlog over %d bytes)",
                            sub.label, self.name, self.backlog_bytes)
                tr.abort()
            if sub.on_gone is not None:
                sub.on_gone(sub)

    def close_all(self) -> None:
        """Remove every subscriber and close its connection (a zone went away)."""
        for sub in list(self._subscribers):
            self.remove(sub)
            sub.close()
