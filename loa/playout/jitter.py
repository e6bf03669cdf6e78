"""The bounded jitter buffer between a live input and the master clock.

It tells two things apart that both leave it empty:

- **jitter**, a short spread in arrival times (a late packet, an encoder that flushes a page a
  second): the buffer learns it, growing its target so that the next one is ridden out;
- **an outage**, a gap in arrivals far longer than any jitter seen lately (a 4G link that dies
  for seconds): learning it would leave every listener seconds late for minutes, since the
  target only steps down a frame every few seconds. Instead the buffer resynchronises: it waits
  until the backlog the source sends on its return has arrived, keeps only the newest frames,
  as many as it holds in steady state (its target; a page for a source that sends a page a
  second), and plays on from there, at its usual delay. The backlog is cut in one piece, so a
  listener hears one discontinuity (WebRTC NetEq's flush, Snapcast's hard resync).

Adaptive (the default), the target follows the jitter measured, down to one frame on a steady
source. Each frame's **lateness** is how much later it arrived than the earliest frame of the
last ``LATENESS_HISTORY_MS`` says it should have (WebRTC NetEq's relative arrival delay); its
peak over ``JITTER_MEMORY_WINDOWS`` windows (about 30 s) is the jitter to ride out. A late
frame raises the target at once to cover it (and an underflow, as before); calm windows step it
down a frame at a time. The delay itself comes down by dropping one frame at a time, and only
when, for a whole window, every frame waited in the buffer at least a frame plus ``GUARD_MS``
(less ``GUARD_SLACK_MS``, plus any lateness seen lately beyond that window's), so that the drop
leaves no frame late (phase-aware: a tick just after the arrivals needs less buffer than one
just before): with one frame to spare, at a calm step (every ``CALM_WINDOWS`` windows without
an underflow, and each of the first ``START_WINDOWS`` after a start); with two or more, every
window. The frame goes at a quiet moment if one comes within ``SKIP_WAIT_POPS``
ticks. Fixed (``adaptive=False``), the target never goes below its initial value and the trim
goes by depth alone, as it always did.
"""

from __future__ import annotations

import enum
from collections import deque

from loa.core.clock import NS_PER_MS
from loa.core.pcm import FRAME_NS, Samples


class JitterState(enum.Enum):
    """BUFFERING until the buffer holds its target depth, then PLAYING until an underflow;
    RESYNCING after an outage until the source's backlog has arrived."""

    BUFFERING = "buffering"  # waiting for `target_frames` before playing
    PLAYING = "playing"
    RESYNCING = "resyncing"  # an outage ended: holding until arrivals are back to real time


