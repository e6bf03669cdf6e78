"""Child processes started beside the event loop.

``asyncio.create_subprocess_exec`` forks and waits for the child's ``exec`` on the loop's own
thread: 1 ms on a quiet machine, but the loop then waits on the child being scheduled, and a
supervised Mosquitto restarted while the audio plays held the loop 60-100 ms on a busy one.
``spawn`` runs ``subprocess.Popen`` on a worker thread instead, and gives back a ``Child``
with the part of ``asyncio.subprocess.Process`` a supervisor uses: ``pid``, ``returncode``,
``wait()`` (through a pidfd the loop watches: no thread waits on it), ``send_signal``,
``terminate``, ``kill`` and, when asked for, ``stderr`` as an ``asyncio.StreamReader``.

Linux only (``os.pidfd_open``, 5.3 and later); elsewhere ``wait`` falls back to a thread of
its own per child. A child started this way is not one asyncio's child watcher knows: only
its ``Child`` reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import Any


class Child:
    """A child process ``spawn`` started; ``wait`` reaps it (once, however many wait)."""

    def __init__(self, popen: subprocess.Popen[bytes], stderr: asyncio.StreamReader | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._popen = popen
        self.stderr = stderr
        self._loop = loop
        self._exited: asyncio.Future[int] = loop.create_future()
        self._watch()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (negative: the signal that ended it), else None."""
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """The exit status, once the child has ended (cancelling the wait leaves it be)."""
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        """Signal the child, unless it has been reaped already (its pid may be reused)."""
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _watch(self) -> None:
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux, or an old kernel: a thread waits
            threading.Thread(target=self._wait_thread, name=f"wait-{self.pid}",
                             daemon=True).start()
            return

        def readable() -> None:  # the child has ended: reaping it now does not block
            self._loop.remove_reader(fd)
            os.close(fd)
            self._done(self._popen.wait())

        self._loop.add_reader(fd, readable)

    def _wait_thread(self) -> None:
        code = self._popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._done, code)

    def _done(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)


async def spawn(argv: Sequence[str], *, stderr_pipe: bool = False, **popen: Any) -> Child:
    """Start ``argv`` beside the loop (``subprocess.Popen`` with ``popen``'s keywords, stdin
    and stdout to /dev/null unless given; ``stderr_pipe``: its stderr readable as
    ``Child.stderr``). Raises what ``Popen`` raises (``FileNotFoundError``…)."""
    loop = asyncio.get_running_loop()
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("stdout", subprocess.DEVNULL)
    if stderr_pipe:
        popen["stderr"] = subprocess.PIPE
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv), **popen)

    process = await asyncio.to_thread(start)
    reader = None
    if stderr_pipe:
        assert process.stderr is not None
        reader = asyncio.StreamReader(loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                     process.stderr)
    return Child(process, reader, loop)
