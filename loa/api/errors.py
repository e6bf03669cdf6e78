"""One table from errors to HTTP answers, and the middleware that applies it.

A handler does not catch the errors of the domain calls it makes: ``ScopeError``,
``ZoneError``, ``EndpointError``, ``MediaError``, ``ScheduleError``, ``AccountError``,
``CapError``, ``TtsError``, ``DecodeError``, ``DiskFull`` or any other ``ValueError`` reach
``error_middleware``, which answers
``{"error": str(exc)}`` with the status ``ERROR_STATUS`` gives the error's class. A handler
refuses a request itself by raising ``ApiError(status, message)``; where one error means
something else for one handler (a zone named in a body is a bad request, not a missing
page), ``error_status`` says so at the handler's head.

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

from aiohttp import web

from loa.api.resource import API_PATHS, Handler, json_response
from loa.api.uploads import UploadTooLarge
from loa.codecs.decode import DecodeError
from loa.codecs.tts import TtsError
from loa.control.accounts import AccountError, AccountExists, UnknownAccount
from loa.control.auth import ScopeError
from loa.control.endpoints import EndpointError
from loa.control.media import MediaError
from loa.control.schedule.recurrence import ScheduleError
from loa.core.disk import DiskFull, is_disk_full
from loa.core.zones import ZoneError
from loa.protocol.cap import CapError, CapTooLarge

log = logging.getLogger(__name__)

R = TypeVar("R")


class ApiError(Exception):
    """A request refused by its handler: answered with ``status`` and the JSON body
    ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


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
    (UnknownAccount, 404),
    (AccountExists, 409),
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


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    """``{"error": message, **extra}`` with ``status``."""
    return json_response({"error": message, **extra}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error under ``/api/`` or ``/metrics`` as ``{"error": message}``: an
    ``ApiError``; an error ``ERROR_STATUS`` names; aiohttp's HTTP errors (``http_error``;
    redirects pass untouched); an ``OSError`` that means the disk is full as a 507; anything
    else as a 500 whose traceback is logged. Other paths pass through untouched."""
    if not request.path.startswith(API_PATHS):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, **exc.extra)
    except _MAPPED as exc:
        status = status_of(exc)
        assert status is not None  # every class of _MAPPED is in the table
        return error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await http_error(request, exc)
    except ConnectionResetError:
        raise  # the client left: aiohttp has nobody to answer
    except TimeoutError:
        return error_response(504, "the request timed out")  # as aiohttp answers it
    except Exception as exc:
        if is_disk_full(exc):  # a write that did not say what it was: still the disk's refusal
            log.error("API %s %r: the disk has no room: %s", request.method, request.path, exc)
            return error_response(507, "the data disk is full: the request cannot be stored")
        log.exception("API %s %r failed", request.method, request.path)  # %r: no forged lines
        return error_response(500, "internal error: the server log has the details")


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
    message = exc.text or ""
    if message in ("", f"{exc.status}: {exc.reason}"):
        message = await _message_by_status(request, exc)
    return json_response({"error": message}, status=exc.status, headers=headers)


async def _message_by_status(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return (f"{request.method} is not allowed on {request.path}; allowed: "
                f"{', '.join(sorted(exc.allowed_methods))}")
    if isinstance(exc, web.HTTPNotFound) and request.match_info.http_exception is not None:
        message = f"no such API route: {request.method} {request.path}"
        bare = request.path.rstrip("/")
        if bare != request.path:  # the router refused it: its body is unread, it clones
            match = await request.app.router.resolve(request.clone(rel_url=bare))
            if not isinstance(match.http_exception, web.HTTPNotFound):
                message += f" (without the trailing slash: {bare})"
        return message
    return exc.reason.lower() if exc.reason else f"HTTP error {exc.status}"


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
                raise ApiError(status, str(exc)) from exc

        return answered

    return wrap
