"""Every ``/api/v1`` route, gathered from the resource modules for the composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from loa.api import (
    alerts,
    commands,
    endpoints,
    events,
    media,
    reports,
    schedule,
    sessions,
    status,
    users,
    zones,
)

if TYPE_CHECKING:
    from loa.app import LoaServer

RESOURCES = (status, zones, commands, endpoints, alerts, schedule, media, reports, users,
             sessions, events)


class Api:
    """The ``/api/v1`` routes and ``/metrics``. The handlers are functions of their resource
    modules; each finds the LoaServer on the application (``SERVER_KEY``, which the
    composition root sets), checks its right with ``require`` (reads need only a valid
    token or session) and its scope with ``scoped`` (``loa.api.resource``), leaves errors to
    ``error_middleware`` and audits changes with ``audited``."""

    def __init__(self, server: LoaServer) -> None:
        self.server = server

    def routes(self) -> list[web.AbstractRouteDef]:
        """Every route with its handler, for ``web.Application.add_routes``."""
        return [route for resource in RESOURCES for route in resource.routes]
