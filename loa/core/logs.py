"""Log lines that outside input cannot forge: every control character of a message (a CR or
LF in a mount name, an ANSI escape in a User-Agent) is written escaped, so one event is one
line. Tracebacks, which come from the code, are left as they are."""

from __future__ import annotations

import logging

from loa.core.text import CONTROLS


def escape_controls(text: str) -> str:
    """``text`` with C0/C1 control characters and Unicode line separators escaped
    (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SafeFormatter(logging.Formatter):
    """A ``logging.Formatter`` that escapes the control characters of the message itself."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        saved = record.message
        record.message = escape_controls(saved)
        try:
            return super().formatMessage(record)
        finally:
            record.message = saved


def configure(level: int) -> None:
    """Log to stderr at ``level``, one line an event, control characters escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
