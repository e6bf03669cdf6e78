"""The media library: uploads judged by decoding, stored content-addressed, measured for
loudness, and played back normalised to the station's target. A disk with no room for an
upload raises ``DiskFull`` (the API answers 507) and leaves nothing behind."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loa.codecs.decode import DecodeError
from loa.codecs.loudness import MEASURER, level_gain
from loa.control.store import Store
from loa.core.disk import PART_SUFFIX, writing
from loa.core.i18n import N_, Explained
from loa.core.text import nfc

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
# an upload that does not decode: named as the caller sent it, never by the server's paths
# or the decoder's words (they go to the log)
NOT_AUDIO = N_("{filename!r} is not audio Loa can read: send a sound file (MP3, WAV, Ogg, "
               "FLAC, AAC or M4A)")
MAX_TAGS = 20


class MediaError(Explained, ValueError):
    """A refused upload or operation; the message says why."""


@dataclass
class MediaItem:
    """One file of the library: content-addressed by ``sha256``, with its measured duration
    (s), integrated loudness (LUFS, None if not measured) and sample peak (full scale 1.0).
    ``zone``: whose it is, the scope of its uploader (None: the whole station's)."""

    id: str
    sha256: str
    filename: str
    title: str
    duration_s: float
    loudness_lufs: float | None
    uploader: str
    path: str
    tags: list[str] = field(default_factory=list)
    created_at: float = 0.0
    peak: float = 1.0  # largest sample magnitude, full scale 1.0
    zone: str | None = None

    def describe(self) -> dict[str, Any]:
        """The API view (everything but the path on disk)."""
        d = asdict(self)
        d.pop("path")
        return d


class MediaLibrary:
    """The library's items, indexed in memory (loaded once from the store at construction,
    kept up to date on add and delete), so ``get`` and ``list`` never touch the database: the
    scheduler calls them on the event loop as a slot starts. Files live under ``root`` as
    ``<sha[:2]>/<sha256>``; hashing, writing and measuring an upload run in the executor."""

    def __init__(self, store: Store, root: Path, target_lufs: float) -> None:
        self.store = store
        self.root = root
        self.target_lufs = target_lufs
        self._items: dict[str, MediaItem] = {  # oldest first, as the store lists them
            rec["id"]: MediaItem(**rec) for rec in store.list_media()}

    async def add(self, data: bytes, filename: str, uploader: str, title: str = "",
                  tags: list[str] | None = None, zone: str | None = None
                  ) -> tuple[MediaItem, bool]:
        """Store bytes already in memory (the API streams uploads to disk and calls
        ``add_file``). Returns (item, created): the same bytes twice from one owner are one
        item.
        Raises MediaError when it does not decode as audio, DiskFull when the disk has no
        room for it."""
        tmp, sha = await asyncio.get_running_loop().run_in_executor(None, self._write, data)
        return await self.add_file(tmp, sha, filename, uploader, title, tags, zone)

    def _write(self, data: bytes) -> tuple[Path, str]:
        """In the executor: the bytes aside in ``incoming``, and their SHA-256. Raises
        DiskFull (nothing left behind)."""
        tmp = self.incoming / f"{secrets.token_hex(8)}{PART_SUFFIX}"  # never shared
        with writing("the upload"):
            self.incoming.mkdir(parents=True, exist_ok=True)
            try:
                tmp.write_bytes(data)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return tmp, _sha256(data)

    @property
    def incoming(self) -> Path:
        """Where uploads are written while they arrive (swept of leftovers at start)."""
        return self.root / ".incoming"

    async def add_file(self, tmp: Path, sha: str, filename: str, uploader: str,
                       title: str = "", tags: list[str] | None = None,
                       zone: str | None = None) -> tuple[MediaItem, bool]:
        """Take an upload already written to ``tmp`` (in ``incoming``) with its SHA-256:
        judged by decoding it all, measured, moved into place, in the executor. ``tmp`` is
        gone afterwards whatever happens. File name, title and tags are kept in NFC (a Mac
        sends names decomposed). ``zone``: whose the item is (None: the station's).

        One item per recording and owner: the same audio from the same owner (``zone``) is
        the item already there (``created`` False, its title and tags kept). The same audio
        from another owner (another commune) is an item of its own, with its own id, title
        and tags, so the uploader has an item they may use and never sees another's; the
        audio is stored once on the disk, and measured once. Returns (item, created); raises
        MediaError, or DiskFull when the disk has no room to move it into place."""
        filename, title = nfc(filename), nfc(title)
        tags = [nfc(t.strip()) for t in (tags or []) if t.strip()][:MAX_TAGS]
        loop = asyncio.get_running_loop()
        existing = self._owned(sha, zone)
        if existing is not None:
            await loop.run_in_executor(None, functools.partial(tmp.unlink, missing_ok=True))
            return existing, False
        stored = await loop.run_in_executor(None, self._stored, sha)
        # still there (a deletion meanwhile would remove the file): its file and measures,
        # taken in this step of the loop, so a deletion from now on sees the new item too
        shared = stored is not None and self._items.get(stored.id) is stored
        if stored is not None and shared:
            final, measured = Path(stored.path), (stored.duration_s, stored.loudness_lufs,
                                                  stored.peak)
        else:
            try:
                final, measured = await loop.run_in_executor(
                    None, self._place, tmp, sha, filename)
            except DecodeError as exc:  # why, with the server's paths, for the log alone
                log.info("upload %r refused: %s", filename, exc)
                raise MediaError(NOT_AUDIO, filename=filename) from None
        item = self._owned(sha, zone)  # the same bytes came twice at once: one item
        created = item is None
        if item is None:
            duration_s, lufs, peak = measured
            media_id = self._new_id(sha, zone)
            item = MediaItem(media_id, sha, filename,
                             (title or Path(filename).stem)[:MAX_TITLE_CHARS],
                             round(duration_s, 3), None if lufs is None else round(lufs, 2),
                             uploader, str(final), tags, time.time(), round(peak, 5), zone)
            self._items[media_id] = item
            self.store.save_media(media_id, asdict(item))
        if shared:  # the upload itself was not needed
            await loop.run_in_executor(None, functools.partial(tmp.unlink, missing_ok=True))
        return item, created

    def _owned(self, sha: str, zone: str | None) -> MediaItem | None:
        """The item of ``zone`` (None: the station) that holds the audio ``sha``, if any."""
        return next((i for i in self._items.values() if i.sha256 == sha and i.zone == zone),
                    None)

    def _stored(self, sha: str) -> MediaItem | None:
        """In the executor: an item (any owner's) whose file of the audio ``sha`` is on the
        disk, or None."""
        for item in list(self._items.values()):
            if item.sha256 == sha and Path(item.path).is_file():
                return item
        return None

    def _new_id(self, sha: str, zone: str | None) -> str:
        """A new item's id: 16 hex digits, the audio's hash for the station's item (as every
        item's id was when the library kept one item per recording), a hash of the owner and
        the audio for a zone's; another when an item of a library of before holds it."""
        base = sha if zone is None else hashlib.sha256(f"{zone}\n{sha}".encode()).hexdigest()
        media_id, n = base[:16], 0
        while media_id in self._items:
            n += 1
            media_id = hashlib.sha256(f"{base}\n{n}".encode()).hexdigest()[:16]
        return media_id

    def _place(self, tmp: Path, sha: str, filename: str
               ) -> tuple[Path, tuple[float, float | None, float]]:
        """In the executor: judge it by decoding it all, then move it to its content-addressed
        place. A refused upload leaves nothing behind."""
        try:
            measured = _measure(tmp, filename)
            final = self.root / sha[:2] / sha
            with writing("the upload"):
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final, measured

    def get(self, media_id: str) -> MediaItem | None:
        """The item, or None; from memory, safe on the loop."""
        return self._items.get(media_id)

    def list(self) -> list[MediaItem]:
        """Every item, oldest first; from memory, safe on the loop."""
        return list(self._items.values())

    async def delete(self, media_id: str) -> MediaItem:
        """Forget the item and remove its file (in the executor), unless another owner's
        item holds the same audio (the file is theirs too). Raises KeyError."""
        item = self._items.pop(media_id, None)
        if item is None:
            raise KeyError(media_id)
        self.store.delete_media(media_id)
        if not any(other.path == item.path for other in self._items.values()):
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(Path(item.path).unlink, missing_ok=True))
        return item

    def gain(self, item: MediaItem) -> float:
        """To the loudness target, but never so much that the file's peaks would clip (there
        is no limiter yet: a quiet file with loud peaks plays under the target)."""
        return level_gain(item.loudness_lufs, item.peak, self.target_lufs)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _measure(path: Path, label: str) -> tuple[float, float | None, float]:
    """Decode it all (the only honest check that it is audio): duration, loudness, peak.
    In the measuring process: a long file's loudness filter would hold this one's GIL."""
    return MEASURER.measure(str(path), label)
