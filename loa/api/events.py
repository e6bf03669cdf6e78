"""The console's live stream: ``GET /api/v1/events``, server-sent events (``text/event-stream``)
for the signed-in caller (session cookie or bearer token), scoped as ``GET /api/v1/status`` is.

Events (each ``event: <name>`` and one ``data:`` line of JSON):

- ``status``: the JSON of ``GET /api/v1/status`` for the caller's scope (its alarms said in
  the stream's language: ``?lang=vi|en``, else its ``Accept-Language``), plus
  ``endpoints_by_zone``: ``{zone_id: {"registered": n, "online": m, "connected": k}}`` for
  every zone of the scope, counting the endpoints of the zone and of every zone below it
  (registered: the endpoint registry; online: the fleet's MQTT presence,
  ``FleetControl.is_online``; connected: those with an audio connection open now, which an
  alert's reach counts). Once at connect, then every second.
- ``levels``: ``{"zones": {zone_id: {"peak_dbfs": -12.3, "rms_dbfs": -20.1}}}``, the level of
  what each zone of the scope forwarded over the last ~250 ms (``ZoneChannel.levels``; silence
  reads -100), every 250 ms. While any stream is open, live sources are decoded even when no
  endpoint listens (``Engine.set_meter_watchers``), so that these meters read them.
- a comment (``: heartbeat``) every 15 s, so that no proxy closes a quiet connection; and
  ``retry: 2000`` at connect (how long a browser waits before it reconnects).

How it runs: one task per server (``EventHub``) makes each event once per scope per period
(the station's status once a second, shared by every scope; each scope's cut of it once; the
levels once) and puts the same bytes in the outbox of every stream of that scope, in loop
steps of about a millisecond (with 50 zones and 2,000 endpoints: the station's status and the
endpoint counts ~1 ms, each scope's status event ~0.2-0.4 ms); each stream's request handler
writes its outbox to its connection. Per second the hub re-checks
each stream's credentials without renewing them: a stream whose session ended (logout, idle
timeout, the account removed) or whose token was revoked ends, and one whose account changed
scope gets the new scope's events from then on.

Bounded: what waits for one client (its outbox and the connection's write buffer) is at most
``StreamLimits.max_pending_bytes``, and a write may take at most ``write_timeout_s``; a client
slower than that is dropped (its connection aborted; counted as ``event_streams_dropped``),
never buffered without limit. Its kernel send buffer is set to ``sndbuf_bytes``. When the
server stops (``EventHub.close``, its first step), every stream ends.

The front door closes every connection after its answer (``close_after_response``): the
stream is that answer, chunked, and the connection closes when it ends.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from loa.api.errors import language_of
from loa.api.middleware import SESSION_COOKIE
from loa.api.resource import ApiError, dumps, principal_of, server_of
from loa.api.status import scoped_status
from loa.control.auth import Principal, Scope
from loa.core.clock import NS_PER_S
from loa.core.i18n import N_, supported
from loa.core.lifecycle import cancel_and_wait

if TYPE_CHECKING:
    from loa.app import LoaServer
    from loa.control.endpoints import Endpoint
    from loa.core.zones import ZoneTree

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

LEVELS_PERIOD_NS = NS_PER_S // 4
STATUS_EVERY = 4  # level periods: a status a second
RETRY_MS = 2000
HEARTBEAT = b": heartbeat\n\n"


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What one client may hold up: bytes waiting for it (its outbox and the transport's write
    buffer) before it is dropped, seconds one write may take, its kernel send buffer (bytes),
    and how often a heartbeat comment is sent (s)."""

    max_pending_bytes: int = 256 * 1024
    write_timeout_s: float = 10.0
    sndbuf_bytes: int = 64 * 1024
    heartbeat_s: float = 15.0


class EndReason(enum.StrEnum):
    """Why a stream ended."""

    SERVER_STOPPING = "server stopping"
    CREDENTIALS_ENDED = "session ended"  # logout, idle timeout, account or token removed
    SLOW_CLIENT = "slow client"  # its buffer filled, or a write took too long: dropped
    CLIENT_GONE = "client gone"


def sse(name: str, data: Any) -> bytes:
    """One server-sent event: ``event: name`` and ``data`` as one line of JSON (UTF-8;
    ``json.dumps`` escapes every line break inside strings)."""
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


