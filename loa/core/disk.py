"""The data disk refusing to grow, and the temporary files a write leaves while it is under way.

A full disk reaches Python in three forms, all of which mean "no room for these bytes":
``ENOSPC`` (the filesystem is full), ``EDQUOT`` (the user's quota is), and ``EFBIG`` (the file
would pass the process's file-size limit, ``ulimit -f`` / systemd ``LimitFSIZE``, or the
filesystem's largest file). Code that writes turns them into ``DiskFull``, whose message says
what could not be written, so the API answers 507 with it and an alert's warnings name it.

Every file Loa writes aside before moving it into place is named ``*.part`` (``PART_SUFFIX``);
one left behind by a process that was killed mid-write is removed at the next start
(``sweep_partials``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from loa.core.i18n import N_, Message

# each errno that means "no room", and how the operator is told
DISK_FULL_REASONS = {
    errno.ENOSPC: Message(N_("no space left on the device")),
    errno.EDQUOT: Message(N_("over the disk quota")),
    errno.EFBIG: Message(N_("over the process's file-size limit")),
}
DISK_FULL_ERRNOS = frozenset(DISK_FULL_REASONS)
PART_SUFFIX = ".part"


class DiskFull(OSError):
    """A write the disk refused for want of room. ``str(exc)`` is the message for the
    operator (what could not be written, and the system's reason); ``errno`` is the original
    one (``ENOSPC``, ``EDQUOT`` or ``EFBIG``). An ``OSError``, so code that already passes
    over a failed write (a CAP resource, an alert's message) passes over this one too."""

    def __init__(self, what: str | Message, code: int = errno.ENOSPC) -> None:
        reason = DISK_FULL_REASONS.get(code)
        self.message = Message(N_("the data disk is full: {what} cannot be written ({reason})"),
                               {"what": what, "reason": reason or os.strerror(code)})
        super().__init__(code, str(self.message))

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` that means the disk has no room (``DiskFull`` too)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Around code that writes to the disk: an ``OSError`` that means the disk is full leaves
    the block as ``DiskFull`` naming ``what`` ("the upload", "the text read aloud"); every other
    error passes unchanged. Usable around awaits too."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFull(what, exc.errno) from exc
        raise


def part_path(final: Path) -> Path:
    """A fresh temporary name beside ``final`` (same folder, so the move into place is a
    rename): ``<name>.<random>.part``, never shared by two writers."""
    return final.with_name(f"{final.name}.{secrets.token_hex(4)}{PART_SUFFIX}")


def write_atomically(final: Path, data: bytes, what: str) -> None:
    """Write ``data`` aside and move it to ``final`` (blocking): readers see the whole file or
    none, and a failed write leaves nothing behind. Raises ``DiskFull`` when the disk has no
    room, another ``OSError`` for any other failure."""
    tmp = part_path(final)
    with writing(what):
        try:
            tmp.write_bytes(data)
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def sweep_partials(folders: Iterable[Path]) -> list[tuple[Path, int]]:
    """Remove the ``*.part`` files directly in each folder (blocking: call it beside the loop,
    at start, before anything writes). A folder that does not exist is skipped; links and
    folders are left alone. Returns what was removed, with each file's size in bytes."""
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if not entry.name.endswith(PART_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                size = entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append((Path(entry.path), size))
    return removed
