"""One server per data folder: ``loa-data/loa.lock`` is held (``flock``) for as long as the
server runs, and says who holds it (pid and address), so a second ``loa serve`` on the same
folder refuses to start with a message naming the first, instead of two servers writing one
database. The kernel drops the lock when the holder dies, so a crash leaves nothing to clean."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from loa.core.i18n import N_, Explained, Message


class DataDirBusy(Explained, OSError):
    """Another server holds the data folder; the message (in the reader's language, ``say``)
    names the folder by its absolute path and the holder by pid and address (an OSError:
    `loa serve` says it and exits 1, as for a taken port)."""


class DataLock:
    """The lock on one data folder (blocking file calls: at start and stop only)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(os.path.abspath(data_dir)) / "loa.lock"  # named in messages
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DataDirBusy saying who has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            os.close(fd)
            if not holder:
                who = Message(N_("another process"))
            elif holder.get("url"):
                who = Message(N_("pid {pid}, {url}"), {"pid": holder.get("pid"),
                                                      "url": holder["url"]})
            else:
                who = Message(N_("pid {pid}, starting"), {"pid": holder.get("pid")})
            raise DataDirBusy(N_("the data folder {folder} is in use by another Loa ({who}): "
                                 "stop it, or give this one its own --data-dir"),
                              folder=str(self.path.parent), who=who) from None
        self._fd = fd
        self.note(None)

    def note(self, url: str | None) -> None:
        """Write the holder's pid and (once listening) its URL into the lock file."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def holder(self) -> dict[str, Any]:
        """What the lock file says of its holder ({} when unreadable)."""
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        """Let the folder go (the file stays; an unlocked file holds nobody)."""
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
