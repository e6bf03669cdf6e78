"""One table from errors to HTTP answers, and the middleware that applies it.

A handler does not catch the errors of the domain calls it makes: ``ScopeError``,
``ZoneError``, ``EndpointError``, ``MediaError``, ``ScheduleError``, ``AccountError``,
``CapError``, ``TtsError``, ``DecodeError``, ``DiskFull`` or any other ``ValueError`` reach
``error_middleware``, which answers ``{"error": message}`` with the status ``ERROR_STATUS``
gives the error's class. A handler refuses a request itself by raising ``ApiError(status,
N_("message {field}"), field=…)``; where one error means something else for one handler (a
zone named in a body is a bad request, not a missing page), ``error_status`` says so at the
handler's head.

Every message is said in the language the request's ``Accept-Language`` prefers among
Loa's, Vietnamese by default (``loa.core.i18n``: an ``Explained`` error is translated from
its msgid and fields; a plain error's text when it is a message of the catalogue). A 403
says which kind of refusal it is, for clients that explain it: ``"refused": "scope"`` (the
zone lies outside the caller's scope, also named as ``"scope"``) or ``"refused": "right"``
(the caller's role lacks the right, named as ``"right"``).

Every other error under ``/api/`` and ``/metrics`` is JSON too, with a message that says
what was wrong: aiohttp's own answers (no such route, with a hint when only a trailing slash
is in the way; a method the route does not take, with ``Allow``; a body over a limit…) and a
handler's bug (500, logged with its traceback; the message names no detail).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import hdrs, web

from loa.api.resource import API_PATHS, ApiError, Handler, json_response
from loa.api.uploads import UploadTooLarge
from loa.codecs.decode import DecodeError
from loa.codecs.tts import TtsError
from loa.control.accounts import AccountError, AccountExists, LastAdmin, UnknownAccount
from loa.control.auth import RightError, ScopeError
from loa.control.endpoints import EndpointError
from loa.control.media import MediaError
from loa.control.schedule.recurrence import ScheduleError
from loa.core.disk import DiskFull, is_disk_full
from loa.core.i18n import N_, Message, language_from_header, say
from loa.core.zones import ZoneError
from loa.playout.inputs.push import MountBusy
from loa.protocol.cap import CapError, CapTooLarge

log = logging.getLogger(__name__)

R = TypeVar("R")


def _endpoint_status(exc: Exception) -> int:
    # EndpointError is raised for an unknown endpoint, a taken id and a bad field alike;
    # its message tells them apart.
    message = str(exc)
    if message.startswith("unknown endpoint"):
        return 404
    if message.endswith("exists already"):
        return 409
    return 400


# The first class the error is an instance of gives its status: subclasses before their base.
ERROR_STATUS: tuple[tuple[type[Exception], int | Callable[[Exception], int]], ...] = (
    (DiskFull, 507),  # Insufficient Storage: the message says what could not be written
    (ScopeError, 403),  # outside the caller's scope: the message names the zone and the scope
    (RightError, 403),  # the caller's role lacks the right: the message names it
    (UnknownAccount, 404),
    (AccountExists, 409),
    (LastAdmin, 409),  # the last admin of the whole tree: removed or demoted, nobody left
    (AccountError, 400),
    (UploadTooLarge, 413),
    (CapTooLarge, 413),
    (CapError, 400),
    (ZoneError, 404),  # an unknown zone in the URL
    (EndpointError, _endpoint_status),  # 404 unknown, 409 exists already, else 400
    (MediaError, 400),
    (ScheduleError, 400),
    (ValueError, 400),  # AlertError, a bad priority, a bad time, …
    (TtsError, 400),
    (DecodeError, 400),
)
_MAPPED = tuple(cls for cls, _ in ERROR_STATUS)


def status_of(exc: Exception) -> int | None:
    """The HTTP status ``ERROR_STATUS`` gives ``exc``, or None if it names no class of it."""
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            return status if isinstance(status, int) else status(exc)
    return None


def language_of(request: web.BaseRequest) -> str:
    """The language to answer ``request`` in: its ``Accept-Language``'s choice among Loa's,
    else Vietnamese."""
    return language_from_header(request.headers.get(hdrs.ACCEPT_LANGUAGE))


def error_response(request: web.BaseRequest, status: int, message: str | Message, /,
                   headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    """``{"error": message, **extra}`` with ``status``, the message in the request's
    language (``language_of``)."""
    text = message.say(language_of(request)) if isinstance(message, Message) else message
    return json_response({"error": text, **extra}, status=status,
                         headers=dict(headers) if headers else None)


def _extra_of(exc: Exception) -> dict[str, Any]:
    """What an answer says beside the message, by the error's kind."""
    if isinstance(exc, ScopeError):
        return {"refused": "scope", "scope": exc.scope} if exc.scope else {"refused": "scope"}
    if isinstance(exc, RightError):
        return {"refused": "right", "right": exc.right}
    if isinstance(exc, MountBusy):
        return {"refused": "busy"}
    return {}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error under ``/api/`` or ``/metrics`` as ``{"error": message}``
    (``answer_error``). Other paths pass through untouched."""
    if not request.path.startswith(API_PATHS):
        return await handler(request)
    try:
        return await handler(request)
    except Exception as exc:
        return await answer_error(request, exc)


Statuses = tuple[tuple[type[Exception], int | Callable[[Exception], int]], ...]


async def answer_error(request: web.Request, exc: Exception,
                       statuses: Statuses = ERROR_STATUS) -> web.StreamResponse:
    """``exc`` as a JSON answer in the caller's language: an ``ApiError`` (with its
    ``headers``, if it has some); an error ``statuses`` names (the API's table by default; a
    surface may put its own classes before it); aiohttp's HTTP errors (``http_error``;
    redirects are re-raised); an ``OSError`` that means the disk is full as a 507; anything
    else as a 500 whose traceback is logged. A client that left is re-raised: nobody is
    there to answer."""
    if isinstance(exc, ApiError):
        return error_response(request, exc.status, exc.message,
                              headers=getattr(exc, "headers", None), **exc.extra)
    for cls, status in statuses:
        if isinstance(exc, cls):
            code = status if isinstance(status, int) else status(exc)
            return error_response(request, code, say(exc, language_of(request)),
                                  **_extra_of(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return await http_error(request, exc)
    if isinstance(exc, ConnectionResetError):
        raise exc  # the client left: aiohttp has nobody to answer
    if isinstance(exc, TimeoutError):
        return error_response(request, 504, Message(N_("the request timed out")))
    if is_disk_full(exc):  # a write that did not say what it was: still the disk's refusal
        log.error("API %s %r: the disk has no room: %s", request.method, request.path, exc)
        return error_response(request, 507, Message(
            N_("the data disk is full: the request cannot be stored")))
    log.error("API %s %r failed", request.method, request.path,  # %r: no forged lines
              exc_info=exc)
    return error_response(request, 500, Message(
        N_("internal error: the server log has the details")))


async def http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's HTTP error ``exc`` as a JSON response (answered, not raised: the
    middlewares around see it as any other answer): its body if it is JSON already, else
    its own text when it has more to say than its status line, else a message by status;
    its headers (``Allow``, ``Retry-After``…) kept."""
    headers = {k: v for k, v in exc.headers.items()
               if k.lower() not in ("content-type", "content-length")}
    if exc.content_type == "application/json" and exc.text:
        return web.Response(text=exc.text, status=exc.status, headers=headers,
                            content_type="application/json")
    text = exc.text or ""
    message: str | Message = text
    if text in ("", f"{exc.status}: {exc.reason}"):
        message = await _message_by_status(request, exc)
    else:  # aiohttp's own words (a body over its limit…): a message of the catalogue or not
        message = say(exc, language_of(request)) if text == str(exc) else text
    return error_response(request, exc.status, message, headers=headers)


