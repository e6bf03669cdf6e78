"""The engine: one master clock tick per 20 ms frame drives every programme and zone.

Per tick, in order:
1. every zone channel picks its winner;
2. each programme is pulled once: live ones always (they keep their live edge while
   preempted), pausable ones only while on air somewhere (so they resume where they stopped);
3. each zone's level meter takes the level of its programme's frame (each programme measured
   once: ``loa.playout.levels``);
4. each (programme, codec) that some listened zone forwards is encoded once (a rendition,
   created lazily and dropped when nobody has listened for a while);
5. each zone frames the packets once per wire format and fans them out.

A zone with nothing to do rests: nobody listening on any of its feeds (every endpoint that
plays a zone is a listener of one), no request on it and silence on air. It is ticked one
meter window more (so that its level meter reads silence), then skipped, at no cost a tick but
a look at its requests and feeds; the tick in which a request or a listener arrives ticks it
again, so it starts on that tick exactly as a zone that never rested. The schedule, alerts and
operators all reach a zone through ``request``, so whatever is due wakes it on time.

``tick`` is synchronous and I/O-free apart from non-blocking transport writes, so tests drive
it directly with any clock; ``run`` paces it with absolute deadlines on the injected clock.

While nobody listens anywhere (no subscriber on any feed: ``Audience``), ``run`` lulls: it
sleeps through ``lull_frames`` deadlines at a time, then ticks each of them at its own time,
back to back. Every frame is still ticked, in order: programmes advance, meters and the
broadcast log see every frame, and a live source's jitter buffer (a relay's too) takes in only
what had arrived by each tick's time (``LiveSource.horizon_ns``; frames pushed on the loop wait
in its inbox meanwhile, ``LiveSource.lulled``), so it measures and plays exactly as on time. A
loop held up past a lull resynchronises, as any tick would. ``request`` and ``release`` first
tick the deadlines passed (``settle``), so a lull never moves a request's start or end. Only
when the work is done moves: up to ``lull_frames`` - 1 frames late, which nobody hears (a
switch reaches the broadcast log that much later, and the loop's lag is sampled once a lull).
Why: a tick and its wake-up cost most of their CPU in caches gone cold since the last (measured
2026-11-30 on an idle server carrying one live programme: ~370 µs of CPU a tick and ~275 µs a
wake-up, against ~20 µs of its AGC's own work warm); a lull wakes once, and its ticks after the
first run warm (issue 17, idle CPU: the loop's thread from 2.95 % to 1.1 % of a core). A first
listener ends the lull at once (``Audience.on_first``): the deadlines passed are ticked unheard
before it joins (their frames are older than the listener; it joins what is on air now), and
the next deadline is the listener's first tick, as without a lull.

Lulls that last (``UNHEARD_AFTER_NS``) while nobody watches a level meter either (the console:
``set_meter_watchers``) stop the decoding of the live sources zones take
(``LiveSource.set_heard``): their audio is heard by nobody and measured for nobody, and a
source's decoder thread, woken by every page, costs most of its CPU in caches gone cold
(measured 2026-11-30: 77 µs of CPU a 20 ms Opus page decoded back to back, 500-640 µs a page
decoded as pages arrive; an idle server's decoder thread at 2.1 % of a core). They are still
read and parsed, so they stay connected and at their live edge (a WHIP source's RTP is still
decoded, on the loop, and its frames dropped). A first listener or watcher
has them decoded again from the next packet (the decoder primed on the last few), from an
empty jitter buffer: what it hears first is live, after the buffer's depth.

The tick's phase follows the arrivals of the live programme that the most listened zones carry,
then the most zones (so, while nobody listens, the one most zones carry): a frame that arrives
just after a tick waits most of a frame for the next one. Every ``PHASE_EVERY_TICKS`` ticks, in
lulls too, ``run`` asks that source how long its frames waited at the least, beyond its jitter
buffer's guard and the lateness it remembers (``LiveSource.phase_slack_ns``; while it is not
decoded, its parsed pages' arrivals). Followed while nobody listens because a player keeps the
pace of its first packet: a tick moved sooner later on helps only the listeners who join after
it (measured: a first listener after 15 s unheard heard 9-39 ms, by the phase the grid happened
to have). Later at once, when a frame waited less than that; sooner only by the least slack of
the last ``PHASE_LOOKS_SOONER`` looks, modulo a frame (whole frames of wait are the jitter
buffer's to trim), so that a source late now and then does not swing the phase back and forth.
Every frame still waits the guard, so none is late; a listener hears the frame 0-20 ms sooner.
Other sources keep their own jitter buffers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from loa.codecs.encoder import EncodedPacket, Encoder, create_encoder
from loa.core.clock import NS_PER_MS, NS_PER_S, Clock
from loa.core.counters import Counters, LatencyWindow
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES
from loa.core.zones import Zone, ZoneTree
from loa.playout.fanout import Audience
from loa.playout.inputs.generator import silence_source
from loa.playout.inputs.live import LiveSource
from loa.playout.jitter import JitterBuffer
from loa.playout.levels import WINDOW_FRAMES, frame_level
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.playout.zone_channel import FanoutSettings, Request, SwitchEvent, ZoneChannel

log = logging.getLogger(__name__)

# Behind by more than this, the clock resynchronises (and counts it) instead of bursting.
RESYNC_AFTER_NS = 5 * FRAME_NS
# A rendition nobody has forwarded for this long is closed; a new listener reopens it.
RENDITION_IDLE_NS = 2 * NS_PER_S
# A zone left with nothing to do is ticked this many frames more (its level meter's window:
# it then reads silence) before it rests.
QUIET_TICKS_BEFORE_REST = WINDOW_FRAMES
# The tick's phase (module docstring): looked at this often, and moved only by this much or more.
PHASE_EVERY_TICKS = 100  # 2 s
# (the jitter buffer allows a frame to spare the same: ``JitterBuffer.GUARD_SLACK_MS``)
PHASE_DEADBAND_NS = JitterBuffer.GUARD_SLACK_MS * NS_PER_MS
PHASE_LOOKS_SOONER = 3  # looks in a row that all allow it, before the tick moves sooner
# While nobody listens, ticks run this many at a time (module docstring): 100 ms.
LULL_FRAMES = 5
# Lulls for this long, and nobody watching a level meter: live sources are no longer decoded
# (module docstring). Long enough that an endpoint reconnecting does not stop and restart it.
UNHEARD_AFTER_NS = NS_PER_S


@dataclass(eq=False)
class Rendition:
    """A programme encoded in one codec: the one encoder every listener of it shares."""

    programme: Programme
    codec: str
    encoder: Encoder
    last_used_ns: int
    packets: list[EncodedPacket]


class Engine:
    """The master clock and everything it drives: one ZoneChannel per zone of ``zones``, the
    registered programmes, the requests, and the renditions (one encoder per programme x codec).

    Times are ns on the injected ``clock``; each tick moves one 20 ms frame (960 samples at
    48 kHz). Zone switches are collected in ``switch_events`` for the broadcast log."""

    def __init__(
        self,
        zones: ZoneTree,
        clock: Clock,
        counters: Counters,
        fanout: FanoutSettings,
    ) -> None:
        self.zones = zones
        self.clock = clock
        self.counters = counters
        self.fanout = fanout
        self.latency = LatencyWindow()
        self.idle = Programme("Im lặng (idle)", ProgrammeKind.IDLE, silence_source())
        self._serials = itertools.count(0x4C4F4100)  # "LOA\0": Ogg serials, one a stream
        self.switch_events: list[SwitchEvent] = []  # drained by the broadcast log
        self.audience = Audience()  # subscribers of every feed of every zone
        self.channels: dict[str, ZoneChannel] = {z.id: self._channel(z) for z in zones}
        self.programmes: dict[int, Programme] = {self.idle.id: self.idle}
        self._persistent: set[int] = {self.idle.id}
        self.requests: dict[int, Request] = {}
        self.renditions: dict[tuple[int, str], Rendition] = {}
        self.ticks = 0
        self.zones_ticked = 0  # zone-ticks run, summed over ticks (a resting zone's not counted)
        self.resting: set[str] = set()  # zones skipped by the tick: see the module docstring
        self._quiet_ticks: dict[str, int] = {}  # zone -> ticks with nothing to do, not yet resting
        # Called each tick with how late (ns) the loop ran it after its deadline: the loop's
        # own lag (``loa.monitoring.loop_lag``), measured at no cost of a wake-up.
        self.on_lateness: Callable[[int], None] | None = None
        self.resyncs = 0
        self.last_resync_ns = 0  # when the clock last resynchronised (0: never)
        self.last_resync_behind_ms = 0.0  # and how far behind it was
        self.phase_shifts = 0  # times the tick's phase moved to follow a live source
        self.phase_offset_ns = 0  # where it stands, summed over every move (-: sooner)
        self._phase_looks: deque[int] = deque(maxlen=PHASE_LOOKS_SOONER)  # slacks, ns
        self._phase_source = 0  # the programme they were measured on
        self._phase_at = PHASE_EVERY_TICKS  # the tick count of the next look
        self.encode_cpu_ns: dict[str, int] = {}  # by codec: the encoders' own CPU time
        # ``run`` ticks this many frames at a time while nobody listens (1: never lulls)
        self.lull_frames = LULL_FRAMES
        self.lulled_ticks = 0  # ticks run by lulls, all but the last of each late
        self._lull_next_ns: int | None = None  # in a lull: the first deadline not yet ticked
        self._settling = False  # ``settle`` is running the ticks owed
        self._lull_waiter: asyncio.Future[None] | None = None  # set by a first listener
        self.audience.on_first = self._first_listener
        # Who watches a level meter (the console's events streams: ``set_meter_watchers``);
        # while any does, live sources stay decoded through lulls.
        self.meter_watchers = 0
        self._unheard_since_ns: int | None = None  # the first deadline of these lulls
        self._task: asyncio.Task[None] | None = None

    def _channel(self, zone: Zone) -> ZoneChannel:
        ch = ZoneChannel(zone, self.idle, self.fanout, self.counters, self.latency,
                         self.clock.now_ns, next(self._serials), self.audience)
        ch.events = self.switch_events
        return ch

    def drain_switch_events(self) -> list[SwitchEvent]:
        """Take every zone switch recorded since the last call, oldest first, and empty the
        list in place (the channels keep appending to the same list)."""
        events, self.switch_events[:] = list(self.switch_events), []
        return events

    def add_channel(self, zone: Zone) -> ZoneChannel:
        """A channel for a zone added at run time: it carries what its parent carries."""
        ch = self._channel(zone)
        if zone.parent_id is not None:
            for req in self.channels[zone.parent_id].requests:
                ch.add(req)
        self.channels[zone.id] = ch
        return ch

    def remove_channel(self, zone_id: str) -> None:
        """Drop a zone's channel and close every listener connection on it; KeyError for an
        unknown zone. Requests on the zone are left as they are."""
        ch = self.channels.pop(zone_id)
        self.resting.discard(zone_id)
        self._quiet_ticks.pop(zone_id, None)
        for feed in ch.feeds.values():
            feed.close_all()

    # programmes and requests

    def add_programme(self, programme: Programme, *, persistent: bool = False) -> Programme:
        """Register a programme. Persistent ones (mounts) outlive their requests."""
        self.programmes[programme.id] = programme
        if persistent:
            self._persistent.add(programme.id)
            self._tell_taken(programme)  # a mount no zone takes yet: parsed, not decoded
        return programme

    def request(self, zone_id: str, programme: Programme, priority: int, label: str = "",
                by: str = "") -> Request:
        """Ask for ``programme`` on a zone and everything below it; ``by`` names who asked
        (a user or token; "" for the server's own: schedule, alert, demo)."""
        subtree = self.zones.subtree(zone_id)  # raises ZoneError for an unknown zone
        self.settle()  # the frames before it, without it
        self.add_programme(programme, persistent=programme.id in self._persistent)
        req = Request(zone_id, programme, priority, label, by=by)
        self.requests[req.id] = req
        for zone in subtree:
            self.channels[zone.id].add(req)
        self._tell_taken(programme)
        log.info("request %d: %s on %s at priority %d", req.id, programme.name, zone_id, priority)
        return req

    def release(self, request_id: int, reason: EndReason = EndReason.RELEASED
                ) -> Request | None:
        """End a request: take it off its zone and every zone below, call its ``on_end``
        callbacks with ``reason``, and close its programme unless persistent or still requested.
        Returns the request, or None if it was already gone."""
        if request_id not in self.requests:
            return None
        self.settle()  # the frames before, with it
        req = self.requests.pop(request_id, None)
        if req is None:  # it ended in those frames
            return None
        req.programme.release_reason = reason
        for zone in self.zones.subtree(req.zone_id):
            self.channels[zone.id].remove(req)
        for cb in req.on_end:
            cb(req, reason)
        prog = req.programme
        self._tell_taken(prog)
        if prog.id not in self._persistent and not self.requests_for(prog):
            self._drop_programme(prog)
        log.info("request %d (%s on %s) ended: %s", req.id, prog.name, req.zone_id,
                 reason.value)
        return req

    def requests_for(self, prog: Programme) -> list[Request]:
        """The requests (on air or preempted, on any zone) that ask for ``prog``: the zones
        that take a live mount, a file's requests to release when it ends."""
        return [r for r in self.requests.values() if r.programme is prog]

    def _tell_taken(self, prog: Programme) -> None:
        """Tell a live source whether any request takes it (``LiveSource.set_taken``): one
        that none takes is parsed, not decoded."""
        set_taken = getattr(prog.source, "set_taken", None)
        if set_taken is not None:
            set_taken(bool(self.requests_for(prog)))

    def _drop_programme(self, prog: Programme) -> None:
        live = _live_of(prog)
        if live is not None:  # left as a new programme's would be (none takes it: no decode)
            live.set_heard(True)
        self.programmes.pop(prog.id, None)
        for key in [k for k in self.renditions if k[0] == prog.id]:
            del self.renditions[key]
        prog.close()

    def requests_on(self, zone_id: str) -> list[Request]:
        """The requests made on exactly this zone (not those inherited from its parents)."""
        return [r for r in self.requests.values() if r.zone_id == zone_id]

    # the clock

    async def inputs_ready(self) -> None:
        """Wait until every file reader has its next frame decoded. Only a driver faster
        than real time needs this (a test on a ``FakeClock``): in real time a reader is a
        second ahead, and the tick never waits for it."""
        for prog in list(self.programmes.values()):
            ready = getattr(prog.source, "ready", None)
            if ready is not None and not prog.finished:
                await ready()

    def tick(self, now_ns: int, *, heard: bool = True) -> None:
        """Run one frame at ``now_ns``: choose each zone's winner, pull the programmes, encode
        each listened (programme, codec) once and forward it. A programme that ends releases its
        requests (COMPLETED), and whoever takes over plays in this same tick. Resting zones
        are skipped (module docstring); one with a request or a listener is ticked again.
        ``heard=False``: a frame owed from a lull, older than any listener now: nothing is
        encoded or forwarded, as when nobody listened."""
        channels = self._awake()
        on_air = {ch.choose().id for ch in channels}
        ended = self._pull(self.programmes.values(), on_air, now_ns)
        if ended:
            for prog in ended:
                for req in self.requests_for(prog):
                    self.release(req.id, reason=EndReason.COMPLETED)
            channels = self._awake()  # an ended request's callback may have asked for more
            on_air = {ch.choose().id for ch in channels}
            # Whoever takes over this tick plays this tick: no gap at the end of a file.
            self._pull([self.programmes[p] for p in on_air if p in self.programmes], on_air,
                       now_ns)
        self._meter(channels)
        self._encode_and_forward(channels, now_ns, heard)
        self.ticks += 1
        self.zones_ticked += len(channels)

    def _awake(self) -> list[ZoneChannel]:
        """The channels this tick runs, in zone order: all but the resting ones, and a resting
        one wakes when it has a request or a listener."""
        resting = self.resting
        if not resting:
            return list(self.channels.values())
        awake = []
        for zone_id, ch in self.channels.items():
            if zone_id in resting:
                if not ch.requests and not (ch.feeds and ch.codecs_listened()):
                    continue
                resting.discard(zone_id)
                log.debug("zone %s wakes", zone_id)
            awake.append(ch)
        return awake

    def _quiet(self, ch: ZoneChannel) -> None:
        """``ch`` had nothing to do this tick: count it, and rest it after
        ``QUIET_TICKS_BEFORE_REST`` in a row."""
        zone_id = ch.zone.id
        quiet = self._quiet_ticks.get(zone_id, 0) + 1
        if quiet < QUIET_TICKS_BEFORE_REST:
            self._quiet_ticks[zone_id] = quiet
        else:
            del self._quiet_ticks[zone_id]
            self.resting.add(zone_id)
            log.debug("zone %s rests (no listener, no request)", zone_id)

    def _pull(self, programmes: Iterable[Programme], on_air: set[int], now_ns: int
              ) -> list[Programme]:
        ended = []
        for prog in list(programmes):
            if prog.finished or (prog.pausable and prog.id not in on_air):
                continue
            if not prog.pull(now_ns):
                ended.append(prog)
        return ended

    def _meter(self, channels: list[ZoneChannel]) -> None:
        """Each zone's level meter takes this tick's frame of what it forwards: each
        programme on air measured once, however many zones carry it."""
        measured: dict[int, tuple[float, float]] = {}
        for ch in channels:
            prog = ch.on_air_programme
            level = measured.get(prog.id)
            if level is None:
                level = measured[prog.id] = frame_level(prog.frame)
            ch.meter.add(*level)

    def _encode_and_forward(self, channels: list[ZoneChannel], now_ns: int, heard: bool
                            ) -> None:
        by_programme: dict[int, dict[str, list[EncodedPacket]]] = {}
        idle, quiet = self.idle, self._quiet_ticks
        for ch in channels:
            codecs = ch.codecs_listened() if heard else ()
            if not codecs:
                if not ch.requests and ch.on_air_programme is idle:
                    self._quiet(ch)
                elif quiet:
                    quiet.pop(ch.zone.id, None)
                continue
            if quiet:
                quiet.pop(ch.zone.id, None)
            prog = ch.on_air_programme
            encoded = by_programme.setdefault(prog.id, {})
            for codec in codecs:
                if codec not in encoded:
                    encoded[codec] = self._encode(prog, codec, now_ns)
            ch.forward(encoded)
        if self.ticks % 50 == 0:
            self._close_idle_renditions(now_ns)

    def _encode(self, prog: Programme, codec: str, now_ns: int) -> list[EncodedPacket]:
        key = (prog.id, codec)
        rend = self.renditions.get(key)
        if rend is None:
            encoder = create_encoder(codec, self.fanout.bitrates_bps[codec])
            rend = Rendition(prog, codec, encoder, now_ns, [])
            self.renditions[key] = rend
            self.counters.inc("encoders_created", codec=codec)
            log.info("encoding %s as %s", prog.name, codec)
        rend.last_used_ns = now_ns
        cpu0 = time.thread_time_ns()
        rend.packets = rend.encoder.encode(
            prog.frame, prog.position_samples - FRAME_SAMPLES, prog.capture_ns
        )
        self.encode_cpu_ns[codec] = self.encode_cpu_ns.get(codec, 0) + time.thread_time_ns() - cpu0
        return rend.packets

    def _close_idle_renditions(self, now_ns: int) -> None:
        for key, rend in list(self.renditions.items()):
            if now_ns - rend.last_used_ns > RENDITION_IDLE_NS:
                del self.renditions[key]
                log.info("stopped encoding %s as %s (no listeners)", rend.programme.name,
                         rend.codec)

    async def run(self) -> None:
        """Tick every frame on absolute deadlines until cancelled; while nobody listens, in
        lulls of ``lull_frames`` (module docstring)."""
        clock = self.clock
        deadline_ns = clock.now_ns()
        self._phase_at = self.ticks + PHASE_EVERY_TICKS
        while True:
            deadline_ns += FRAME_NS
            if self.lull_frames > 1 and not self.audience.listeners:
                deadline_ns = await self._lull(deadline_ns)  # phase looks in ``settle``
                continue
            await clock.sleep_until(deadline_ns)
            now_ns = clock.now_ns()
            if self.on_lateness is not None:
                self.on_lateness(now_ns - deadline_ns)
            if now_ns - deadline_ns > RESYNC_AFTER_NS:
                self._resync(now_ns, deadline_ns)
                deadline_ns = now_ns
            self._safe_tick(now_ns)
            deadline_ns += self._phase_look()

    def _phase_look(self) -> int:
        """After a tick: every ``PHASE_EVERY_TICKS``, how far the next deadline moves
        (``_phase_shift_ns``); else 0."""
        if self.ticks < self._phase_at:
            return 0
        self._phase_at = self.ticks + PHASE_EVERY_TICKS
        return self._phase_shift_ns()

    def _resync(self, now_ns: int, deadline_ns: int) -> None:
        self.resyncs += 1  # exported as loa_clock_resyncs
        self.last_resync_ns = now_ns
        self.last_resync_behind_ms = (now_ns - deadline_ns) / 1e6
        log.warning("master clock %.1f ms behind: resynchronising", (now_ns - deadline_ns) / 1e6)

    async def _lull(self, first_ns: int) -> int:
        """One lull (module docstring): from the deadline ``first_ns``, sleep until the
        ``lull_frames``-th, or until a first listener joins (``Audience.on_first``), then tick
        every deadline passed. Returns the last deadline ticked."""
        clock = self.clock
        last_ns = first_ns + (self.lull_frames - 1) * FRAME_NS
        self._lull_next_ns = first_ns
        sources = self._live_sources()
        for src in sources:
            src.lulled = True  # frames pushed on the loop wait in the inbox for their tick
        if self._unheard_since_ns is None or self.meter_watchers:  # heard or seen until now
            self._unheard_since_ns = first_ns
        elif first_ns - self._unheard_since_ns >= UNHEARD_AFTER_NS:
            for src in sources:  # nobody hears or sees them: not decoded (module docstring)
                src.set_heard(False)
        waiter = asyncio.get_running_loop().create_future()
        self._lull_waiter = waiter
        sleeper = asyncio.ensure_future(clock.sleep_until(last_ns))
        try:
            await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done() and self.on_lateness is not None:
                self.on_lateness(clock.now_ns() - last_ns)
            self.settle()
            # the last deadline ticked (the one before the lull, if a listener came that soon)
            return self._lull_next_ns - FRAME_NS
        finally:
            sleeper.cancel()
            self._lull_waiter = None
            self._lull_next_ns = None
            for src in sources:
                src.lulled = False

    def _first_listener(self) -> None:
        """A listener joins while nobody listens (``Audience.on_first``): the ticks the lull
        owes run now, unheard, so that the listener joins what is on air now; the lull ends,
        and live sources are decoded again."""
        self.settle()
        self._hear_all()
        waiter = self._lull_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def set_meter_watchers(self, watchers: int) -> None:
        """How many watch a level meter now (the console's events streams): while any does,
        live sources are decoded even when nobody listens, so that the meters read them."""
        self.meter_watchers = watchers
        if watchers:
            self._hear_all()

    def _hear_all(self) -> None:
        """Someone listens or watches: the live sources no longer heard are decoded again (a
        dropped programme's source is heard again as it goes), and the time unheard counts
        afresh."""
        self._unheard_since_ns = None
        for src in self._live_sources():
            src.set_heard(True)

    def _live_sources(self) -> list[LiveSource]:
        """The live sources of the programmes now (a relay's among them)."""
        return [live for prog in self.programmes.values() if (live := _live_of(prog))]

    def _safe_tick(self, now_ns: int, heard: bool = True) -> None:
        try:
            self.tick(now_ns, heard=heard)
        except Exception:  # one bad tick must not stop the clock for every zone
            self.counters.inc("tick_errors")
            log.exception("tick failed")

    def settle(self) -> None:
        """In a lull, run every tick whose deadline has passed, each at its own time, unheard
        (module docstring): live sources take in only what had arrived by then. ``request``
        and ``release`` settle first, so that a lull never moves a request's start or end.
        A loop held up beyond a lull and ``RESYNC_AFTER_NS`` resynchronises, as ``run`` does
        (one tick now instead of the ticks missed). Re-entrant: a request made or ended in
        those ticks finds nothing more owed (the later ticks run after the one that made it,
        in order). Outside a lull, nothing to do."""
        due_ns = self._lull_next_ns
        if due_ns is None or self._settling:
            return
        now_ns = self.clock.now_ns()
        if due_ns > now_ns:
            return
        lull_end_ns = due_ns + (self.lull_frames - 1) * FRAME_NS
        if now_ns - lull_end_ns > RESYNC_AFTER_NS:
            self._resync(now_ns, lull_end_ns)
            due_ns = now_ns
        self._settling = True
        try:
            while due_ns <= now_ns:
                self.lulled_ticks += 1
                sources = self._live_sources()  # a tick may add one (an alert's ``on_end``)
                for src in sources:
                    src.horizon_ns = due_ns
                try:
                    self._safe_tick(due_ns, heard=False)
                finally:
                    for src in sources:
                        src.horizon_ns = None
                due_ns += FRAME_NS + self._phase_look()  # as ``run`` would, at this tick
                self._lull_next_ns = due_ns
        finally:
            self._settling = False

    def _phase_shift_ns(self) -> int:
        """How far to move the next deadline (ns; negative: sooner) so that the tick comes the
        guard after the arrivals of the live programme the most listened zones carry, then
        the most zones, whose live input is connected (a relay playing a file has none to
        follow: the next is looked at; module docstring); 0 when no such programme has
        played or arrived since the last look, at the first look at a source newly followed
        (what it measured before is stale), or within ``PHASE_DEADBAND_NS``."""
        carried: dict[int, list[int]] = {}  # programme -> [zones listened, zones]
        for zone_id, ch in self.channels.items():
            if zone_id not in self.resting:
                counts = carried.setdefault(ch.on_air_programme.id, [0, 0])
                counts[0] += bool(ch.codecs_listened())
                counts[1] += 1
        slack_ns = None
        for prog_id in sorted(carried, key=carried.__getitem__, reverse=True):
            source = _live_of(self.programmes[prog_id]) if prog_id in self.programmes else None
            if source is not None and source.connected:
                slack_ns = source.phase_slack_ns()
                if prog_id != self._phase_source:  # another source: its own looks, from now
                    self._phase_source = prog_id
                    self._phase_looks.clear()
                    return 0
                break
        if slack_ns is None:
            return 0
        looks = self._phase_looks
        shift_ns = 0
        if slack_ns <= -PHASE_DEADBAND_NS:  # frames came too close to the tick: later at
            shift_ns = min(-slack_ns, FRAME_NS // 2)  # once, by what they lacked
        else:
            looks.append(max(0, slack_ns))
            if len(looks) == looks.maxlen:  # sooner, by what every look of late allowed
                soonest_ns = min(looks) % FRAME_NS
                if soonest_ns >= PHASE_DEADBAND_NS:
                    shift_ns = -soonest_ns
        if shift_ns:
            looks.clear()  # measured at the old phase
            self.phase_shifts += 1
            self.phase_offset_ns += shift_ns
            log.debug("tick phase moved %+.1f ms", shift_ns / NS_PER_MS)
        return shift_ns

    def start(self) -> None:
        """Start ``run`` as the "master-clock" task."""
        self._task = asyncio.create_task(self.run(), name="master-clock")

    async def stop(self) -> None:
        """Cancel the clock task and wait for it to end."""
        await cancel_and_wait(self._task)
        self._task = None

    def describe(self) -> dict[str, object]:
        """Status snapshot: ticks, resyncs, programmes, open renditions, and the server-added
        latency p50/p99 in ms."""
        p50, p99 = self.latency.percentiles_ms(50, 99)
        return {
            "ticks": self.ticks,
            "zones_resting": len(self.resting),
            "resyncs": self.resyncs,
            "tick_phase": {"shifts": self.phase_shifts,
                           "offset_ms": round(self.phase_offset_ns / NS_PER_MS, 1)},
            "programmes": [p.describe() for p in self.programmes.values()],
            "renditions": [
                {"programme": r.programme.id, "codec": r.codec} for r in self.renditions.values()
            ],
            "server_latency_ms": {"p50": p50, "p99": p99, "samples": self.latency.count},
        }


def _live_of(prog: Programme) -> LiveSource | None:
    """``prog``'s live source: its own, or a relay's (``.live``); None for any other."""
    src = prog.source
    live = src if isinstance(src, LiveSource) else getattr(src, "live", None)
    return live if isinstance(live, LiveSource) else None
