"""A WHEP viewer (draft-ietf-wish-whep): what a zone plays, sub-second, over WebRTC.

The viewer joins the zone's "webrtc" feed (``loa.playout.outputs.webrtc``) once its peer
connection is up, and each Opus packet of the zone's one rendition goes to its sender as it
is (``peer.PacketTrack``): nothing is encoded per viewer. It starts at the live edge (no join
burst), and its sender never lags more than a few packets (the oldest are dropped).

It ends on ``DELETE`` (by the viewer that made it, or an admin), its peer connection failing
or closing, the zone's feed letting it go (the zone closed), or no RTCP from the viewer for
``RTCP_TIMEOUT_S`` (a viewer that vanished: its receiver reports stopped), whichever comes
first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from loa.core.clock import Clock
from loa.core.counters import Counters
from loa.playout.fanout import Subscriber
from loa.playout.outputs.webrtc import PacketProtocol, PacketSink
from loa.playout.webrtc import RTCP_TIMEOUT_S, WebRtc
from loa.playout.webrtc.session import PeerSession
from loa.playout.zone_channel import ZoneChannel

if TYPE_CHECKING:
    from types import ModuleType

log = logging.getLogger(__name__)


class WhepSession(PeerSession):
    """One viewer of ``channel``'s zone, from client address ``peer``. ``negotiate`` answers
    the offer; the viewer then hears the zone until the session ends (see the module).
    ``actor``: the name of the principal that made it, its owner (the one caller besides an
    admin that may change or end it)."""

    resource = "whep"

    def __init__(self, registry: WebRtc, channel: ZoneChannel, peer: str, clock: Clock,
                 counters: Counters, *, actor: str = "",
                 rtcp_timeout_s: float = RTCP_TIMEOUT_S) -> None:
        super().__init__(registry, peer, clock, counters)
        self.actor = actor
        self.channel = channel
        self.zone_id = channel.zone.id
        self.track: Any = None  # peer.PacketTrack, made by ``negotiate``
        self.rtcp_timeout_s = rtcp_timeout_s
        self._last_rtcp_at = 0.0
        self._rtcp_timer: Any = None
        self._protocol = PacketProtocol()
        self._sink = PacketSink(self._protocol, self._on_packet, self._feed_closed)
        self.subscriber = Subscriber(self._protocol, f"whep {peer}", "webrtc")
        self.packets_in = 0

    async def negotiate(self, peer_module: ModuleType, offer_sdp: str) -> str:
        """Answer the offer (``peer_module``: ``loa.playout.webrtc.peer``): the SDP answer.
        Raises WebRtcError for an offer that cannot be answered (the caller ends the
        session)."""
        pc = peer_module.peer_connection(self.registry.settings)
        self.attach(pc)
        self.track = peer_module.PacketTrack()
        answer: str = await peer_module.answer_whep(pc, offer_sdp, self.registry.settings,
                                                    self.track, self._on_rtcp)
        return answer

    def _on_connected(self) -> None:
        """Join the zone's feed, at the live edge (the join burst is not sent)."""
        self._protocol.transport = self._sink
        self._sink.muted = True
        try:
            self.channel.join(self.subscriber)
        finally:
            self._sink.muted = False
        self._last_rtcp_at = self._loop.time()
        self._rtcp_timer = self._loop.call_later(self.rtcp_timeout_s, self._check_rtcp)

    def _on_packet(self, data: bytes, duration: int) -> None:
        self.packets_in += 1
        track = self.track
        if track is not None:
            track.push(data, duration)

    def _on_rtcp(self) -> None:
        self._last_rtcp_at = self._loop.time()

    def _check_rtcp(self) -> None:
        self._rtcp_timer = None
        if self.ended:
            return
        idle = self._loop.time() - self._last_rtcp_at
        if idle < self.rtcp_timeout_s:
            self._rtcp_timer = self._loop.call_later(self.rtcp_timeout_s - idle,
                                                     self._check_rtcp)
            return
        self.end(f"no RTCP from the viewer for {idle:.1f} s: it is gone")

    def _feed_closed(self) -> None:
        self.end("the zone's stream closed")

    def _on_end(self, why: str, cut: bool) -> None:
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        feed = self.subscriber.feed
        if feed is not None:
            feed.remove(self.subscriber)
        self._protocol.transport = None
        if self.track is not None:
            self.track.stop()

    def describe(self) -> dict[str, Any]:
        """Status: the session's (``PeerSession.describe``), the zone, packets received from
        the zone, sent and dropped (the viewer's sender behind)."""
        track = self.track
        return {**super().describe(), "zone": self.zone_id, "packets_in": self.packets_in,
                "packets_sent": track.sent if track is not None else 0,
                "packets_dropped": track.dropped if track is not None else 0}