async def _message_by_status(request: web.Request, exc: web.HTTPException) -> Message:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return Message(N_("{method} is not allowed on {path}; allowed: {allowed}"),
                       {"method": request.method, "path": request.path,
                        "allowed": ", ".join(sorted(exc.allowed_methods))})
    if isinstance(exc, web.HTTPNotFound) and request.match_info.http_exception is not None:
        bare = request.path.rstrip("/")
        if bare != request.path:  # the router refused it: its body is unread, it clones
            match = await request.app.router.resolve(request.clone(rel_url=bare))
            if not isinstance(match.http_exception, web.HTTPNotFound):
                return Message(N_("no such API route: {method} {path} (without the trailing "
                                  "slash: {bare})"),
                               {"method": request.method, "path": request.path, "bare": bare})
        return Message(N_("no such API route: {method} {path}"),
                       {"method": request.method, "path": request.path})
    return Message(N_("HTTP error {status}: {reason}"),
                   {"status": exc.status, "reason": (exc.reason or "").lower()})


def error_status(statuses: Mapping[type[Exception], int]
                 ) -> Callable[[Callable[[web.Request], Awaitable[R]]],
                               Callable[[web.Request], Awaitable[R]]]:
    """For one handler, answer these errors (first matching class of ``statuses``) with
    these statuses instead of the table's; the message stays ``str(exc)``."""
    kinds = tuple(statuses)

    def wrap(handler: Callable[[web.Request], Awaitable[R]]
             ) -> Callable[[web.Request], Awaitable[R]]:
        @functools.wraps(handler)
        async def answered(request: web.Request) -> R:
            try:
                return await handler(request)
            except kinds as exc:
                status = next(s for cls, s in statuses.items() if isinstance(exc, cls))
                message = getattr(exc, "message", None)
                raise ApiError(status, message if isinstance(message, Message)
                               else str(exc)) from exc

        return answered

    return wrap
