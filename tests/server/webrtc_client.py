"""WebRTC peers for the WHIP and WHEP tests: real aiortc clients on loopback host candidates
only (nothing leaves the machine), speaking to a real server over real HTTP and UDP."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from loa.app import LoaServer
from loa.core.pcm import SAMPLE_RATE
from loa.playout.webrtc import WebRtcSettings
from loa.playout.webrtc import peer as webrtc_peer
from tests.server.test_ingest import base

LOOPBACK = WebRtcSettings(addresses=("127.0.0.1",))  # the clients' own candidates
# what aiortc initialises at its first use (OpenSSL's tables, a certificate, a handshake),
# done at import, before any test's loop runs: as the server does beside its loop
webrtc_peer.warm_up()
SDP = "application/sdp"


class ToneTrack(MediaStreamTrack):
    """A sine at ``freq_hz``, 20 ms frames of 48 kHz mono s16, paced at real time (what a
    microphone gives a browser). ``pause`` stalls it for a while, as an encoder that stops
    producing frames: no RTP goes out meanwhile, the connection (ICE, DTLS, RTCP) lives on."""

    kind = "audio"

    def __init__(self, freq_hz: float = 1000.0, level: float = 0.3) -> None:
        super().__init__()
        self.freq_hz = freq_hz
        self.level = level
        self._pts = 0
        self._start: float | None = None
        self._pause_s = 0.0
        self.paused = asyncio.Event()  # set once a pause has begun

    def pause(self, seconds: float) -> None:
        """The next frame comes ``seconds`` late (then real time again, no burst): the
        sender's RTP stops that long; its timestamps go on from where they stopped."""
        self._pause_s = seconds

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        if self._pause_s:
            pause_s, self._pause_s = self._pause_s, 0.0
            self.paused.set()
            await asyncio.sleep(pause_s)  # the stall itself, not synchronisation
            self._start += pause_s
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # real-time pacing of the source, not synchronisation
        n = SAMPLE_RATE // 50
        t = (np.arange(n) + self._pts) / SAMPLE_RATE
        pcm = (self.level * np.sin(2 * np.pi * self.freq_hz * t) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += n
        return frame


class Peer:
    """One aiortc client of a WHIP or WHEP resource: ``offer`` makes the offer (loopback
    candidates), ``post`` sends it and sets the answer; ``delete`` ends the session;
    ``vanish`` closes its UDP sockets without a word; ``close`` closes it."""

    def __init__(self, server: LoaServer) -> None:
        self.server = server
        self.pc: RTCPeerConnection = webrtc_peer.peer_connection(LOOPBACK)  # no STUN
        self.location = ""
        self.etag = ""
        self.status = 0
        self.headers: Any = None
        self.body = ""
        self.tone: ToneTrack | None = None  # what a WHIP client sends

    async def post(self, path: str, headers: dict[str, str]) -> int:
        """POST the offer to ``path``; on 201, set the answer. Returns the status."""
        webrtc_peer.restrict_gathering(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(base(self.server) + path, data=self.pc.localDescription.sdp,
                                 headers={"Content-Type": SDP, **headers}) as resp:
                self.status, self.headers, self.body = resp.status, resp.headers, \
                    await resp.text()
        if self.status == 201:
            self.location = self.headers["Location"]
            self.etag = self.headers["ETag"]
            await self.pc.setRemoteDescription(RTCSessionDescription(self.body, "answer"))
        return self.status

    async def delete(self, headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.delete(base(self.server) + self.location, headers=headers) as resp:
                return resp.status

    async def patch(self, headers: dict[str, str]) -> tuple[int, str]:
        """PATCH the session with an end-of-candidates fragment (trickle ICE, its ETag in
        If-Match): (status, body)."""
        async with aiohttp.ClientSession() as http:
            async with http.patch(base(self.server) + self.location,
                                  data="a=end-of-candidates\r\n",
                                  headers={"Content-Type": "application/trickle-ice-sdpfrag",
                                           "If-Match": self.etag, **headers}) as resp:
                return resp.status, await resp.text()

    def vanish(self) -> None:
        """The peer disappears (a lid closed, a link lost): its UDP sockets close, and the
        server hears nothing more, not even a goodbye."""
        for t in self.pc.getTransceivers():
            conn = t.receiver.transport.transport.iceGatherer._connection
            for protocol in conn._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()


async def whip_client(server: LoaServer, mount: str, headers: dict[str, str],
                      freq_hz: float = 1000.0) -> Peer:
    """A WHIP client pushing a tone to ``/whip/<mount>`` (check its ``status``); its
    ``tone`` may be paused."""
    peer = Peer(server)
    peer.tone = ToneTrack(freq_hz)
    peer.pc.addTransceiver(peer.tone, direction="sendonly")
    await peer.post(f"/whip/{mount}", headers)
    return peer


async def whep_client(server: LoaServer, zone: str, headers: dict[str, str]) -> Peer:
    """A WHEP viewer of ``zone`` (check its ``status``); its audio by ``receive``."""
    peer = Peer(server)
    peer.pc.addTransceiver("audio", direction="recvonly")
    await peer.post(f"/whep/zones/{zone}", headers)
    return peer


async def receive(peer: Peer, seconds: float) -> np.ndarray:
    """``seconds`` of what a viewer hears, decoded by aiortc: 48 kHz mono float32."""
    track = peer.pc.getTransceivers()[0].receiver.track
    out: list[np.ndarray] = []
    got = 0
    while got < seconds * SAMPLE_RATE:
        frame = await asyncio.wait_for(track.recv(), 10)
        pcm = frame.to_ndarray().astype(np.float32).reshape(-1, len(frame.layout.channels))
        out.append(pcm.mean(axis=1) / 32768)
        got += frame.samples
    return np.concatenate(out)
