"""A WHIP source (RFC 9725): a studio's Opus over WebRTC, live on a mount.

The mount takes it as it takes an Icecast source (``Mounts.attach``: one source per mount,
a stalled one replaced); its frames go into the mount's ``LiveSource`` (jitter buffer and
all), and the zones that take the mount hear it. Each RTP packet's Opus payload is decoded
once (``opus_rtp.OpusRtp``) on the loop, as it arrives, while the source is decoding (a zone
takes it and someone hears it); otherwise it is only followed, as an Icecast source's pages are
parsed and not decoded. The source connects with the first packet, so zones do not fall silent
while ICE and DTLS are under way.

**A pause is not an end.** With no RTP for ``RTP_TIMEOUT_S`` (1 s) the mount's source is held
(``LiveSource.hold``): the zones that take the mount fall back within that second, 30 s before
ICE consent would expire, whether the peer vanished (a closed lid, a dead link) or only
paused (a 4G hiccup, an encoder stall). When its RTP comes back the source is available again
and those zones hear it at once; the session, its URL and its mount stay the studio's. A
sender in DTX still sends a packet every 400 ms; its silences are filled with silence at real
time. While held, the source counts as stalled, so a new source (the studio's encoder
restarted) may replace it at once.

How it ends:

- ``DELETE`` on its session URL (``end``): what was received plays out, then the zones fall
  back;
- its peer connection failing or closing (ICE failure, consent expiry, DTLS close_notify);
- **no RTP for ``[webrtc] rtp_gone_s``** (10 s by default): the peer is gone. Its zones fell
  back long before;
- the server cutting it (``stop``: shutdown, a new source replacing it while stalled or
  held): what was buffered is dropped;
- a new offer from the same caller while it has not connected yet (``replaceable_by``: a
  client that crashed after its POST, or retries, is not locked out of its mount for
  ``CONNECT_TIMEOUT_S``);
- the sign-out of the console login that made it (``WebRtc.end_login``).

Who may change (``PATCH``) or end (``DELETE``) it: its maker (``made_by``), or an admin
(``loa.api.whip``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from loa.core.clock import Clock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_MS, FRAME_SAMPLES, Samples
from loa.playout.inputs.push import Mount
from loa.playout.webrtc import RTP_TIMEOUT_S, WebRtc
from loa.playout.webrtc.opus_rtp import OpusRtp
from loa.playout.webrtc.session import PeerSession

if TYPE_CHECKING:
    from types import ModuleType

log = logging.getLogger(__name__)

DTX_TICK_S = FRAME_MS / 1000
FIRST_RTP_GRACE_S = 4.0  # from "connected" to the first packet (a client still setting up)


class WhipSession(PeerSession):
    """One WHIP source on ``mount``, from client address ``peer``: a ``MountSession`` of
    ``kind`` "webrtc". ``negotiate`` answers the offer; the mount's source then plays what
    arrives until the session ends (see the module). Who made it: ``actor`` (a principal's
    name, for the log and audit) or the mount's source password (``by_password``): its owner,
    the one caller besides an admin that may change or end it; and the console login it came
    from (``login_id``, None for a bearer token). ``rtp_timeout_s`` without RTP holds its
    source, ``rtp_gone_s`` (by default ``[webrtc] rtp_gone_s``) ends it."""

    resource = "whip"
    kind = "webrtc"
    content_type = "audio/opus (WebRTC)"

    def __init__(self, registry: WebRtc, mount: Mount, peer: str, clock: Clock,
                 counters: Counters, *, actor: str = "", by_password: bool = False,
                 login_id: str | None = None, rtp_timeout_s: float = RTP_TIMEOUT_S,
                 rtp_gone_s: float | None = None) -> None:
        super().__init__(registry, peer, clock, counters, login_id=login_id)
        self.mount = mount
        self.actor = actor
        self.by_password = by_password
        self.decoder = OpusRtp()
        self.rtp_timeout_s = rtp_timeout_s
        # no RTP this long: the session ends (``rtp_timeout_s`` only holds the source)
        self.rtp_gone_s = max(rtp_timeout_s, registry.settings.rtp_gone_s
                              if rtp_gone_s is None else rtp_gone_s)
        self.live = False  # the first packet arrived: the mount's source is connected
        self.held = False  # live, its RTP paused past ``rtp_timeout_s``: the source is held
        self.holds = 0  # how many times it was held
        self.first_rtp_ns = 0
        self.last_rtp_ns = 0  # server clock ns of the last RTP packet
        self._last_rtp_at = 0.0  # loop time of the same
        self._rtp_timer: Any = None
        self._dtx_timer: Any = None
        self._dtx_started_at = 0.0
        self._dtx_filled = 0  # frames filled since the DTX began
        self._held_from_ns = 0  # server clock ns when it was held

    @property
    def packets_skipped(self) -> int:
        """The RTP packets followed without decoding (nobody heard the mount)."""
        return self.decoder.skipped

    @property
    def stalled(self) -> bool:
        """Live, but its mount's source is stalled (nothing arrived for the stall time and
        nothing is buffered) or held (no RTP for ``rtp_timeout_s``): a new source may replace
        it."""
        return self.live and not self.ended and self.mount.source.stalled

    def made_by(self, actor: str, by_password: bool) -> bool:
        """Whether the same caller made it: both with the mount's source password, or both
        as the principal named ``actor``."""
        return self.by_password == by_password and (by_password or self.actor == actor)

    def replaceable_by(self, actor: str, by_password: bool) -> bool:
        """Whether a new offer of that caller may replace it: made by the same caller, and
        its peer connection never connected (a client that crashed after its POST, or
        retries it)."""
        return not self.ended and not self.connected and self.made_by(actor, by_password)

    async def negotiate(self, peer_module: ModuleType, offer_sdp: str) -> str:
        """Answer the offer (``peer_module``: ``loa.playout.webrtc.peer``): the SDP answer.
        Raises WebRtcError for an offer that cannot be answered (the caller ends the
        session)."""
        pc = peer_module.peer_connection(self.registry.settings)
        self.attach(pc)
        answer: str = await peer_module.answer_whip(pc, offer_sdp, self.registry.settings,
                                                    self.on_rtp)
        return answer

    # the media

    def on_rtp(self, seq: int, timestamp: int, payload: bytes) -> None:
        """One Opus RTP packet (on the loop): decoded into the mount's source while the
        source is decoding (``LiveSource.decoding``: taken and heard), else only followed
        (``OpusRtp.skip``) and its arrival noted; the source connects with the first one."""
        if self.ended:
            return
        now_ns = self.clock.now_ns()
        self._last_rtp_at = self._loop.time()
        self.last_rtp_ns = now_ns
        source = self.mount.source
        if not self.live:
            self.live = True
            self.first_rtp_ns = now_ns
            source.connect()
            log.info("WHIP source %s live on /live/%s", self.peer, self.mount.name)
            if self._rtp_timer is not None:  # the first packet's grace: over
                self._rtp_timer.cancel()
            self._rtp_timer = self._loop.call_later(self.rtp_timeout_s, self._check_rtp)
        elif self.held:
            self.held = False  # the next push makes the source available again
            idle_s = (now_ns - self._held_from_ns) / 1e9 + self.rtp_timeout_s
            log.info("WHIP source %s on /live/%s: RTP back after %.2f s, its zones rejoin it",
                     self.peer, self.mount.name, idle_s)
        lost = self.decoder.lost
        decoding = source.decoding
        if decoding:
            frames = self.decoder.push(seq, timestamp, payload)
        else:  # no zone takes it, or nobody hears what they take: followed, not decoded
            self.decoder.skip(seq, timestamp, payload)
            frames = []
        if self.decoder.lost != lost:
            self.counters.inc("webrtc_packets_lost", self.decoder.lost - lost,
                              mount=self.mount.name)
        if frames or not decoding:
            source.push_frames(frames)  # none: its arrival is noted (available, phase)
        if self.decoder.in_dtx:
            self._start_dtx()
        elif self._dtx_timer is not None:
            self._dtx_timer.cancel()
            self._dtx_timer = None

    def _on_connected(self) -> None:
        """Connected: media must follow, within ``FIRST_RTP_GRACE_S`` and then every
        ``rtp_timeout_s`` (a peer that connects and sends nothing holds no mount)."""
        if self._rtp_timer is None and not self.live:
            self._last_rtp_at = self._loop.time() + FIRST_RTP_GRACE_S
            self._rtp_timer = self._loop.call_later(FIRST_RTP_GRACE_S + self.rtp_timeout_s,
                                                    self._check_rtp)

    def _check_rtp(self) -> None:
        """Past ``rtp_timeout_s`` without RTP the source is held (its zones fall back); past
        ``rtp_gone_s`` the session ends. Before its first packet, ``rtp_timeout_s`` ends it."""
        self._rtp_timer = None
        if self.ended:
            return
        idle = self._loop.time() - self._last_rtp_at
        if not self.live:
            if idle < self.rtp_timeout_s:
                self._rtp_timer = self._loop.call_later(self.rtp_timeout_s - idle,
                                                        self._check_rtp)
                return
            self.counters.inc("sources_timed_out", mount=self.mount.name)
            self.end("connected, but no RTP came")
            return
        if idle >= self.rtp_gone_s:
            self.counters.inc("sources_timed_out", mount=self.mount.name)
            self.end(f"no RTP for {idle:.2f} s: the peer is gone")
            return
        if idle >= self.rtp_timeout_s and not self.held:
            self._hold(idle)
        due = self.rtp_gone_s if self.held else self.rtp_timeout_s
        self._rtp_timer = self._loop.call_later(max(0.001, due - idle), self._check_rtp)

    def _hold(self, idle: float) -> None:
        """No RTP for ``idle`` s (at least ``rtp_timeout_s``): hold the mount's source, so
        that its zones fall back now; the next packet lets them rejoin it."""
        self.held = True
        self.holds += 1
        self._held_from_ns = self.clock.now_ns()
        if self._dtx_timer is not None:  # no silence filled for a sender that is away
            self._dtx_timer.cancel()
            self._dtx_timer = None
        self.mount.source.hold()
        self.counters.inc("sources_held", mount=self.mount.name)
        log.warning("WHIP source %s on /live/%s: no RTP for %.2f s, its zones fall back until "
                    "it comes back (ended after %g s)", self.peer, self.mount.name, idle,
                    self.rtp_gone_s)

    def _start_dtx(self) -> None:
        """The sender went quiet (DTX): silence at real time until its next packet."""
        if self._dtx_timer is not None:
            self._dtx_timer.cancel()
        self._dtx_started_at = self._loop.time()
        self._dtx_filled = 0
        self._dtx_timer = self._loop.call_later(DTX_TICK_S, self._dtx_tick)

    def _dtx_tick(self) -> None:
        self._dtx_timer = None
        if self.ended or not self.decoder.in_dtx:
            return
        elapsed = self._loop.time() - self._dtx_started_at
        due = int(elapsed / DTX_TICK_S) - self._dtx_filled
        if due > 0:
            self._dtx_filled += due
            frames: list[Samples] = self.decoder.fill(due * FRAME_SAMPLES)
            if frames:
                self.mount.source.push_frames(frames)
        next_at = (self._dtx_filled + 1) * DTX_TICK_S - elapsed
        self._dtx_timer = self._loop.call_later(max(0.001, next_at), self._dtx_tick)

    # the end

    def _on_end(self, why: str, cut: bool) -> None:
        for timer in (self._rtp_timer, self._dtx_timer):
            if timer is not None:
                timer.cancel()
        self._rtp_timer = self._dtx_timer = None
        if self.live:
            if cut:
                self.mount.source.disconnect()  # dropped now
            else:
                self.mount.source.end()  # what arrived plays out; then the zones fall back
        if self.mount.session is self:
            self.mount.session = None
        stats = self.decoder.describe()
        log.info("WHIP source on /live/%s ended (%s) after %d packets (%d lost, %d late)",
                 self.mount.name, why, stats["packets"], stats["lost"], stats["late"])

    def describe(self) -> dict[str, Any]:
        """Status: the session's (``PeerSession.describe``), the mount, whether it is held
        (its RTP paused) and how many times it was, and the packet counts
        (``OpusRtp.describe``)."""
        return {**super().describe(), "mount": self.mount.name, "live": self.live,
                "held": self.held, "holds": self.holds, **self.decoder.describe()}
