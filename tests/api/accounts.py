"""Helpers for the accounts tests: make users through the API, and call it as one of them,
with a personal token or with a browser session (its cookie and CSRF token)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp

from loa.app import LoaServer
from tests.conftest import auth
from tests.server.test_api import call
from tests.server.test_ingest import base

PASSWORD = "mat-khau-du-dai"


async def add_user(server: LoaServer, username: str, role: str | list[str], scope: str,
                   headers: dict[str, str] | None = None) -> dict:
    """A new user (by the admin token unless ``headers`` say otherwise); asserts it was made."""
    status, body = await call(server, "POST", "/api/v1/users", json={
        "username": username, "password": PASSWORD, "role": role, "scope": scope},
        headers=headers)
    assert status == 201, body
    return body["user"]


async def token_of(server: LoaServer, username: str) -> dict[str, str]:
    """Headers with a new personal token of ``username`` (made by the admin), asking for
    messages in English."""
    status, body = await call(server, "POST", f"/api/v1/users/{username}/tokens",
                              json={"name": "test"})
    assert status == 201, body
    return {"Authorization": f"Bearer {body['token']}", "Accept-Language": "en"}


async def log_in(server: LoaServer, username: str, password: str = PASSWORD
                 ) -> tuple[int, dict, aiohttp.ClientResponse]:
    """POST /api/v1/login, asking for messages in English: (status, body, the response, for
    its cookie and headers)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/login",
                             json={"username": username, "password": password},
                             headers={"Accept-Language": "en"}) as resp:
            return resp.status, await resp.json(), resp


async def session_of(server: LoaServer, username: str, password: str = PASSWORD
                     ) -> dict[str, str]:
    """Headers of a logged-in browser: the session cookie and its CSRF token (and messages
    asked for in English)."""
    status, body, resp = await log_in(server, username, password)
    assert status == 200, body
    cookie = resp.cookies["loa_session"].value
    return {"Cookie": f"loa_session={cookie}", "X-CSRF-Token": body["csrf_token"],
            "Accept-Language": "en"}


async def upload_as(server: LoaServer, headers: dict[str, str], path: Path) -> tuple[int, dict]:
    """A media upload (multipart) with ``headers``."""
    form = aiohttp.FormData()
    data = await asyncio.to_thread(path.read_bytes)
    form.add_field("file", io.BytesIO(data), filename=path.name)
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/media", data=form,
                             headers=headers) as resp:
            return resp.status, await resp.json()


def admin() -> dict[str, str]:
    """The environment's admin token (every zone)."""
    return auth()
