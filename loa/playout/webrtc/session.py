"""What a WHIP source and a WHEP viewer share: an id and ETag, one aiortc peer connection
watched for its end, a timer, and a close that never blocks the loop.

A session ends once (``end``): by its client (``DELETE``), its peer connection failing or
closing (ICE failure, consent expiry, DTLS closed), its own timeouts, or the server
(``stop``). Its peer connection is then closed by a task the registry keeps, so shutdown
waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from loa.core.clock import Clock
from loa.core.counters import Counters
from loa.playout.webrtc import CONNECT_TIMEOUT_S, WebRtc

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

log = logging.getLogger(__name__)


class PeerSession:
    """One WebRTC session of ``registry`` (``resource``: "whip" or "whep"), from client
    address ``peer``. ``attach`` its peer connection once negotiated; ``end`` or ``stop``
    it. ``created_ns``/``ended_ns``: the server clock's ns at its start and end.
    ``login_id``: the console login (``loa.api.whip.login_id`` of its cookie) that made it,
    whose sign-out ends it (``WebRtc.end_login``); None for one made with a bearer token."""

    resource = ""

    def __init__(self, registry: WebRtc, peer: str, clock: Clock, counters: Counters, *,
                 login_id: str | None = None) -> None:
        self.registry = registry
        self.login_id = login_id
        self.id = registry.new_id()
        self.etag = f'"{secrets.token_hex(8)}"'
        self.peer = peer
        self.clock = clock
        self.counters = counters
        self.pc: RTCPeerConnection | None = None
        self.created_ns = clock.now_ns()
        self.ended_ns = 0
        self.end_reason = ""
        self.connected = False  # the peer connection reached "connected" at least once
        self._ended = False
        self._loop = asyncio.get_running_loop()
        self._connect_timer: asyncio.TimerHandle | None = None
        self._close_task: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        """Whether the session has ended (its peer connection may still be closing)."""
        return self._ended

    @property
    def connect_left_s(self) -> float:
        """Seconds until it is given up unless connected (``CONNECT_TIMEOUT_S`` from its
        negotiation); 0 once connected or ended."""
        timer = self._connect_timer
        return max(0.0, timer.when() - self._loop.time()) if timer is not None else 0.0

    def attach(self, pc: RTCPeerConnection) -> None:
        """Watch ``pc``: "connected" starts the session (``_on_connected``), "failed" or
        "closed" ends it; not connected within ``CONNECT_TIMEOUT_S`` ends it too."""
        self.pc = pc
        pc.on("connectionstatechange", self._state_changed)
        self._connect_timer = self._loop.call_later(CONNECT_TIMEOUT_S, self._connect_timeout)

    def _state_changed(self) -> None:
        pc = self.pc
        if pc is None or self._ended:
            return
        state = pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            if self._connect_timer is not None:
                self._connect_timer.cancel()
                self._connect_timer = None
            log.info("WebRTC %s session %s from %s connected", self.resource, self.id,
                     self.peer)
            self._on_connected()
        elif state in ("failed", "closed"):
            self.end(f"peer connection {state}")

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        if not self.connected:
            self.end(f"not connected within {CONNECT_TIMEOUT_S:g} s")

    def _on_connected(self) -> None:
        """The peer connection is up (once)."""

    def _on_end(self, why: str, cut: bool) -> None:
        """The session ends (once): ``cut`` when the server cuts it rather than its peer
        leaving."""

    def end(self, why: str, *, cut: bool = False) -> None:
        """End the session now (``why`` goes to the log): its media stops, it leaves the
        registry, and its peer connection is closed in the background. No-op once ended."""
        if self._ended:
            return
        self._ended = True
        self.ended_ns = self.clock.now_ns()
        self.end_reason = why
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        log.info("WebRTC %s session %s from %s ended: %s", self.resource, self.id, self.peer,
                 why)
        try:
            self._on_end(why, cut)
        finally:
            self.registry.discard(self)
            pc = self.pc
            if pc is not None:
                self._close_task = self._loop.create_task(self._close(pc),
                                                          name=f"webrtc-close-{self.id}")
                self.registry.track(self._close_task)

    async def _close(self, pc: Any) -> None:
        try:
            await pc.close()
        except Exception:  # a peer connection that fails to close is logged, not raised
            log.exception("closing the peer connection of WebRTC session %s failed", self.id)

    async def stop(self, why: str = "stopped") -> None:
        """End the session as the server cuts it (``why`` to the log) and wait until its peer
        connection is closed."""
        self.end(why, cut=True)
        task = self._close_task
        if task is not None:
            await asyncio.shield(task)

    def describe(self) -> dict[str, Any]:
        """Status: id, resource, peer, state, age and end (ms)."""
        pc = self.pc
        return {
            "id": self.id, "resource": self.resource, "peer": self.peer,
            "state": "ended" if self._ended else pc.connectionState if pc is not None else "new",
            "created_ns": self.created_ns, "ended_ns": self.ended_ns or None,
            "end_reason": self.end_reason or None,
        }
