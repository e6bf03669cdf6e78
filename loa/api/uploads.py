"""Multipart uploads written to disk as they arrive: hashed and written beside the loop a
megabyte at a time, refused while still arriving once over their limit, or when the disk
has no room for them (``DiskFull``, answered 507). A refused upload leaves no file behind; one
cut short by a killed server leaves a ``*.part`` that the next start removes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from loa.core.disk import PART_SUFFIX, DiskFull, writing
from loa.core.i18n import N_, Explained

UPLOAD_WRITE_BYTES = 1 << 20  # gathered, then written and hashed beside the loop


class UploadTooLarge(Explained, ValueError):
    """A multipart file part over its size limit (the error table answers 413)."""


@dataclass
class Upload:
    """A file part kept on disk while it arrived: its temp path, SHA-256 and size. The caller
    moves it into place or calls ``discard``. ``refused``: the disk had no room for it (only
    when the caller asked to go on without it): nothing is kept, ``sha256`` is empty and
    ``size`` is what arrived."""

    filename: str
    path: Path
    sha256: str
    size: int
    refused: DiskFull | None = None

    def discard(self) -> None:
        """Blocking (an unlink): call beside the loop, or accept a few microseconds."""
        self.path.unlink(missing_ok=True)


async def read_multipart(request: web.Request, limit_bytes: int, incoming: Path, *,
                         without_room: bool = False
                         ) -> tuple[dict[str, str], dict[str, Upload]]:
    """Text fields, and files written to ``incoming`` as they arrive (hashing and writing run
    beside the loop, a megabyte at a time); a file over ``limit_bytes`` is refused while it is
    still arriving and leaves nothing behind. Raises UploadTooLarge for that, DiskFull when
    the disk has no room for a file (nothing left behind either; ``without_room``: the file
    is read to its end and dropped, and its ``Upload`` says why, so that the other parts are
    read), ValueError for a nested multipart part."""
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    try:
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise ValueError(N_("nested multipart is not accepted"))
            name = part.name or ""
            if part.filename is None:
                fields[name] = await part.text()
                continue
            files[name] = await _receive_file(part, limit_bytes, incoming, without_room)
    except BaseException:
        for upload in files.values():
            await asyncio.to_thread(upload.discard)
        raise
    return fields, files


def upload_name(raw: str | None) -> str:
    """The name a file part was sent under, as people know it: percent-decoded (RFC 7578,
    4.2: aiohttp's client, and so ``loa media add``, sends ``bản-tin.mp3`` as
    ``b%E1%BA%A3n-tin.mp3``; browsers send ``"`` as ``%22``), when that decodes as UTF-8;
    without the folders an old browser sends in front of it; ``upload`` for none."""
    name = raw or ""
    if "%" in name:
        try:
            name = unquote(name, errors="strict")
        except UnicodeDecodeError:
            pass  # not percent-encoding after all: the name as it came
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name or "upload"


async def _receive_file(part: BodyPartReader, limit_bytes: int, incoming: Path,
                        without_room: bool) -> Upload:
    filename = upload_name(part.filename)
    path = incoming / f"{secrets.token_hex(8)}{PART_SUFFIX}"
    received = [0]  # bytes arrived so far, whatever became of them
    try:
        return await _write_file(part, filename, limit_bytes, path, received)
    except DiskFull as exc:
        if not without_room:
            raise
        while chunk := await part.read_chunk(65536):  # the rest of it, read and dropped
            received[0] += len(chunk)
            if received[0] > limit_bytes:
                raise UploadTooLarge(N_("{filename}: over the {limit_mib} MiB limit"),
                                     filename=filename, limit_mib=limit_bytes >> 20) from None
        return Upload(filename, path, "", received[0], refused=exc)


async def _write_file(part: BodyPartReader, filename: str, limit_bytes: int, path: Path,
                      received: list[int]) -> Upload:
    """The part written to ``path`` as it arrives (``received[0]`` counts its bytes).
    Raises UploadTooLarge or DiskFull, leaving nothing behind."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    pending = 0
    with writing(f"the upload {filename!r}"):
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        out = await asyncio.to_thread(open, path, "wb")
        try:
            while chunk := await part.read_chunk(65536):
                received[0] += len(chunk)
                if received[0] > limit_bytes:
                    raise UploadTooLarge(N_("{filename}: over the {limit_mib} MiB limit"),
                                         filename=filename, limit_mib=limit_bytes >> 20)
                chunks.append(chunk)
                pending += len(chunk)
                if pending >= UPLOAD_WRITE_BYTES:
                    await asyncio.to_thread(_write_hashed, out, digest, chunks)
                    chunks, pending = [], 0
            await asyncio.to_thread(_write_hashed, out, digest, chunks)
            await asyncio.to_thread(out.close)  # its last bytes may be refused here
        except BaseException:
            await asyncio.to_thread(_close_and_unlink, out, path)
            raise
    return Upload(filename, path, digest.hexdigest(), received[0])


def _write_hashed(out: Any, digest: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
        out.write(chunk)


def _close_and_unlink(out: Any, path: Path) -> None:
    """Give up a file being written: closed (its buffered bytes may be refused again: the
    error that got us here is the one to raise) and removed."""
    try:
        with contextlib.suppress(OSError):
            out.close()
    finally:
        path.unlink(missing_ok=True)
