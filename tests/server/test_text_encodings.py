"""Text in legacy encodings and both Unicode normal forms (issue 12, kind 7): encoder metadata
in the charset it names, raw UTF-8 in a request line, and file names typed NFC that are stored
NFD (a Mac's uploads), or the reverse."""

from __future__ import annotations

import asyncio
import html
import json
import shutil
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.core.pcm import SAMPLE_RATE
from loa.core.text import TextError, decode_text
from loa.protocol.http import ascii_request_line, parse_head, query_bytes
from tests.audio import closed, dominant_hz, make_tone_file, rms
from tests.conftest import ADMIN_TOKEN, SOURCE_PASSWORD, auth
from tests.server.test_alerts import ear, fake_clock_server, tick
from tests.server.test_api import call
from tests.server.test_engine import heard
from tests.server.test_http_front import Door
from tests.server.test_ingest import basic, take_live


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


async def raw_http(server: LoaServer, request: bytes) -> tuple[int, bytes]:
    """One request written byte for byte on a raw socket: (status, body). The server closes
    every connection after its answer, so the answer is read to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    await closed(writer)
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def metadata_request(query: bytes, password: str = SOURCE_PASSWORD) -> bytes:
    return (b"GET /admin/metadata?mount=/live/studio&mode=updinfo&" + query + b" HTTP/1.1\r\n"
            b"Host: loa\r\nAuthorization: Basic " + basic(password).encode() + b"\r\n\r\n")


async def shown_title(server: LoaServer) -> str:
    """The studio mount's title as the status API shows it."""
    status, body = await call(server, "GET", "/api/v1/status")
    assert status == 200
    [mount] = [m for m in body["mounts"] if m["mount"] == "studio"]
    return str(mount["title"])


# the pure parts


def test_text_is_decoded_in_the_charset_it_names_and_kept_composed() -> None:
    assert decode_text(b"Caf\xe9 M\xfcller", "ISO-8859-1") == "Café Müller"
    assert decode_text(b"Caf\xe9", "latin1") == decode_text(b"Caf\xe9", "windows-1252")
    assert decode_text("Bản tin sáng".encode()) == "Bản tin sáng"  # UTF-8 by default
    assert decode_text(nfd("Bản tin sáng").encode()) == "Bản tin sáng"  # stored NFC
    assert decode_text("Cà Mau".encode("cp1258"), "windows-1258") == "Cà Mau"


@pytest.mark.parametrize(("raw", "charset", "says"), [
    (b"Caf\xe9", "", "not valid UTF-8: byte 0xE9 at offset 3 (name its charset"),
    (b"Caf\xe9", "utf-8", "not valid utf-8: byte 0xE9 at offset 3"),
    (b"x", "klingon", "unknown charset 'klingon'"),
    (b"x", "base64", "unknown charset 'base64'"),  # a codec, but not one of text
])
def test_text_that_is_not_what_it_claims_is_refused_never_replaced(
        raw: bytes, charset: str, says: str) -> None:
    with pytest.raises(TextError) as caught:
        decode_text(raw, charset)
    assert says in str(caught.value)


def test_a_query_is_read_to_bytes_before_any_charset_applies() -> None:
    assert query_bytes("song=Caf%E9+M%FCller&charset=ISO-8859-1&song=second&flag") == {
        "song": b"Caf\xe9 M\xfcller", "charset": b"ISO-8859-1", "flag": b""}
    assert query_bytes("song=B%E1%BA%A3n") == {"song": "Bản".encode()}
    assert query_bytes("song=Bản") == {"song": "Bản".encode()}  # unescaped: its UTF-8


def test_a_raw_utf8_target_is_read_as_utf8_and_escaped_for_whoever_reads_it_next() -> None:
    line = "GET /zones/vùng/stream.ogg?song=Bản+tin HTTP/1.1".encode()
    head = parse_head(line + b"\r\nHost: loa")
    assert head.path == "/zones/vùng/stream.ogg"
    assert head.target == "/zones/v%C3%B9ng/stream.ogg?song=B%E1%BA%A3n+tin"
    assert head.target.isascii() and query_bytes(head.query) == {"song": "Bản tin".encode()}
    body = "\r\n\r\nthân bài không đổi".encode()  # only the request line is escaped
    assert ascii_request_line(line + body) == (
        b"GET /zones/v%C3%B9ng/stream.ogg?song=B%E1%BA%A3n+tin HTTP/1.1" + body)
    ascii_only = b"GET /api/v1/zones HTTP/1.1\r\nX: \xc3\xa1\r\n\r\n"
    assert ascii_request_line(ascii_only) is ascii_only


async def test_the_front_door_hands_aiohttp_the_escaped_request_line() -> None:
    door = Door(take=False)
    door.send("GET /api/v1/media/tệp HTTP/1.1\r\nHost: loa\r\n\r\n".encode())
    [(head, _)] = door.routed
    assert head.path == "/api/v1/media/tệp"
    [fb] = door.fallbacks
    assert fb.data == b"GET /api/v1/media/t%E1%BB%87p HTTP/1.1\r\nHost: loa\r\n\r\n"


# /admin/metadata as encoders send it


