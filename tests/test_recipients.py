"""The recipients CSV: any shape a spreadsheet exports, every row accounted for."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

import engine.plan.recipients
from engine.errors import CampaignError
from engine.plan.csv_rows import RawRow, TextChunk, _one_per_line, _row_by_row, parse_chunk
from engine.plan.recipients import FileSpan, RecipientsFile, load_opt_out


def rows_of(path: Path, data: bytes, column: str = "phone") -> list[tuple[int, object, str]]:
    path.write_bytes(data)
    with RecipientsFile(path, column) as rf:
        return [(r.line, r.fields, r.problem) for r in rf.rows()]


def test_bom_and_semicolons_are_understood(tmp_path: Path) -> None:
    """A UTF-8 BOM and a ';' delimiter (European Excel) read like a plain CSV."""
    rows = rows_of(tmp_path / "r.csv", "\ufeffphone;name\n+421912345678;Ján\n".encode())
    assert rows == [(2, ["+421912345678", "Ján"], "")]


def test_quoted_field_across_lines_keeps_the_starting_line(tmp_path: Path) -> None:
    """A quoted field with a newline is one row, numbered by the line it starts on."""
    data = b'phone,name\n+421912345678,"Ann\nMarie"\n+421912345679,Bob\n'
    rows = rows_of(tmp_path / "r.csv", data)
    assert [(line, fields) for line, fields, _ in rows] == [
        (2, ["+421912345678", "Ann\nMarie"]), (4, ["+421912345679", "Bob"])]


def test_bad_rows_are_reported_not_dropped(tmp_path: Path) -> None:
    """Too few or many fields and undecodable bytes each give a malformed row with a reason."""
    data = (b"phone,name\n+421912345678\n+421912345679,Bob,extra\n"
            b"+421912345670,\xff\xfeBad\n+421912345671,Ok\n")
    rows = rows_of(tmp_path / "r.csv", data)
    assert [(line, fields is None) for line, fields, _ in rows] == [
        (2, True), (3, True), (4, True), (5, False)]
    assert "1 fields where the header has 2" in rows[0][2]
    assert "not valid UTF-8" in rows[2][2]


def test_blank_lines_are_counted_not_recipients(tmp_path: Path) -> None:
    """Empty lines and lines of spaces, between and after rows, are no recipients but each
    is accounted for: a row of no fields and no problem, on its line."""
    rows = rows_of(tmp_path / "r.csv", b"phone,name\n\n+421912345678,Ann\n  \n\n")
    assert rows == [(2, None, ""), (3, ["+421912345678", "Ann"], ""), (4, None, ""),
                    (5, None, "")]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(b"", "header row", id="empty"),
        pytest.param(b"mobile,name\n+421912345678,Ann\n", "no column 'phone'", id="no-phone"),
        pytest.param(b"phone,name,name\n1,2,3\n", "appears twice", id="duplicate-column"),
    ],
)
def test_bad_header_is_a_campaign_error(tmp_path: Path, data: bytes, words: str) -> None:
    """A missing or unusable header stops the campaign with the file named."""
    path = tmp_path / "r.csv"
    path.write_bytes(data)
    with pytest.raises(CampaignError) as info:
        RecipientsFile(path, "phone")
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_opt_out_list_normalises_numbers_and_names_bad_lines(tmp_path: Path) -> None:
    """Opt-out entries in any format match E.164; an invalid entry names its line."""
    path = tmp_path / "opt-out.txt"
    path.write_text("phone\n# comment\n0912 345 678\n+44 7400 123456\n")
    assert load_opt_out(path, "SK") == {"+421912345678", "+447400123456"}
    path.write_text("+421912345678\nnot a number\n")
    with pytest.raises(CampaignError, match="line 2"):
        load_opt_out(path, "SK")


CHUNK_TEXTS = [
    '+421912345678,Ann,"a, quoted"\n+421912345679,Bob,plain\n',
    '+421912345678,Ann,"a, quoted"\n+421912345679,Bob,plain',
    '+421912345678,Ann,"two\nlines"\n+421912345679,Bob,plain\n',
    '+421912345678,Ann,x\n\n+421912345679,Bob,y\n',
    '+421912345678,Ann,x\n   \n+421912345679,Bob,y\n',
    '+421912345678,Ann,x\r\n+421912345679,Bob,y\r\n',
    '+421912345678,Ann\n+421912345679,Bob,y,z\n',
    '+421912345678,Ann,"bad"quote\n+421912345679,Bob,y\n',
    '+421912345678,"Ann ""the"" first",x\n+421912345679,Bob,\n',
    '+421912345678,J\udcc3n,x\n+421912345679,Bob,y\n',
    '+421912345678,Ján,x\n',
    '',
    '+421912345678,Ann,""\n+421912345679,Bob,"y"\n\n',
    '+421912345678,Ann,"x\n+421912345679,Bob,"y\n',
    '+421912345678,Ann,x\n\x00,\x1f,\x7f\n+421912345679,B\tob,y\n',
    '+421912345678,Ann,5" screen\n+421912345679,Bob,y\n',
]


@pytest.mark.parametrize("text", CHUNK_TEXTS)
@pytest.mark.parametrize("after", [0, 10, 11, 12, 99])
def test_whole_chunk_parse_gives_the_row_by_row_rows(text: str, after: int) -> None:
    """The one-call parse of a chunk, where it applies, gives exactly the row-by-row rows:
    same lines, fields and problems, and the same rows skipped before a resume point."""
    chunk = TextChunk(10, text)
    expected = _row_by_row(chunk, ",", 3, after)
    fast = _one_per_line(chunk, ",", 3, after)
    assert fast is None or fast == expected
    assert parse_chunk(chunk, ",", 3, after=after) == expected


def test_whole_chunk_parse_is_taken_for_plain_chunks() -> None:
    """Quoted commas and quotes, a last line without its newline, blank lines, rows of the
    wrong width, non-ASCII UTF-8, nothing: one call. Not: a quoted newline, ``\r``, broken
    quoting, bytes that are not UTF-8."""
    taken = (0, 1, 3, 4, 6, 8, 10, 11, 12, 15)
    for text in (CHUNK_TEXTS[i] for i in taken):
        assert _one_per_line(TextChunk(2, text), ",", 3, 0) is not None, text
    for text in (t for i, t in enumerate(CHUNK_TEXTS) if i not in taken):
        assert _one_per_line(TextChunk(2, text), ",", 3, 0) is None, text


SPAN_FILES = [
    b"phone,name\n+421912345678,Ann\n+421912345679,Bob\n",
    b"\xef\xbb\xbfphone;name\r\n+421912345678;Ann\r\n\r\n+421912345679;Bob",
    b'phone,name\n+421912345678,"Ann\nof two lines"\n+421912345679,"say ""hi"""\n',
    b'"phone","na\nme"\n+421912345678,"x\r\ny"\n+421912345679,z\n',
    b"phone,name\n+421912345670,Cy\n+421912345678,Ann\r+421912345679,Bob\n+421912345670,Cy\r\n",
    b"phone,name\n+421912345678,J\xc3n\n+421912345679,J\xc3\xa1n\n",
    b'phone,name\n+421912345678,5" screen\n+421912345679,Bob\n+421912345670,Cy\n',
    b"phone,name\n+421912345678\n\n,,,\n+421912345679,Bob,extra\n",
    b"phone,name\n",
    b"phone,name",
    b"phone,name\n+421912345678,A\x00nn\n+421912345679,B\xc2\x85ob\n+421912345670,C\xc2\xa0y\n",
    b"phone,name\n+421912345678,\x7f\n\n+421912345679,\xff\x01\n+421912345670,\tCy\n",
]


