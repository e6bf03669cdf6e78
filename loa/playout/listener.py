"""The public port's listening sockets, and an accept loop that lets admission keep up.

``loop.create_server`` accepts every connection waiting in the kernel's queue at once (up to
its backlog, 4,096) before any protocol hears of one; uvloop does the same. A burst of idle
connections larger than the descriptor reserve therefore ran the process out of descriptors
before admission could close a single idle one: asyncio then stopped accepting for a second at
a time (``socket.accept() out of system resource``) while the queue, in arrival order, held the
API's connection behind hundreds of idle ones; libuv instead accepts and closes the whole queue.
Measured (issue 13, 600 idle connections at ``ulimit -n 512``): the API answered after 5.5 s.

So Loa accepts itself: at most ``ACCEPT_BATCH`` connections per wake-up, and each accepted
socket is reported to admission (``Admission.accepted``) before the next is taken, so that the
oldest idle connections are closed while descriptors remain. Should the process run out all the
same (descriptors held elsewhere), accepting pauses for ``EMFILE_PAUSE_S`` and resumes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from loa.core.i18n import N_, Explained, Message
from loa.playout.admission import Admission

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 4096  # the kernel's queue: a reconnect storm of thousands of endpoints
EMFILE_PAUSE_S = 0.1
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# why a port cannot be listened on, in words a station engineer acts on (else the OS's text)
LISTEN_REASONS = {
    errno.EADDRINUSE: N_("the port is already in use (another server, or another Loa?): "
                         "stop it, or give this one another port with --listen"),
    errno.EACCES: N_("permission denied (a port below 1024 needs the right to bind it): "
                     "use a port from 1024 up"),
    errno.EADDRNOTAVAIL: N_("this machine has no such address"),
    socket.EAI_NONAME: N_("no address has that name"),
}


class ListenError(Explained, OSError):
    """The public port cannot be listened on: the message names the address and why, in the
    reader's language (``say``); ``errno`` is the operating system's."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        known = LISTEN_REASONS.get(exc.errno or 0)
        reason: object = (Message(known) if known
                          else exc.strerror or str(exc) or type(exc).__name__)
        super().__init__(N_("cannot listen on {address}: {reason}"),
                         address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                         reason=reason)
        self.errno = exc.errno


def bind_sockets(host: str, port: int, infos: Iterable[tuple[Any, Any, int, str, Any]]
                 ) -> list[socket.socket]:
    """Bound, non-blocking, listening TCP sockets, one for each address ``getaddrinfo`` gave
    (``infos``), as ``loop.create_server`` makes them (``SO_REUSEADDR``; IPv6 sockets IPv6
    only). Raises ListenError (an OSError) naming the address that cannot be bound."""
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(host, port, exc) from None
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class PublicListener:
    """Accepts connections on ``sockets`` and hands each, as a transport, to a protocol made by
    ``protocol_factory``, telling ``admission`` of every accepted descriptor first. ``close``
    stops accepting; ``wait_closed`` waits for the connections being set up.

    ``accept_batch``: connections accepted per wake-up, at most (a quarter of the reserve by
    default: admission hears of them before the reserve could run out)."""

    def __init__(self, sockets: list[socket.socket],
                 protocol_factory: Callable[[], asyncio.Protocol], admission: Admission,
                 accept_batch: int | None = None) -> None:
        self.sockets = sockets
        self._factory = protocol_factory
        self._admission = admission
        self._batch = accept_batch or max(8, min(64, admission.reserve // 4))
        self._loop = asyncio.get_running_loop()
        self._setting_up: set[asyncio.Task[None]] = set()
        self._serving = False

    @classmethod
    async def open(cls, host: str, port: int, protocol_factory: Callable[[], asyncio.Protocol],
                   admission: Admission) -> PublicListener:
        """Bind ``host:port`` (every address the name resolves to) and start accepting."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
        except OSError as exc:
            raise ListenError(host, port, exc) from None
        listener = cls(bind_sockets(host, port, infos), protocol_factory, admission)
        listener.start()
        return listener

    def start(self) -> None:
        self._serving = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
        self._loop.call_later(EMFILE_PAUSE_S, self._resume)

    def _resume(self) -> None:
        if self._serving:
            self.start()

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(self._batch):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    log.error("out of descriptors accepting connections (%s): paused %g s",
                              exc.strerror, EMFILE_PAUSE_S)
                    self._admission.relieve()  # closes idle connections if it can
                    self._pause()
                    return
                continue  # the client left before we took it (ECONNABORTED)
            conn.setblocking(False)
            self._admission.accepted(conn.fileno())
            task = self._loop.create_task(self._connect(conn))
            self._setting_up.add(task)
            task.add_done_callback(self._setting_up.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            transport, _ = await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as exc:
            log.warning("an accepted connection could not be set up: %s", exc)
            conn.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() != conn.fileno():
            conn.close()  # uvloop took a duplicate of the descriptor

    def close(self) -> None:
        """Stop accepting and close the listening sockets (again: nothing)."""
        self._serving = False
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                sock.close()

    async def wait_closed(self) -> None:
        """Until the connections accepted before ``close`` have their protocols."""
        if self._setting_up:
            await asyncio.wait(list(self._setting_up))
