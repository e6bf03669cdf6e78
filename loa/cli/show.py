"""How the command line shows things to people: aligned tables, the station's local time for
instants, short durations, and long lists a page at a time.

Column widths count what a terminal shows: a combining accent takes no column (Vietnamese text
that arrives decomposed stays aligned), an East Asian wide character two. Instants come from
the API as unix seconds or ISO 8601 with an offset; they are shown in
``loa.core.clock.STATION_TZ`` (Asia/Ho_Chi_Minh), whatever the machine's own zone.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from loa.cli.text import _
from loa.core.clock import STATION_TZ

NONE = "–"  # what an empty cell shows

DEFAULT_LIMIT = 100  # rows a list shows unless --limit says otherwise

T = TypeVar("T")


def width(text: str) -> int:
    """Terminal columns ``text`` takes: combining marks 0, wide and full-width characters 2."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def cell(value: object) -> str:
    """A value as a table cell: None and "" as ``NONE``, True/False as yes/no, lists joined
    with commas, numbers as they print."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) or NONE
    return str(value).replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The rows under their headers, columns two spaces apart, each as wide as its widest
    cell; ends with a newline. No rows: the headers alone."""
    lines = [[cell(v) for v in row] for row in rows]
    widths = [width(h) for h in headers]
    for line in lines:
        for i, text in enumerate(line):
            widths[i] = max(widths[i], width(text))
    out = []
    for line in [list(headers), *lines]:
        padded = [text + " " * (widths[i] - width(text)) for i, text in enumerate(line)]
        out.append("  ".join(padded).rstrip())
    return "\n".join(out) + "\n"


def pairs(rows: Sequence[tuple[str, object]], indent: str = "  ") -> str:
    """Labels and values, one pair a line, the values aligned; ends with a newline."""
    wide = max((width(label) for label, _value in rows), default=0)
    lines = [f"{indent}{label}{' ' * (wide - width(label))}  {cell(value)}\n"
             for label, value in rows]
    return "".join(lines)


def local_time(value: object, seconds: bool = True) -> str:
    """An instant in the station's local time, ``2026-12-01 06:00:00`` (without seconds when
    ``seconds`` is False): ``value`` in unix seconds, or ISO 8601 (with an offset; without
    one it is taken as station time already). None and what does not parse show as given
    (None as ``NONE``)."""
    if value is None or value == "":
        return NONE
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, STATION_TZ)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value)
            moment = (moment.astimezone(STATION_TZ) if moment.tzinfo
                      else moment.replace(tzinfo=STATION_TZ))
        else:
            return cell(value)
    except (ValueError, OverflowError, OSError):
        return cell(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def duration(seconds: object) -> str:
    """A length as ``H:MM:SS`` or ``M:SS``; None as ``NONE``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return NONE
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def named(ident: object, name: object) -> str:
    """An id with its name beside it, ``phu-my-1 (Thôn Phú Mỹ 1)``; the id alone without a
    name."""
    if not name or name == ident:
        return cell(ident)
    return f"{ident} ({name})"


def page(rows: Sequence[T], limit: int | None, offset: int) -> tuple[Sequence[T], str]:
    """The rows of one page (``limit`` rows from ``offset``; ``limit`` 0 for all, None for
    ``DEFAULT_LIMIT``) and a footer saying what was left out and how to see it ("" when
    nothing was)."""
    total = len(rows)
    limit = DEFAULT_LIMIT if limit is None else limit
    start = min(max(offset, 0), total)
    end = total if limit <= 0 else min(total, start + limit)
    shown = rows[start:end]
    if start == 0 and end == total:
        return shown, ""
    if not shown:
        return shown, _("Nothing from row {offset}: there are {total}.", offset=start + 1,
                        total=total) + "\n"
    footer = _("Rows {first}-{last} of {total}.", first=start + 1, last=end, total=total)
    if end < total:
        footer += " " + _("Next: --offset {offset}; all: --limit 0.", offset=end)
    return shown, footer + "\n"


def content_text(content: object, titles: dict[str, str] | None = None) -> str:
    """What a request, schedule item or alert plays (``loa.core.content``'s JSON), in a few
    words: ``read: “Chào buổi sáng”``, ``media 3f2a… (Bản tin sáng)`` (the title from
    ``titles``, library id → title, when it is there), ``relay http://…``."""
    if not isinstance(content, dict):
        return NONE
    kind = content.get("kind")
    if kind == "text":
        text = str(content.get("text", ""))
        return _("read: “{text}”", text=text if len(text) <= 40 else text[:39] + "…")
    if kind == "media":
        return named(_("media {id}", id=content.get("id")),
                     (titles or {}).get(str(content.get("id"))))
    if kind == "relay":
        return _("relay {url}", url=content.get("url"))
    if kind == "file":
        return _("file {path}", path=content.get("path"))
    if kind == "tone":
        return _("tone {hz} Hz", hz=content.get("freq_hz", 1000))
    if kind == "live":
        return _("live {mount}", mount=content.get("mount"))
    if kind == "playlist":
        return _("playlist of {n}", n=len(content.get("items") or []))
    return str(kind)
