"""The schedule's tests build recurring items on their own event loop, where the server builds
them beside its loop (the API and the start-up load both use a worker thread). The modules a
rule needs (icalendar, recurring-ical-events) are imported where a rule is first read, since
issue 17 (an idle server without recurring items never loads them): here they are imported
at collection, as they were when ``loa.control.schedule.recurrence`` imported them itself, so
that no test's first item pays the import on its loop."""

from __future__ import annotations

import icalendar  # noqa: F401  # imported for its cost, see above
import recurring_ical_events  # noqa: F401  # imported for its cost, see above
import x_wr_timezone  # noqa: F401  # imported for its cost (ical.py's import_ics)