def span_rows(rf: RecipientsFile, spans: Iterable[FileSpan]) -> list[RawRow]:
    """The rows of *spans*, each read and parsed as a planning process does."""
    return [row for span in spans
            for row in parse_chunk(rf.text(span), rf.delimiter, len(rf.header),
                                   columns=rf.header)]


@pytest.mark.parametrize("data", SPAN_FILES)
@pytest.mark.parametrize("target", [1, 7, 32, 4096])
def test_byte_spans_give_the_text_chunks_rows(tmp_path: Path, data: bytes, target: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces cut by byte position, as planning processes read them, parse to exactly the
    rows the text reader gives: the same lines, fields and problems, none twice. (Only the
    first 24 bytes of rows are looked at for lone ``\r`` line ends, so that one later in a
    file is counted as the text reader counts it.)"""
    monkeypatch.setattr(engine.plan.recipients, "CHUNK_BYTES", 24)
    expected = rows_of(tmp_path / "r.csv", data)
    with RecipientsFile(tmp_path / "r.csv", "phone") as rf:
        spans = rf.spans(target)
        assert spans is not None
        got = span_rows(rf, spans)
    assert got == expected


def test_a_forced_byte_piece_still_ends_at_a_line_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unbalanced ``"`` (here inside an unquoted field, which CSV reads as it stands)
    is carried only so far. The piece then forced out ends at a line end, never inside a
    ``\r\n``, so every row after it is whole and keeps its line."""
    monkeypatch.setattr(engine.plan.recipients, "MAX_QUOTED_BYTES", 40)
    data = (b'phone,name\n+421912345678,5" screen\n' + b"+421912345679,Bob\r\n" * 6
            + b"+421912345670,Cy\n")
    (tmp_path / "r.csv").write_bytes(data)
    lines = data.decode().splitlines()
    with RecipientsFile(tmp_path / "r.csv", "phone") as rf:
        spans = rf.spans(16)
        assert spans is not None
        pieces = list(spans)
        rows = span_rows(rf, pieces)
    assert len(pieces) > 2
    assert all(data[p.offset + p.size - 1:p.offset + p.size] in (b"\r", b"\n")
               for p in pieces)
    whole = [(line, fields) for line, fields, _ in rows if fields is not None]
    assert whole and whole[-1] == (9, ["+421912345670", "Cy"])
    assert all(",".join(fields) == lines[line - 1] for line, fields in whole)


@pytest.mark.parametrize("data", [
    b"phone,name\r+421912345678,Ann\r+421912345679,Bob\r",
    b'phone,name\n+421912345678,Ann\r+421912345679,"B\rob"\r\r+421912345670,Cy\r',
])
def test_lone_cr_line_ends_are_read_as_text(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "r.csv").write_bytes(data)
    with RecipientsFile(tmp_path / "r.csv", "phone") as rf:
        assert rf.spans() is None
