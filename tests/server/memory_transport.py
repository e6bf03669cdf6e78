"""An in-memory stream transport for protocol tests: no sockets, no sleeps.

It keeps every write, models the send buffer's high-water mark (``pause_writing`` on the
protocol the moment a write takes the unsent bytes over ``high``, ``resume_writing`` once
``drain`` brings them to ``low``), and delivers ``connection_lost`` only when the test says so,
as asyncio does on a later loop turn.
"""

from __future__ import annotations

from typing import Any

DEFAULT_HIGH = 64 * 1024


class MemoryTransport:
    def __init__(self, protocol: Any = None, *,
                 peername: tuple[str, int] = ("203.0.113.7", 40000)) -> None:
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.unsent = 0  # bytes written and not yet drained by the (imaginary) peer
        self.high = DEFAULT_HIGH
        self.low = DEFAULT_HIGH // 4
        self.closed = False
        self.aborted = False
        self._paused = False
        self._lost = False
        self._extra = {"peername": peername}

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    # asyncio.Transport, as far as the code under test uses it

    def write(self, data: bytes) -> None:
        if self.closed:
            return  # asyncio drops writes to a closing transport
        self.writes.append(bytes(data))
        self.unsent += len(data)
        if not self._paused and self.unsent > self.high:
            self._paused = True
            self.protocol.pause_writing()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = DEFAULT_HIGH if high is None else high
        self.low = self.high // 4 if low is None else low

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        self.aborted = True
        self.unsent = 0

    # the test's side

    def drain(self, n: int | None = None) -> None:
        """The peer reads ``n`` bytes (all, by default)."""
        self.unsent = 0 if n is None else max(0, self.unsent - n)
        if self._paused and self.unsent <= self.low:
            self._paused = False
            self.protocol.resume_writing()

    def lose_connection(self, exc: Exception | None = None) -> None:
        """What the loop does after a close or a peer reset: ``connection_lost``, once."""
        if not self._lost:
            self._lost = True
            self.closed = True
            self.protocol.connection_lost(exc)


def ws_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split a server's (unmasked) WebSocket byte stream into (opcode, payload) frames."""
    frames = []
    i = 0
    while i < len(data):
        opcode = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        elif n == 127:
            n = int.from_bytes(data[i : i + 8], "big")
            i += 8
        frames.append((opcode, data[i : i + n]))
        i += n
    assert i == len(data), "the stream ends inside a frame"
    return frames
