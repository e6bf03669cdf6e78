"""aiortc itself: peer connections as WHIP and WHEP need them. The one module that imports
aiortc at its top; ``WebRtc.ready`` imports it on a worker thread (see the package).

The hooks into aiortc, each the narrowest found in its source (aiortc 1.16, aioice 0.13):

- **Where candidates are gathered** (``restrict_gathering``): aioice gathers host candidates
  on every interface but loopback, on ports the system picks. Each ICE connection's
  ``get_component_candidates`` is replaced, before gathering, by one that binds the configured
  addresses (``WebRtcSettings.addresses``) within the configured UDP port range, announces the
  1:1 NAT address instead of the local one, and leaves STUN and TURN to aioice.
- **The received Opus** (``receive_opus``): the receiver's ``_handle_rtp_packet`` is wrapped
  so that each RTP packet's payload goes to the session first; aiortc then keeps its RTCP
  statistics (the receiver reports that give the sender its loss and round-trip time) but its
  decoder thread is stopped as soon as it starts, so nothing is decoded twice.
- **Pre-encoded Opus out** (``PacketTrack``): a track whose ``recv`` returns ``av.Packet``
  objects; aiortc's sender packetises a packet as it is (``Encoder.pack``) instead of encoding a
  frame.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import aioice.ice
import av
from aioice.candidate import Candidate, candidate_foundation
from aioice.candidate import candidate_priority as ice_priority
from aioice.ice import Connection, StunProtocol
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp
from OpenSSL import SSL

from loa.core.i18n import N_
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.playout.webrtc import WebRtcError, WebRtcSettings

log = logging.getLogger(__name__)

MAX_BIND_TRIES = 64  # ports tried in a range before giving up (each a bind() call)
OPUS = "audio/opus"
OnRtp = Callable[[int, int, bytes], None]  # sequence number, timestamp, payload


def peer_connection(settings: WebRtcSettings) -> RTCPeerConnection:
    """A new peer connection with the configured ICE servers (none by default: aiortc's
    would be a public STUN server)."""
    servers = [RTCIceServer(s.url, s.username or None, s.credential or None)
               for s in settings.ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def _ice_connections(pc: RTCPeerConnection) -> list[Connection]:
    """The ICE agents of the connection's transceivers (one when bundled)."""
    found: list[Connection] = []
    for t in pc.getTransceivers():
        gatherer: RTCIceGatherer = t.receiver.transport.transport.iceGatherer
        conn = gatherer._connection
        if conn not in found:
            found.append(conn)
    return found


def restrict_gathering(pc: RTCPeerConnection, settings: WebRtcSettings) -> None:
    """Make the connection's ICE agents gather host candidates on ``settings.addresses``
    (every interface's when empty) within ``settings.udp_ports``, announcing
    ``settings.public_address`` for those of its family. Call after the transceivers exist
    (an offer set, or transceivers added) and before the local description is set."""
    for conn in _ice_connections(pc):
        if getattr(conn, "_loa_restricted", False):
            continue
        conn.get_component_candidates = functools.partial(  # type: ignore[method-assign]
            _component_candidates, conn, settings)
        conn._loa_restricted = True  # type: ignore[attr-defined]


async def _component_candidates(conn: Connection, settings: WebRtcSettings, component: int,
                                addresses: list[str], wait_s: int = 5) -> list[Candidate]:
    """aioice's ``get_component_candidates``, but for the addresses, ports and announced
    address of ``settings``; STUN and TURN as aioice does them."""
    loop = asyncio.get_running_loop()
    hosts = list(settings.addresses) or addresses
    public = ipaddress.ip_address(settings.public_address) if settings.public_address else None
    candidates: list[Candidate] = []
    protocols: list[StunProtocol] = []
    for address in hosts:
        try:
            transport, protocol = await _bind(loop, conn, address, settings.udp_ports)
        except OSError as exc:
            log.warning("WebRTC: cannot bind a UDP port on %s: %s", address, exc)
            continue
        host, port = transport.get_extra_info("sockname")[:2]
        announced = host
        if public is not None and public.version == ipaddress.ip_address(host).version:
            announced = str(public)
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", announced), component=component,
            transport="udp", priority=ice_priority(component, "host"), host=announced,
            port=port, type="host")
        protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    conn._protocols += protocols
    if conn.stun_server is not None:
        tasks = [asyncio.ensure_future(aioice.ice.server_reflexive_candidate(p, conn.stun_server))
                 for p in protocols
                 if ipaddress.ip_address(p.local_candidate.host).version == 4]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=wait_s)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is None:
                    candidates.append(task.result()[0])
    if conn.turn_server is not None:  # aioice's own, with no host address: the relay alone
        candidates += await Connection.get_component_candidates(conn, component, [], wait_s)
    return candidates


