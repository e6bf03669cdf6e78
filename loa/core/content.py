"""What a programme plays, as requests, schedule items and alerts all name it: a typed
``ContentSpec``, parsed once from the API's (or the store's) JSON and turned into a programme
in one place (``loa.control.programmes.ProgrammeFactory``).

JSON shapes (``kind`` selects the rest)::

    {"kind": "media", "id": "3f2a…"}                  a library item, loudness-normalised
    {"kind": "file", "path": "ban-tin.mp3"}           a file in the media folder
    {"kind": "playlist", "items": ["3f2a…", …]}        library items one after another
    {"kind": "text", "text": "…", "voice": "vi"}      Vietnamese text read aloud
    {"kind": "tone", "freq_hz": 1000}                 a test tone (20-20000 Hz)
    {"kind": "relay", "url": "http://…", "name": …}   another station's stream
    {"kind": "live", "mount": "studio"}               a live mount of this server
    {"kind": "cap_resource", "uri": …}                a CAP alert's audio, fetched when played

Two older spellings are still read: ``{"kind": "media", "path": …}`` (an alert's file) is a
``file``, and ``{"kind": "mount", "mount": …}`` (an alert's live mount) is ``live``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loa.core.i18n import N_, Explained
from loa.core.text import nfc

DEFAULT_VOICE = "vi"
DEFAULT_TONE_HZ = 1000.0
DEFAULT_MOUNT = "studio"


class ContentKind(enum.StrEnum):
    MEDIA = "media"
    FILE = "file"
    PLAYLIST = "playlist"
    TEXT = "text"
    TONE = "tone"
    RELAY = "relay"
    LIVE = "live"
    CAP_RESOURCE = "cap_resource"


class ContentError(Explained, ValueError):
    """Content the server cannot play; the message says what to fix (in the API's words)."""


@dataclass(frozen=True, slots=True)
class MediaContent:
    id: str
    kind = ContentKind.MEDIA

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "id": self.id}


@dataclass(frozen=True, slots=True)
class FileContent:
    """``path``: relative to the media folder as the user gave it, or absolute once resolved
    (an upload, a CAP resource saved on disk). ``name``: what to show for it."""

    path: str
    name: str | None = None
    kind = ContentKind.FILE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "path": self.path}
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class PlaylistContent:
    items: tuple[str, ...]
    kind = ContentKind.PLAYLIST

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "items": list(self.items)}


@dataclass(frozen=True, slots=True)
class TextContent:
    """``text`` with its whitespace folded and in NFC (the form the synthesis cache is keyed
    on: typed composed or pasted decomposed, one text is read once)."""

    text: str
    voice: str = DEFAULT_VOICE
    kind = ContentKind.TEXT

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "text": self.text, "voice": self.voice}


@dataclass(frozen=True, slots=True)
class ToneContent:
    freq_hz: float = DEFAULT_TONE_HZ
    kind = ContentKind.TONE

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "freq_hz": self.freq_hz}


@dataclass(frozen=True, slots=True)
class RelayContent:
    url: str
    name: str | None = None
    kind = ContentKind.RELAY

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "url": self.url}
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class LiveContent:
    mount: str = DEFAULT_MOUNT
    kind = ContentKind.LIVE

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "mount": self.mount}


@dataclass(frozen=True, slots=True)
class CapResourceContent:
    """A CAP ``<resource>`` by URI (CAP 1.2 §3.2.3), fetched while the attention tone plays,
    checked against its SHA-1 ``digest`` and saved under ``dir``; ``fallback_text`` is read
    aloud when it cannot be had."""

    uri: str
    dir: str
    digest: str | None = None
    name: str | None = None
    fallback_text: str | None = None
    kind = ContentKind.CAP_RESOURCE

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "uri": self.uri, "dir": self.dir,
                "digest": self.digest, "name": self.name, "fallback_text": self.fallback_text}


ContentSpec = (MediaContent | FileContent | PlaylistContent | TextContent | ToneContent
               | RelayContent | LiveContent | CapResourceContent)

# What each caller may ask for. Alerts play a recorded message, text, a mount or a tone; a
# CAP resource comes only from a CAP message, never from the API's JSON.
REQUEST_KINDS = frozenset({ContentKind.MEDIA, ContentKind.FILE, ContentKind.PLAYLIST,
                           ContentKind.TEXT, ContentKind.TONE, ContentKind.RELAY,
                           ContentKind.LIVE})
