"""WebRTC on the real-time path: WHIP sources (RFC 9725) and WHEP viewers, with aiortc.

A studio pushes Opus over WebRTC to ``POST /whip/<mount>`` (``loa.api.whip``); its mount plays
it as it plays an Icecast source (``whip.WhipSession``). A viewer asks ``POST
/whep/zones/<zone>`` for a sub-second feed of what the zone plays: the zone's own Opus rendition,
packetised as it is (``whep.WhepSession``). This package holds what both share: the
``[webrtc]`` settings, the registry of sessions with its limits (one for sources, one for
viewers: a crowd of viewers never keeps the studio off the air), and the lazy load of aiortc.

**Nothing here costs a station that never uses WebRTC.** aiortc (with OpenSSL, SRTP and the
ICE agent: some 15 MB of resident memory and 0.2-0.3 s to import) is imported by the first
WHIP or WHEP request, on a worker thread (``WebRtc.ready``), together with a warm-up of what
aiortc initialises on first use (a certificate, an SSL context), so that no first session
holds the event loop for it. ``peer`` is the only module that imports aiortc at its top.

What the loop does per session, measured on the project's 2-core machine (aiortc 1.16): the
offer parsed and answered 1-2 ms, host candidates gathered ~1 ms, the DTLS handshake 1-2 ms
(5-8 ms the first time in a process: hence the warm-up), each received RTP packet decoded
from Opus in ~0.04 ms (p99 0.1 ms): small enough to stay on the loop, where the frames go.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import secrets
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Protocol

from loa.core.i18n import Explained

log = logging.getLogger(__name__)

MAX_SOURCES = 8  # WHIP sources at once (one a mount)
MAX_VIEWERS = 64  # WHEP viewers at once
# A WHIP source whose RTP stops this long is held: its mount's zones fall back (a peer that
# vanished, a 4G hiccup, an encoder stall), and hear it again as soon as its RTP comes back.
RTP_TIMEOUT_S = 1.0
# ... and one whose RTP stays away this long is gone: its session ends (``[webrtc] rtp_gone_s``).
RTP_GONE_S = 10.0
# A new session must carry media within this long (ICE checks, DTLS handshake), or it ends.
CONNECT_TIMEOUT_S = 15.0
# A WHEP viewer that sends no RTCP (receiver reports: a browser sends one every 1-7.5 s)
# this long is gone: its session slot is freed long before ICE consent (30 s) would.
RTCP_TIMEOUT_S = 20.0


class WebRtcError(Explained, ValueError):
    """A WebRTC session that cannot be made: an offer that is not SDP (``status`` 400), one
    with nothing Loa can send or receive (422), no local candidate (503: no free UDP port in
    the configured range, say)."""

    def __init__(self, status: int, message: str, /, **fields: object) -> None:
        super().__init__(message, **fields)
        self.status = status


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server for the peers (RFC 7064/7065 URL: ``stun:host:port``,
    ``turn:host:port?transport=udp``, ``turns:…``); TURN needs ``username`` and
    ``credential``."""

    url: str
    username: str = ""
    credential: str = ""

    @property
    def is_turn(self) -> bool:
        """Whether it relays (TURN), rather than only reflects addresses (STUN)."""
        return self.url.startswith(("turn:", "turns:"))


def parse_port_range(value: str) -> tuple[int, int]:
    """``"40000-40100"`` (or one port, ``"40000"``) as (first, last), inclusive. Raises
    ValueError unless 1 <= first <= last <= 65535."""
    first, sep, last = value.strip().partition("-")
    try:
        lo, hi = int(first), int(last) if sep else int(first)
    except ValueError:
        raise ValueError(f"not a port range: {value!r}") from None
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"not a port range: {value!r}")
    return lo, hi


