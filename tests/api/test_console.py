"""The operator console's files (``loa.api.console``), served by Loa itself through its real
port: the sign-in form at ``/``, each file with an ETag (304 when the browser's copy is
current), the catalogues as JSON, the font, a strict Content-Security-Policy, 404 for what
the console does not have."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import aiohttp
from multidict import CIMultiDict

from loa.app import LoaServer
from loa.core.i18n import translate
from tests.server.test_ingest import base


class Inputs(HTMLParser):
    """The names of the inputs of each form of a page, by form id."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, list[str]] = {}
        self._form: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "form":
            self._form = named.get("id") or ""
            self.forms[self._form] = []
        elif tag == "input" and self._form is not None:
            self.forms[self._form].append(named.get("name") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


async def get(server: LoaServer, path: str, headers: dict[str, str] | None = None
              ) -> tuple[int, CIMultiDict[str], bytes]:
    """(status, headers, body) of a GET without credentials."""
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + path, headers=headers) as resp:
            return resp.status, resp.headers.copy(), await resp.read()


async def test_the_root_serves_the_sign_in_form(server: LoaServer) -> None:
    status, headers, body = await get(server, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = Inputs()
    page.feed(body.decode())
    assert page.forms["login"] == ["username", "password"]
    assert '<html lang="vi">' in body.decode()


async def test_a_console_file_has_an_etag_and_answers_304_when_current(
        server: LoaServer) -> None:
    status, headers, body = await get(server, "/console/app.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert body and headers["Cache-Control"] == "no-cache"
    etag = headers["ETag"]
    status, headers, body = await get(server, "/console/app.js", {"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["ETag"] == etag
    status, _, body = await get(server, "/console/app.js", {"If-None-Match": '"autre"'})
    assert status == 200 and body


async def test_the_vietnamese_catalogue_is_served_as_json(server: LoaServer) -> None:
    status, headers, body = await get(server, "/console/i18n/vi.json")
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    messages = json.loads(body)
    vietnamese = translate("vi", "Reports")
    assert vietnamese != "Reports" and messages["Reports"] == vietnamese
    status, _, body = await get(server, "/console/i18n/en.json")
    assert status == 200 and json.loads(body) == {}  # the msgids are the English


async def test_an_unknown_file_is_404(server: LoaServer) -> None:
    for path in ("/console/khong-co.js", "/console/../app.py", "/console/i18n/fr.json"):
        status, _, _ = await get(server, path)
        assert status == 404, path


async def test_every_answer_carries_a_strict_content_security_policy(server: LoaServer) -> None:
    for path in ("/", "/console/app.css", "/console/fonts/be-vietnam-pro-400.woff2"):
        status, headers, _ = await get(server, path)
        assert status == 200, path
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert headers["X-Content-Type-Options"] == "nosniff"


async def test_the_font_and_its_licence_are_served(server: LoaServer) -> None:
    for weight in (400, 600):
        status, headers, body = await get(server, f"/console/fonts/be-vietnam-pro-{weight}.woff2")
        assert status == 200 and headers["Content-Type"] == "font/woff2"
        assert body[:4] == b"wOF2"
    status, _, body = await get(server, "/console/fonts/OFL.txt")
    assert status == 200 and b"SIL OPEN FONT LICENSE Version 1.1" in body
