"""Streaming the recipients CSV in constant memory, and the opt-out list.

The file is decoded with ``surrogateescape``, so a byte sequence that is not UTF-8 costs
only its own row (rejected ``malformed_row``) instead of stopping the campaign: such bytes
become lone surrogates, which a non-ASCII row is checked for. ``csv.reader`` counts the
physical lines it consumes, so quoted fields spanning lines still work and the line a row
starts on is known for its reject record.

Every line after the header is accounted for: a row (valid, rejected or skipped, planned by
:mod:`engine.plan.rows`), a blank line, or the whole file is refused: a file in UTF-16 or
UTF-32, or one whose quote does not close within bounds (:class:`BrokenQuote` from parsing
a piece, :mod:`engine.plan.csv_rows`, which :meth:`RecipientsFile.refuse` words), which
would otherwise swallow the rest of the file into one malformed row.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from engine.errors import CampaignError
from engine.phone import normalise, why_invalid
from engine.plan.csv_rows import (
    CONTROL_CHARS,
    MAX_QUOTED_BYTES,
    MAX_QUOTED_LINES,
    BrokenQuote,
    CsvRow,
    TextChunk,
    may_hold_control,
    parse_chunk,
)

DELIMITERS: Final = (",", ";")
CHUNK_BYTES: Final = 256 * 1024
UTF8_BOM: Final = b"\xef\xbb\xbf"
WIDE_BOMS: Final = ((b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
                    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
                    (b"\xff\xfe", "UTF-16 (little-endian)"), (b"\xfe\xff", "UTF-16 (big-endian)"))
SNIFF_BYTES: Final = 4096
"""Bytes of the file's start looked at for a UTF-16 or UTF-32 file without a BOM."""