async def test_latin1_metadata_is_stored_and_shown_as_written(server: LoaServer) -> None:
    await take_live(server, "huyen", "studio")
    status, body = await raw_http(server, metadata_request(
        b"song=Caf%E9%20M%FCller&charset=ISO-8859-1"))
    assert status == 200 and b"<return>1</return>" in body
    assert server.mounts.get("studio").title == "Café Müller"
    assert await shown_title(server) == "Café Müller"


async def test_raw_utf8_vietnamese_metadata_is_accepted(server: LoaServer) -> None:
    await take_live(server, "huyen", "studio")
    status, body = await raw_http(server, metadata_request(
        "song=Bản+tin+thời+sự+tối".encode()))  # not percent-encoded: as curl sends it
    assert status == 200, body
    assert await shown_title(server) == "Bản tin thời sự tối"
    # decomposed (as a Mac may send it): stored composed
    status, _ = await raw_http(server, metadata_request(
        nfd("song=Phát+thanh+xã&charset=UTF-8").encode()))
    assert status == 200 and await shown_title(server) == "Phát thanh xã"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_sends_vietnamese_metadata_raw_and_it_is_taken(server: LoaServer) -> None:
    await take_live(server, "huyen", "studio")
    url = (f"http://127.0.0.1:{server.port}/admin/metadata?mount=/live/studio&mode=updinfo"
           "&song=Thông+báo+lịch+tiêm+chủng")
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-m", "10", "-u", f"source:{SOURCE_PASSWORD}", "-w", "\n%{http_code}",
        url, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert out.endswith(b"\n200"), out
    assert await shown_title(server) == "Thông báo lịch tiêm chủng"


@pytest.mark.parametrize(("query", "says"), [
    (b"song=Caf%E9&charset=klingon", "unknown charset 'klingon'"),
    (b"song=Caf%E9", "not valid UTF-8: byte 0xE9"),  # no charset named: UTF-8, strictly
    (b"song=Caf%E9&charset=UTF-8", "not valid UTF-8: byte 0xE9"),
])
async def test_text_not_in_its_charset_is_a_400_saying_why(server: LoaServer, query: bytes,
                                                            says: str) -> None:
    await take_live(server, "huyen", "studio")
    status, _ = await raw_http(server, metadata_request(b"song=Tr%C6%B0%E1%BB%9Bc"))
    assert status == 200 and await shown_title(server) == "Trước"
    status, body = await raw_http(server, metadata_request(query))
    assert status == 400 and b"<return>0</return>" in body
    assert says in html.unescape(body.decode())
    assert await shown_title(server) == "Trước"  # nothing garbled was stored
    # the password is checked first: a stranger learns nothing about charsets
    status, _ = await raw_http(server, metadata_request(query, password="wrong"))
    assert status == 401


# raw UTF-8 elsewhere: aiohttp's routes and the raw stream route both read it


async def test_raw_utf8_reaches_any_route_decoded(server: LoaServer) -> None:
    status, body = await raw_http(server, "GET /api/v1/media/tệp-âm-thanh HTTP/1.1\r\n"
                                  f"Host: loa\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                                  "Accept-Language: en\r\n\r\n"
                                  .encode())
    assert status == 404 and json.loads(body)["error"] == "no media item 'tệp-âm-thanh'"
    status, body = await raw_http(server, "GET /zones/vùng-lạ/stream.ogg HTTP/1.1\r\n\r\n".encode())
    assert status == 404 and "vùng-lạ" in body.decode()


# file names in either normal form


NAME = "Thời sự/Bản tin sáng.mp3"  # a folder and a file, each with Vietnamese marks


@pytest.mark.parametrize(("stored", "typed"), [(nfd, nfc), (nfc, nfd)], ids=["nfd-on-disk",
                                                                               "nfc-on-disk"])
async def test_a_file_name_finds_its_file_in_the_other_normal_form(
        tmp_path: Path, stored: Callable[[str], str], typed: Callable[[str], str]) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        path = server.media_dir / stored(NAME)
        await asyncio.to_thread(path.parent.mkdir)
        await asyncio.to_thread(make_tone_file, path, 700, 2.0, ["-c:a", "libmp3lame"])
        assert not (server.media_dir / typed(NAME)).exists()  # the exact name is not there
        listener = ear(server, "an-binh-1", "loa-001")
        status, body = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                  json={"source": {"kind": "file", "path": typed(NAME)}})
        assert status == 201, body
        await tick(server, clock, 50)
        _, pcm = await asyncio.to_thread(heard, listener)
        second = pcm[int(0.2 * SAMPLE_RATE):int(0.9 * SAMPLE_RATE)]
        assert rms(second) > 0.01
        assert abs(dominant_hz(second) - 700) < 5
    finally:
        await server.stop()


async def test_an_upload_named_on_a_mac_is_kept_composed(server: LoaServer,
                                                        tmp_path: Path) -> None:
    wav = await asyncio.to_thread(make_tone_file, tmp_path / "t.wav", 500, 0.5,
                                  ["-c:a", "pcm_s16le"])
    data = await asyncio.to_thread(wav.read_bytes)
    item, created = await server.media.add(data, nfd("Bản tin sáng.wav"), "test", "",
                                           [nfd("sáng"), "tin"])
    assert created
    assert (item.filename, item.title, item.tags) == ("Bản tin sáng.wav", "Bản tin sáng",
                                                      ["sáng", "tin"])
    status, body = await call(server, "GET", f"/api/v1/media/{item.id}", headers=auth())
    assert status == 200 and body["media"]["title"] == "Bản tin sáng"
