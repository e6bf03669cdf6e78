"""What an endpoint (cụm loa, a loudspeaker cluster) is, wherever it is named: the config's
seed list, the registry, a CSV import, a report. One record type for its identity and place:
the registry's ``Endpoint`` holds one (replacing it when a field changes) beside the state that
changes often (volume, mute, power, connections)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """``id`` (1-64 of A-Z a-z 0-9 . _ -), the leaf zone it lives in, a name, its place
    (WGS 84 degrees, None when unknown), postal address, administrative-unit code (mã đơn
    vị hành chính, the CAP geocode it answers to) and when it was registered (unix s)."""

    id: str
    zone_id: str
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    admin_code: str = ""
    created_at: float = 0.0