class RecipientsFile:
    """One pass over a recipients CSV: header first, then every row with its line number."""

    def __init__(self, path: Path, phone_column: str) -> None:
        self.path = path
        if path.is_dir():
            raise CampaignError("is a directory, not a file", file=path)
        try:
            self._f: IO[str] = path.open(encoding="utf-8-sig", errors="surrogateescape",
                                         newline="")
            wide = _wide_encoding(path)
        except OSError as exc:
            raise CampaignError(f"cannot read recipients: {exc.strerror}", file=path) from None
        if wide is not None:
            self._f.close()
            raise CampaignError(f"is {wide}; save it as UTF-8", file=path)
        head = self._f.readline()
        self._f.seek(0)
        if not head.strip():
            self._f.close()
            raise CampaignError("is empty: a header row naming the columns is required",
                                file=path, key="line 1")
        self.delimiter = max(DELIMITERS, key=head.count)
        self._reader = csv.reader(self._f, delimiter=self.delimiter, strict=True)
        try:
            header = next(self._reader)
        except csv.Error as exc:
            self._f.close()
            raise CampaignError(f"the header row is not valid CSV ({exc}): close its quotes",
                                file=path, key="line 1") from None
        if self._reader.line_num > MAX_QUOTED_LINES or CONTROL_CHARS.search("".join(header)):
            self._f.close()
            raise CampaignError("the header row holds a control character or a quote that "
                                "does not close: it must name the columns", file=path,
                                key="line 1")
        self.header = [h.strip() for h in header]
        if phone_column not in self.header:
            self._f.close()
            raise CampaignError(
                f"has no column {phone_column!r} (columns: {', '.join(self.header)}); "
                "set phone_column in the campaign", file=path, key="line 1")
        if len(set(self.header)) != len(self.header):
            dup = next(h for h in self.header if self.header.count(h) > 1)
            self._f.close()
            raise CampaignError(f"column {dup!r} appears twice in the header", file=path,
                                key="line 1")
        self.phone_index = self.header.index(phone_column)

    def __enter__(self) -> RecipientsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def chunks(self, target_bytes: int = CHUNK_BYTES) -> Iterator[TextChunk]:
        """The rest of the file as pieces of whole records, about *target_bytes* each.

        A piece ends only where it holds an even number of ``"``: CSV doubles a quote inside
        a quoted field, so quotes balance exactly at record boundaries. That lets each
        piece be parsed on its own, in another process, for the price of a ``count``. An
        unbalanced run is carried up to :data:`MAX_QUOTED_LINES` lines and
        :data:`MAX_QUOTED_BYTES` characters, then forced out: parsing it then tells a quote
        that never closes (:class:`BrokenQuote`) from a ``"`` written inside an unquoted
        field, which CSV reads as it stands. Such a ``"`` upsets the count for the rest of
        the file: a cut may then fall inside a quoted field that spans lines, and the file
        is refused there though it would have been read whole.
        """
        first = self._reader.line_num + 1
        carry: list[str] = []
        carry_quotes = 0
        while True:
            lines = self._f.readlines(target_bytes)
            if not lines:
                break
            block = carry + lines
            quotes = carry_quotes + sum(line.count('"') for line in lines)
            cut, cut_quotes = len(block), quotes
            while cut and cut_quotes % 2:
                cut -= 1
                cut_quotes -= block[cut].count('"')
            if cut == 0 and len(block) <= MAX_QUOTED_LINES and (
                    sum(map(len, block)) <= MAX_QUOTED_BYTES):
                carry, carry_quotes = block, quotes
                continue
            if cut == 0:
                cut, cut_quotes = len(block), quotes
            yield TextChunk(first, "".join(block[:cut]))
            first += cut
            carry, carry_quotes = block[cut:], quotes - cut_quotes
        if carry:
            yield TextChunk(first, "".join(carry))

    def spans(self, target_bytes: int = CHUNK_BYTES) -> Iterator[FileSpan] | None:
        """The rest of the file as pieces of whole records, as :meth:`chunks` gives them but
        by byte position, so that each planning process reads and decodes its own pieces;
        ``None`` for a file with lone ``\r`` line ends, which is read as text.

        The bytes are only counted here (``"`` for the cuts, line ends for the line numbers,
        with ``\r\n`` and a lone ``\r`` each one line, as the text reader counts them). A
        piece ends after a ``\n`` with its quotes balanced; one forced out of a run of
        unclosed quotes still ends at a line end, never inside a ``\r\n``.
        """
        offset = self._rows_offset()
        return None if offset is None else self._spans(offset, target_bytes)

    def _rows_offset(self) -> int | None:
        """Where the rows start, if the header's lines end as the text reader saw them and
        the first rows do not end in a lone ``\r``: such a file (old Mac line ends) would
        give pieces only where a run of unclosed quotes forces one, and is read as text."""
        with self.path.open("rb") as f:
            offset = len(UTF8_BOM) if f.read(len(UTF8_BOM)) == UTF8_BOM else 0
            f.seek(offset)
            lines = quotes = 0
            while line := f.readline():
                offset += len(line)
                lines += _line_ends(line, len(line))
                quotes += line.count(b'"')
                if quotes % 2 == 0:
                    break
            if lines not in (0, self._reader.line_num) or _has_lone_cr(f.read(CHUNK_BYTES)):
                return None
        return offset

    def _spans(self, offset: int, target_bytes: int) -> Iterator[FileSpan]:
        first = self._reader.line_num + 1
        with self.path.open("rb") as f:
            f.seek(offset)
            carry = b""
            while block := f.read(target_bytes):
                data = carry + block if carry else block
                cut = _balanced_cut(data)
                if cut == 0 and len(data) <= MAX_QUOTED_BYTES and (
                        data.count(b"\n") <= MAX_QUOTED_LINES):
                    carry = data
                    continue
                cut = cut or _last_line_end(data) or len(data)
                yield FileSpan(first, offset, cut)
                first += _line_ends(data, cut)
                offset += cut
                carry = data[cut:]
            if carry:
                yield FileSpan(first, offset, len(carry))

    def text(self, piece: Piece) -> TextChunk:
        """A piece of :meth:`chunks` or :meth:`spans` as text."""
        return piece_text(self._f.fileno(), piece)

    def rows(self) -> Iterator[CsvRow]:
        """Every row after the header, blank lines included, in file order; raises
        :class:`BrokenQuote`."""
        for chunk in self.chunks():
            yield from map(CsvRow._make, parse_chunk(chunk, self.delimiter, len(self.header),
                                                     columns=self.header))

    def refuse(self, broken: BrokenQuote) -> CampaignError:
        """The error that stops a campaign whose file has *broken*, naming the line where
        the quote opened and how many lines follow it."""
        with self.path.open(encoding="utf-8", errors="surrogateescape") as f:
            after = sum(1 for _ in f) - broken.line
        bounds = (f"a quoted field may run over at most {MAX_QUOTED_LINES:,} lines or "
                  f"{MAX_QUOTED_BYTES // 1024} KB")
        if broken.through:
            problem = (f"a quoted field opens on this line and runs to line {broken.through:,}"
                       f"{f' ({broken.why})' if broken.why else ''}; {bounds}")
        else:
            problem = f"a quote opens on this line and is never closed ({bounds})"
        return CampaignError(
            f"{problem}; {after:,} lines follow it: close the quote, and write a \" inside a "
            "quoted field as \"\"; nothing was planned", file=self.path,
            key=f"line {broken.line:,}")