class JitterBuffer:
    """Frames pushed as they arrive, popped one per clock tick.

    - Underflow (empty while playing): the tick gets ``None`` (the caller plays silence) and
      the buffer re-buffers. When audio comes back, the target grows to cover the gap just
      seen (at least one frame more, at most ``max_target_frames``): a hiccup costs a frame or
      two of latency, while a source that arrives in bursts (an Ogg encoder flushing a page a
      second) settles after a single underflow.
    - Outage: a gap between two arrivals longer than ``outage_threshold_ns`` (``OUTAGE_MIN_MS``,
      or ``OUTAGE_JITTER_FACTOR`` times the longest gap seen in the last
      ``JITTER_MEMORY_WINDOWS`` windows, whichever is longer) is not learned. The buffer goes
      RESYNCING: it plays nothing, keeps only the newest ``resync_depth_frames`` of what
      arrives (the older ones are counted in ``resync_drops``) and, once ``RESYNC_SETTLED_POPS``
      ticks in a row have seen arrivals no faster than real time (``RESYNC_SLACK_FRAMES`` of
      slack), plays on from the live edge at the unchanged target.
    - Overflow (more than ``capacity_frames`` queued): the oldest frames are dropped, which
      bounds the delay a burst can add.
    - Drift: a burst at start-up (the decoder's probe) would otherwise leave the buffer deeper
      than its target for good, every frame late by the excess. So once per window, if the
      buffer never went below ``target + 1`` frames, the excess oldest frames are trimmed.
      Adaptive, the excess is what every frame of the window waited beyond the guard and
      the lateness seen lately (``_spare_frames``), whatever the target: the target is then
      the depth the buffer fills to before it plays (at the start, after an underflow), which
      for a source that sends a page a second is a page, while the delay between pages is
      brought down to the least that keeps every frame on time.
    - Calm: after ``CALM_WINDOWS`` windows without an underflow, the target steps back down by
      one frame, towards its floor: one frame when ``adaptive`` (but never below what the
      lateness seen lately needs, ``need_frames``), else its initial value. The first
      ``START_WINDOWS`` windows after a (re)start each count as calm (until an underflow).
    - Adaptive only: a frame that arrives later than the target covers raises the target at
      once (``need_frames``); a trim of a single frame (the usual step down) waits up to
      ``SKIP_WAIT_POPS`` ticks for a quiet frame to drop (counted in ``skips`` and
      ``trimmed``).

    Times are monotonic ns; sizes are 20 ms frames. Raises ValueError unless
    ``1 <= target_frames <= max_target_frames <= capacity_frames``.
    """

    WINDOW_FRAMES = 50  # 1 s of ticks
    CALM_WINDOWS = 5
    # An outage is a gap this long at least, whatever the jitter seen: an Ogg encoder flushing
    # a page a second (gaps of about 1 s from the very start) is jitter, not an outage.
    OUTAGE_MIN_MS = 1_500
    # ... and this many times the longest gap seen lately (jitter): "much longer".
    OUTAGE_JITTER_FACTOR = 3
    JITTER_MEMORY_WINDOWS = 30  # how long a gap counts as "seen lately": 30 windows, ~30 s
    # After an outage: arrivals within a tick at most this many frames above real time...
    RESYNC_SLACK_FRAMES = 2
    # ... for this many ticks in a row, and the backlog is in: cut to the live edge and play.
    RESYNC_SETTLED_POPS = 2
    # A source whose longest gap seen lately is more than this many frames beyond the target
    # is bursty: a resync keeps enough of it to ride that gap, not just the target.
    BURSTY_FRAMES = 2
    # Adaptive target. A frame's lateness is measured against the earliest of this history
    # (NetEq's relative arrival delay history: 2 s).
    LATENESS_HISTORY_MS = 2_000
    # A frame is dropped only if every frame would still wait this long in the buffer (ms):
    # the margin for jitter not seen in the window, the loop's own included (3 ms let an
    # ffmpeg MP3 push on a busy machine underflow once in a while: 38 ms of silence heard).
    GUARD_MS = 10
    # ... give or take this much: the master clock keeps its tick within this of the guard
    # after the arrivals it follows (``engine.PHASE_DEADBAND_NS``), and a frame is decoded
    # a little after its page arrived, the page the tick was set by while nobody heard it. A
    # frame to spare behind a tick so placed waits a frame and the guard less that: measured,
    # 29.6 ms, and the spare frame stayed for good.
    GUARD_SLACK_MS = 1
    # A single frame to drop waits this many ticks at most for a quiet one...
    SKIP_WAIT_POPS = 25
    # ...quiet: its peak under -40 dBFS (full scale 1.0)
    QUIET_PEAK = 0.01
    # For this many windows after the buffer starts playing (at first, after an underflow or
    # a resync), two frames or more to spare are a burst that came with the start (a
    # decoder's probe, a page): trimmed at once. Later, the delay steps down a frame at a time.
    FRESH_WINDOWS = 3
    # After a (re)start (``reset``, ``restart``; not after an underflow or a resync), each of
    # this many windows counts as a calm step: the target steps down a frame towards what the
    # lateness measured needs, and a frame to spare goes. A listener who joins hears the
    # source at its least delay within seconds, not after CALM_WINDOWS windows a frame
    # (measured: a first listener after 15 s unheard heard 45 ms for 10 s, then 18 ms).
    START_WINDOWS = 3
    # A source decoded this long (0.5 s) before a pause has shown its lateness: a restart
    # starts from what that needs (``restart``).
    LEARNED_FRAMES = 25

    def __init__(self, target_frames: int, max_target_frames: int, capacity_frames: int, *,
                 adaptive: bool = True, guard_ms: int = GUARD_MS) -> None:
        if not 1 <= target_frames <= max_target_frames <= capacity_frames:
            raise ValueError("need 1 <= target <= max_target <= capacity")
        self.adaptive = adaptive
        self.guard_ns = guard_ms * NS_PER_MS  # see GUARD_MS
        self.initial_target_frames = target_frames
        self.target_frames = target_frames
        self.max_target_frames = max_target_frames
        self.capacity_frames = capacity_frames
        self._frames: deque[tuple[Samples, int]] = deque()
        self.state = JitterState.BUFFERING
        self.underflows = 0  # ticks that found the buffer empty while playing
        self.overflow_drops = 0  # frames dropped, oldest first
        self.trimmed = 0  # frames dropped to bring a drifted-deep buffer back to its target
        self.outages = 0  # gaps in arrivals taken for outages (each followed by a resync)
        self.resync_drops = 0  # frames of an outage's backlog cut to land on the live edge
        self.last_outage_ns = 0  # the length of the last outage's gap in arrivals
        self._window_pops = 0
        self._window_min = capacity_frames
        self._calm_windows = 0
        self._underflow_since_ns: int | None = None
        self._last_arrival_ns: int | None = None
        self._window_gap_peak_ns = 0  # the longest gap between arrivals in this window
        self._gap_peaks: deque[int] = deque(maxlen=self.JITTER_MEMORY_WINDOWS)  # past windows'
        self._arrived_since_pop = 0
        self._last_pop_ns: int | None = None
        self._settled_pops = 0
        # adaptive target: frames seen (the schedule's index), the history's sliding minimum
        # of relative delays as (arrival ns, arrival ns - index * FRAME_NS), increasing, and
        # lateness peaks: this window's and past windows'
        self._frames_seen = 0
        self._delays: deque[tuple[int, int]] = deque()
        self._window_lateness_ns = 0
        self._lateness_peaks: deque[int] = deque(maxlen=self.JITTER_MEMORY_WINDOWS)
        self._batch_arrival_ns: int | None = None  # the last arrival's time...
        self._batch_lateness_ns: int | None = None  # ...and its newest frame's lateness
        self._window_min_wait_ns: int | None = None  # least time a frame waited, this window
        self._phase_min_wait_ns: int | None = None  # ... since ``take_phase_look`` last read it
        self._phase_lateness_ns = 0  # the latest a frame arrived since then
        self._skip_pending_pops: int | None = None  # ticks a drop of one frame has waited
        self.skips = 0  # single frames dropped to step the delay down (also in ``trimmed``)
        # windows left in which a burst that came with the (re)start is trimmed at once
        self._fresh_windows = self.FRESH_WINDOWS
        self._start_windows = self.START_WINDOWS  # windows left that count as calm steps
        self.playing_out = False  # ``play_out``: the source ended, the rest plays

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def jitter_seen_ns(self) -> int:
        """The longest gap between two arrivals in the last ``JITTER_MEMORY_WINDOWS`` windows
        (outages excluded), in ns."""
        return max(self._window_gap_peak_ns, max(self._gap_peaks, default=0))

    @property
    def lateness_seen_ns(self) -> int:
        """The latest a frame arrived in the last ``JITTER_MEMORY_WINDOWS`` windows, against the
        earliest frame of the ``LATENESS_HISTORY_MS`` before it (ns; 0 on a steady source)."""
        return max(self._window_lateness_ns, max(self._lateness_peaks, default=0))

    @property
    def need_frames(self) -> int:
        """The target the lateness seen lately needs: one frame, and one more per frame of
        lateness (at most ``max_target_frames``)."""
        return self._need(self.lateness_seen_ns)

    def _need(self, lateness_ns: int) -> int:
        """The target that covers ``lateness_ns``: one frame, and one more per frame of it."""
        return min(lateness_ns // FRAME_NS + 1, self.max_target_frames)

    @property
    def floor_frames(self) -> int:
        """The least the target steps down to: the lateness's need (adaptive), or the initial
        target (fixed)."""
        return self.need_frames if self.adaptive else self.initial_target_frames

    @property
    def outage_threshold_ns(self) -> int:
        """A gap between arrivals longer than this (ns) is an outage, not jitter."""
        return max(self.OUTAGE_MIN_MS * NS_PER_MS, self.OUTAGE_JITTER_FACTOR * self.jitter_seen_ns)

    @property
    def resync_depth_frames(self) -> int:
        """How many of the newest frames a resync keeps: the target, where the drift trim
        keeps a steady buffer (more would be trimmed a window later: a second cut); but for a
        bursty source, whose longest gap seen lately is more than ``BURSTY_FRAMES`` beyond the
        target (an encoder sending a page a second, whose buffer runs from a page deep down to
        the target), enough frames to ride that gap, at most ``max_target_frames``."""
        ride_frames = -(-self.jitter_seen_ns // FRAME_NS)  # ceil
        if ride_frames <= self.target_frames + self.BURSTY_FRAMES:
            return self.target_frames
        return min(ride_frames, self.max_target_frames)

    def push(self, samples: Samples, arrival_ns: int) -> None:
        """Queue one frame (960 float32 samples) that arrived at ``arrival_ns``. After an
        underflow, the first frame back raises the target to cover the gap, unless the gap was
        an outage, which starts a resync instead; past ``capacity_frames`` (while resyncing:
        past ``target_frames``) the oldest frame is dropped and counted."""
        last_ns = self._last_arrival_ns
        self._last_arrival_ns = arrival_ns
        if last_ns is not None and arrival_ns > last_ns:
            gap_ns = arrival_ns - last_ns
            if gap_ns > self.OUTAGE_MIN_MS * NS_PER_MS and gap_ns > self.outage_threshold_ns:
                self._begin_resync(gap_ns)
            elif gap_ns > self._window_gap_peak_ns:
                self._window_gap_peak_ns = gap_ns
        if self._underflow_since_ns is not None:
            gap_frames = -(-(arrival_ns - self._underflow_since_ns) // FRAME_NS)  # ceil
            self.target_frames = min(max(self.target_frames + 1, gap_frames + 1),
                                     self.max_target_frames)
            self._underflow_since_ns = None
        if self.adaptive and self.state is not JitterState.RESYNCING:
            self._note_lateness(arrival_ns)
        self._frames_seen += 1
        frames = self._frames
        frames.append((samples, arrival_ns))
        self._arrived_since_pop += 1
        if self.state is JitterState.RESYNCING:
            # keep the newest frames, as many as the jitter needs: the older part of the
            # backlog is cut, once, before anything of it plays
            keep = self.resync_depth_frames
            while len(frames) > keep:
                frames.popleft()
                self.resync_drops += 1
            return
        if len(frames) > self.capacity_frames:
            frames.popleft()
            self.overflow_drops += 1
        if self.state is JitterState.BUFFERING and len(frames) >= self.target_frames:
            self.state = JitterState.PLAYING

    def _note_lateness(self, arrival_ns: int) -> None:
        """Measure this frame's lateness (a sliding minimum of relative delays). Frames that
        arrive together (a page, a decoder's batch) carry each other: what counts is the
        lateness of the newest of them, taken when the next arrival or tick comes."""
        if arrival_ns != self._batch_arrival_ns:
            self._fold_lateness()
            self._batch_arrival_ns = arrival_ns
        delay_ns = arrival_ns - self._frames_seen * FRAME_NS
        delays = self._delays
        while delays and delays[-1][1] >= delay_ns:
            delays.pop()
        delays.append((arrival_ns, delay_ns))
        horizon_ns = arrival_ns - self.LATENESS_HISTORY_MS * NS_PER_MS
        while delays[0][0] < horizon_ns:
            delays.popleft()
        self._batch_lateness_ns = delay_ns - delays[0][1]

    def _fold_lateness(self) -> None:
        """The last arrival's lateness into this window's peak; a late one raises the target
        at once to what it needs (``need_frames``)."""
        lateness_ns = self._batch_lateness_ns
        if lateness_ns is None:
            return
        self._batch_lateness_ns = None
        if lateness_ns > self._phase_lateness_ns:
            self._phase_lateness_ns = lateness_ns
        if lateness_ns > self._window_lateness_ns:
            self._window_lateness_ns = lateness_ns
            need = self._need(lateness_ns)
            if need > self.target_frames:
                self.target_frames = need

    def pop(self, now_ns: int) -> tuple[Samples, int] | None:
        """This tick's frame and its arrival time, or None while buffering, resyncing or on
        underflow (the caller plays silence). Once a window (50 pops), trims a drifted-deep
        buffer and relaxes the target. Called once per tick, ``now_ns`` the tick's time."""
        self._fold_lateness()
        arrived = self._arrived_since_pop
        self._arrived_since_pop = 0
        last_pop_ns = self._last_pop_ns
        self._last_pop_ns = now_ns
        if self.state is JitterState.RESYNCING:
            elapsed_ns = now_ns - last_pop_ns if last_pop_ns is not None else FRAME_NS
            if arrived * FRAME_NS <= elapsed_ns + self.RESYNC_SLACK_FRAMES * FRAME_NS:
                self._settled_pops += 1
            else:
                self._settled_pops = 0  # the backlog is still pouring in
            if self._settled_pops < self.RESYNC_SETTLED_POPS:
                return None
            self._start_window()
            self._fresh_windows = self.FRESH_WINDOWS
            self.state = (JitterState.PLAYING if len(self._frames) >= self.target_frames
                          else JitterState.BUFFERING)
        if self.state is JitterState.BUFFERING:
            return None
        frames = self._frames
        if not frames:
            self.underflows += 1
            self.state = JitterState.BUFFERING
            self._underflow_since_ns = now_ns
            self._calm_windows = 0
            self._skip_pending_pops = None
            self._fresh_windows = self.FRESH_WINDOWS
            self._start_windows = 0  # the jitter is real: calm is earned again
            self._start_window()
            return None
        got = frames.popleft()
        wait_ns = now_ns - got[1]
        if self._window_min_wait_ns is None or wait_ns < self._window_min_wait_ns:
            self._window_min_wait_ns = wait_ns
        if self._phase_min_wait_ns is None or wait_ns < self._phase_min_wait_ns:
            self._phase_min_wait_ns = wait_ns
        if self._skip_pending_pops is not None and frames:
            self._skip_pending_pops += 1
            if self._skip_pending_pops >= self.SKIP_WAIT_POPS or _quiet(frames[0][0]):
                frames.popleft()  # one frame skipped: every frame after it plays a tick sooner
                self.trimmed += 1
                self.skips += 1
                self._skip_pending_pops = None
                self._start_window()  # waits measured before the skip no longer hold
                return got
        depth = len(frames)
        if depth < self._window_min:
            self._window_min = depth
        self._window_pops += 1
        if self._window_pops >= self.WINDOW_FRAMES:
            self._end_window()
        return got

    def play_out(self) -> None:
        """Nothing more will arrive (the source ended): what is held plays to the last frame.
        No depth to wait for (BUFFERING), no live edge to find (RESYNCING), no delay to trim
        and no target to move, until ``reset``."""
        self.playing_out = True
        self.state = JitterState.PLAYING
        self._skip_pending_pops = None

    def take_phase_look(self) -> tuple[int, int] | None:
        """Since the last call: the least time (ns) a frame played waited in the buffer, from
        its arrival to the tick that took it, and the latest a frame arrived (its lateness,
        ns); None when none played. The next call measures afresh. The tick's phase against
        the arrivals: what the master clock aligns on (``Engine``'s tick phase)."""
        wait_ns, self._phase_min_wait_ns = self._phase_min_wait_ns, None
        lateness_ns, self._phase_lateness_ns = self._phase_lateness_ns, 0
        return None if wait_ns is None else (wait_ns, lateness_ns)

    def _begin_resync(self, gap_ns: int) -> None:
        self.outages += 1
        self.last_outage_ns = gap_ns
        self._underflow_since_ns = None  # an outage is not jitter: the target stays
        self.state = JitterState.RESYNCING
        self._settled_pops = 0
        self._skip_pending_pops = None
        self._delays.clear()  # lateness is measured afresh from the live edge
        self._batch_lateness_ns = None

    def _start_window(self) -> None:
        self._window_pops = 0
        self._window_min = self.capacity_frames
        self._window_min_wait_ns = None

    def _end_window(self) -> None:
        if self.playing_out:  # only the rest to play
            self._start_window()
            return
        self._skip_pending_pops = None
        self._calm_windows += 1
        starting = self.adaptive and self._start_windows > 0
        self._start_windows = max(0, self._start_windows - 1)
        calm_step = self._calm_windows >= self.CALM_WINDOWS or starting
        if self.adaptive:
            excess = self._spare_frames()
            if not (self._fresh_windows and excess >= 2):
                # not a burst that came with the start: one frame at most, at a quiet moment
                # within SKIP_WAIT_POPS ticks; the last frame to spare only at a calm step
                if excess >= 2 or (excess and calm_step):
                    self._skip_pending_pops = 0
                excess = 0
            self._fresh_windows = max(0, self._fresh_windows - 1)
        else:
            # depth is measured after a pop, so a buffer at its target bottoms out at target - 1
            excess = self._window_min - (self.target_frames - 1)
        if excess > 0:
            for _ in range(excess):
                self._frames.popleft()
            self.trimmed += excess
        if calm_step:
            self._calm_windows = 0
            if self.target_frames > self.floor_frames:
                self.target_frames -= 1
        self._gap_peaks.append(self._window_gap_peak_ns)
        self._window_gap_peak_ns = 0
        self._lateness_peaks.append(self._window_lateness_ns)
        self._window_lateness_ns = 0
        self._start_window()

    def _spare_frames(self) -> int:
        """Adaptive: how many frames could go, every frame of this window still on time by
        the guard (``GUARD_MS``, less ``GUARD_SLACK_MS``): its least wait in the buffer, less
        the lateness seen lately beyond this window's own (a late frame of 20 s ago may come
        again), in whole frames; no more than the buffer held at its lowest. Phase-aware:
        arrivals just before the tick wait little."""
        min_wait_ns = self._window_min_wait_ns or 0
        unseen_ns = max(0, self.lateness_seen_ns - self._window_lateness_ns)
        spare_ns = min_wait_ns - unseen_ns - self.guard_ns + self.GUARD_SLACK_MS * NS_PER_MS
        return max(0, min(self._window_min, spare_ns // FRAME_NS))

    def restart(self) -> None:
        """The same source again after a pause in its decoding (nobody heard it): buffer
        from empty, as ``reset``, but keep what was learned of its jitter (the gaps and
        lateness of past windows), which is the network's, not the pause's. Adaptive, once
        ``LEARNED_FRAMES`` frames were measured, the target starts at the whole frames of the
        guard and that lateness (``restart_frames``): the master clock keeps its tick the rest
        of them after the arrivals while the source is not decoded
        (``LiveSource.phase_slack_ns``), so the frames wait the guard and the lateness from the
        first. Not the target before the pause: the starting target calm had yet to bring
        down filled a frame more, which waited a frame and the guard less the phase's error
        and was never found to spare (measured: a listener after 15 s unheard kept hearing
        46 ms, against 22-26 ms when the target had come down before the pause). A source
        barely measured keeps its target (a late frame not yet seen would be heard)."""
        target, calm, seen = self.target_frames, self._calm_windows, self._frames_seen
        gaps, lateness = list(self._gap_peaks), list(self._lateness_peaks)
        window_lateness = self._window_lateness_ns
        self.reset()
        self._gap_peaks.extend(gaps)
        self._lateness_peaks.extend(lateness)
        if window_lateness:  # the window under way when it paused: measured too
            self._lateness_peaks.append(window_lateness)
        learned = self.adaptive and (seen >= self.LEARNED_FRAMES or bool(lateness))
        self.target_frames = self.restart_frames if learned else target
        self._calm_windows = calm

    @property
    def restart_frames(self) -> int:
        """The frames a restarted buffer holds (``restart``): the guard and the lateness seen
        lately, in whole frames, and one (at most ``max_target_frames``)."""
        return min((self.guard_ns + self.lateness_seen_ns) // FRAME_NS + 1,
                   self.max_target_frames)

    def reset(self) -> None:
        """Forget everything (a source left); the next one starts from the initial target."""
        self._frames.clear()
        self.state = JitterState.BUFFERING
        self.playing_out = False
        self.target_frames = self.initial_target_frames
        self._calm_windows = 0
        self._underflow_since_ns = None
        self._last_arrival_ns = None
        self._window_gap_peak_ns = 0
        self._gap_peaks.clear()
        self._arrived_since_pop = 0
        self._last_pop_ns = None
        self._settled_pops = 0
        self._frames_seen = 0
        self._delays.clear()
        self._window_lateness_ns = 0
        self._lateness_peaks.clear()
        self._batch_arrival_ns = None
        self._batch_lateness_ns = None
        self._skip_pending_pops = None
        self._fresh_windows = self.FRESH_WINDOWS
        self._start_windows = self.START_WINDOWS
        self._phase_min_wait_ns = None
        self._phase_lateness_ns = 0
        self._start_window()


def _quiet(samples: Samples) -> bool:
    """Whether a frame's peak is under ``JitterBuffer.QUIET_PEAK`` (a moment to drop it)."""
    quiet = JitterBuffer.QUIET_PEAK
    return bool(samples.max() < quiet and samples.min() > -quiet)