class EventStream:
    """One client's stream: who it is (``principal``, re-checked each second through its
    session ``cookie`` or bearer ``token``), its language (``vi``, ``en``: what its events
    say), its transport and its outbox of event bytes. ``ended`` is set, with
    ``end_reason``, once it is over."""

    def __init__(self, principal: Principal, cookie: str | None, token: str | None,
                 transport: asyncio.Transport, limits: StreamLimits,
                 language: str = "vi") -> None:
        self.principal = principal
        self.language = language
        self.cookie = cookie
        self.token = token
        self.transport = transport
        self.limits = limits
        self.outbox: list[bytes] = []
        self.pending_bytes = 0
        self.wake = asyncio.Event()  # something to write, or the end
        self.ended = asyncio.Event()
        self.end_reason: EndReason | None = None

    def send(self, data: bytes) -> None:
        """Queue bytes for the client; past ``max_pending_bytes`` waiting (the outbox and
        the transport's buffer, with these bytes), the client is dropped instead."""
        if self.end_reason is not None:
            return
        if self.transport.is_closing():
            self.end(EndReason.CLIENT_GONE)
            return
        waiting = self.pending_bytes + self.transport.get_write_buffer_size() + len(data)
        if waiting > self.limits.max_pending_bytes:
            self.drop()
            return
        self.outbox.append(data)
        self.pending_bytes += len(data)
        self.wake.set()

    def take(self) -> bytes:
        """Everything queued, at once (one write)."""
        data = b"".join(self.outbox)
        self.outbox.clear()
        self.pending_bytes = 0
        return data

    def drop(self) -> None:
        """Drop a client that does not keep up: its connection aborted (nothing more can
        reach it), the stream ended."""
        if self.end_reason is None:
            log.warning("events stream of %s dropped: the client does not keep up",
                        self.principal.name)
            self.transport.abort()
            self.end(EndReason.SLOW_CLIENT)

    def end(self, reason: EndReason) -> None:
        """End the stream (its handler writes what is queued, then returns)."""
        if self.end_reason is None:
            self.end_reason = reason
            self.wake.set()


# Endpoints a round counts per loop step (~1 µs each: 5,000 held one step 3-6 ms)
COUNT_SLICE = 1000
COUNTS_FRESH_NS = 3 * NS_PER_S // 2  # a round's counts, good for a stream opening meanwhile


class ZoneTally:
    """Endpoints counted by zone, a slice at a time (``add``), then each zone's subtree
    summed (``totals``): ``{zone: {"registered", "online", "connected"}}``. An endpoint in an
    alert's run-time group (``zone~alert``) counts in its home zone."""

    def __init__(self, zones: ZoneTree, is_online: Callable[[str], bool]) -> None:
        # the tree as it is now, depth first: an alert's run-time group made or gone while
        # the slices are counted changes nothing here
        self.order = [z for root in zones.roots() for z in zones.subtree(root.id)]
        self.is_online = is_online
        self.registered = dict.fromkeys((z.id for z in self.order), 0)
        self.online = dict(self.registered)
        self.connected = dict(self.registered)

    def add(self, eps: Iterable[Endpoint]) -> None:
        registered, online, connected = self.registered, self.online, self.connected
        for ep in eps:
            zone_id = ep.zone_id if ep.zone_id in registered else ep.zone_id.split("~")[0]
            if zone_id in registered:
                registered[zone_id] += 1
                if self.is_online(ep.id):
                    online[zone_id] += 1
                if ep.subscribers:
                    connected[zone_id] += 1

    def totals(self) -> dict[str, dict[str, int]]:
        registered, online, connected = self.registered, self.online, self.connected
        for zone in reversed(self.order):  # children before their parents
            if zone.parent_id in registered:
                registered[zone.parent_id] += registered[zone.id]
                online[zone.parent_id] += online[zone.id]
                connected[zone.parent_id] += connected[zone.id]
        return {z: {"registered": registered[z], "online": online[z],
                    "connected": connected[z]} for z in registered}


