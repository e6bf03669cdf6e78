"""Content → programme, the only place: requests, schedule slots and alerts all turn a
``ContentSpec`` (``loa.core.content``) into something the engine can play here.

Three steps, so that nothing slow runs on the loop or in the tick:

- ``check`` (on the loop, no I/O): what can be judged at once, a library item that is gone,
  text that cannot be read aloud, a bad mount name;
- ``prepare`` (awaited, the slow part beside the loop): a file found and opened as audio,
  text synthesised into the cache, a CAP resource fetched and its digest checked;
- ``build`` (synchronous, cheap): the programme, its file read ahead by the reader pool.

``make`` does all three for a request made now; a schedule item is checked and prepared when
it is saved, and built when its slot starts. What is written on the way (text read aloud, a CAP
resource) raises ``DiskFull`` (an ``OSError``, not a ``ContentError``) when the disk has no
room: the API answers 507, an alert plays its tone and says why.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from loa.codecs.decode import DecodeError, FrameDecoder
from loa.codecs.loudness import Leveller
from loa.codecs.tts import Tts, TtsError
from loa.control.media import MediaItem, MediaLibrary
from loa.core.clock import Clock
from loa.core.content import (
    DEFAULT_MOUNT,
    CapResourceContent,
    ContentError,
    ContentSpec,
    FileContent,
    LiveContent,
    MediaContent,
    PlaylistContent,
    RelayContent,
    TextContent,
    ToneContent,
)
from loa.core.counters import Counters
from loa.core.disk import write_atomically, writing
from loa.core.i18n import N_, Explained, Message
from loa.core.text import nfc
from loa.playout.inputs.file import FileSource
from loa.playout.inputs.generator import tone_source
from loa.playout.inputs.live import LiveSettings
from loa.playout.inputs.push import Mount, Mounts
from loa.playout.inputs.relay import Relay
from loa.playout.inputs.sequence import PartFactory, SequenceSource
from loa.playout.programme import Programme, ProgrammeKind
from loa.protocol.cap import CapError, CapResource, verify_resource

Fetch = Callable[[str], Awaitable[bytes]]


@dataclass
class Built:
    """A programme ready to request. ``relay``: started with it; whoever holds the programme
    stops the relay when it ends. ``label``: what the engine's request is called (the
    broadcast log and ``media_in_use`` read it)."""

    programme: Programme
    label: str
    relay: Relay | None = None


class ProgrammeFactory:
    """Builds programmes from content. ``http`` gives the server's client session (None
    before start); ``fetch`` gets a CAP resource by URL (size-limited)."""

    def __init__(self, *, media: MediaLibrary, media_dir: Path, tts: Tts, leveller: Leveller,
                 mounts: Mounts, clock: Clock, counters: Counters, live_settings: LiveSettings,
                 http: Callable[[], aiohttp.ClientSession | None],
                 fetch: Fetch | None = None, known_mounts: set[str] | None = None) -> None:
        self.media = media
        self.media_dir = media_dir
        self.tts = tts
        self.leveller = leveller
        self.mounts = mounts
        self.known_mounts = known_mounts or set()  # used by a source before this run
        self.clock = clock
        self.counters = counters
        self.live_settings = live_settings
        self._http = http
        self.fetch = fetch

    # 1. at once

    def check(self, spec: ContentSpec) -> None:
        """Raises ContentError for what is wrong on its face (no I/O; safe on the loop)."""
        if isinstance(spec, MediaContent):
            self._item(spec.id)
        elif isinstance(spec, PlaylistContent):
            for mid in spec.items:
                self._item(mid, N_("no media item {id!r} for the playlist"))
        elif isinstance(spec, TextContent):
            try:
                self.tts.check(spec.text, spec.voice)
            except TtsError as exc:
                raise ContentError(exc.message) from None
        elif isinstance(spec, LiveContent):
            self.mount(spec.mount)
        elif isinstance(spec, CapResourceContent) and self.fetch is None:
            raise ContentError(N_("fetching CAP resources is not configured"))

    # 2. beside the loop

    async def resolve(self, spec: ContentSpec) -> ContentSpec:
        """Checked, and a file found in the media folder (a look at the disk, beside the
        loop): the spec with the file's absolute path, named as the user gave it. Raises
        ContentError."""
        self.check(spec)
        if isinstance(spec, FileContent):
            path = await asyncio.to_thread(media_path, self.media_dir, spec.path)
            return FileContent(str(path), spec.name or spec.path)
        return spec

    async def prepare(self, spec: ContentSpec) -> ContentSpec:
        """Do the slow work ahead: ``resolve``, then a file opened once as audio, text read
        aloud into the cache. Returns the spec to build from. Raises ContentError, or
        DiskFull."""
        spec = await self.resolve(spec)
        if isinstance(spec, FileContent):
            await asyncio.to_thread(probe, Path(spec.path))
        elif isinstance(spec, TextContent):
            await self._speak(spec)
        return spec

    async def audio_file(self, spec: ContentSpec) -> Path:
        """The one audio file a file-like spec plays (media, file, text, CAP resource),
        made ready and opened once as audio. Raises ContentError, DiskFull (or, for a CAP
        resource, aiohttp.ClientError / TimeoutError)."""
        spec = await self.resolve(spec)
        if isinstance(spec, MediaContent):
            path = Path(self._item(spec.id).path)
        elif isinstance(spec, FileContent):
            path = Path(spec.path)
        elif isinstance(spec, TextContent):
            path = await self._speak(spec)
        elif isinstance(spec, CapResourceContent):
            assert self.fetch is not None  # checked
            try:
                data = await self.fetch(spec.uri)
                path = await asyncio.to_thread(save_resource, Path(spec.dir), data, spec.digest,
                                               spec.name or spec.uri)
            except (CapError, ValueError) as exc:  # refused, a bad status, too big, bad digest
                raise ContentError(_message(exc)) from None
        else:
            raise ContentError(N_("{kind} content is not one audio file"), kind=spec.kind)
        await asyncio.to_thread(probe, path)
        return path

    async def _speak(self, spec: TextContent) -> Path:
        try:
            return await self.tts.speak(spec.text, spec.voice)
        except TtsError as exc:
            raise ContentError(exc.message) from None

    # 3. cheap, on the loop

    def build(self, spec: ContentSpec, title: str | None = None) -> Built:
        """The programme of a checked and prepared spec. Raises ContentError when what was
        prepared is gone (a library item deleted, text never read aloud). A relay is started
        here."""
        if isinstance(spec, MediaContent):
            item = self._item(spec.id, N_("no media item {id!r} (deleted?)"))
            return Built(self.media_programme(item, title), f"media/{item.id}")
        if isinstance(spec, FileContent):
            # resolved when it was checked; looked at again by the reader, beside the loop
            path = Path(os.path.normpath(self.media_dir / spec.path))
            if not path.is_relative_to(os.path.normpath(self.media_dir)):
                raise ContentError(N_("file {path!r} must be a path inside the media folder"),
                                   path=spec.path)
            return Built(Programme(title or f"Tệp {spec.name or path.name}", ProgrammeKind.FILE,
                                   self.file_source(path, spec)),
                         f"file/{spec.name or path.name}")
        if isinstance(spec, PlaylistContent):
            parts: list[PartFactory] = []
            for mid in spec.items:
                item = self._item(mid, N_("no media item {id!r} for the playlist (deleted?)"))
                parts.append(functools.partial(FileSource, item.path, self.media.gain(item),
                                               counters=self.counters))
            return Built(Programme(title or "Danh sách phát", ProgrammeKind.FILE,
                                   SequenceSource(parts)), "playlist")
        if isinstance(spec, TextContent):
            path = self.tts.cache_path(spec.text, spec.voice)
            if not path.exists():
                raise ContentError(N_("its text was never read aloud (is espeak-ng installed?)"))
            return Built(Programme(title or "Đọc văn bản", ProgrammeKind.FILE,
                                   self.file_source(path, spec)), "text")
        if isinstance(spec, ToneContent):
            return Built(Programme(title or f"Âm thử {spec.freq_hz:g} Hz", ProgrammeKind.GENERATOR,
                                   tone_source(spec.freq_hz)), "tone")
        if isinstance(spec, RelayContent):
            http = self._http()
            if http is None:
                raise ContentError(N_("the server is not started: no relays yet"))
            relay = Relay(spec.url, self.clock, self.counters, self.live_settings, http,
                          name=title or spec.name)
            relay.start()
            return Built(relay.programme, "relay", relay)
        if isinstance(spec, LiveContent):
            mount = self.mount(spec.mount)
            return Built(mount.programme, f"live/{mount.name}")
        raise ContentError(N_("a CAP resource plays only as an alert's message"))

    async def make(self, spec: ContentSpec, title: str | None = None) -> Built:
        """Check, prepare and build for a request made now; a file's first second is decoded
        before it returns. Raises ContentError (a relay's failures come later, as its
        programme's state)."""
        built = self.build(await self.prepare(spec), title)
        source = built.programme.source
        if isinstance(source, FileSource):
            await source.ready()  # opened and a second decoded, beside the loop
            if source.error is not None:
                raise ContentError(source.error)
        return built

    # the parts

    def mount(self, name: str) -> Mount:
        """A mount operators may put on air: the default one (``studio``), one with its own
        password in the config, or one a source has used (``known_mounts``, kept across
        restarts by the server). Raises ContentError naming the known ones for any other
        (a typo such as ``studoi`` must not go on air as silence)."""
        known = self.known_mounts | set(self.mounts.mount_passwords) | {DEFAULT_MOUNT}
        if name not in known and name not in self.mounts.mounts:
            names = sorted(known | set(self.mounts.mounts))
            near = difflib.get_close_matches(name, names, n=1)
            known_names = ", ".join(names)
            if near:
                raise ContentError(N_("no source has ever used the mount {mount!r}; did you "
                                      "mean {near!r}? (known: {known})"),
                                   mount=name, near=near[0], known=known_names)
            raise ContentError(N_("no source has ever used the mount {mount!r} "
                                  "(known: {known})"), mount=name, known=known_names)
        try:
            return self.mounts.get(name)
        except ValueError as exc:
            raise ContentError(_message(exc)) from None

    def media_programme(self, item: MediaItem, title: str | None = None) -> Programme:
        """A library item, played normalised to the station's loudness target."""
        return Programme(title or item.title, ProgrammeKind.FILE,
                         FileSource(item.path, self.media.gain(item), counters=self.counters))

    def file_source(self, path: Path, spec: ContentSpec | None = None) -> FileSource:
        """A file read ahead, at the gain its kind gets: a library item's measured gain,
        anything else levelled on its first minute beside the loop."""
        if isinstance(spec, MediaContent):
            return FileSource(str(path), self.media.gain(self._item(spec.id)),
                              counters=self.counters)
        self.leveller.warm()  # measured when it starts: the worker starts now
        return FileSource(str(path), self.leveller.gain_for, counters=self.counters)

    def _item(self, media_id: str, missing: str = N_("no media item {id!r}")) -> MediaItem:
        """The library item; ContentError ``missing`` (a msgid with ``{id}``) if it is not
        there."""
        item = self.media.get(media_id)
        if item is None:
            raise ContentError(missing, id=media_id)
        return item


def _message(exc: Exception) -> str | Message:
    """What ``exc`` says, kept translatable: an ``Explained`` error's message, else its
    text."""
    return exc.message if isinstance(exc, Explained) else str(exc)


# Entries looked at per folder when a name is matched by its normal form: a bound on the work
# one request can cause in a folder of many files.
MAX_ENTRIES_SCANNED = 10_000


def media_path(media_dir: Path, relative: str) -> Path:
    """A file inside the media folder (blocking: it looks at the disk). A name typed in one
    Unicode normal form finds the file stored in the other (NFC typed, NFD written by a Mac,
    or the reverse), folder by folder, when the exact name is not there. Raises ContentError
    for a path that escapes the folder or names no file."""
    base = media_dir.resolve()
    path = (base / relative).resolve()
    if not relative or not path.is_relative_to(base):
        raise ContentError(N_("file {path!r} must be a path inside the media folder"),
                           path=relative)
    if not path.is_file():
        found = _same_name_under_nfc(base, path.relative_to(base).parts)
        if found is None:
            raise ContentError(N_("no file {path!r} in the media folder"), path=relative)
        path = found.resolve()
        if not path.is_relative_to(base):  # a link found that way must not lead out either
            raise ContentError(N_("file {path!r} must be a path inside the media folder"),
                               path=relative)
    return path


def _same_name_under_nfc(base: Path, parts: tuple[str, ...]) -> Path | None:
    """The file under ``base`` whose path, part by part, is ``parts`` under NFC (an exact
    part wins; among several matches the first by code point), or None. Blocking."""
    if not parts:
        return None
    folder = base
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        exact = folder / part
        if exact.is_file() if last else exact.is_dir():
            folder = exact
            continue
        wanted = nfc(part)
        matches: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for n, entry in enumerate(entries):
                    if n >= MAX_ENTRIES_SCANNED:
                        break
                    if nfc(entry.name) == wanted and (entry.is_file() if last
                                                      else entry.is_dir()):
                        matches.append(entry.name)
        except OSError:  # not a folder, gone, or not readable: nothing found
            return None
        if not matches:
            return None
        folder = folder / min(matches)
    return folder


def probe(path: Path) -> None:
    """Open the file as audio (blocking: run beside the loop). Raises ContentError."""
    try:
        FrameDecoder(str(path)).close()
    except DecodeError as exc:
        raise ContentError(exc.message) from None


def save_resource(folder: Path, data: bytes, digest: str | None, name: str) -> Path:
    """Check a CAP resource's SHA-1 digest (CAP 1.2 §3.2.3 ``digest``) and keep it
    content-addressed under ``folder`` (blocking). Raises CapError on a digest mismatch,
    DiskFull when the disk has no room for it (nothing is left behind)."""
    verify_resource(CapResource(name, "audio/*", None, None, digest), data)
    path = folder / hashlib.sha256(data).hexdigest()
    if not path.exists():
        with writing(f"the CAP resource {name!r}"):
            folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, f"the CAP resource {name!r}")
    return path
