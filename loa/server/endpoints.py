"""Endpoints (cụm loa): each belongs to one zone; its streams resolve through that zone.

Moving an endpoint moves its open connections to the new zone's streams in place: no reconnect.
(Persistence, credentials and the MQTT side arrive with the fleet issue.)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from loa.server.fanout import Subscriber
from loa.server.outputs.websocket import WS_OPCODE_TEXT, ws_frame
from loa.server.zone_channel import ZoneChannel
from loa.server.zones import ZoneTree

log = logging.getLogger(__name__)

ENDPOINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class EndpointError(ValueError):
    pass


@dataclass(eq=False)
class Endpoint:
    id: str
    zone_id: str
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    subscribers: set[Subscriber] = field(default_factory=set)

    def describe(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "zone": self.zone_id, "lat": self.lat,
                "lon": self.lon, "connections": len(self.subscribers)}


class EndpointRegistry:
    def __init__(self, zones: ZoneTree, channels: dict[str, ZoneChannel]) -> None:
        self._zones = zones
        self._channels = channels
        self.endpoints: dict[str, Endpoint] = {}

    def get(self, endpoint_id: str) -> Endpoint:
        try:
            return self.endpoints[endpoint_id]
        except KeyError:
            raise EndpointError(f"unknown endpoint {endpoint_id!r}") from None

    def add(self, endpoint_id: str, zone_id: str, name: str = "", lat: float | None = None,
            lon: float | None = None) -> Endpoint:
        if not ENDPOINT_ID.match(endpoint_id):
            raise EndpointError(f"endpoint id {endpoint_id!r} must be 1-64 of A-Z a-z 0-9 . _ -")
        if endpoint_id in self.endpoints:
            raise EndpointError(f"endpoint {endpoint_id!r} exists already")
        self._zones.get(zone_id)
        ep = Endpoint(endpoint_id, zone_id, name, lat, lon)
        self.endpoints[endpoint_id] = ep
        return ep

    def remove(self, endpoint_id: str) -> None:
        ep = self.get(endpoint_id)
        for sub in list(ep.subscribers):
            sub.close()
        del self.endpoints[endpoint_id]

    def attach(self, ep: Endpoint, sub: Subscriber) -> None:
        ep.subscribers.add(sub)

        def gone(s: Subscriber) -> None:
            ep.subscribers.discard(s)

        sub.on_gone = gone

    def detach(self, ep: Endpoint, sub: Subscriber) -> None:
        ep.subscribers.discard(sub)

    def move(self, endpoint_id: str, zone_id: str) -> Endpoint:
        """Re-home the endpoint and carry its live connections to the new zone's streams."""
        ep = self.get(endpoint_id)
        self._zones.get(zone_id)
        if zone_id == ep.zone_id:
            return ep
        old, ep.zone_id = ep.zone_id, zone_id
        channel = self._channels[zone_id]
        for sub in list(ep.subscribers):
            if sub.feed is not None:
                sub.feed.remove(sub)
            # Ogg: the new zone's header pages start a new chained logical stream.
            header = None
            if sub.format_name == "ws":
                notice = f'{{"type":"zone","zone":"{zone_id}"}}'.encode()
                header = ws_frame(WS_OPCODE_TEXT, notice)
            channel.join(sub, header)
        log.info("endpoint %s moved from %s to %s with %d open connections", ep.id, old, zone_id,
                 len(ep.subscribers))
        return ep
