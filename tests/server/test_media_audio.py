"""A library item's audio, for a preview in the browser (issue 15): ``GET media/{id}/audio``
serves the stored file whole or by Range, with the type its first bytes say, scoped as
``GET media/{id}`` is; the item's JSON names it as ``audio_url``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from loa.api.media import audio_type
from loa.app import LoaServer
from tests.api.accounts import add_user, session_of, token_of, upload_as
from tests.api.test_accounts import OUTSIDE, outside
from tests.audio import tone_file
from tests.conftest import auth
from tests.server.test_api import call
from tests.server.test_ingest import base


async def fetch(server: LoaServer, path: str, headers: dict[str, str],
                method: str = "GET") -> tuple[int, Mapping[str, str], bytes]:
    """(status, headers, body) of a plain request, as an <audio> element makes it."""
    async with aiohttp.ClientSession() as http:
        async with http.request(method, base(server) + path, headers=headers) as resp:
            return resp.status, resp.headers.copy(), await resp.read()


async def browser_upload(server: LoaServer, path: Path) -> tuple[int, dict[str, Any]]:
    """An upload as a browser sends it: the file name as UTF-8 in the part's header (not
    percent-encoded, as aiohttp's client does by default)."""
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", await asyncio.to_thread(path.read_bytes), filename=path.name)
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/media", data=form,
                             headers=auth()) as resp:
            return resp.status, await resp.json()


async def test_the_audio_comes_back_whole_and_by_range(server: LoaServer,
                                                       tmp_path: Path) -> None:
    mp3 = await tone_file(tmp_path / "Bản tin sáng.mp3", 500, 2.0, ["-c:a", "libmp3lame"])
    data = await asyncio.to_thread(mp3.read_bytes)
    status, body = await browser_upload(server, mp3)
    assert status == 201, body
    item = body["media"]
    assert item["filename"] == "Bản tin sáng.mp3"
    url = item["audio_url"]
    assert url == f"/api/v1/media/{item['id']}/audio"
    _, listing = await call(server, "GET", "/api/v1/media")
    _, shown = await call(server, "GET", f"/api/v1/media/{item['id']}")
    assert listing["media"][0]["audio_url"] == shown["media"]["audio_url"] == url

    status, headers, got = await fetch(server, url, auth())
    assert status == 200 and got == data
    assert headers["Content-Type"] == "audio/mpeg"
    assert headers["Accept-Ranges"] == "bytes"
    assert int(headers["Content-Length"]) == len(data)
    assert headers["Content-Disposition"] == (
        "inline; filename*=UTF-8''B%E1%BA%A3n%20tin%20s%C3%A1ng.mp3")

    status, headers, got = await fetch(server, url, {**auth(), "Range": "bytes=100-1099"})
    assert status == 206 and got == data[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
    status, headers, got = await fetch(server, url, {**auth(), "Range": "bytes=-300"})
    assert status == 206 and got == data[-300:]
    status, headers, got = await fetch(server, url, {**auth(), "Range": f"bytes={len(data)}-"})
    assert status == 416
    status, headers, got = await fetch(server, url, auth(), method="HEAD")
    assert status == 200 and got == b"" and int(headers["Content-Length"]) == len(data)

    # a browser asks again with the ETag it kept: nothing is sent twice
    _, headers, _ = await fetch(server, url, auth())
    status, _, got = await fetch(server, url, {**auth(), "If-None-Match": headers["ETag"]})
    assert status == 304 and got == b""


async def test_the_type_is_the_files_not_its_names(server: LoaServer, tmp_path: Path) -> None:
    wav = await tone_file(tmp_path / "khong-duoi", 700, 0.5, ["-f", "wav", "-c:a", "pcm_s16le"])
    status, body = await upload_as(server, auth(), wav)
    assert status == 201, body
    status, headers, got = await fetch(server, body["media"]["audio_url"], auth())
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert got == await asyncio.to_thread(wav.read_bytes)
    # the signatures, and the name only when they say nothing
    assert audio_type(b"OggS\0\2" + bytes(10), "x.mp3") == "audio/ogg"
    assert audio_type(b"fLaC" + bytes(12), "") == "audio/flac"
    assert audio_type(b"\0\0\0\x20ftypM4A " + bytes(4), "") == "audio/mp4"
    assert audio_type(b"\xff\xf1\x50\x80", "") == "audio/aac"  # ADTS: layer bits 00
    assert audio_type(b"\xff\xfb\x90\x64", "") == "audio/mpeg"
    assert audio_type(bytes(16), "tin.mp3") == "audio/mpeg"
    assert audio_type(bytes(16), "tin.txt") == "application/octet-stream"


async def test_another_communes_audio_is_refused(server: LoaServer, tmp_path: Path) -> None:
    await add_user(server, "op-an-binh", "operator", "an-binh")
    await add_user(server, "op-phu-my", "operator", "phu-my")
    mp3 = await tone_file(tmp_path / "phu-my.mp3", 500, 1.0, ["-c:a", "libmp3lame"])
    status, body = await upload_as(server, await token_of(server, "op-phu-my"), mp3)
    assert status == 201 and body["media"]["zone"] == "phu-my", body
    url = body["media"]["audio_url"]
    # an <audio> element sends the session cookie, and no CSRF token: a GET needs none
    session = await session_of(server, "op-an-binh")
    del session["X-CSRF-Token"]
    for headers in [await token_of(server, "op-an-binh"), session]:
        for method in ["GET", "HEAD"]:
            status, _, got = await fetch(server, url, {**headers, "Range": "bytes=0-99"},
                                         method)
            assert status == 403, (method, headers)
            if method == "GET":
                assert got.decode() == (
                    '{"error": "zone \'phu-my\' ' + OUTSIDE + '", "refused": "scope", '
                    '"scope": "an-binh"}')
        status, answer = await call(server, "GET", url, headers=headers)
        assert (status, answer) == (403, outside(f"zone 'phu-my' {OUTSIDE}"))
    # their own commune's operator, and the district's, hear it
    own = await session_of(server, "op-phu-my")
    del own["X-CSRF-Token"]
    for headers in [own, auth()]:
        status, _, got = await fetch(server, url, headers)
        assert status == 200 and got == await asyncio.to_thread(mp3.read_bytes)
    status, answer = await call(server, "GET", "/api/v1/media/0123456789abcdef/audio")
    assert (status, answer) == (404, {"error": "no media item '0123456789abcdef'"})


async def test_a_file_gone_from_the_disk_is_a_404_that_says_so(server: LoaServer,
                                                             tmp_path: Path) -> None:
    mp3 = await tone_file(tmp_path / "mat.mp3", 500, 1.0, ["-c:a", "libmp3lame"])
    status, body = await upload_as(server, auth(), mp3)
    assert status == 201, body
    stored = server.media.get(body["media"]["id"])
    assert stored is not None
    await asyncio.to_thread(Path(stored.path).unlink)
    status, answer = await call(server, "GET", body["media"]["audio_url"])
    assert (status, answer) == (404, {"error": "the audio of 'mat' is missing from the disk"})