async def _bind(loop: asyncio.AbstractEventLoop, conn: Connection, address: str,
                ports: tuple[int, int] | None) -> tuple[asyncio.DatagramTransport, StunProtocol]:
    """A UDP socket on ``address``, on a free port of ``ports`` (tried in random order, at
    most ``MAX_BIND_TRIES``) or any port. Raises OSError when none is free."""
    if ports is None:
        return await loop.create_datagram_endpoint(lambda: StunProtocol(conn),
                                                   local_addr=(address, 0))
    lo, hi = ports
    error: OSError | None = None
    for port in random.sample(range(lo, hi + 1), min(hi - lo + 1, MAX_BIND_TRIES)):
        try:
            return await loop.create_datagram_endpoint(lambda: StunProtocol(conn),
                                                       local_addr=(address, port))
        except OSError as exc:
            error = exc
    raise OSError(f"no free UDP port in {lo}-{hi} ({error})")


def _opus_preference(transceiver: RTCRtpTransceiver, kind: str) -> None:
    """Offer and accept Opus alone on ``transceiver`` ("recv" or "send")."""
    capabilities = (RTCRtpReceiver if kind == "recv" else RTCRtpSender).getCapabilities("audio")
    codecs = capabilities.codecs if capabilities is not None else []
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == OPUS])


async def _answer(pc: RTCPeerConnection, ours: RTCRtpTransceiver, offer_sdp: str,
                  settings: WebRtcSettings, wanted: str) -> str:
    """Set the offer, leave every media section but ours inactive, gather and answer.
    ``wanted``: the direction our section must end with. Raises WebRtcError (400: not SDP;
    422: no Opus audio section going the right way)."""
    if not offer_sdp.lstrip().startswith("v=0"):  # aiortc's parser takes any text
        raise WebRtcError(400, N_("the offer is not a valid SDP offer: {error}"),
                          error="it does not begin with v=0")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    except OperationError:
        raise WebRtcError(422, N_("the offer has no Opus audio Loa can use")) from None
    except (ValueError, AssertionError, KeyError, IndexError, InvalidStateError) as exc:
        raise WebRtcError(400, N_("the offer is not a valid SDP offer: {error}"),
                          error=str(exc) or type(exc).__name__) from None
    for t in pc.getTransceivers():
        if t is not ours:
            t.direction = "inactive"  # video (OBS sends it), a second audio: not received
    if ours.mid is None:
        raise WebRtcError(422, N_("the offer has no audio section"))
    restrict_gathering(pc, settings)
    await pc.setLocalDescription(await pc.createAnswer())
    if "a=candidate:" not in pc.localDescription.sdp:
        raise WebRtcError(503, N_("no local address or UDP port is free for the media: try "
                                  "again later"))
    if ours.currentDirection != wanted:
        raise WebRtcError(422, N_("the offer's audio does not go the way this resource "
                                  "takes it (it must be {direction})"),
                          direction="sendonly" if wanted == "recvonly" else "recvonly")
    return str(pc.localDescription.sdp)


