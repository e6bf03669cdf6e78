"""Request-body framing on the raw routes (Icecast-style sources), where no HTTP library reads
the body for us.

An Icecast source streams its body unframed until it hangs up; an HTTP/1.1 client may frame it
instead, with ``Content-Length`` or ``Transfer-Encoding: chunked`` (some newer source clients
send chunked). `body_reader` picks the reader for a request's head, or refuses a framing this
route cannot undo (a ``Content-Encoding``, a transfer coding other than chunked), so that no
framing byte ever reaches a decoder. Each reader is pure and incremental: ``feed`` takes bytes
as TCP delivers them, split anywhere, and returns the body bytes among them; memory is bounded
by a line (a chunk-size line or a trailer), never by a chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

MAX_LINE_BYTES = 1024  # a chunk-size line with its extensions, or one trailer line
MAX_TRAILER_BYTES = 16 * 1024  # all trailer lines together (the size of a request head)
MAX_SIZE_DIGITS = 15  # hex digits of a chunk size: below 2**60 bytes


class FramingError(ValueError):
    """A request whose body framing cannot be read: ``status`` is the HTTP status to answer
    (400 malformed, 415 a content coding, 501 an unknown transfer coding). Raised by ``feed``,
    ``body`` holds the body bytes of that call read before the fault."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: list[bytes] = []


class BodyReader(Protocol):
    """Turns the bytes after a request head into body bytes, incrementally."""

    @property
    def done(self) -> bool:
        """Whether the body has ended (bytes fed after it are ignored)."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """The body bytes in ``data``, in order (empty pieces left out). Raises FramingError
        (status 400) on malformed framing."""
        ...


class UntilClose:
    """No framing: everything is body until the client hangs up (what Icecast sources do)."""

    done = False

    def feed(self, data: bytes) -> list[bytes]:
        """All of ``data``."""
        return [data] if data else []


class Sized:
    """A body of ``Content-Length`` bytes; what follows it is not body."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    @property
    def done(self) -> bool:
        """Whether all ``length`` bytes have been fed."""
        return self.remaining == 0

    def feed(self, data: bytes) -> list[bytes]:
        """The first bytes of ``data`` up to the declared length."""
        if not self.remaining or not data:
            return []
        piece = data if len(data) <= self.remaining else data[: self.remaining]
        self.remaining -= len(piece)
        return [piece]


class Chunked:
    """``Transfer-Encoding: chunked`` (RFC 9112 section 7.1): size lines in hex (extensions
    ignored), each chunk's data followed by CRLF, a zero-size last chunk, optional trailers, a
    blank line. Bare LF is taken for CRLF, as most servers do. A size line or trailer longer
    than ``MAX_LINE_BYTES``, trailers over ``MAX_TRAILER_BYTES``, a size that is not hex or
    data not followed by its CRLF raise FramingError(400)."""

    def __init__(self) -> None:
        self._state = "size"  # size, data, data-end, trailer, done
        self._line = bytearray()  # the partial size or trailer line
        self._left = 0  # bytes of the current chunk's data still to come
        self._trailer_bytes = 0
        self.chunks = 0  # chunks read, the last (empty) one included

    @property
    def done(self) -> bool:
        """Whether the last chunk and the trailers have been read."""
        return self._state == "done"

    def feed(self, data: bytes) -> list[bytes]:
        """The chunk data in ``data``; framing bytes are consumed."""
        out: list[bytes] = []
        try:
            self._feed(data, out)
        except FramingError as exc:
            exc.body = out
            raise
        return out

    def _feed(self, data: bytes, out: list[bytes]) -> None:
        i, n = 0, len(data)
        while i < n and self._state != "done":
            if self._state == "data":
                take = min(self._left, n - i)
                out.append(data[i : i + take])
                i += take
                self._left -= take
                if not self._left:
                    self._state = "data-end"
            elif self._state == "data-end":
                # the CRLF after a chunk's data, possibly split across reads
                byte = data[i : i + 1]
                i += 1
                if byte == b"\n":
                    self._state = "size"
                    self._line.clear()
                elif byte == b"\r" and not self._line:
                    self._line += byte
                else:
                    raise FramingError(400, f"chunk {self.chunks} is longer than its size line "
                                            "says (its data is not followed by CRLF)")
            else:
                end = data.find(b"\n", i)
                stop = n if end < 0 else end
                self._line += data[i:stop]
                if len(self._line) > MAX_LINE_BYTES:
                    what = "chunk-size line" if self._state == "size" else "trailer line"
                    raise FramingError(400, f"{what} longer than {MAX_LINE_BYTES} bytes")
                if end < 0:
                    break
                i = end + 1
                line = bytes(self._line.rstrip(b"\r"))
                self._line.clear()
                if self._state == "size":
                    self._size_line(line)
                else:
                    self._trailer_line(line)

    def _size_line(self, line: bytes) -> None:
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if not size_text or len(size_text) > MAX_SIZE_DIGITS or not all(
                c in b"0123456789abcdefABCDEF" for c in size_text):
            shown = line[:40].decode("latin-1")
            raise FramingError(400, f"malformed chunk-size line {shown!r} (chunk {self.chunks})")
        self.chunks += 1
        self._left = int(size_text, 16)
        self._state = "data" if self._left else "trailer"

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._state = "done"
            return
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise FramingError(400, f"trailers longer than {MAX_TRAILER_BYTES} bytes")


def body_reader(headers: Mapping[str, str]) -> BodyReader:
    """The reader for a request's body, from its headers (names lower-cased, as in
    ``RequestHead.headers``): chunked, ``Content-Length`` or, with neither, until the client
    hangs up. Raises FramingError: 415 for a ``Content-Encoding`` other than identity (the
    stream must come as it is), 501 for a transfer coding other than chunked, 400 for a bad
    or conflicting ``Content-Length``."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding and coding != "identity":
        raise FramingError(415, f"Content-Encoding {coding!r} is not supported here: "
                                "send the stream as it is")
    transfer = [c.strip().lower() for c in headers.get("transfer-encoding", "").split(",")]
    transfer = [c for c in transfer if c and c != "identity"]
    length = headers.get("content-length")
    if transfer:
        if transfer != ["chunked"]:
            raise FramingError(501, f"Transfer-Encoding {', '.join(transfer)!r} is not "
                                    "supported here: send it unframed or chunked")
        if length is not None:
            raise FramingError(400, "both Transfer-Encoding and Content-Length: send one")
        return Chunked()
    if length is not None:
        text = length.strip()
        if not text or len(text) > 18 or not all(c in "0123456789" for c in text):
            raise FramingError(400, f"malformed Content-Length {length[:40]!r}")
        return Sized(int(text))
    return UntilClose()
