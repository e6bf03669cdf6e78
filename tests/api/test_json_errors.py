"""Every error under /api/ is JSON with a message, aiohttp's own included (issue 13): an
unknown route, a trailing slash, a method a route does not take, a body over its limit.
And a JSON body saved with a byte-order mark is read. Raw sockets: what a client sees on
the wire."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from loa.app import LoaServer
from tests.audio import closed
from tests.conftest import ADMIN_TOKEN

AUTH = f"Authorization: Bearer {ADMIN_TOKEN}\r\nAccept-Language: en\r\n"


async def exchange(server: LoaServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; (status, headers with lower-case names, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(":") for ln in lines)}
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    finally:
        await closed(writer)
    return int(status_line.split()[1]), headers, body


async def json_error(server: LoaServer, request: bytes) -> tuple[int, dict[str, str], Any]:
    status, headers, body = await exchange(server, request)
    assert headers["content-type"].startswith("application/json"), (status, headers, body)
    return status, headers, json.loads(body)


async def test_an_unknown_route_is_a_json_404_naming_it(server: LoaServer) -> None:
    status, headers, body = await json_error(
        server, f"GET /api/v1/nothing-here HTTP/1.1\r\nHost: loa\r\n{AUTH}\r\n".encode())
    assert (status, body) == (404, {"error": "no such API route: GET /api/v1/nothing-here"})
    assert headers["connection"] == "close"  # as every API answer: the next comes anew


async def test_a_trailing_slash_is_a_json_404_that_says_so(server: LoaServer) -> None:
    status, _, body = await json_error(
        server, f"GET /api/v1/zones/ HTTP/1.1\r\nHost: loa\r\n{AUTH}\r\n".encode())
    assert (status, body) == (404, {"error": "no such API route: GET /api/v1/zones/ (without "
                                             "the trailing slash: /api/v1/zones)"})
    status, _, body = await json_error(
        server, f"GET /api/v1/endpoints/loa-001/ HTTP/1.1\r\nHost: loa\r\n{AUTH}\r\n".encode())
    assert status == 404 and body["error"].endswith("(without the trailing slash: "
                                                    "/api/v1/endpoints/loa-001)")


async def test_a_method_a_route_does_not_take_is_a_json_405_with_allow(
    server: LoaServer,
) -> None:
    status, headers, body = await json_error(
        server, f"PUT /api/v1/zones HTTP/1.1\r\nHost: loa\r\n{AUTH}Content-Length: 0\r\n\r\n"
        .encode())
    assert status == 405 and headers["allow"] == "GET,HEAD"
    assert body == {"error": "PUT is not allowed on /api/v1/zones; allowed: GET, HEAD"}


async def test_a_json_body_over_its_limit_is_a_json_413_however_it_is_sent(
    server: LoaServer,
) -> None:
    big = json.dumps({"id": "loa-900", "zone": "phu-my-2", "name": "x" * 70_000}).encode()
    status, _, body = await json_error(
        server, f"POST /api/v1/endpoints HTTP/1.1\r\nHost: loa\r\n{AUTH}"
        f"Content-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big)
    assert (status, body) == (413, {"error": "JSON bodies are limited to 64 KiB"})
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 8192]), big[i:i + 8192])
                       for i in range(0, len(big), 8192)) + b"0\r\n\r\n"
    status, _, body = await json_error(
        server, f"POST /api/v1/endpoints HTTP/1.1\r\nHost: loa\r\n{AUTH}"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + chunked)
    assert (status, body) == (413, {"error": "JSON bodies are limited to 64 KiB"})
    assert "loa-900" not in server.endpoints.endpoints


async def test_a_json_body_with_a_byte_order_mark_is_read(server: LoaServer) -> None:
    """As Notepad and PowerShell's ``Out-File -Encoding utf8`` save it."""
    payload = b"\xef\xbb\xbf" + json.dumps(
        {"id": "loa-901", "zone": "phu-my-2", "name": "Cụm loa chợ"}, ensure_ascii=False
    ).encode()
    status, _, body = await json_error(
        server, f"POST /api/v1/endpoints HTTP/1.1\r\nHost: loa\r\n{AUTH}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload)
    assert status == 201, body
    assert server.endpoints.get("loa-901").name == "Cụm loa chợ"
    status, _, body = await json_error(
        server, f"POST /api/v1/endpoints HTTP/1.1\r\nHost: loa\r\n{AUTH}"
        "Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{nope".encode())
    assert (status, body) == (400, {"error": "body is not valid JSON"})


async def test_errors_outside_the_api_are_left_as_they_were(server: LoaServer) -> None:
    status, headers, _ = await exchange(server, b"GET /nothing-here HTTP/1.1\r\nHost: loa\r\n\r\n")
    assert status == 404 and headers["content-type"].startswith("text/plain")
