"""HTTP/1.x request heads as the front door reads them (Icecast sources, listeners, everything
else), and the small raw responses it writes before a socket is handed on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes, urlsplit

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request line and headers as the front door parsed them. ``target`` is ASCII: bytes
    outside ASCII that a client sent raw (UTF-8, unescaped) are percent-encoded, as browsers
    do (RFC 3986 §2.1); ``path`` is percent-decoded as UTF-8."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined by ", "

    def header(self, name: str, default: str = "") -> str:
        """A header's value by case-insensitive name, or ``default``."""
        return self.headers.get(name.lower(), default)


class HeadError(ValueError):
    """A request head that is not HTTP/1.x or ICE/1.x, or has a malformed line."""

    pass


def parse_head(raw: bytes) -> RequestHead:
    """Parse a request head (the bytes before the blank line, latin-1). Accepts
    ``HTTP/1.x`` and Icecast's ``ICE/1.x``, and a target with raw UTF-8 in it (encoders send
    Vietnamese titles unescaped); raises HeadError otherwise."""
    try:
        text = raw.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HeadError("malformed request line") from None
    if not version.startswith(("HTTP/1.", "ICE/1.")):
        raise HeadError("unsupported protocol version")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HeadError("malformed header line")
        key = name.strip().lower()
        # a repeated field is one list, its values joined (RFC 9110 §5.3): two
        # Transfer-Encoding lines are both seen, two Content-Lengths no longer read as one
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    target = _escape_non_ascii(target)
    split = urlsplit(target)
    return RequestHead(method.upper(), target, unquote(split.path), split.query, version, headers)


_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _escape_non_ascii(target: str) -> str:
    """A latin-1-decoded target with each non-ASCII byte as ``%XX``."""
    raw = target.encode("latin-1")
    return _NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], raw).decode("ascii")


def ascii_request_line(raw: bytes) -> bytes:
    """``raw`` (a request as received, head and maybe body) with the non-ASCII bytes of its
    request line percent-encoded, the rest untouched: aiohttp's parser answers a raw UTF-8
    target (``GET /admin/metadata?song=Bản…``) with 400, where Icecast takes it."""
    eol = raw.find(b"\r\n")
    line = raw if eol < 0 else raw[:eol]
    if line.isascii():
        return raw
    return _NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], line) + raw[len(line):]


def query_bytes(query: str) -> dict[str, bytes]:
    """The fields of a query string (``a=1&b=Caf%E9``), percent-decoded to bytes with ``+`` as a
    space, as Icecast's parser does before any ``charset`` applies; a repeated name keeps its
    first value. Characters outside ASCII count as their UTF-8 bytes."""
    fields: dict[str, bytes] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        key = unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace")
        fields.setdefault(key, unquote_to_bytes(value.replace("+", " ")))
    return fields


def simple_response(status: int, body: str = "", extra: dict[str, str] | None = None,
                    version: str = "HTTP/1.0", connection: str = "close",
                    as_json: bool = False) -> bytes:
    """A complete response: status line, ``Connection`` (``close`` unless the caller keeps
    the connection: ``keep-alive``, ``Upgrade``), optional body (text/plain with a newline
    added; with ``as_json``, ``{"error": body}`` as the API answers errors) and ``extra``
    headers, encoded latin-1."""
    if as_json and body:
        payload = (json.dumps({"error": body}, ensure_ascii=False) + "\n").encode()
        content_type = "application/json; charset=utf-8"
    else:
        payload = (body + "\n").encode() if body else b""
        content_type = "text/plain; charset=utf-8"
    lines = [f"{version} {status} {REASONS.get(status, '')}", "Server: Loa",
             f"Connection: {connection}"]
    if payload:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload

