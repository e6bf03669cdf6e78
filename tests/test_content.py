"""Content as requests, schedule items and alerts name it: one parser, one list per caller."""

from __future__ import annotations

import unicodedata

import pytest

from loa.core.content import (
    ALERT_KINDS,
    REQUEST_KINDS,
    SCHEDULE_KINDS,
    CapResourceContent,
    ContentError,
    ContentKind,
    FileContent,
    LiveContent,
    MediaContent,
    PlaylistContent,
    RelayContent,
    TextContent,
    ToneContent,
    content_from_json,
    parse_content,
)


@pytest.mark.parametrize("spec", [
    MediaContent("3f2a"), FileContent("ban-tin.mp3"), FileContent("/x/y.mp3", "upload"),
    PlaylistContent(("a", "b")), TextContent("Xin chào bà con.", "vi"), ToneContent(700.0),
    RelayContent("http://vov.vn/vov1.mp3", "VOV1"), LiveContent("xa-an-binh"),
    CapResourceContent("http://cap/x.mp3", "/data/cap", "ab" * 20, "Bản tin", "Lũ."),
])
def test_every_kind_comes_back_from_its_json(spec: object) -> None:
    assert content_from_json(spec.to_json()) == spec  # type: ignore[attr-defined]


def test_older_spellings_are_still_read() -> None:
    assert parse_content({"kind": "media", "path": "/m/a.mp3", "name": "a"}, ALERT_KINDS) \
        == FileContent("/m/a.mp3", "a")
    assert parse_content({"kind": "mount", "mount": "studio"}, ALERT_KINDS) \
        == LiveContent("studio")
    assert parse_content({"kind": "media", "id": "3f2a"}) == MediaContent("3f2a")


def test_text_is_folded_and_defaults_fill_in() -> None:
    assert parse_content({"kind": "text", "text": "  Cảnh báo\n lũ   quét. "}) \
        == TextContent("Cảnh báo lũ quét.", "vi")
    decomposed = unicodedata.normalize("NFD", "Bão số 3")
    assert parse_content({"kind": "text", "text": decomposed}) == TextContent("Bão số 3")
    assert parse_content({"kind": "tone"}) == ToneContent(1000.0)
    assert parse_content({"kind": "live"}) == LiveContent("studio")


@pytest.mark.parametrize(("raw", "allowed", "says"), [
    ({"kind": "video"}, REQUEST_KINDS, "live, media, playlist, relay, text, tone"),
    ({"kind": "live"}, SCHEDULE_KINDS, "not 'live'"),
    ({"kind": "playlist", "items": ["a"]}, ALERT_KINDS, "file, live, media, text, tone"),
    ({"kind": "cap_resource", "uri": "http://x", "dir": "/d"}, ALERT_KINDS, "needs a kind"),
    ("tone", REQUEST_KINDS, "must be an object"),
    ({"kind": "media"}, REQUEST_KINDS, '"id"'),
    ({"kind": "playlist", "items": []}, REQUEST_KINDS, "items"),
    ({"kind": "playlist", "items": ["a", 3]}, REQUEST_KINDS, "items"),
    ({"kind": "text", "text": "   "}, REQUEST_KINDS, '"text"'),
    ({"kind": "tone", "freq_hz": 5}, REQUEST_KINDS, "20 to 20000"),
    ({"kind": "tone", "freq_hz": True}, REQUEST_KINDS, "20 to 20000"),
    ({"kind": "tone", "freq_hz": float("nan")}, REQUEST_KINDS, "20 to 20000"),
    ({"kind": "relay", "url": "file:///etc/passwd"}, REQUEST_KINDS, "http://"),
    ({"kind": "file", "path": ""}, REQUEST_KINDS, '"path"'),
])
def test_bad_content_says_what_to_fix(raw: object, allowed: frozenset[ContentKind],
                                      says: str) -> None:
    with pytest.raises(ContentError, match=None) as err:
        parse_content(raw, allowed)
    assert says in str(err.value)