SCHEDULE_KINDS = frozenset({ContentKind.MEDIA, ContentKind.FILE, ContentKind.PLAYLIST,
                            ContentKind.TEXT, ContentKind.TONE, ContentKind.RELAY})
ALERT_KINDS = frozenset({ContentKind.MEDIA, ContentKind.FILE, ContentKind.TEXT,
                         ContentKind.TONE, ContentKind.LIVE})
# Content that is one audio file once prepared (read ahead, levelled, its duration known).
FILE_LIKE = frozenset({ContentKind.MEDIA, ContentKind.FILE, ContentKind.TEXT,
                       ContentKind.CAP_RESOURCE})
_ALIASES = {"mount": ContentKind.LIVE}


def _str(d: dict[str, Any], key: str, missing: str, default: str | None = None) -> str:
    """``d[key]`` stripped; ContentError with ``missing`` (an ``N_``-marked msgid naming the
    kind of content and the key: ``'a file needs "path"'``) when it is missing or blank."""
    value = d.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ContentError(missing)
    return value.strip()


def _optional_str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    return None if value is None else str(value)


def _names(kinds: Iterable[ContentKind]) -> str:
    return ", ".join(sorted(k.value for k in kinds))


def parse_content(raw: object, allowed: frozenset[ContentKind] = REQUEST_KINDS
                  ) -> ContentSpec:
    """The spec of a JSON object. Raises ContentError naming the allowed kinds for an unknown
    or unallowed kind, and the missing or bad field otherwise."""
    if not isinstance(raw, dict):
        raise ContentError(N_('"content" must be an object with a kind: {kinds}'),
                           kinds=_names(allowed))
    name = raw.get("kind")
    try:
        kind = _ALIASES.get(str(name)) or ContentKind(str(name))
    except ValueError:
        kind = None
    if kind is ContentKind.MEDIA and "id" not in raw and "path" in raw:
        kind = ContentKind.FILE  # an alert's file, as older clients and records spell it
    if kind is None or kind not in allowed:
        raise ContentError(N_('"content" needs a kind: {kinds} (not {name!r})'),
                           kinds=_names(allowed), name=name)
    return _parse(kind, raw)


def content_from_json(raw: dict[str, Any]) -> ContentSpec:
    """A spec as stored (any kind, older spellings included); ContentError if unreadable."""
    return parse_content(raw, frozenset(ContentKind))


def _parse(kind: ContentKind, d: dict[str, Any]) -> ContentSpec:
    if kind is ContentKind.MEDIA:
        return MediaContent(_str(d, "id", N_('media needs "id"')))
    if kind is ContentKind.FILE:
        return FileContent(_str(d, "path", N_('a file needs "path"')), _optional_str(d, "name"))
    if kind is ContentKind.PLAYLIST:
        items = d.get("items")
        if not isinstance(items, list) or not items \
                or not all(isinstance(i, str) and i for i in items):
            raise ContentError(N_('a playlist needs "items": [media ids]'))
        return PlaylistContent(tuple(items))
    if kind is ContentKind.TEXT:
        text = nfc(" ".join(str(d.get("text", "")).split()))  # one spelling, one synthesis
        if not text:
            raise ContentError(N_('text read aloud needs "text"'))
        return TextContent(text, _str(d, "voice", N_('text needs "voice"'), DEFAULT_VOICE))
    if kind is ContentKind.TONE:
        freq = d.get("freq_hz", DEFAULT_TONE_HZ)
        if isinstance(freq, bool) or not isinstance(freq, int | float) \
                or not math.isfinite(freq) or not 20 <= freq <= 20000:
            raise ContentError(N_("freq_hz must be from 20 to 20000"))
        return ToneContent(float(freq))
    if kind is ContentKind.RELAY:
        url = _str(d, "url", N_('a relay needs "url"'))
        if not url.startswith(("http://", "https://")):
            raise ContentError(N_("a relay's url must be http:// or https://, not {url!r}"),
                               url=url)
        return RelayContent(url, _optional_str(d, "name"))
    if kind is ContentKind.LIVE:
        return LiveContent(_str(d, "mount", N_('live needs "mount"'), DEFAULT_MOUNT))
    return CapResourceContent(_str(d, "uri", N_('a CAP resource needs "uri"')),
                              _str(d, "dir", N_('a CAP resource needs "dir"')),
                              _optional_str(d, "digest"), _optional_str(d, "name"),
                              _optional_str(d, "fallback_text"))
