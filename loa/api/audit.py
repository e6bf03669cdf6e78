"""One audit decorator: a handler that changes something returns what it changed, and
``audited`` writes the audit entry with the caller's name, once, after the change succeeded.
A refused request raises (``ApiError`` or a domain error) and leaves no entry. Where it acted
(the zones its scope check named) and the client's address come with the request
(``loa.control.audit.AUDIT_SOURCE``); the store chains the entry to the one before."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from loa.api.resource import actor, server_of


@dataclass(frozen=True)
class Changed:
    """A mutating handler's answer: the response, and the audit entry's ``subject`` (an id,
    or what was imported) and ``detail`` (JSON-able; None for none)."""

    response: web.Response
    subject: str
    detail: dict[str, Any] | None = None


def audited(action: str, atomic: bool = False
            ) -> Callable[[Callable[[web.Request], Awaitable[Changed]]],
                          Callable[[web.Request], Awaitable[web.Response]]]:
    """Make a handler returning ``Changed`` an aiohttp handler that records ``action`` (for
    example ``"media.add"``) in the store's audit log. Put it under the route decorator: a
    route table registers the function it is given.

    ``atomic``: the handler's own store writes and its audit entry are written in one
    transaction (``Store.transaction``), so that a crash cannot keep the change without
    its entry. For handlers whose writes all come after their last await."""
    def wrap(handler: Callable[[web.Request], Awaitable[Changed]]
             ) -> Callable[[web.Request], Awaitable[web.Response]]:
        @functools.wraps(handler)
        async def audited_handler(request: web.Request) -> web.Response:
            store = server_of(request).store
            with store.transaction() if atomic else contextlib.nullcontext():
                changed = await handler(request)
                store.audit(actor(request), action, changed.subject, changed.detail)
            return changed.response

        return audited_handler

    return wrap
