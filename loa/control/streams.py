"""Where endpoints and players connect: zone and endpoint streams over HTTP and WebSocket.

- ``GET /zones/<zone>/stream.ogg|.mp3`` and ``GET /endpoints/<id>/stream.ogg|.mp3``: bare
  Icecast-style HTTP/1.0 responses on the raw transport (taken by the front door);
- ``GET /zones/<zone>/ws`` and ``GET /endpoints/<id>/ws``: the native protocol (aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from loa.control.endpoints import Endpoint, EndpointError, EndpointRegistry
from loa.core.clock import Clock
from loa.core.pcm import FRAME_MS, SAMPLE_RATE
from loa.playout.engine import Engine
from loa.playout.fanout import Subscriber, tune_socket
from loa.playout.zone_channel import ZoneChannel
from loa.protocol.http import RequestHead, simple_response
from loa.protocol.native import PROTOCOL_VERSION

log = logging.getLogger(__name__)

STREAM_PATH = re.compile(r"^/(zones|endpoints)/([^/]+)/stream\.(ogg|mp3)$")
WS_MAX_MESSAGE_BYTES = 4096


class ListenerProtocol(asyncio.Protocol):
    """A raw listener connection: we only write; whatever the client sends is discarded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport: asyncio.Transport | None = transport
        self._paused = False

    @property
    def writing_paused(self) -> bool:
        return self._paused

    def pause_writing(self) -> None:
        """The transport went over its high-water mark (the listener's backlog): the next
        publish sees ``writing_paused`` and cuts this listener."""
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the client half-closed: close, the stream has nobody to go to

    def connection_lost(self, exc: Exception | None) -> None:
        """Show the connection as gone (``transport`` None); the feed drops it on its next write."""
        self.transport = None


class Streams:
    """Connects listeners to zone channels: Icecast-style HTTP streams on the raw transport
    (``accept``) and the native protocol over aiohttp WebSocket (``websocket``). A listener
    on an endpoint's path is attached to that endpoint and joins its zone's channel."""

    def __init__(self, engine: Engine, endpoints: EndpointRegistry, clock: Clock,
                 sndbuf_bytes: int,
                 on_played: Callable[[str, int, int], None] | None = None) -> None:
        self.engine = engine
        self.endpoints = endpoints
        self.clock = clock
        self.sndbuf_bytes = sndbuf_bytes
        # endpoint id, programme id, Clock ns: an endpoint says it started playing a programme
        self.on_played = on_played

    def _resolve(self, kind: str, ident: str) -> tuple[ZoneChannel, Endpoint | None]:
        if kind == "zones":
            channel = self.engine.channels.get(ident)
            if channel is None:
                raise EndpointError(f"unknown zone {ident!r}")
            return channel, None
        ep = self.endpoints.get(ident)
        return self.engine.channels[ep.zone_id], ep

    # HTTP streams, on the raw transport

    def accept(self, transport: asyncio.Transport, head: RequestHead, rest: bytes) -> bool:
        """Raw route for ``GET``/``HEAD /zones|endpoints/<id>/stream.ogg|.mp3``: answer a bare
        HTTP/1.0 200 with icy headers and take the transport into the zone's feed. Answers 405
        for other methods and 404 for an unknown zone or endpoint. Returns False if the path is
        not a stream (the front door then passes it on)."""
        m = STREAM_PATH.match(head.path)
        if m is None:
            return False
        if head.method not in ("GET", "HEAD"):
            transport.write(simple_response(405, "streams answer GET", {"Allow": "GET, HEAD"}))
            transport.close()
            return True
        kind, ident, fmt_name = m.groups()
        try:
            channel, ep = self._resolve(kind, ident)
        except EndpointError as exc:
            transport.write(simple_response(404, str(exc)))
            transport.close()
            return True
        channel.feed(fmt_name)
        fmt = channel.formats[fmt_name]
        response = (
            "HTTP/1.0 200 OK\r\n"
            f"Content-Type: {fmt.content_type}\r\n"
            "Cache-Control: no-cache, no-store\r\n"
            "Pragma: no-cache\r\n"
            "Connection: close\r\n"
            "Server: Loa\r\n"
            f"icy-name: {channel.zone.id}\r\n"
            f"icy-br: {fmt.nominal_bytes_per_s * 8 // 1000}\r\n"
            "\r\n"
        ).encode("latin-1")
        transport.write(response)
        if head.method == "HEAD":
            transport.close()
            return True
        proto = ListenerProtocol(transport)
        transport.set_protocol(proto)
        tune_socket(transport, self.sndbuf_bytes)
        peer = transport.get_extra_info("peername")
        sub = Subscriber(proto, f"{ep.id if ep else peer}", fmt_name, ep.id if ep else None)
        if ep is not None:
            self.endpoints.attach(ep, sub)
        channel.join(sub)
        return True

    # the native protocol over WebSocket

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for ``/zones/<zone>/ws`` and ``/endpoints/<id>/ws``: send the "hello"
        (codec, 48 kHz, 20 ms frames, ``server_ns`` on the injected clock, what is on air), join
        the zone's "ws" feed, then read the endpoint's text messages until it goes. Raises
        HTTPNotFound for an unknown zone or endpoint."""
        kind = "zones" if "zone" in request.match_info else "endpoints"
        ident = request.match_info.get("zone") or request.match_info["endpoint"]
        try:
            channel, ep = self._resolve(kind, ident)
        except EndpointError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        ws = web.WebSocketResponse(compress=False, max_msg_size=WS_MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        transport = request.transport
        proto: Any = request.protocol
        if transport is None:
            return ws
        tune_socket(transport, self.sndbuf_bytes)
        on_air = channel.on_air
        await ws.send_str(json.dumps({
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "zone": channel.zone.id,
            "endpoint": ep.id if ep else None,
            "codec": "opus",
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "frame_ms": FRAME_MS,
            "server_ns": self.clock.now_ns(),
            "programme": on_air.programme_id,
            "name": on_air.programme_name,
            "priority": on_air.priority,
        }, ensure_ascii=False))
        sub = Subscriber(proto, ep.id if ep else str(request.remote), "ws",
                         ep.id if ep else None)
        if ep is not None:
            self.endpoints.attach(ep, sub)
        channel.join(sub)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(ws, msg.data, ep)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if sub.feed is not None:
                sub.feed.remove(sub)
            if ep is not None:
                self.endpoints.detach(ep, sub)
        return ws

    async def _on_text(self, ws: web.WebSocketResponse, data: str, ep: Endpoint | None) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            await ws.send_str(json.dumps({"type": "error", "error": "not JSON"}))
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            await ws.send_str(json.dumps({"type": "pong", "t0": msg.get("t0"),
                                          "server_ns": self.clock.now_ns()}))
        elif kind == "played":
            programme = msg.get("programme")
            if ep is not None and isinstance(programme, int) and self.on_played is not None:
                self.on_played(ep.id, programme, self.clock.now_ns())
        else:
            await ws.send_str(json.dumps({"type": "error", "error": "unknown message"}))