async def answer_whip(pc: RTCPeerConnection, offer_sdp: str, settings: WebRtcSettings,
                      on_rtp: OnRtp) -> str:
    """Answer a WHIP offer: receive its audio, Opus only, each RTP packet's payload handed
    to ``on_rtp(sequence, timestamp, payload)`` on the loop. Returns the answer's SDP; raises
    WebRtcError for an offer that cannot be answered."""
    ours = pc.addTransceiver("audio", direction="recvonly")
    _opus_preference(ours, "recv")
    _hook_receiver(ours.receiver, lambda: {c.payloadType for c in ours._codecs
                                           if c.mimeType.lower() == OPUS}, on_rtp)
    return await _answer(pc, ours, offer_sdp, settings, "recvonly")


def _hook_receiver(receiver: RTCRtpReceiver, payload_types: Callable[[], set[int | None]],
                   on_rtp: OnRtp) -> None:
    """Hand each RTP packet of ``payload_types()`` (the negotiated Opus ones, asked at the
    first packet) to ``on_rtp`` before aiortc's statistics see it; stop aiortc's decoder
    thread as soon as the receiver starts it (nothing is decoded twice)."""
    handle = receiver._handle_rtp_packet
    receive = receiver.receive
    types: set[int | None] | None = None

    async def on_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        nonlocal types
        if types is None:
            types = payload_types()
        if packet.payload_type in types and packet.payload:
            try:
                on_rtp(packet.sequence_number, packet.timestamp, bytes(packet.payload))
            except Exception:  # a bug here must not end aiortc's transport loop
                log.exception("WHIP: handling an RTP packet failed")
        await handle(packet, arrival_time_ms)

    async def started(parameters: Any) -> None:
        await receive(parameters)
        receiver._handle_disconnect()  # aiortc's decoder thread: ended and joined (idle)

    receiver._handle_rtp_packet = on_packet  # type: ignore[method-assign]
    receiver.receive = started  # type: ignore[method-assign]


class PacketTrack(MediaStreamTrack):
    """An audio track of Opus packets encoded already: ``push`` queues one (its duration in
    48 kHz samples), and aiortc's sender, reading ``recv``, sends it as it is. At most
    ``limit`` packets wait (a sender not started yet, or a moment behind): the oldest are
    dropped (``dropped``), so a viewer is never more than that late."""

    kind = "audio"

    def __init__(self, limit: int = 5) -> None:
        super().__init__()
        self._queue: deque[tuple[bytes, int]] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._pts = 0
        self.dropped = 0
        self.sent = 0

    def push(self, data: bytes, duration_samples: int = FRAME_SAMPLES) -> None:
        """Queue one encoded packet for the sender."""
        if self.readyState != "live":
            return
        self._queue.append((data, duration_samples))
        while len(self._queue) > self._limit:
            self._queue.popleft()
            self.dropped += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> Any:
        """The next packet (pts in 48 kHz samples, running across the track); raises
        MediaStreamError once the track is stopped."""
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        data, duration = self._queue.popleft()
        packet = av.Packet(data)
        packet.pts = self._pts
        packet.time_base = Fraction(1, SAMPLE_RATE)
        self._pts += duration
        self.sent += 1
        return packet

    def stop(self) -> None:
        """End the track: the sender's ``recv`` raises and its loop ends."""
        super().stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def answer_whep(pc: RTCPeerConnection, offer_sdp: str, settings: WebRtcSettings,
                      track: PacketTrack, on_rtcp: Callable[[], None]) -> str:
    """Answer a WHEP offer: send ``track`` (Opus only) on its audio; ``on_rtcp()`` is called
    for each RTCP packet the viewer sends about it (its receiver reports: it is still there).
    Returns the answer's SDP; raises WebRtcError for an offer that cannot be answered."""
    ours = pc.addTransceiver(track, direction="sendonly")
    _opus_preference(ours, "send")
    handle: Callable[[Any], Awaitable[None]] = ours.sender._handle_rtcp_packet

    async def on_packet(packet: Any) -> None:
        on_rtcp()
        await handle(packet)

    ours.sender._handle_rtcp_packet = on_packet  # type: ignore[method-assign]
    return await _answer(pc, ours, offer_sdp, settings, "sendonly")


