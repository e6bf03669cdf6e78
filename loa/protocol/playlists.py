"""Station links that are not a bare stream: M3U and PLS playlists, and HLS (M3U8).

Provinces and VOV publish a "listen" link that is often a playlist naming the stream, or an
HLS playlist of short segments. Everything here is pure (text in, URLs and dataclasses out);
the relay (``loa.playout.inputs.relay``) does the fetching.

The formats, and where they are written down:

- **M3U** has no formal standard. It is Winamp's playlist: one URL or path a line, ``#`` lines
  are comments, and the "extended" form opens with ``#EXTM3U`` and titles each entry with
  ``#EXTINF:<seconds>,<title>``. RFC 8216 §4 (HTTP Live Streaming) writes down the same base
  syntax: lines are URIs, blank, or start with ``#``; relative URIs resolve against the
  playlist's own URL (RFC 3986 §5); ``.m3u8`` and ``application/vnd.apple.mpegurl`` mean UTF-8.
  Served as ``audio/x-mpegurl`` (Icecast serves ``/<mount>.m3u`` so), ``audio/mpegurl``,
  ``application/x-mpegurl`` or ``application/vnd.apple.mpegurl``.
- **PLS** is SHOUTcast and Winamp's INI-style playlist: a ``[playlist]`` section with
  ``File<n>=<url>``, ``Title<n>=``, ``Length<n>=``, ``NumberOfEntries=`` and ``Version=2``;
  entries play in the order of ``n`` (SHOUTcast lists its relays of one stream so, as
  mirrors). Served as ``audio/x-scpls``. There is no RFC; the de facto description is
  Winamp's (summarised at https://en.wikipedia.org/wiki/PLS_(file_format)).
- **XSPF** is Xiph's XML playlist (https://www.xspf.org/spec): ``<playlist
  xmlns="http://xspf.org/ns/0/">`` with a ``<trackList>`` of ``<track>``s, each with
  ``<location>`` URLs. Icecast serves ``/<mount>.xspf`` so (``application/xspf+xml``). Parsed
  with defusedxml: no DTD, no entities.
- **HLS** is RFC 8216: an M3U8 playlist with ``#EXT-X-`` tags. A *master* playlist lists
  variant streams (``#EXT-X-STREAM-INF`` with ``BANDWIDTH`` and ``CODECS``, each followed by
  its playlist's URI; §4.3.4.2) and alternative audio renditions (``#EXT-X-MEDIA``,
  §4.3.4.1); a *media* playlist lists segments (``#EXTINF`` then the URI, §4.3.2.1), from
  ``#EXT-X-MEDIA-SEQUENCE`` on (§4.3.3.2), each at most ``#EXT-X-TARGETDURATION`` seconds
  long (§4.3.3.1); ``#EXT-X-ENDLIST`` (§4.3.3.4) ends a finished one (VOD), and a live one
  is reloaded for new segments (§6.3.4). Segments may be parts of one file
  (``#EXT-X-BYTERANGE``, §4.3.2.2), fragmented MP4 after an initialisation section
  (``#EXT-X-MAP``, §4.3.2.5), or encrypted (``#EXT-X-KEY``, §4.3.2.4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from loa.core.i18n import N_, Explained

# Content types (RFC 6838 names and the legacy ones servers still send) that mean a playlist.
PLAYLIST_CONTENT_TYPES = {
    "audio/x-mpegurl": "m3u",
    "audio/mpegurl": "m3u",
    "application/x-mpegurl": "m3u",
    "application/mpegurl": "m3u",
    "application/vnd.apple.mpegurl": "m3u",
    "audio/x-scpls": "pls",
    "audio/scpls": "pls",
    "application/pls": "pls",
    "application/pls+xml": "pls",
    "application/xspf+xml": "xspf",
}
PLAYLIST_EXTENSIONS = {".m3u": "m3u", ".m3u8": "m3u", ".pls": "pls", ".xspf": "xspf"}
# A playlist larger than this is not a station link (a long VOD HLS playlist is ~100 KiB).
MAX_PLAYLIST_BYTES = 1024 * 1024
# How much of a response ``playlist_kind`` wants to see to tell a playlist from audio.
SNIFF_BYTES = 256
XSPF_NS = "http://xspf.org/ns/0/"

_BOM = b"\xef\xbb\xbf"
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PLS_FILE = re.compile(r"^\s*file(\d+)\s*=\s*(.*?)\s*$", re.IGNORECASE)
# RFC 8216 §4.2: AttributeName=AttributeValue, comma-separated; quoted strings hold commas
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^,]*)')
_VIDEO_CODECS = ("avc", "hvc", "hev", "vp0", "vp8", "vp9", "av01", "mp4v", "dvh", "dvav")


class PlaylistError(Explained, ValueError):
    """A playlist that cannot be followed: not a playlist of this kind, no usable entry, or an
    HLS feature Loa does not play. The message says which, for the operator."""


def decode_text(data: bytes) -> str:
    """A playlist's bytes as text: UTF-8 (a BOM dropped), else Latin-1 (old ``.m3u`` files
    written in a Windows code page decode without error; their URLs are ASCII anyway)."""
    data = data.removeprefix(_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _looks_like_text(head: bytes) -> bool:
    """No control bytes but tab, CR, LF: audio (MP3, Ogg, ADTS, MPEG-TS) always has some."""
    return bool(head) and _CONTROL.search(head) is None


def sniff_playlist(head: bytes) -> str | None:
    """"m3u", "pls" or "xspf" when the first bytes of a body say so (``#EXTM3U``,
    ``[playlist]``, XML naming the XSPF namespace, or a bare ``http(s)://`` URL line); None
    otherwise (audio, or text that does not say)."""
    text = head.removeprefix(_BOM).lstrip()
    if text.startswith(b"#EXTM3U"):
        return "m3u"
    if text[:10].lower() == b"[playlist]":
        return "pls"
    if text.startswith(b"<") and XSPF_NS.encode() in text:
        return "xspf"
    if text[:8].lower().startswith((b"http://", b"https://")) and _looks_like_text(head):
        return "m3u"  # a list of URLs, one a line: the simplest M3U
    return None


def playlist_kind(content_type: str, url: str, head: bytes) -> str | None:
    """Whether an HTTP response is a playlist to follow: "m3u" (HLS included: see
    ``is_hls``), "pls", "xspf", or None for a stream or a file to play.

    ``head`` is the first bytes of the body (``SNIFF_BYTES`` suffice). The body decides
    first (``sniff_playlist``: a server may send a playlist as ``text/plain`` or
    ``application/octet-stream``); then the ``Content-Type`` (``PLAYLIST_CONTENT_TYPES``),
    then the URL's extension (``PLAYLIST_EXTENSIONS``), either only for a body that is
    text: an MP3 file mislabelled as a playlist still plays as audio.
    """
    sniffed = sniff_playlist(head)
    if sniffed is not None:
        return sniffed
    if not _looks_like_text(head):
        return None
    base_type = content_type.split(";", 1)[0].strip().lower()
    if base_type in PLAYLIST_CONTENT_TYPES:
        return PLAYLIST_CONTENT_TYPES[base_type]
    path = urlsplit(url).path.lower()
    for ext, kind in PLAYLIST_EXTENSIONS.items():
        if path.endswith(ext):
            return kind
    return None


def _http_url(entry: str, base_url: str) -> str | None:
    """``entry`` resolved against the playlist's URL; None unless it is http(s) (a local
    path, ``rtsp://``, ``mms://``: nothing a relay can fetch)."""
    url = urljoin(base_url, entry.strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def parse_m3u(text: str, base_url: str) -> list[str]:
    """The http(s) URLs an M3U playlist lists, in order, relative ones resolved against
    ``base_url``; comment and ``#EXT`` lines skipped. Raises PlaylistError when there is none.
    (An HLS playlist parses too, into its segments or variants: check ``is_hls`` first.)"""
    urls = []
    for line in text.removeprefix("\ufeff").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url = _http_url(line, base_url)
        if url is not None:
            urls.append(url)
    if not urls:
        raise PlaylistError(N_("the M3U playlist lists no http(s) stream"))
    return urls


def parse_pls(text: str, base_url: str) -> list[str]:
    """The http(s) URLs of a PLS playlist's ``File<n>`` keys, in the order of ``n``, relative
    ones resolved against ``base_url``. Raises PlaylistError without a ``[playlist]`` section
    or without any http(s) entry."""
    if "[playlist]" not in text.lower():
        raise PlaylistError(N_("not a PLS playlist: no [playlist] section"))
    numbered = []
    for line in text.splitlines():
        match = _PLS_FILE.match(line)
        if match is None:
            continue
        url = _http_url(match.group(2), base_url)
        if url is not None:
            numbered.append((int(match.group(1)), url))
    if not numbered:
        raise PlaylistError(N_("the PLS playlist lists no http(s) stream"))
    return [url for _, url in sorted(numbered, key=lambda item: item[0])]


def parse_xspf(text: str, base_url: str) -> list[str]:
    """The http(s) ``<location>`` URLs of an XSPF playlist's tracks, in order (a track's
    first usable one), relative ones resolved against ``base_url``. Raises PlaylistError for
    XML that is not XSPF, is unsafe (a DTD, entities) or lists no http(s) location."""
    # imported by the first XSPF playlist, not by a server that never reads one (issue 17)
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        root = SafeET.fromstring(text.encode(), forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise PlaylistError(N_("not an XSPF playlist ({error})"), error=str(exc)) from None
    if root.tag != f"{{{XSPF_NS}}}playlist":
        raise PlaylistError(N_("not an XSPF playlist: no <playlist> in the XSPF namespace"))
    urls = []
    for track in root.iter(f"{{{XSPF_NS}}}track"):
        for location in track.iter(f"{{{XSPF_NS}}}location"):
            url = _http_url(location.text or "", base_url)
            if url is not None:
                urls.append(url)
                break
    if not urls:
        raise PlaylistError(N_("the XSPF playlist lists no http(s) stream"))
    return urls


def parse_playlist(kind: str, text: str, base_url: str) -> list[str]:
    """``parse_m3u``, ``parse_pls`` or ``parse_xspf`` by ``kind`` ("m3u", "pls", "xspf").
    Raises PlaylistError."""
    if kind == "pls":
        return parse_pls(text, base_url)
    if kind == "xspf":
        return parse_xspf(text, base_url)
    return parse_m3u(text, base_url)


# HLS (RFC 8216)


def is_hls(text: str) -> bool:
    """Whether an M3U8 playlist is HLS: it opens with ``#EXTM3U`` and carries ``#EXT-X-`` tags
    (every HLS playlist has ``#EXT-X-TARGETDURATION`` or ``#EXT-X-STREAM-INF``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return bool(lines) and lines[0].lstrip("\ufeff").startswith("#EXTM3U") and any(
        line.startswith("#EXT-X-") for line in lines)


def parse_attributes(value: str) -> dict[str, str]:
    """An RFC 8216 §4.2 attribute list (``BANDWIDTH=64000,CODECS="mp4a.40.2"``) as a dict,
    quotes removed."""
    return {name: raw[1:-1] if raw.startswith('"') else raw.strip()
            for name, raw in _ATTRIBUTE.findall(value)}


@dataclass(frozen=True, slots=True)
class HlsVariant:
    """One variant stream of a master playlist: its media playlist's URL, its peak bit rate
    (b/s; 0 when not given) and its codecs (RFC 6381 names, "" when not given)."""

    url: str
    bandwidth: int
    codecs: str

    @property
    def audio_only(self) -> bool:
        """Its codecs are known and none is video."""
        codecs = self.codecs.lower()
        return bool(codecs) and not any(v in codecs for v in _VIDEO_CODECS)


@dataclass(frozen=True, slots=True)
class HlsSegment:
    """One media segment: URL, media sequence number, duration (s) and, for part of a file
    (``#EXT-X-BYTERANGE``), its (offset, length) in bytes."""

    url: str
    sequence: int
    duration_s: float
    byte_range: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class HlsPlaylist:
    """A parsed HLS playlist: a master one has ``variants``; a media one has ``segments``,
    its target duration (s), whether it has ended (VOD: ``#EXT-X-ENDLIST``), the URL of its
    initialisation section (fragmented MP4's ``#EXT-X-MAP``) and the encryption method of its
    segments (``#EXT-X-KEY``; None when clear)."""

    variants: tuple[HlsVariant, ...] = ()
    segments: tuple[HlsSegment, ...] = ()
    target_duration_s: float = 0.0
    ended: bool = False
    map_url: str | None = None
    encryption: str | None = None

    @property
    def is_master(self) -> bool:
        return bool(self.variants)


def parse_hls(text: str, base_url: str) -> HlsPlaylist:
    """Parse a master or media playlist (RFC 8216), URIs resolved against ``base_url``. In a
    master playlist, a variant that takes its audio from an ``#EXT-X-MEDIA`` rendition group
    (the audio of a video stream) is listed by that rendition's URL, as audio only. Raises
    PlaylistError for text that is not HLS, or a media playlist without a target duration."""
    if not is_hls(text):
        raise PlaylistError(N_("not an HLS playlist (no #EXTM3U with #EXT-X- tags)"))
    variants: list[HlsVariant] = []
    audio_groups: dict[str, str] = {}  # GROUP-ID -> the URI of its default (or first) rendition
    segments: list[HlsSegment] = []
    target_s = 0.0
    sequence = 0
    ended = False
    map_url: str | None = None
    encryption: str | None = None
    pending_inf: dict[str, str] | None = None
    duration_s = 0.0
    byte_range: tuple[int, int] | None = None
    next_offset = 0  # where a byte range without an offset starts (§4.3.2.2)
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        tag, _, value = line.partition(":")
        number = _number(tag, value) if tag in _NUMERIC_TAGS else 0.0
        if tag == "#EXT-X-STREAM-INF":
            pending_inf = parse_attributes(value)
        elif tag == "#EXT-X-MEDIA":
            attrs = parse_attributes(value)
            if attrs.get("TYPE") == "AUDIO" and attrs.get("URI"):
                group = attrs.get("GROUP-ID", "")
                if group not in audio_groups or attrs.get("DEFAULT") == "YES":
                    audio_groups[group] = urljoin(base_url, attrs["URI"])
        elif tag == "#EXT-X-TARGETDURATION":
            target_s = number
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(number)
        elif tag == "#EXT-X-ENDLIST" or (tag == "#EXT-X-PLAYLIST-TYPE" and value == "VOD"):
            ended = True  # a VOD playlist never changes; its ENDLIST is in it already
        elif tag == "#EXT-X-MAP":
            map_url = urljoin(base_url, parse_attributes(value).get("URI", ""))
        elif tag == "#EXT-X-KEY":
            method = parse_attributes(value).get("METHOD", "NONE")
            if method != "NONE":
                encryption = method  # some segment is encrypted: the playlist cannot play
        elif tag == "#EXTINF":
            duration_s = _number(tag, value.split(",", 1)[0])
        elif tag == "#EXT-X-BYTERANGE":
            length, _, offset = value.partition("@")
            start = int(_number(tag, offset)) if offset else next_offset
            byte_range = (start, int(_number(tag, length)))
            next_offset = start + byte_range[1]
        elif line.startswith("#"):
            continue  # a tag this player has no use for (RFC 8216 §4.1: ignore it)
        elif pending_inf is not None:
            bandwidth = int(_number("BANDWIDTH", pending_inf.get("BANDWIDTH", "0") or "0"))
            codecs = pending_inf.get("CODECS", "")
            audio_group = pending_inf.get("AUDIO")
            if audio_group is not None and audio_group in audio_groups:
                variants.append(HlsVariant(audio_groups[audio_group], bandwidth, "mp4a"))
            else:
                variants.append(HlsVariant(urljoin(base_url, line), bandwidth, codecs))
            pending_inf = None
        else:
            segments.append(HlsSegment(urljoin(base_url, line), sequence + len(segments),
                                       duration_s, byte_range))
            duration_s, byte_range = 0.0, None
    if not variants and target_s <= 0:
        raise PlaylistError(N_("HLS media playlist without #EXT-X-TARGETDURATION"))
    return HlsPlaylist(tuple(variants), tuple(segments), target_s, ended and not variants,
                       map_url, encryption)


_NUMERIC_TAGS = ("#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE")


def _number(tag: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise PlaylistError(N_("HLS playlist: {tag} is not a number: {value!r}"), tag=tag,
                            value=value)
    return number


def choose_variant(variants: tuple[HlsVariant, ...]) -> HlsVariant:
    """The variant a relay plays: among audio-only variants, the highest bit rate (the best
    sound; Loa re-encodes it anyway); with none, the lowest (a video stream's audio is much
    the same in every variant, its pictures are bytes for nothing). Raises PlaylistError for
    an empty tuple."""
    if not variants:
        raise PlaylistError(N_("the HLS master playlist lists no variant"))
    audio = [v for v in variants if v.audio_only]
    if audio:
        return max(audio, key=lambda v: v.bandwidth)
    return min(variants, key=lambda v: v.bandwidth)


def live_start(playlist: HlsPlaylist) -> int:
    """The index in ``playlist.segments`` to start at: the first for a finished playlist (it
    plays from its start); for a live one, the last segment that starts at least three target
    durations before the end (RFC 8216 §6.3.3), the first if it is shorter than that."""
    if playlist.ended:
        return 0
    behind_s = 0.0
    for index in range(len(playlist.segments) - 1, -1, -1):
        behind_s += playlist.segments[index].duration_s
        if behind_s >= 3 * playlist.target_duration_s:
            return index
    return 0
