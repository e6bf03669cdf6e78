"""The media library: uploads judged by decoding, stored content-addressed, measured for
loudness, and played back normalised to the station's target."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loa.codecs.decode import DecodeError
from loa.codecs.loudness import level_gain, measure_file
from loa.server.store import Store

MAX_TITLE_CHARS = 200
MAX_TAGS = 20


class MediaError(ValueError):
    """A refused upload or operation; the message says why."""


@dataclass
class MediaItem:
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

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


class MediaLibrary:
    def __init__(self, store: Store, root: Path, target_lufs: float) -> None:
        self.store = store
        self.root = root
        self.target_lufs = target_lufs

    async def add(self, data: bytes, filename: str, uploader: str, title: str = "",
                  tags: list[str] | None = None) -> tuple[MediaItem, bool]:
        """Store an upload. Returns (item, created): the same bytes twice are one item."""
        tags = [t.strip() for t in (tags or []) if t.strip()][:MAX_TAGS]
        sha = hashlib.sha256(data).hexdigest()
        media_id = sha[:16]
        existing = self.get(media_id)
        if existing is not None:
            return existing, False
        incoming = self.root / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = incoming / f"{sha}.part"
        tmp.write_bytes(data)
        try:
            duration_s, lufs, peak = await asyncio.get_running_loop().run_in_executor(
                None, _measure, tmp, filename)
        except DecodeError as exc:
            tmp.unlink(missing_ok=True)  # a refused upload leaves nothing behind
            raise MediaError(f"{filename}: not audio Loa can play ({exc})") from None
        final = self.root / sha[:2] / sha
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(final)
        item = MediaItem(media_id, sha, filename, (title or Path(filename).stem)[:MAX_TITLE_CHARS],
                         round(duration_s, 3), None if lufs is None else round(lufs, 2),
                         uploader, str(final), tags, time.time(), round(peak, 5))
        self.store.save_media(media_id, asdict(item))
        return item, True

    def get(self, media_id: str) -> MediaItem | None:
        rec = self.store.get_media(media_id)
        return MediaItem(**rec) if rec else None

    def list(self) -> list[MediaItem]:
        return [MediaItem(**rec) for rec in self.store.list_media()]

    def delete(self, media_id: str) -> MediaItem:
        item = self.get(media_id)
        if item is None:
            raise KeyError(media_id)
        self.store.delete_media(media_id)
        Path(item.path).unlink(missing_ok=True)
        return item

    def gain(self, item: MediaItem) -> float:
        """To the loudness target, but never so much that the file's peaks would clip (there
        is no limiter yet: a quiet file with loud peaks plays under the target)."""
        return level_gain(item.loudness_lufs, item.peak, self.target_lufs)


def _measure(path: Path, label: str) -> tuple[float, float | None, float]:
    """Decode it all (the only honest check that it is audio): duration, loudness, peak."""
    return measure_file(str(path), label)