def remote_credentials(pc: RTCPeerConnection) -> tuple[str | None, str | None]:
    """The ICE username fragment and password of the remote description (its first media
    section's that has them); (None, None) before there is one."""
    desc = pc.remoteDescription
    if desc is None:
        return None, None
    parsed = SessionDescription.parse(desc.sdp)
    for media in parsed.media:
        if media.ice is not None and media.ice.usernameFragment:
            return str(media.ice.usernameFragment), media.ice.password
    return None, None


def is_ice_restart(pc: RTCPeerConnection, fragment: str) -> bool:
    """Whether an ``application/trickle-ice-sdpfrag`` body asks for an ICE restart: it
    carries an ``a=ice-ufrag`` or ``a=ice-pwd`` other than the remote description's (RFC
    8840 §4.4; RFC 9725 §4.3.2)."""
    ufrag, pwd = remote_credentials(pc)
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:") and line[len("a=ice-ufrag:"):] != ufrag:
            return True
        if line.startswith("a=ice-pwd:") and line[len("a=ice-pwd:"):] != pwd:
            return True
    return False


async def add_candidates(pc: RTCPeerConnection, fragment: str) -> int:
    """Trickle ICE (RFC 8840): add the remote candidates of an ``application/
    trickle-ice-sdpfrag`` body (and its end-of-candidates) to the connection. Returns how
    many were added. Raises WebRtcError: 422 for an ICE restart (new credentials:
    ``is_ice_restart``), which aiortc cannot do, before any candidate is added; 400 for a
    candidate line that does not parse."""
    if is_ice_restart(pc, fragment):
        raise WebRtcError(422, N_("this session takes trickled candidates but cannot restart "
                                  "ICE: make a new session"))
    mid: str | None = None
    first_mid = pc.getTransceivers()[0].mid if pc.getTransceivers() else None
    added = 0
    for raw in fragment.splitlines():
        line = raw.strip()
        if line.startswith("a=mid:"):
            mid = line[len("a=mid:"):]
        elif line.startswith("a=candidate:"):
            try:
                candidate: RTCIceCandidate = candidate_from_sdp(line[len("a=candidate:"):])
            except (AssertionError, ValueError, IndexError):
                raise WebRtcError(400, N_("a candidate line does not parse: {line}"),
                                  line=line[:200]) from None
            candidate.sdpMid = mid or first_mid
            try:
                await pc.addIceCandidate(candidate)
            except ValueError:  # after the end of candidates: ignored (RFC 8838 §14)
                continue
            added += 1
        elif line == "a=end-of-candidates":
            for t in pc.getTransceivers():
                if t.mid is not None and (mid is None or t.mid == mid):
                    try:
                        await t.receiver.transport.transport.addRemoteCandidate(None)
                    except ValueError:
                        pass  # said already
                    break
    return added


def warm_up() -> None:
    """What aiortc initialises the first time it is used, done once on a worker thread:
    a certificate and a DTLS handshake between two in-memory ends (OpenSSL's tables), the
    SDP parser, the network interfaces' list, an Opus decoder and encoder. Blocking; best
    effort (what fails here is only done later, on first use)."""
    try:
        _warm_up()
    except Exception:  # a warm-up, not a requirement
        log.debug("WebRTC warm-up incomplete", exc_info=True)


def _warm_up() -> None:
    ends = []
    for server_side in (True, False):
        cert = RTCCertificate.generateCertificate()
        conn = SSL.Connection(cert._create_ssl_context(srtp_profiles=SRTP_PROFILES))
        (conn.set_accept_state if server_side else conn.set_connect_state)()
        ends.append(conn)
    server, client = ends
    for _ in range(10):
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                break
            try:
                data = a.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                b.bio_write(data)
    SessionDescription.parse(_WARM_SDP.format(fingerprint=":".join(["00"] * 32)))
    aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = SAMPLE_RATE
    av.CodecContext.create("libopus", "w")


_WARM_SDP = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {fingerprint}
a=setup:actpass
"""
