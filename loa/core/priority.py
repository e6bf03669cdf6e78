"""Priority levels of requests on a zone (Circular 39's bulletin classes, and live)."""

from __future__ import annotations

import enum

from loa.core.i18n import N_, Explained


class Priority(enum.IntEnum):
    """The default priority levels (0-100) of DESIGN.md's table; higher preempts lower."""

    EMERGENCY = 100  # bản tin khẩn cấp
    DISTRICT_LIVE = 80
    COMMUNE_LIVE = 70
    PRIORITY_BULLETIN = 60  # bản tin ưu tiên
    SCHEDULED = 50  # bản tin thông thường
    FILL = 10
    IDLE = 0


class PriorityError(Explained, ValueError):
    """A priority that is neither an integer from 0 to 100 nor a level's name."""


def parse_priority(value: object) -> int:
    """An int 0-100, or a level's name ("district_live"); PriorityError (a ValueError) with a
    clear message."""
    if isinstance(value, str):
        try:
            return int(Priority[value.strip().upper()])
        except KeyError:
            names = ", ".join(p.name.lower() for p in Priority)
            raise PriorityError(N_("unknown priority {value!r}; use 0-100 or one of {names}"),
                                value=value, names=names) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise PriorityError(N_("priority must be an integer from 0 to 100, not {value!r}"),
                            value=value)
    return value
