"""Browser sessions (issue 14), on a server whose clock is a fake one: the cookie's attributes,
CSRF protection on every change made with the cookie, logout, the idle timeout, and logins
limited per username and per address (the N+1th wrong password within the window is refused,
and the right one works again once a failure is forgotten)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.config import SessionsConfig
from loa.core.clock import NS_PER_S, FakeClock
from tests.api.accounts import PASSWORD, add_user, log_in, session_of
from tests.server.test_alerts import fake_clock_server
from tests.server.test_api import call

FAILURES = 3  # login_failures of the test server
FORGET_S = 60.0


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[LoaServer, FakeClock]]:
    server, clock = await fake_clock_server(tmp_path, sessions=SessionsConfig(
        idle_timeout_s=30 * 60.0, login_failures=FAILURES, login_forget_s=FORGET_S))
    try:
        await add_user(server, "op", "operator", "an-binh")
        yield server, clock
    finally:
        await server.stop()


def advance(clock: FakeClock, seconds: float) -> None:
    clock.set_ns(clock.now_ns() + int(seconds * NS_PER_S))


async def test_a_login_sets_a_strict_http_only_cookie_and_answers_a_csrf_token(
        clocked: tuple[LoaServer, FakeClock]) -> None:
    server, _ = clocked
    status, body, resp = await log_in(server, "op")
    assert status == 200 and body["user"]["username"] == "op" and body["csrf_token"]
    assert body["idle_timeout_s"] == 1800
    cookie = resp.cookies["loa_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; Secure when the port speaks TLS
    session = await session_of(server, "op")
    status, me = await call(server, "GET", "/api/v1/session",
                            headers={"Cookie": session["Cookie"]})
    assert status == 200 and me["user"] == "op" and me["scope"] == "an-binh"
    assert me["csrf_token"] == session["X-CSRF-Token"]  # for a page reloaded


async def test_a_change_made_with_the_cookie_needs_its_csrf_token(
        clocked: tuple[LoaServer, FakeClock]) -> None:
    server, _ = clocked
    session = await session_of(server, "op")
    cookie_only = {"Cookie": session["Cookie"]}
    volume = {"op": "volume", "volume_pct": 55}
    for headers in (cookie_only, {**cookie_only, "X-CSRF-Token": "doan-mo"}):
        status, body = await call(server, "POST", "/api/v1/zones/an-binh/commands",
                                  json=volume, headers=headers)
        assert status == 403 and "X-CSRF-Token" in body["error"], body
    assert not server.fleet.commands  # refused before its handler ran
    status, _ = await call(server, "GET", "/api/v1/zones", headers=cookie_only)  # a read: yes
    assert status == 200
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/commands", json=volume,
                              headers=session)
    assert status == 202, body
    # another session's CSRF token is not this one's
    other = await session_of(server, "op")
    status, _ = await call(server, "POST", "/api/v1/zones/an-binh/commands", json=volume,
                           headers={**cookie_only, "X-CSRF-Token": other["X-CSRF-Token"]})
    assert status == 403


async def test_logout_and_the_idle_timeout_end_a_session(
        clocked: tuple[LoaServer, FakeClock]) -> None:
    server, clock = clocked
    session = await session_of(server, "op")
    advance(clock, 29 * 60)  # used within the timeout: it lives on, from its last use
    assert (await call(server, "GET", "/api/v1/zones", headers=session))[0] == 200
    advance(clock, 29 * 60)
    assert (await call(server, "GET", "/api/v1/zones", headers=session))[0] == 200
    advance(clock, 31 * 60)  # idle for longer than 30 min
    status, body = await call(server, "GET", "/api/v1/zones", headers=session)
    assert status == 401 and "session has ended" in body["error"]
    session = await session_of(server, "op")
    status, body = await call(server, "POST", "/api/v1/logout",
                              headers={"Cookie": session["Cookie"]})
    assert status == 403  # a change: its CSRF token too
    status, body = await call(server, "POST", "/api/v1/logout", headers=session)
    assert (status, body) == (200, {"logged_out": True})
    assert (await call(server, "GET", "/api/v1/zones", headers=session))[0] == 401


async def test_wrong_passwords_for_a_user_are_refused_after_the_limit(
        clocked: tuple[LoaServer, FakeClock]) -> None:
    server, clock = clocked
    for _ in range(FAILURES):
        status, body, _ = await log_in(server, "op", "sai-mat-khau")
        assert (status, body) == (401, {"error": "wrong username or password"})
    status, body, resp = await log_in(server, "op", "sai-mat-khau")  # the N+1th
    assert status == 429, body
    assert body["error"] == "too many wrong passwords for user 'op': try again in 60 s"
    assert resp.headers["Retry-After"] == "60"
    status, _, _ = await log_in(server, "op")  # unexamined: the right one waits too
    assert status == 429
    advance(clock, FORGET_S)  # one failure forgotten
    status, body, _ = await log_in(server, "op")
    assert status == 200, body
    status, body = await call(server, "GET", "/api/v1/audit?subject=op")
    assert [e["action"] for e in body["audit"]][:6] == [
        "login", "login.refused", "login.refused", "login.failed", "login.failed",
        "login.failed"]


async def test_wrong_passwords_from_an_address_are_refused_after_the_limit(
        clocked: tuple[LoaServer, FakeClock]) -> None:
    server, clock = clocked
    for name in ("khong-co-1", "khong-co-2", "khong-co-3"):  # unknown users count the same
        status, body, _ = await log_in(server, name, "doan-mo")
        assert (status, body) == (401, {"error": "wrong username or password"})
    status, body, _ = await log_in(server, "op")
    assert (status, body) == (429, {"error": "too many wrong passwords from your address: "
                                             "try again in 60 s"})
    advance(clock, FORGET_S)
    status, body, _ = await log_in(server, "op", PASSWORD)
    assert status == 200, body
