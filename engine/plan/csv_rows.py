"""A piece of the recipients file parsed into rows: each checked for width, encoding and
control characters, each blank line kept as a row of no fields, and a quote that does not
close within bounds raised as :class:`BrokenQuote`, which refuses the whole file.

Pieces come from :mod:`engine.plan.recipients`; this module is a pure function of their
text, so that it runs alike in the planning process and in worker processes. A control
character in a cell (other than tab, CR, LF) rejects its row: such text must never be
stored cut short (SQLite's ``json_extract`` ends a string at ``\\u0000``) or sent.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Final, NamedTuple

MAX_QUOTED_LINES: Final = 1_000
"""A quoted field may run over at most this many lines (a multi-line address or note takes
a few); one that opens and does not close within them, or within :data:`MAX_QUOTED_BYTES`,
makes the file broken (:class:`BrokenQuote`), not one row: the rest of the file would
otherwise be one malformed row. Pieces carry an unbalanced quote no further."""
MAX_QUOTED_BYTES: Final = 128 * 1024
"""Four times a spreadsheet cell's 32,767 characters: no SMS template uses more."""
CONTROL_CHARS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters (Unicode ``Cc``) but tab, LF and CR: a cell holding one rejects its
row."""
# Looked for with bytes.translate before decoding, not a regular expression on the text:
# about a quarter of its cost a row (bench/plan.py, the csv stage).
CONTROL_BYTES: Final = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
C1_UTF8: Final = re.compile(rb"\xc2[\x80-\x9f]")
""":data:`CONTROL_CHARS` in UTF-8 are these bytes, and ``\xc2`` before one of these: a
piece read as bytes is looked for them before it is decoded, and only a piece that may hold
one is searched row by row."""
END_IN_QUOTES: Final = "unexpected end of data"
"""``csv.Error`` of a strict reader whose input ends inside a quoted field."""

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class CsvRow(NamedTuple):
    """One CSV row (a tuple: one is made per row, and a frozen dataclass costs twice as much)."""

    line: int
    fields: list[str] | None
    """``None`` when the row is malformed (wrong field count, bad UTF-8, broken quoting, a
    control character), or a blank line (``problem`` empty)."""
    problem: str = ""


class BrokenQuote(Exception):
    """A quoted field opens on *line* and does not close within the piece it was read in,
    that is before the end of the file or within :data:`MAX_QUOTED_LINES` and
    :data:`MAX_QUOTED_BYTES` (*through* 0), or closes or breaks only on line *through*,
    past them. Positional, so that it crosses from a planning process intact."""

    def __init__(self, line: int, through: int = 0, why: str = "") -> None:
        super().__init__(line, through, why)
        self.line, self.through, self.why = line, through, why


RawRow = tuple[int, list[str] | None, str]
"""A :class:`CsvRow` as a plain tuple, as :func:`parse_chunk` gives them (made in C)."""


@dataclass(frozen=True, slots=True)
class TextChunk:
    first_line: int
    text: str
    utf8: bool = False
    """The text was decoded from valid UTF-8, so it holds no lone surrogates: nothing to
    check row by row. ``False``: not known, and checked."""
    control: bool | None = None
    """Whether the text may hold a control character (:data:`CONTROL_CHARS`), as its bytes
    told; ``None``: not known, and searched."""


def may_hold_control(data: bytes) -> bool:
    """Whether *data*, UTF-8 or not, may decode to a text holding :data:`CONTROL_CHARS`."""
    return (len(data.translate(None, CONTROL_BYTES)) != len(data)
            or (b"\xc2" in data and C1_UTF8.search(data) is not None))


def parse_chunk(chunk: TextChunk, delimiter: str, width: int, *, after: int = 0,
                columns: Sequence[str] = ()) -> list[RawRow]:
    """The rows of *chunk* whose line is past *after*, blank lines included: each checked
    for width, encoding and control characters (named by *columns*, the header).

    Raises :class:`BrokenQuote` where a quoted field runs to the end of *chunk* (pieces end
    only at the end of the file, where quotes balance, or past the bounds), or over more
    than :data:`MAX_QUOTED_LINES` lines or :data:`MAX_QUOTED_BYTES`.
    """
    rows = _one_per_line(chunk, delimiter, width, after)
    return rows if rows is not None else _row_by_row(chunk, delimiter, width, after, columns)


def _row_by_row(chunk: TextChunk, delimiter: str, width: int, after: int,
                columns: Sequence[str] = ()) -> list[RawRow]:
    reader = csv.reader(io.StringIO(chunk.text, newline=""), delimiter=delimiter, strict=True)
    base = chunk.first_line
    rows: list[RawRow] = []
    append = rows.append
    check_encoding = not _known_utf8(chunk)
    check_control = _may_hold_control(chunk)
    while True:
        start = base + reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            end = base + reader.line_num - 1
            if str(exc) == END_IN_QUOTES:
                raise BrokenQuote(start) from None
            if end - start >= MAX_QUOTED_LINES:
                raise BrokenQuote(start, end, f"broken there: {exc}") from None
            if start > after:
                append((start, None, f"broken CSV quoting: {exc}{_lines(start, end)}"))
            continue
        end = base + reader.line_num - 1
        if end != start and (end - start >= MAX_QUOTED_LINES
                             or sum(map(len, fields)) > MAX_QUOTED_BYTES):
            raise BrokenQuote(start, end)
        if start <= after:
            continue
        if check_encoding and not _is_utf8("".join(fields)):
            append((start, None, "not valid UTF-8" + _lines(start, end)))
        elif len(fields) != width:
            problem = _wrong_width(fields, width)
            append((start, None, "" if problem is None else problem + _lines(start, end)))
        elif check_control and CONTROL_CHARS.search("".join(fields)):
            append((start, None, _control(fields, columns) + _lines(start, end)))
        else:
            append((start, fields, ""))


def _lines(start: int, end: int) -> str:
    """Where a record of more than one line is malformed, the lines it took."""
    return f" (a quoted field took lines {start}-{end})" if end != start else ""


def _control(fields: list[str], columns: Sequence[str]) -> str:
    """Which column of *fields* holds a control character, and which character."""
    for i, value in enumerate(fields):
        found = CONTROL_CHARS.search(value)
        if found is not None:
            name = repr(columns[i]) if i < len(columns) else f"{i + 1}"
            return (f"column {name} holds control character U+{ord(found.group()):04X}; "
                    "only tab and line breaks may be in a cell")
    raise AssertionError("no control character in the row")


def _one_per_line(chunk: TextChunk, delimiter: str, width: int, after: int) -> list[RawRow] | None:
    """:func:`parse_chunk`'s rows with no Python step per row, for the usual chunk: valid
    UTF-8, ``\n`` line ends, and each line one record (the reader's count of the lines it
    took equals the record count only when no quoted field spans lines, so record *i* is on
    line *i*, and then each line without its ``\n`` reads as it does with it). Only the
    records of the wrong width are then looked at one by one. ``None`` for any other
    chunk, which :func:`_row_by_row` parses."""
    text = chunk.text
    if "\r" in text or not _known_utf8(chunk) or _may_hold_control(chunk):
        return None
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        records = list(reader)
    except csv.Error:
        return None
    if reader.line_num != len(records):
        return None
    first = max(chunk.first_line, after + 1)
    records = records[first - chunk.first_line:]
    rows: list[RawRow] = list(zip(range(first, first + len(records)), records, repeat("")))
    widths = list(map(len, records))
    if widths.count(width) != len(widths):
        odd = [i for i, n in enumerate(widths) if n != width]
        for i in odd:
            rows[i] = (first + i, None, _wrong_width(records[i], width) or "")
    return rows


def _wrong_width(fields: list[str], width: int) -> str | None:
    """Why a record of the wrong width is malformed; ``None`` for a blank line (or one of
    only spaces), which is not a row but is counted as blank."""
    if not fields or (len(fields) == 1 and not fields[0].strip()):
        return None
    return f"{len(fields)} fields where the header has {width}"


def _may_hold_control(chunk: TextChunk) -> bool:
    if chunk.control is not None:
        return chunk.control
    return CONTROL_CHARS.search(chunk.text) is not None


def _known_utf8(chunk: TextChunk) -> bool:
    return chunk.utf8 or chunk.text.isascii() or _is_utf8(chunk.text)


def _is_utf8(text: str) -> bool:
    """False when decoding left lone surrogates, i.e. the bytes were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
