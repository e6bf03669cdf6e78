"""The zone tree: district → commune (xã / thị trấn) → village cluster (thôn / khu).

Addressing a zone addresses everything below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from loa.core.i18n import N_, Explained


class ZoneError(Explained, ValueError):
    """An unknown zone, or a zone tree that cannot be built (bad id, duplicate, unknown
    parent, cycle, empty); the message says which."""

    pass


GROUP_SEP = "~"  # configured zone ids contain neither this nor "/"


def alert_group_id(home_id: str, alert_id: str) -> str:
    """The id of the run-time zone that holds an alert's single endpoints under their home."""
    return f"{home_id}{GROUP_SEP}{alert_id}"


def is_alert_group(zone_id: str) -> bool:
    """Whether the id is an alert's run-time group (it contains ``~``), not a configured zone."""
    return GROUP_SEP in zone_id


def home_zone_id(zone_id: str) -> str:
    """The configured zone an alert group stands under (a configured zone is its own)."""
    return zone_id.split(GROUP_SEP, 1)[0]


DEFAULT_VOLUME_PCT = 70  # a zone's loudspeakers, until an operator sets it
DEFAULT_ALERT_VOLUME_PCT = 100  # while an alert plays


@dataclass(slots=True)
class Zone:
    """One zone of the tree, with the endpoints' volume (%) in normal play and during
    alerts; ``children`` is filled in by ZoneTree."""

    id: str
    name: str
    parent_id: str | None = None
    admin_code: str | None = None  # administrative-unit code (mã đơn vị hành chính)
    children: list[Zone] = field(default_factory=list)
    volume_pct: int = DEFAULT_VOLUME_PCT  # the endpoints' volume (set on the device)
    alert_volume_pct: int = DEFAULT_ALERT_VOLUME_PCT  # raised to this while an alert plays

    def describe(self) -> dict[str, object]:
        """The API view: children as ids."""
        return {
            "id": self.id,
            "name": self.name,
            "parent": self.parent_id,
            "admin_code": self.admin_code,
            "children": [c.id for c in self.children],
            "volume_pct": self.volume_pct,
            "alert_volume_pct": self.alert_volume_pct,
        }


class ZoneTree:
    """The zones by id, with their parent links resolved into ``children``. Construction
    raises ZoneError for an empty tree, a bad or duplicate id, an unknown parent or a cycle."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones: dict[str, Zone] = {}
        for z in zones:
            if not z.id or "/" in z.id or GROUP_SEP in z.id:
                raise ZoneError(N_("zone id {zone!r} must be non-empty and contain no '/' "
                                   "or {sep!r}"), zone=z.id, sep=GROUP_SEP)
            if z.id in self._zones:
                raise ZoneError(N_("zone {zone!r} is defined twice"), zone=z.id)
            z.children = []
            self._zones[z.id] = z
        for z in self._zones.values():
            if z.parent_id is None:
                continue
            parent = self._zones.get(z.parent_id)
            if parent is None:
                raise ZoneError(N_("zone {zone!r} names unknown parent {parent!r}"),
                                zone=z.id, parent=z.parent_id)
            parent.children.append(z)
        for z in self._zones.values():  # a cycle would make subtree() loop forever
            seen = set()
            p: Zone | None = z
            while p is not None:
                if p.id in seen:
                    raise ZoneError(N_("zone {zone!r} is its own ancestor"), zone=z.id)
                seen.add(p.id)
                p = self._zones.get(p.parent_id) if p.parent_id else None
        if not self._zones:
            raise ZoneError(N_("the zone tree is empty"))

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._zones

    def __iter__(self) -> Iterator[Zone]:
        """Zones in definition order."""
        return iter(self._zones.values())

    def get(self, zone_id: str) -> Zone:
        """The zone, or ZoneError if unknown."""
        try:
            return self._zones[zone_id]
        except KeyError:
            raise ZoneError(N_("unknown zone {zone!r}"), zone=zone_id) from None

    def add_child(self, zone: Zone) -> None:
        """A zone added at run time under an existing one (an alert's endpoint group)."""
        if zone.id in self._zones:
            raise ZoneError(N_("zone {zone!r} exists already"), zone=zone.id)
        parent = self.get(zone.parent_id or "")
        zone.children = []
        self._zones[zone.id] = zone
        parent.children.append(zone)

    def remove_leaf(self, zone_id: str) -> None:
        """Remove a zone without children (an alert group that ended); ZoneError otherwise."""
        zone = self.get(zone_id)
        if zone.children:
            raise ZoneError(N_("zone {zone!r} has children"), zone=zone_id)
        if zone.parent_id is not None:
            parent = self._zones[zone.parent_id]
            parent.children = [c for c in parent.children if c.id != zone_id]
        del self._zones[zone_id]

    def roots(self) -> list[Zone]:
        """The zones without a parent, in definition order."""
        return [z for z in self._zones.values() if z.parent_id is None]

    def subtree(self, zone_id: str) -> list[Zone]:
        """The zone and all its descendants, parents before children."""
        out, stack = [], [self.get(zone_id)]
        while stack:
            z = stack.pop()
            out.append(z)
            stack.extend(reversed(z.children))
        return out