@dataclass(frozen=True, slots=True)
class WebRtcSettings:
    """``[webrtc]``: how peers reach the server.

    - ``ice_servers``: STUN/TURN servers, for the server's own candidates and told to clients
      (``Link: rel="ice-server"``, RFC 9725 §4.6). None by default: nothing leaves the machine
      unless configured.
    - ``addresses``: the local addresses host candidates are gathered on; empty: every
      interface's (the ICE agent's choice, loopback excepted). The server sets it to its
      listen address when that is one address (``127.0.0.1`` in a default install and tests).
    - ``public_address``: 1:1 NAT (a cloud's elastic address): host candidates of the same
      family are announced with this address instead of the local one.
    - ``udp_ports``: (first, last) inclusive, the UDP ports candidates bind to (one per
      session and address); None: any port the system gives.
    - ``cors_origins``: the web origins whose pages may call WHIP/WHEP (``*``: any).
    - ``max_sources``: WHIP sources at once, those still connecting included; past it a new
      one gets 503.
    - ``max_viewers``: WHEP viewers at once, likewise. Separate limits, so that viewers'
      offers (each holds its place until it connects or ``CONNECT_TIMEOUT_S`` passes) never
      keep a studio off the air.
    - ``rtp_gone_s``: a WHIP source without RTP this long ends (its zones fell back after
      ``RTP_TIMEOUT_S`` already); a shorter pause only holds it (``whip.WhipSession``).
    """

    ice_servers: tuple[IceServer, ...] = ()
    addresses: tuple[str, ...] = ()
    public_address: str | None = None
    udp_ports: tuple[int, int] | None = None
    cors_origins: tuple[str, ...] = ("*",)
    max_sources: int = MAX_SOURCES
    max_viewers: int = MAX_VIEWERS
    rtp_gone_s: float = RTP_GONE_S
    preload: bool = False  # import aiortc at start-up rather than at the first request

    def with_listen_host(self, host: str) -> WebRtcSettings:
        """These settings, with ``addresses`` defaulting to ``host`` when it is one address
        (not a wildcard nor a name); unchanged when ``addresses`` is set."""
        if self.addresses:
            return self
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return self
        if ip.is_unspecified:
            return self
        return replace(self, addresses=(str(ip),))

    def limit(self, resource: str) -> int:
        """The most sessions of ``resource`` at once: ``max_sources`` for "whip",
        ``max_viewers`` for "whep" (KeyError for another)."""
        return {"whip": self.max_sources, "whep": self.max_viewers}[resource]


class Session(Protocol):
    """What the registry needs of a WHIP or WHEP session."""

    id: str
    resource: str  # "whip" or "whep"
    login_id: str | None  # the console login that made it; None: made with a bearer token

    @property
    def ended(self) -> bool: ...

    def end(self, why: str, *, cut: bool = False) -> None: ...

    async def stop(self, why: str = "stopped") -> None: ...


@dataclass
class _Load:
    module: ModuleType | None = None
    task: asyncio.Task[ModuleType] | None = None


