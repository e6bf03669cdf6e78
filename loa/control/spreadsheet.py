"""Tables that people save from spreadsheets as CSV, read the way they were written.

A spreadsheet writes what its locale and its "Save as" menu say, not what the importer
expects:
- the encoding: "CSV UTF-8" (with a byte-order mark), "Unicode Text" (UTF-16 with a
  byte-order mark, tab-separated), or the Windows code page of the machine
  (Windows-1258 in Vietnamese, with its tone marks as separate combining characters);
- the separator: a comma, or a semicolon where the comma is the decimal mark (Vietnamese,
  French, German… locales), and then ``10,5`` for a number; Excel may put a ``sep=;`` line
  first;
- the header: ``ID``, ``Zone`` or ``Vĩ độ`` as much as ``id``, ``zone`` or ``lat``.

``decode`` turns the bytes into text, ``read_table`` guesses the separator (``csv.Sniffer``
on a bounded sample, then the header itself decides) and matches the header to the columns
the caller knows, whatever their case, accents, spacing or language. Every refusal is a
``TableError`` that says what was seen: the encoding tried, the header found, the
separator guessed. Pure and thread-safe: importers run it in a worker thread.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from loa.core.i18n import N_, Explained, Message

SNIFF_SAMPLE_CHARS = 8 * 1024  # what csv.Sniffer looks at: some 100 lines
DELIMITERS = ",;\t|"
DELIMITER_NAMES = {",": N_("comma"), ";": N_("semicolon"), "\t": N_("tab"),
                   "|": N_("vertical bar")}
HEADER_CELLS_SHOWN = 12  # a refusal quotes at most this many header cells…
HEADER_CELL_CHARS = 40  # …each cut to this length
BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF8, "utf-8"),  # skipped here; the UTF-16 and UTF-32 codecs read theirs
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
PIECE_BYTES = 256 * 1024  # decoded per C call (about 1 ms): the GIL goes back between them
PIECE_CHARS = 64 * 1024  # composed (NFC) per C call, likewise
SHOWN = {"utf-8": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}
NEWLINE = b"\n"
SAVE_HINT = N_("save it from the spreadsheet as \"CSV UTF-8\", or name its encoding in the "
               "request's Content-Type (for example text/csv; charset=windows-1258)")

_SEP_LINE = re.compile(r"\A\s*sep=(.)\s*\Z", re.IGNORECASE)  # Excel's own separator hint
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")  # units and notes: "Vĩ độ (WGS 84)"
_WORD = re.compile(r"[0-9a-z]+")
_QUOTED = re.compile(r'"[^"]*"')  # a quoted cell (a doubled quote inside makes two: no matter)
_NO_QUOTES = str.maketrans("", "", "\"'")
_ASCII = re.compile(r"[\x00-\x7f]")  # composes with nothing before it: a safe place to cut


class TableError(Explained, ValueError):
    """A table that cannot be read: the message says what was seen and what to do."""


def decode(data: bytes, charset: str | None = None) -> str:
    """The text of a saved table. A byte-order mark decides first (UTF-8, UTF-16 or UTF-32,
    whatever ``charset`` says), then ``charset`` (from the request's Content-Type), then
    UTF-8. Text from a legacy code page is put in Unicode's composed form (NFC):
    Windows-1258 writes Vietnamese tone marks as separate characters.

    Raises TableError for an unknown charset, bytes the encoding cannot decode (naming the
    encoding tried and where it failed) or NUL bytes (UTF-16 without its mark)."""
    encoding = next((enc for bom, enc in BOMS if data.startswith(bom)), None)
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if encoding is None:
        try:
            encoding = codecs.lookup((charset or "utf-8").strip()).name
        except LookupError:
            raise TableError(N_("unknown charset {charset!r} in the Content-Type"),
                             charset=charset) from None
    ascii_based = not encoding.startswith(("utf-16", "utf-32"))
    if ascii_based and b"\x00" in data:
        raise TableError(N_("the file holds NUL bytes, as UTF-16 without a byte-order mark "
                            "would: {hint}"), hint=Message(SAVE_HINT))
    try:
        text = _decoded(memoryview(data)[skip:], encoding)
    except UnicodeDecodeError as exc:
        start = skip + exc.start
        fields = {"encoding": SHOWN.get(encoding, encoding), "byte": data[start], "at": start,
                  "hint": Message(SAVE_HINT)}
        if ascii_based:  # a line number needs an ASCII-based encoding
            raise TableError(N_("the file is not valid {encoding} (byte 0x{byte:02x} at byte "
                                "{at}, line {line}): {hint}"),
                             line=data.count(NEWLINE, 0, start) + 1, **fields) from None
        raise TableError(N_("the file is not valid {encoding} (byte 0x{byte:02x} at byte {at}): "
                            "{hint}"), **fields) from None
    if not encoding.startswith("utf"):
        text = _composed(text)
    return text


def _decoded(data: memoryview, encoding: str) -> str:
    """``data.decode(encoding)`` a piece at a time: a worker thread decoding 8 MiB in one C
    call would hold the GIL, and so the event loop, for some 20 ms. Raises the
    UnicodeDecodeError the whole decode would raise (its place counted in ``data``)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    parts: list[str] = []
    for i in range(0, len(data), PIECE_BYTES):
        try:
            parts.append(decoder.decode(data[i:i + PIECE_BYTES],
                                        final=i + PIECE_BYTES >= len(data)))
        except UnicodeDecodeError:
            bytes(data[:i + PIECE_BYTES]).decode(encoding)  # raises it again, placed in data
            raise
    return "".join(parts)


def _composed(text: str) -> str:
    """``unicodedata.normalize("NFC", text)`` a piece at a time (8 MiB of decomposed text
    take over 100 ms in one call), cut before ASCII characters, which compose with nothing
    before them."""
    parts: list[str] = []
    start = 0
    while start < len(text):
        cut = _ASCII.search(text, start + PIECE_CHARS)
        end = len(text) if cut is None else cut.start()
        parts.append(unicodedata.normalize("NFC", text[start:end]))
        start = end
    return "".join(parts)


def column_key(header: str) -> str:
    """A header cell reduced to what matters for matching: no accents (đ is d), no case, no
    notes in brackets, words joined by ``_``. ``"Mã cụm loa"`` → ``"ma_cum_loa"``,
    ``"Vĩ độ (WGS 84)"`` → ``"vi_do"``, ``" Admin-Code "`` → ``"admin_code"``."""
    text = _PARENTHESES.sub(" ", header).replace("đ", "d").replace("Đ", "D")
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    return "_".join(_WORD.findall(text.casefold()))


def decimal(value: str) -> str:
    """A number written with a decimal comma (``"15,5"``, as comma-decimal locales write
    it) with a decimal point instead; any other text as it is."""
    return value.replace(",", ".") if _DECIMAL_COMMA.fullmatch(value) else value


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the table: the line it starts on (1-based) and its value (stripped) for
    each known column the header has and the record reaches."""

    line: int
    values: dict[str, str]


class _Records(Protocol):
    """What ``csv.reader`` returns: records, and the physical line read up to."""

    @property
    def line_num(self) -> int: ...

    def __iter__(self) -> Iterator[list[str]]: ...


@dataclass
class Table:
    """A table whose header names the required columns: its separator, its header as
    written and the line it ends on, which cell holds each known column, and its records
    (``rows()``, blank ones skipped; iterate once)."""

    delimiter: str
    header: list[str]
    header_line: int
    columns: dict[str, int]  # known column → its cell index
    _records: _Records
    _line_offset: int  # lines before the text the reader reads (Excel's sep= line)

    def rows(self) -> Iterator[Row]:
        """The records after the header, in order. Raises TableError for a record the csv
        module refuses (an over-long cell), naming its line."""
        start = self.header_line + 1
        records = iter(self._records)
        while True:
            try:
                cells = next(records)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TableError(N_("line {line}: {error}"), line=start,
                                 error=str(exc)) from None
            values = {name: cells[i].strip() for name, i in self.columns.items()
                      if i < len(cells)}  # a short record lacks its last columns
            line, start = start, self._line_offset + self._records.line_num + 1
            if any(values.values()):
                yield Row(line, values)


def read_table(text: str, known: Mapping[str, Sequence[str]], required: Sequence[str]
               ) -> Table:
    """Open ``text`` as a table whose header names at least the ``required`` columns.
    ``known`` maps each column the caller reads to the header names that mean it, as
    ``column_key`` reduces them (``{"lat": ("lat", "latitude", "vi_do")}``); other columns
    are ignored.

    The separator is the one of Excel's ``sep=`` first line if there is one; else the first
    of ``DELIMITERS`` that makes a header naming the required columns, tried in this order:
    the one ``csv.Sniffer`` guesses from the start of the text, then the others, the most
    frequent on the first line first. Raises TableError when none does (naming the header
    cells found and the separator guessed) or when two cells name the same column."""
    aliases = {alias: name for name, names in known.items() for alias in names}
    hinted, body, offset = _hinted(text)
    candidates = [hinted] if hinted is not None else _candidates(body)
    ambiguous: TableError | None = None
    for delimiter in candidates:
        records = csv.reader(io.StringIO(body, newline=""), delimiter=delimiter)
        header = _header(records)
        header_line = offset + records.line_num
        columns: dict[str, int] = {}
        for i, cell in enumerate(header):
            name = aliases.get(column_key(cell))
            if name is None:
                continue
            if name in columns:
                ambiguous = ambiguous or TableError(
                    N_("line {line}: columns {first!r} and {second!r} both name {column}"),
                    line=header_line, first=header[columns[name]], second=cell, column=name)
                break
            columns[name] = i
        else:
            if set(required) <= columns.keys():
                return Table(delimiter, header, header_line, columns, records, offset)
    if ambiguous is not None:
        raise ambiguous
    wanted = _and(list(required))
    guess = candidates[0]
    records = csv.reader(io.StringIO(body, newline=""), delimiter=guess)
    header = _header(records)
    if not header:
        raise TableError(N_("the file has no header: its first line must name at least the "
                            "columns {columns}"), columns=wanted)
    separator = DELIMITER_NAMES.get(guess)
    raise TableError(N_("line {line}: the header must name at least the columns {columns}; "
                        "found {found} with {separator} as the separator"),
                     line=offset + records.line_num, columns=wanted, found=_quote(header),
                     separator=repr(guess) if separator is None else Message(separator))


def _header(records: _Records) -> list[str]:
    """The first record that is not blank ([] if none, or if the csv module refuses it)."""
    try:
        return next((cells for cells in records if any(c.strip() for c in cells)), [])
    except csv.Error:
        return []


def _hinted(text: str) -> tuple[str | None, str, int]:
    """Excel's ``sep=X`` first line: (X, the text after it, 1 line before it), or (None, the
    text, 0) without one."""
    first, newline, rest = text.partition("\n")
    hint = _SEP_LINE.match(first)
    if hint is None or not newline:
        return None, text, 0
    return hint.group(1), rest, 1


def _candidates(body: str) -> list[str]:
    """``DELIMITERS`` in the order to try them: the sniffed one, then by count on the first
    line that is not blank."""
    sample = body[:SNIFF_SAMPLE_CHARS]
    if len(body) > SNIFF_SAMPLE_CHARS and "\n" in sample:
        sample = sample[:sample.rindex("\n")]  # whole lines only
    # The sniffer sees no quotes: its quote-guessing regular expressions take time quadratic
    # in the sample on text full of quotes (a second for 16 KiB of ',"'), in one C call
    # that holds the GIL and so stops the event loop; and a separator inside a quoted cell
    # no longer counts. Quotes are '"' in any case, as every spreadsheet writes them.
    unquoted = _QUOTED.sub("x", sample).translate(_NO_QUOTES)
    try:
        sniffed = [csv.Sniffer().sniff(unquoted, delimiters=DELIMITERS).delimiter]
    except csv.Error:  # too little text, or no separator keeps a steady count per line
        sniffed = []
    first = next((line for line in unquoted.splitlines() if line.strip()), "")
    by_count = sorted(DELIMITERS, key=lambda d: -first.count(d))  # stable: ties keep order
    return sniffed + [d for d in by_count if d not in sniffed]


def _and(names: list[str]) -> str | Message:
    """``a``, ``a and b``, ``a, b and c``: the "and" in the reader's language."""
    if len(names) < 2:
        return "".join(names)
    return Message(N_("{items} and {last}"), {"items": ", ".join(names[:-1]), "last": names[-1]})


def _quote(cells: list[str]) -> str | Message:
    """The header cells as a refusal quotes them: the first ``HEADER_CELLS_SHOWN``, each cut to
    ``HEADER_CELL_CHARS``, then how many more."""
    shown = ", ".join(repr(c[:HEADER_CELL_CHARS]) for c in cells[:HEADER_CELLS_SHOWN])
    more = len(cells) - HEADER_CELLS_SHOWN
    if more <= 0:
        return shown
    return Message(N_("{cells} and {more} more"), {"cells": shown, "more": more})