class EventHub:
    """Every events stream of one server, and the one task that feeds them (running while
    there are streams). ``changed`` is set whenever a stream opens or ends (for waiters);
    ``limits`` apply to the streams opened after it is set; ``longest_step_ms`` is the
    longest the last round of events held the loop at once, and ``dropped`` counts slow
    clients dropped."""

    def __init__(self, server: LoaServer, limits: StreamLimits | None = None) -> None:
        self.server = server
        self.limits = limits or StreamLimits()
        self.streams: set[EventStream] = set()
        self.changed = asyncio.Event()
        self.closed = False
        self.dropped = 0
        self.longest_step_ms = 0.0
        self._step_started = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last_heartbeat_ns = 0
        # the last round's endpoint counts and when (clock ns): a stream that opens while the
        # rounds run starts from them rather than counting thousands in its own loop step
        self._counts: tuple[int, dict[str, dict[str, int]]] | None = None

    # streams

    def open(self, principal: Principal, cookie: str | None, token: str | None,
             transport: asyncio.Transport, language: str = "vi") -> EventStream:
        """A new stream in ``language``, given ``retry``, its scope's status and levels at
        once; the feeding task is started if it was not running. Once the hub is closed
        (the server stops while the stream's answer starts), the stream is ended at once."""
        stream = EventStream(principal, cookie, token, transport, self.limits, language)
        if self.closed:
            stream.end(EndReason.SERVER_STOPPING)
            return stream
        stream.send(f"retry: {RETRY_MS}\n\n".encode())
        scope = self._scope(principal)
        stream.send(sse("status", self._status(scope, self.server.status(),
                                               self._recent_counts(), language)))
        stream.send(sse("levels", self._levels(scope, self._all_levels())))
        self.streams.add(stream)
        self.server.engine.set_meter_watchers(len(self.streams))  # live sources decoded
        self.changed.set()
        if self._task is None or self._task.done():
            self._last_heartbeat_ns = self.server.clock.now_ns()
            self._task = asyncio.create_task(self._run(), name="events")
        return stream

    def forget(self, stream: EventStream) -> None:
        """The stream's handler is done with it."""
        if stream.end_reason is None:
            stream.end(EndReason.CLIENT_GONE)
        if stream.end_reason is EndReason.SLOW_CLIENT:
            self.dropped += 1
            self.server.counters.inc("event_streams_dropped")
        self.streams.discard(stream)
        self.server.engine.set_meter_watchers(len(self.streams))
        stream.ended.set()
        self.changed.set()

    async def close(self) -> None:
        """The server stops: end every stream and the feeding task; no stream opens after."""
        self.closed = True
        for stream in list(self.streams):
            stream.end(EndReason.SERVER_STOPPING)
        await cancel_and_wait(self._task)
        self._task = None

    # the feeding task

    async def _run(self) -> None:
        clock = self.server.clock
        next_ns = clock.now_ns()
        rounds = 0
        while self.streams:
            next_ns += LEVELS_PERIOD_NS
            await clock.sleep_until(next_ns)
            now_ns = clock.now_ns()
            if now_ns - next_ns > LEVELS_PERIOD_NS:  # far behind (a jump): go on from now
                next_ns = now_ns
            rounds += 1
            try:
                await self._round(now_ns, with_status=rounds % STATUS_EVERY == 0)
            except Exception:  # one bad round must not end the console's live view for good
                log.exception("events round failed")

    async def _round(self, now_ns: int, *, with_status: bool) -> None:
        """One period's events to every live stream: the levels; each second the status,
        after re-checking every stream's credentials; the heartbeat when due. The work is
        cut into loop steps of about a millisecond: the station's status, the endpoint
        counts, then each scope's events (``longest_step_ms`` keeps the longest step of the
        last round)."""
        self._step_started = time.perf_counter()
        self.longest_step_ms = 0.0
        streams = [s for s in self.streams if s.end_reason is None]
        if with_status:
            for stream in streams:
                self._recheck(stream)
            await self._step()  # credentials checked: a step of their own
        by_scope: dict[str | None, list[EventStream]] = {}
        for stream in streams:
            if stream.end_reason is None:
                by_scope.setdefault(stream.principal.scope, []).append(stream)
        if with_status:
            full = self.server.status()
            await self._step()
            counts = await self._count_endpoints()
            self._counts = (self.server.clock.now_ns(), counts)
            await self._step()
            for key, group in by_scope.items():
                by_language: dict[str, list[EventStream]] = {}
                for stream in group:
                    by_language.setdefault(stream.language, []).append(stream)
                for language, streams_of in by_language.items():
                    data = sse("status", self._status(Scope(self.server.zones, key), full,
                                                      counts, language))
                    for stream in streams_of:
                        stream.send(data)
                    await self._step()
        levels = self._all_levels()
        for key, group in by_scope.items():
            data = sse("levels", self._levels(Scope(self.server.zones, key), levels))
            for stream in group:
                stream.send(data)
        if now_ns - self._last_heartbeat_ns >= self.limits.heartbeat_s * NS_PER_S:
            self._last_heartbeat_ns = now_ns
            for group in by_scope.values():
                for stream in group:
                    stream.send(HEARTBEAT)
        await self._step()

    async def _step(self) -> None:
        """End a loop step of a round (noting how long it held the loop), let others run."""
        held_ms = (time.perf_counter() - self._step_started) * 1e3
        self.longest_step_ms = max(self.longest_step_ms, held_ms)
        await asyncio.sleep(0)
        self._step_started = time.perf_counter()

    def _recheck(self, stream: EventStream) -> None:
        """The stream's caller as they are now, without renewing their session: ended when
        their session or token no longer stands, their scope followed when it changed."""
        s = self.server
        principal: Principal | None
        if stream.token is not None:
            principal = s.tokens.authenticate(stream.token) or \
                s.accounts.authenticate_token(stream.token)
        else:
            session = s.accounts.session(stream.cookie or "", touch=False)
            principal = s.accounts.principal(session.username) if session is not None \
                else None
        if principal is None:
            stream.end(EndReason.CREDENTIALS_ENDED)
        else:
            stream.principal = principal

    # what the events say

    def _scope(self, principal: Principal) -> Scope:
        return Scope(self.server.zones, principal.scope)

    def _status(self, scope: Scope, full: dict[str, Any],
                counts: dict[str, dict[str, int]], language: str) -> dict[str, Any]:
        out = scoped_status(self.server, scope, full, language)
        out["endpoints_by_zone"] = {z: c for z, c in counts.items() if scope.contains(z)}
        return out

    def _endpoint_counts(self) -> dict[str, dict[str, int]]:
        """``{zone: {"registered", "online", "connected"}}`` for every zone, each counting
        its subtree: one pass over the registry, then each zone's count added to its
        parent's. An endpoint in an alert's run-time group (``zone~alert``) counts in its
        home zone. In one loop step: a round counts a slice a step (``_count_endpoints``)."""
        tally = self._tally()
        tally.add(list(self.server.endpoints.endpoints.values()))
        return tally.totals()

    def _recent_counts(self) -> dict[str, dict[str, int]]:
        """The last round's counts while the rounds run and they are at most
        ``COUNTS_FRESH_NS`` old (the next status corrects them); else counted now."""
        if self._counts is not None and self._task is not None and not self._task.done():
            at_ns, counts = self._counts
            if self.server.clock.now_ns() - at_ns <= COUNTS_FRESH_NS:
                return counts
        return self._endpoint_counts()

    async def _count_endpoints(self) -> dict[str, dict[str, int]]:
        """``_endpoint_counts``, ``COUNT_SLICE`` endpoints a loop step (the round's
        ``_step``s between)."""
        tally = self._tally()
        eps = list(self.server.endpoints.endpoints.values())
        for start in range(0, len(eps), COUNT_SLICE):
            if start:
                await self._step()
            tally.add(eps[start:start + COUNT_SLICE])
        return tally.totals()

    def _tally(self) -> ZoneTally:
        s = self.server
        return ZoneTally(s.zones, s.fleet.is_online)

    def _all_levels(self) -> dict[str, dict[str, float]]:
        return {zone_id: ch.levels() for zone_id, ch in self.server.engine.channels.items()}

    @staticmethod
    def _levels(scope: Scope, levels: dict[str, dict[str, float]]) -> dict[str, Any]:
        return {"zones": {z: v for z, v in levels.items() if scope.contains(z)}}


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    """``GET events``: the caller's live stream (see the module docstring): 200 and
    ``text/event-stream`` until the server stops, the caller's session ends, or the client
    leaves or falls behind; 503 while the server stops."""
    s = server_of(request)
    hub: EventHub = s.events
    transport = request.transport
    if transport is None:  # the client left before its answer began
        raise ConnectionResetError("the client left")
    if hub.closed:
        raise ApiError(503, N_("the server is stopping"))
    resp = web.StreamResponse(headers={
        hdrs.CACHE_CONTROL: "no-store", "X-Accel-Buffering": "no",  # nginx: pass it at once
        "X-Content-Type-Options": "nosniff"})
    resp.content_type = "text/event-stream"
    sock = transport.get_extra_info("socket")
    if sock is not None:  # a stalled client holds at most this much in the kernel
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, hub.limits.sndbuf_bytes)
    await resp.prepare(request)
    token = None
    if hdrs.AUTHORIZATION in request.headers:  # as the auth middleware took it
        token = request.headers[hdrs.AUTHORIZATION].partition(" ")[2].strip()
    # an EventSource sends no header of the page's choosing: the console names its language
    language = supported(request.query.get("lang", "")) or language_of(request)
    stream = hub.open(principal_of(request), request.cookies.get(SESSION_COOKIE), token,
                      transport, language)
    try:
        while True:
            await stream.wake.wait()
            stream.wake.clear()
            data = stream.take()
            if data and stream.end_reason is not EndReason.SLOW_CLIENT:  # aborted: no use
                async with asyncio.timeout(stream.limits.write_timeout_s):
                    await resp.write(data)
            if stream.end_reason is not None:
                break
    except TimeoutError:
        stream.drop()
    except ConnectionError:  # the client left (aiohttp's reset errors are ConnectionErrors)
        stream.end(EndReason.CLIENT_GONE)
    finally:
        hub.forget(stream)
    return resp