class WebRtc:
    """The server's WebRTC sessions: the lazy load of aiortc (``ready``), the session
    registry with a limit per resource (``reserve``/``add``/``discard``; "whip" sources and
    "whep" viewers, ``WebRtcSettings.limit``), the end of a console login's sessions
    (``end_login``), and the shutdown of them all (``stop``)."""

    def __init__(self, settings: WebRtcSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, Session] = {}
        self._reserved: dict[str, int] = {"whip": 0, "whep": 0}
        self._load = _Load()
        self._closing: set[asyncio.Task[None]] = set()
        self.sessions_total = 0
        self.refused_full: dict[str, int] = {"whip": 0, "whep": 0}  # 503s, by resource

    @property
    def loaded(self) -> bool:
        """Whether aiortc has been imported by this server."""
        return self._load.module is not None

    async def ready(self) -> ModuleType:
        """``loa.playout.webrtc.peer`` (which imports aiortc), imported and warmed up on a
        worker thread the first time, once however many requests wait for it."""
        if self._load.module is not None:
            return self._load.module
        if self._load.task is None:
            self._load.task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(_import_peer), name="webrtc-import")
        module = await asyncio.shield(self._load.task)
        self._load.module = module
        return module

    def new_id(self) -> str:
        """A fresh session id: 128 random bits, URL-safe (the session URL is its handle)."""
        while True:
            sid = secrets.token_urlsafe(16)
            if sid not in self.sessions:
                return sid

    def count(self, resource: str) -> int:
        """How many sessions of ``resource`` ("whip", "whep") are registered."""
        return sum(1 for s in self.sessions.values() if s.resource == resource)

    def reserve(self, resource: str) -> bool:
        """Hold a place for a session of ``resource`` ("whip", "whep") being negotiated;
        False when its limit is reached (its sessions and reservations together). ``add`` or
        ``release`` follows."""
        if self.count(resource) + self._reserved[resource] >= self.settings.limit(resource):
            self.refused_full[resource] += 1
            return False
        self._reserved[resource] += 1
        return True

    def release(self, resource: str) -> None:
        """Give back a reservation of ``resource`` whose session was not made."""
        self._reserved[resource] = max(0, self._reserved[resource] - 1)

    def add(self, session: Session) -> None:
        """Register a negotiated session, in the place ``reserve`` held for it."""
        self.release(session.resource)
        self.sessions[session.id] = session
        self.sessions_total += 1

    def discard(self, session: Session) -> None:
        """Forget a session that ended (no-op if it is not registered)."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def get(self, resource: str, session_id: str) -> Session | None:
        """The live session of that resource ("whip", "whep") and id, or None."""
        s = self.sessions.get(session_id)
        return s if s is not None and s.resource == resource and not s.ended else None

    def end_login(self, login_id: str, why: str) -> int:
        """End the sessions made with the console login ``login_id`` (its sign-out): a WHIP
        source's media plays out, then its zones fall back. Returns how many ended."""
        ended = [s for s in self.sessions.values() if s.login_id == login_id and not s.ended]
        for session in ended:
            session.end(why)
        return len(ended)

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a session's closing task until it is done (``stop`` waits for it)."""
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def stop(self) -> None:
        """End every session (server shutdown) and wait for their peer connections to
        close (and for an import of aiortc under way: a thread cannot be cancelled)."""
        load = self._load.task
        if load is not None and not load.done():
            await asyncio.wait([load])
        for session in list(self.sessions.values()):
            try:
                await session.stop("server shutting down")
            except Exception:  # one session failing to close must not keep the others open
                log.exception("closing WebRTC session %s failed", session.id)
        if self._closing:
            await asyncio.wait(list(self._closing))

    def describe(self) -> dict[str, object]:
        """Status: sessions by resource ("whip", "whep"), the limits (``max_sources``,
        ``max_viewers``), how many were made, how many refused by resource (the limit
        reached), and whether aiortc is loaded."""
        kinds: dict[str, int] = {}
        for s in self.sessions.values():
            kinds[s.resource] = kinds.get(s.resource, 0) + 1
        return {"sessions": kinds, "max_sources": self.settings.max_sources,
                "max_viewers": self.settings.max_viewers,
                "sessions_total": self.sessions_total, "refused_full": dict(self.refused_full),
                "loaded": self.loaded}


def _import_peer() -> ModuleType:
    """Import aiortc (through ``peer``) and warm it up (blocking: on a worker thread)."""
    module = importlib.import_module("loa.playout.webrtc.peer")
    module.warm_up()
    return module


__all__ = ["CONNECT_TIMEOUT_S", "MAX_SOURCES", "MAX_VIEWERS", "RTCP_TIMEOUT_S", "RTP_GONE_S",
           "RTP_TIMEOUT_S",
           "IceServer", "Session", "WebRtc", "WebRtcError", "WebRtcSettings",
           "parse_port_range"]