@dataclass(frozen=True, slots=True)
class FileSpan:
    """Whole records of the recipients file by position: a planning process reads them
    itself, so the parent hands it three numbers, not the text."""

    first_line: int
    offset: int
    size: int


Piece = TextChunk | FileSpan
"""A piece of the recipients file: its text, or where a planning process reads it."""


def piece_text(fd: int, piece: Piece) -> TextChunk:
    """*piece* as text, a span read from the recipients file open as *fd*."""
    return piece if isinstance(piece, TextChunk) else read_span(fd, piece)


def read_span(fd: int, span: FileSpan) -> TextChunk:
    """*span* of the file open as *fd*, decoded as :class:`RecipientsFile` decodes it."""
    data = os.pread(fd, span.size, span.offset)
    control = may_hold_control(data)
    try:
        return TextChunk(span.first_line, data.decode("utf-8"), utf8=True, control=control)
    except UnicodeDecodeError:
        return TextChunk(span.first_line, data.decode("utf-8", "surrogateescape"),
                         control=control)


def _wide_encoding(path: Path) -> str | None:
    """The name of the UTF-16 or UTF-32 encoding *path* is in, by its BOM or, without one,
    by the zero bytes that interleave ASCII text in it; ``None`` for any other file."""
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    for bom, name in WIDE_BOMS:
        if head.startswith(bom):
            return name
    if head.count(0) * 3 < len(head) or len(head) < 2:
        return None
    zeros = [head[i::4].count(0) for i in range(4)]
    if zeros[2] + zeros[3] > len(head) // 2 * 0.9:
        return "UTF-32 (little-endian)"
    if zeros[0] + zeros[1] > len(head) // 2 * 0.9:
        return "UTF-32 (big-endian)"
    odd, even = zeros[1] + zeros[3], zeros[0] + zeros[2]
    return "UTF-16 (little-endian)" if odd > even else "UTF-16 (big-endian)"


def _balanced_cut(data: bytes) -> int:
    """Where *data* ends its last whole record: just after a ``\n`` with an even number of
    ``"`` before it; 0 if there is none."""
    cut = data.rfind(b"\n") + 1
    quotes = data.count(b'"', 0, cut)
    while cut and quotes % 2:
        start = data.rfind(b"\n", 0, cut - 1) + 1
        quotes -= data.count(b'"', start, cut)
        cut = start
    return cut


def _last_line_end(data: bytes) -> int:
    """Just after the last line end in *data* that is surely whole: a ``\n``, or a ``\r``
    that a byte other than ``\n`` follows (a last ``\r`` may be half of a ``\r\n``); 0 if
    there is none."""
    return max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1


def _has_lone_cr(data: bytes) -> bool:
    return data.count(b"\r") != data.count(b"\r\n")


def _line_ends(data: bytes, end: int) -> int:
    """The lines ended in ``data[:end]``: at ``\n``, ``\r\n`` or a lone ``\r``."""
    lines = data.count(b"\n", 0, end)
    if data.find(b"\r", 0, end) >= 0:
        lines += data.count(b"\r", 0, end) - data.count(b"\r\n", 0, end)
    return lines


def load_opt_out(path: Path, default_region: str) -> frozenset[str]:
    """E.164 numbers from a file of one number per line (``#`` comments, an optional header).

    A line that is not a valid number stops the campaign: an unreadable suppression list is
    exactly the input that must not be half-applied.
    """
    numbers: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError(f"cannot read opt-out list: {exc}", file=path) from None
    for n, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip().split(",")[0].split(";")[0].strip()
        if not entry or (n == 1 and not any(c.isdigit() for c in entry)):
            continue
        result = normalise(entry, default_region)
        if result is None:
            raise CampaignError(f"{entry!r} is not a valid phone number "
                                f"({why_invalid(entry, default_region)})", file=path,
                                key=f"line {n}")
        numbers.add(result[0])
    return frozenset(numbers)
