"""A live source: frames pushed by a decoder thread, drained one per tick via a jitter buffer."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from loa.codecs.demand import DecodeDemand
from loa.codecs.loudness import SlowAgc
from loa.core.clock import NS_PER_MS, NS_PER_S, Clock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_NS, SILENCE, Samples
from loa.playout.jitter import JitterBuffer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Jitter-buffer sizes in 20 ms frames (1 <= target <= max_target <= capacity, else
    JitterBuffer raises ValueError), the stall timeout in ms and an optional AGC target in LUFS."""

    target_frames: int
    max_target_frames: int
    capacity_frames: int
    # Connected but silent this long (no frame arrived, none buffered): the source counts as
    # down, so its zones fall back instead of carrying dead air. Icecast waits 10 s.
    stall_ms: int = 3000
    # The live feed is brought slowly to the station's loudness target (None: left as sent).
    agc_target_lufs: float | None = None


class LiveSource:
    """The receiving end of a push or relay. Never finishes by itself.

    Available while connected and not stalled; a stalled source that sends again is
    available again, and its zones rejoin it. Its ingest may also ``hold`` it when it knows
    sooner that the sender paused (a WHIP session without RTP for a second): unavailable at
    once, and available again with the next arrival. A source that ends (``end``) stays available
    until what it sent has played out; ``disconnect`` drops it at once.

    Taken or not (``set_taken``): a source no zone takes needs no audio. Its ingest then
    parses but does not decode (``demand``, shared with the ingest's decoder thread), frames
    that still arrive are dropped, and ``read`` gives silence without touching the jitter
    buffer; arrivals keep it available. Taken again, it starts from an empty jitter buffer:
    the first frames heard are those decoded after the take, nothing older. A source is taken
    until told otherwise (the engine says which sources zones take).

    Heard or not (``set_heard``): a source that zones take while nobody listens anywhere and
    nobody watches a level meter needs no audio either (the engine says so after a while of
    lulls: ``Engine.UNHEARD_AFTER_NS``). It is not decoded then, as one not taken; heard
    again, it starts from an empty jitter buffer that keeps what it learned of the source's
    jitter (``JitterBuffer.restart``). Its audio is decoded (``decoding``) only while it is
    both taken and heard.

    Frames come in two ways. ``push_frames``, on the loop (a WebRTC track's, a test's). Or
    ``offer_frames``, from the decoder's own thread, without waking the loop: each batch is
    stamped with its arrival then and there, and waits in an inbox that the loop empties
    into the jitter buffer whenever it looks at the source (``available``, ``read``: the
    tick), exactly as if each batch had been pushed when it arrived. One loop wake-up a frame
    fewer (issue 17: on an idle server each costs ~0.3 % of a core), and the arrival time is
    the decoder's, not the loop's.
    """

    pausable = False

    def __init__(self, label: str, clock: Clock, counters: Counters,
                 settings: LiveSettings) -> None:
        self.label = label
        self._clock = clock
        self._counters = counters
        self.jitter = JitterBuffer(settings.target_frames, settings.max_target_frames,
                                   settings.capacity_frames)
        self._stall_ns = settings.stall_ms * NS_PER_MS
        self.agc = SlowAgc(settings.agc_target_lufs) if settings.agc_target_lufs is not None \
            else None
        self.connected = False
        self.ending = False  # ended, still playing out what it sent
        self.held = False  # connected, its sender paused (``hold``): unavailable until it sends
        self.demand = DecodeDemand(wanted=True)  # read by the ingest's decoder thread
        self._taken = True  # some zone takes it (``set_taken``)
        self._heard = True  # someone listens or watches (``set_heard``)
        self._frames_in = 0  # pushed or offered (the inbox's count under its lock)
        self.last_arrival_ns = 0
        # while not decoded: the last input that arrived (not a connect), the last a tick
        # noted, and the least wait since the last phase look (``_note_undecoded_phase``)
        self._page_arrival_ns = 0
        self._phase_arrival_ns = 0
        self._undecoded_wait_ns: int | None = None
        # offered, not yet taken in: (frames, arrival ns) in arrival order (``offer_frames``)
        self._inbox: list[tuple[list[Samples], int]] = []
        self._inbox_lock = threading.Lock()
        # While the engine catches up ticks owed from a lull (``Engine.lull_frames``): the
        # time of the tick it runs, later arrivals left in the inbox for later ticks; None
        # (the rule) takes the whole inbox in.
        self.horizon_ns: int | None = None
        # In a lull (set by the engine): frames pushed on the loop wait in the inbox, stamped,
        # for the tick of their time, as offered ones do.
        self.lulled = False
        self._underflows_seen = 0
        self._overflows_seen = 0
        self._trimmed_seen = 0
        self._outages_seen = 0
        self._resync_drops_seen = 0

    @property
    def frames_in(self) -> int:
        """Frames that arrived so far, pushed or offered (taken in or not yet)."""
        return self._frames_in

    @property
    def available(self) -> bool:
        self._take_inbox()
        if not self.connected:
            return self.ending
        if self.held:
            return False
        now_ns = self._clock.now_ns() if self.horizon_ns is None else self.horizon_ns
        return len(self.jitter) > 0 or now_ns - self.last_arrival_ns < self._stall_ns

    @property
    def stalled(self) -> bool:
        return self.connected and not self.available

    @property
    def taken(self) -> bool:
        """Whether some zone takes this source."""
        return self._taken

    @property
    def decoding(self) -> bool:
        """Whether its audio is decoded now: taken, and heard (class docstring)."""
        return self.demand.wanted

    def set_taken(self, taken: bool) -> None:
        """A zone takes the source (True), or the last zone taking it let go (False); called
        on the loop. Either way the jitter buffer starts empty: what it held is older than
        anything heard after the next take."""
        if taken == self._taken:
            return
        self._taken = taken
        self._drop_inbox()  # first: frames offered after the take are the first heard
        self.jitter.reset()
        self._undecoded_wait_ns = None
        self.demand.wanted = taken and self._heard
        self.ending = self.ending and taken

    def set_heard(self, heard: bool) -> None:
        """Someone listens to or watches what zones take of this source (True), or nobody
        has for a while (False: not decoded); called on the loop by the engine. Heard again,
        the jitter buffer starts empty (nothing older than the listener is played), keeping
        what it learned of the source's jitter."""
        if heard == self._heard:
            return
        self._heard = heard
        self._drop_inbox()
        self.jitter.restart()  # unheard: what it held is heard by nobody, nor kept available
        self._undecoded_wait_ns = None
        self.demand.wanted = self._taken and heard
        self.ending = self.ending and self.demand.wanted  # its rest was heard by nobody

    def connect(self) -> None:
        """A source came on: start from an empty jitter buffer and count the stall timeout from now.
        """
        self._drop_inbox()
        self.jitter.reset()
        self._undecoded_wait_ns = None
        self.connected = True
        self.ending = False
        self.held = False
        self.last_arrival_ns = self._clock.now_ns()

    def disconnect(self) -> None:
        """Cut the source (released, shut down): unavailable now, buffered frames discarded."""
        self._drop_inbox()
        self.connected = False
        self.ending = False
        self.held = False
        self.jitter.reset()

    def hold(self) -> None:
        """The sender paused but its connection lives (no RTP for a second: a 4G hiccup, an
        encoder stall): unavailable now, so its zones fall back, before ``stall_ms`` would say
        so; what was buffered is dropped. The next ``push_frames`` makes it available again,
        from an empty jitter buffer, and its zones rejoin it. No-op unless connected."""
        if self.connected and not self.held:
            self._drop_inbox()
            self.held = True
            self.jitter.reset()

    def end(self) -> None:
        """The source has finished sending (it hung up, its stream ended): what it sent plays
        out to the last frame, even below the jitter target; then the source is unavailable
        and its zones fall back. Frames pushed after this are ignored."""
        self._take_inbox()  # what was offered before the end plays out too
        if not self.connected:
            return
        self.connected = False
        self.held = False
        self.ending = self.demand.wanted and len(self.jitter) > 0  # not decoded: none is new
        if self.ending:
            self.jitter.play_out()  # ``connect`` resets it

    def push_frames(self, frames: list[Samples]) -> None:
        """Called on the loop with freshly decoded frames (perhaps none: input arrived, not
        decoded); stamps their arrival and counts them (``frames_in``). Frames that come
        while the source is not taken (decoded before it was let go) are then dropped. In a
        lull (``lulled``), they go through the inbox, as ``offer_frames``'."""
        if self.lulled:
            self.offer_frames(frames)
            return
        self._take_inbox()  # offered earlier: in first
        if not self.connected:
            return
        with self._inbox_lock:
            self._frames_in += len(frames)
        self._arrived(frames, self._clock.now_ns())

    def offer_frames(self, frames: list[Samples]) -> None:
        """From any thread (the decoder's): ``frames`` arrived now (perhaps none: input
        arrived, nothing decoded). They wait in the inbox until the loop next looks at the
        source, then go into the jitter buffer stamped with this arrival (class docstring).
        Counted in ``frames_in`` at once."""
        if not self.connected:  # cut or ended: as ``push_frames``, nothing more comes in
            return
        with self._inbox_lock:  # stamped in the lock: in the inbox in arrival order
            self._inbox.append((frames, self._clock.now_ns()))
            self._frames_in += len(frames)

    def _take_inbox(self) -> None:
        """On the loop: every offered batch into the jitter buffer, in arrival order (up to
        ``horizon_ns`` when one is set)."""
        if not self._inbox:  # the common case, without the lock: a list's truth is atomic
            return
        horizon_ns = self.horizon_ns
        with self._inbox_lock:
            if horizon_ns is None:
                batches, self._inbox = self._inbox, []
            else:  # in arrival order: the batches up to the horizon are a head of the list
                inbox = self._inbox
                n = 0
                while n < len(inbox) and inbox[n][1] <= horizon_ns:
                    n += 1
                batches, self._inbox = inbox[:n], inbox[n:]
        if self.connected:
            for frames, arrival_ns in batches:
                self._arrived(frames, arrival_ns)

    def _drop_inbox(self) -> None:
        """Forget what was offered and not taken in (a cut, a hold, a new take)."""
        if self._inbox:
            with self._inbox_lock:
                self._inbox = []

    def _arrived(self, frames: list[Samples], arrival_ns: int) -> None:
        """A batch that arrived at ``arrival_ns`` while connected: the source sends again;
        its frames into the jitter buffer when some zone takes it."""
        self.held = False  # it sends again
        self.last_arrival_ns = arrival_ns
        self._page_arrival_ns = arrival_ns
        if not frames or not self.demand.wanted:
            return
        for samples in frames:
            self.jitter.push(samples, arrival_ns)
        self._sync_counters()

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        """This tick's frame from the jitter buffer (AGC applied if set; after ``end``, what is
        left of it), or silence stamped ``now_ns`` while buffering, on underflow or when
        disconnected, or not taken. Never returns None."""
        self._take_inbox()
        if not self.demand.wanted:
            got = None
            self._note_undecoded_phase(now_ns)
        elif self.connected:
            got = self.jitter.pop(now_ns)
        elif self.ending:
            got = self.jitter.pop(now_ns)
            if got is None or not len(self.jitter):
                self.ending = False  # played out: the zones fall back at the next tick
                if got is None:
                    self.jitter.reset()
        else:
            got = None
        if got is None:
            self._sync_counters()
            return SILENCE, now_ns
        if self.jitter.trimmed != self._trimmed_seen:
            self._sync_counters()
        if self.agc is not None:
            return self.agc.process(got[0]), got[1]
        return got

    def _note_undecoded_phase(self, now_ns: int) -> None:
        """A tick at ``now_ns`` while the audio is not decoded: the first tick after an
        arrival (a page parsed, a heartbeat of the decoder) notes how long after it it came,
        the phase a frame decoded then would have waited (``phase_slack_ns``)."""
        arrival_ns = self._page_arrival_ns
        if not arrival_ns or arrival_ns == self._phase_arrival_ns or arrival_ns > now_ns:
            return
        self._phase_arrival_ns = arrival_ns
        wait_ns = now_ns - arrival_ns
        if self._undecoded_wait_ns is None or wait_ns < self._undecoded_wait_ns:
            self._undecoded_wait_ns = wait_ns

    def phase_slack_ns(self) -> int | None:
        """How much sooner (ns) the master clock could have ticked since the last call, every
        frame it took still having waited the jitter buffer's guard (``JitterBuffer.guard_ns``)
        after it arrived, and a frame as late as any of the last ~30 s (``lateness_seen_ns``)
        still on time: negative when the tick came too soon after an arrival, by that much.
        While its audio is not decoded (nobody hears it), the same of its arrivals (parsed
        pages: ``_note_undecoded_phase``), so that the first listener's ticks are in phase
        from the start: a sooner tick helps only listeners who join after it (a player keeps
        the pace of its first packet). None when no frame was played and nothing arrived
        since (not connected, not taken, buffering). Each call measures afresh
        (``JitterBuffer.take_phase_look``)."""
        jb = self.jitter
        look = jb.take_phase_look()
        undecoded_ns, self._undecoded_wait_ns = self._undecoded_wait_ns, None
        if not self.connected:
            return None
        if self.demand.wanted:
            if look is None:
                return None
            wait_ns, lateness_ns = look
        elif undecoded_ns is not None:
            # The tick's offset from the arrivals, beyond the guard and the lateness seen,
            # modulo a frame (nearest way round): the buffer restarts holding the whole frames
            # of that (``JitterBuffer.restart``), and the tick goes the rest of it after them.
            slack_ns = undecoded_ns - jb.guard_ns - jb.lateness_seen_ns
            return (slack_ns + FRAME_NS // 2) % FRAME_NS - FRAME_NS // 2
        else:
            return None
        # a late frame seen lately, not in this look, may come again: keep room for it
        unseen_ns = max(0, jb.lateness_seen_ns - lateness_ns)
        return wait_ns - jb.guard_ns - unseen_ns

    def _sync_counters(self) -> None:
        jb = self.jitter
        if jb.underflows != self._underflows_seen:
            self._counters.inc("jitter_underflows", jb.underflows - self._underflows_seen,
                               source=self.label)
            self._underflows_seen = jb.underflows
        if jb.overflow_drops != self._overflows_seen:
            self._counters.inc("jitter_overflow_drops", jb.overflow_drops - self._overflows_seen,
                               source=self.label)
            self._overflows_seen = jb.overflow_drops
        if jb.trimmed != self._trimmed_seen:
            self._counters.inc("jitter_trimmed", jb.trimmed - self._trimmed_seen,
                               source=self.label)
            self._trimmed_seen = jb.trimmed
        if jb.outages != self._outages_seen:
            self._counters.inc("jitter_outages", jb.outages - self._outages_seen,
                               source=self.label)
            self._outages_seen = jb.outages
            log.info("source %s: no audio for %.1f s, an outage: resynchronising to the live "
                     "edge", self.label, jb.last_outage_ns / NS_PER_S)
        if jb.resync_drops != self._resync_drops_seen:
            self._counters.inc("jitter_resync_drops", jb.resync_drops - self._resync_drops_seen,
                               source=self.label)
            self._resync_drops_seen = jb.resync_drops

    def close(self) -> None:
        self.disconnect()
