"""A source's connection read by its decoder thread (``SourceSocket``): real connected socket
pairs, the reader on a thread of its own as the decoder runs it."""

from __future__ import annotations

import socket
import threading
import time

from loa.playout.inputs.source_socket import SourceSocket
from loa.protocol.framing import Chunked, Sized, UntilClose


def read_all(reader: SourceSocket) -> bytes:
    out = b""
    while data := reader.read(4096):
        out += data
    return out


def test_it_reads_what_comes_until_the_source_hangs_up() -> None:
    ours, theirs = socket.socketpair()
    faults: list[str] = []
    reader = SourceSocket(ours, UntilClose(), b"head-", faults.append)
    got: list[bytes] = []
    thread = threading.Thread(target=lambda: got.append(read_all(reader)))
    thread.start()
    for piece in (b"one-", b"two-", b"three"):
        theirs.sendall(piece)
    theirs.close()  # the source hangs up
    thread.join(5)
    assert got == [b"head-one-two-three"] and faults == []
    assert reader.bytes_in == len(got[0])
    reader.release()


def test_a_framed_body_ends_where_its_framing_says() -> None:
    ours, theirs = socket.socketpair()
    reader = SourceSocket(ours, Sized(10), b"", lambda why: None)
    theirs.sendall(b"0123456789 and what follows is not body")
    assert read_all(reader) == b"0123456789"  # the end, with the connection still open
    theirs.close()
    reader.release()


def test_malformed_chunks_end_the_body_after_what_came_before_and_say_why() -> None:
    ours, theirs = socket.socketpair()
    faults: list[str] = []
    reader = SourceSocket(ours, Chunked(), b"", faults.append)
    theirs.sendall(b"5\r\nhello\r\nzz\r\n")  # a size that is not hex
    assert read_all(reader) == b"hello"
    assert len(faults) == 1 and faults[0].startswith("malformed body:")
    theirs.close()
    reader.release()


def test_close_wakes_a_blocked_read_at_once_and_leaves_the_connection_writable() -> None:
    ours, theirs = socket.socketpair()
    reader = SourceSocket(ours, UntilClose(), b"", lambda why: None)
    got: list[bytes] = []
    first = threading.Event()

    def decoder() -> None:
        got.append(reader.read(4096))
        first.set()
        got.append(reader.read(4096))  # nothing more comes: it blocks here

    thread = threading.Thread(target=decoder)
    thread.start()
    theirs.sendall(b"audio")
    assert first.wait(5)
    started = time.monotonic()
    reader.close()
    thread.join(5)
    assert got == [b"audio", b""] and time.monotonic() - started < 0.5  # not the 1 s poll
    ours.sendall(b"HTTP/1.1 200 OK\r\n\r\n")  # the loop can still answer on it
    assert theirs.recv(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    reader.release()
    theirs.close()
