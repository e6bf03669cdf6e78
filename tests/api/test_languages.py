"""The API's messages come from the same catalogue as the command line's, in the language the
request's ``Accept-Language`` prefers: Vietnamese when it names none Loa speaks (issue 14).
The expected Vietnamese is what the catalogue says (``translate``), and it must not be the
English: an untranslated message would pass a comparison with itself."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from loa.app import LoaServer
from loa.control.accounts import Role
from loa.core.i18n import translate
from tests.conftest import ADMIN_TOKEN

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def call(server: LoaServer, method: str, path: str, headers: dict[str, str],
               json: Any = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"http://127.0.0.1:{server.port}{path}", json=json,
                                headers=headers) as resp:
            return resp.status, await resp.json()


@pytest.mark.parametrize(("accept", "language"), [
    (None, "vi"), ("vi-VN,vi;q=0.9", "vi"), ("en", "en"), ("fr-FR, en;q=0.5", "en"),
    ("fr", "vi"), ("en;q=0.3, vi;q=0.8", "vi"),
])
async def test_an_error_is_said_in_the_language_the_request_asks_for(
        server: LoaServer, accept: str | None, language: str) -> None:
    headers = dict(BEARER, **({"Accept-Language": accept} if accept else {}))
    status, body = await call(server, "POST", "/api/v1/zones/thon-khong-co/live", headers,
                              json={"mount": "studio"})
    english = translate("en", "unknown zone {zone!r}", zone="thon-khong-co")
    vietnamese = translate("vi", "unknown zone {zone!r}", zone="thon-khong-co")
    assert status == 404
    assert vietnamese != english and "thon-khong-co" in vietnamese
    assert body["error"] == (vietnamese if language == "vi" else english)


async def test_a_scope_refusal_in_vietnamese_names_the_zone_and_the_scope(
        server: LoaServer) -> None:
    roots = server.zones.roots()
    commune = roots[0].children[0].id
    other = next(z.id for z in server.zones if z.id != commune and z.parent_id is not None
                 and not server.zones.get(z.id).parent_id == commune)
    user = {"username": "xa", "password": "mat-khau-dai-du", "role": Role.OPERATOR.value,
            "scope": commune}
    status, created = await call(server, "POST", "/api/v1/users", BEARER, json=user)
    assert status == 201, created
    status, token = await call(server, "POST", "/api/v1/users/xa/tokens", BEARER,
                               json={"name": "cli"})
    assert status == 201, token
    status, body = await call(server, "POST", f"/api/v1/zones/{other}/live",
                              {"Authorization": f"Bearer {token['token']}"},
                              json={"mount": "studio"})
    assert status == 403
    assert body["error"] == translate("vi", "zone {zone!r} is outside your scope ({scope})",
                                      zone=other, scope=commune)
    assert body["error"] != translate("en", "zone {zone!r} is outside your scope ({scope})",
                                      zone=other, scope=commune)
    assert (body["refused"], body["scope"]) == ("scope", commune)


async def test_aiohttp_s_own_refusals_are_translated_too(server: LoaServer) -> None:
    status, body = await call(server, "PUT", "/api/v1/status", BEARER)
    assert status == 405
    english = translate("en", "{method} is not allowed on {path}; allowed: {allowed}",
                        method="PUT", path="/api/v1/status", allowed="GET, HEAD")
    assert body["error"] == translate(
        "vi", "{method} is not allowed on {path}; allowed: {allowed}", method="PUT",
        path="/api/v1/status", allowed="GET, HEAD") != english
