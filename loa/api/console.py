"""The operator console: the browser pages at ``/`` and their files under ``/console/``.

The console is static files (``loa/web``: ``index.html``, ES modules, a stylesheet and the
fonts), served by Loa itself so that it works with no internet: nothing comes from a CDN and
nothing is built on the user's machine. They are read once, beside the loop, when the server
starts (``ConsoleFiles.load``), and answered from memory with an ``ETag``; a browser revalidates
them (``Cache-Control: no-cache``), so a new Loa is seen at the next reload.

The console speaks through the same API as every other client, with the session cookie and
its CSRF token (``loa.api.sessions``); the files themselves need no sign-in (they hold no
data). ``/console/i18n/<lang>.json`` is the message catalogue of that language
(``loa.core.i18n``) as a JSON object ``{msgid: translation}``, from which the pages translate
their texts: the same catalogue as the API's messages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from loa.core.i18n import LANGUAGES, SOURCE_LANGUAGE, catalogue

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
CONSOLE_PREFIX = "/console/"
# what the console's files may be; anything else under loa/web is not served
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
         ".woff2": "font/woff2", ".svg": "image/svg+xml", ".png": "image/png",
         ".txt": "text/plain", ".json": "application/json", ".ico": "image/x-icon"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # everything from Loa itself; media (the listen button) too; no inline script
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; "
                                "media-src 'self' blob:; connect-src 'self'; "
                                "style-src 'self'; script-src 'self'; object-src 'none'; "
                                "frame-ancestors 'none'; base-uri 'none'; "
                                "form-action 'self'"),
}


@dataclass(frozen=True, slots=True)
class ConsoleFile:
    """One file of the console, in memory: its bytes, content type and ETag."""

    body: bytes
    content_type: str
    etag: str


class ConsoleFiles:
    """The console's files by their path under ``/console/`` (``index.html`` also at ``/``),
    and the catalogues as JSON. Build with ``load`` (blocking: file I/O, beside the loop)."""

    def __init__(self, files: dict[str, ConsoleFile]) -> None:
        self.files = files

    @classmethod
    def load(cls, root: Path = WEB_DIR) -> ConsoleFiles:
        """Read every servable file under ``root``, and each language's catalogue as
        ``i18n/<lang>.json`` (blocking)."""
        files: dict[str, ConsoleFile] = {}
        for path in sorted(root.rglob("*")):
            kind = TYPES.get(path.suffix.lower())
            if not path.is_file() or kind is None:
                continue
            files[path.relative_to(root).as_posix()] = _file(path.read_bytes(), kind)
        for language in LANGUAGES:
            files[f"i18n/{language}.json"] = _file(
                json.dumps(catalogue_json(language), ensure_ascii=False,
                           sort_keys=True).encode(), "application/json")
        return cls(files)

    def answer(self, request: web.Request, name: str) -> web.Response:
        """The file ``name`` (404 if the console has none), or 304 when the browser's copy
        is current (``If-None-Match``)."""
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound(text="no such console file")
        headers = {hdrs.ETAG: found.etag, hdrs.CACHE_CONTROL: "no-cache", **SECURITY_HEADERS}
        if request.headers.get(hdrs.IF_NONE_MATCH) == found.etag:
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if found.content_type.startswith(("text/", "application/json")) \
            else None
        return web.Response(body=found.body, content_type=found.content_type, charset=charset,
                            headers=headers)

    async def index(self, request: web.Request) -> web.Response:
        """``GET /``: the console (its sign-in form for a visitor without a session)."""
        return self.answer(request, "index.html")

    async def file(self, request: web.Request) -> web.Response:
        """``GET /console/{name}``: one of the console's files."""
        return self.answer(request, request.match_info["name"])

    def routes(self) -> list[web.RouteDef]:
        """The console's routes, for ``web.Application.add_routes``."""
        return [web.get("/", self.index), web.get(CONSOLE_PREFIX + "{name:.+}", self.file)]


def catalogue_json(language: str) -> dict[str, str]:
    """The translated messages of ``language``'s catalogue as ``{msgid: translation}``
    (singular messages only; English: empty, the msgids are the English)."""
    if language == SOURCE_LANGUAGE:
        return {}
    messages = getattr(catalogue(language), "_catalog", {})  # GNUTranslations' table
    return {k: v for k, v in messages.items() if isinstance(k, str) and k and v}


def _file(body: bytes, content_type: str) -> ConsoleFile:
    digest = hashlib.sha256(body).hexdigest()[:20]
    return ConsoleFile(body, content_type, f'"{digest}"')
