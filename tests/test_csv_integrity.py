"""Every line of a recipients file is accounted for (a row valid, rejected or skipped, or a
blank line), or the file is refused before anything is planned or sent."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.plan.csv_rows
import engine.plan.planner
from engine.campaign import load_campaign
from engine.config import load_config
from engine.errors import CampaignError
from engine.plan.csv_rows import BrokenQuote, parse_chunk
from engine.plan.planner import plan_campaign
from engine.plan.recipients import RecipientsFile
from engine.store.sqlite.store import Store
from tests.helpers import dispatch, write_campaign, write_config
from tests.run_fixtures import external_sandbox, run_config

CONTROL = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x85,
                            0x9F)]


def recipients_csv(rows: int, *, bad: dict[int, str] | None = None) -> str:
    """A header and *rows* Slovak mobiles, distinct, with the lines in *bad* replaced."""
    lines = ["phone,name", *(f"+421903{i * 7919 % 10**6:06d},Ann{i}" for i in range(rows))]
    for line, text in (bad or {}).items():
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


def stored(db: Path) -> list[tuple[int, str, str | None, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT line, state, reason, detail FROM messages "
                            "ORDER BY line").fetchall()


def campaign_state(db: Path) -> tuple[int, int]:
    """The campaign's resume point and whether its plan is complete."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT planned_through, plan_complete FROM campaigns").fetchone()
    return int(row[0]), int(row[1])


def plan_json(campaign: Path, config: Path, *extra: str) -> dict[str, object]:
    result = dispatch("plan", str(campaign), "--config", str(config), "--json", *extra)
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def accounted(plan: dict[str, object]) -> int:
    rejected, skipped = plan["rejected"], plan["skipped"]
    assert isinstance(rejected, dict) and isinstance(skipped, dict)
    return int(plan["valid"]) + sum(rejected.values()) + sum(skipped.values())  # type: ignore[call-overload]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_unclosed_quote_refuses_the_file_naming_its_line(tmp_path: Path, workers: str) -> None:
    """A quote opened on line 4 of 1,000 rows and never closed stops the plan with exit 2,
    one line naming the file, line 4 and the 997 lines after it; nothing stays planned."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, recipients_csv(1000, bad={4: '+421912900002,"Bob'}))
    result = dispatch("plan", str(campaign), "--config", str(config), "--workers", workers)
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("dispatch:")]
    assert len(error) == 1 and "Traceback" not in result.stderr
    assert str(tmp_path / "recipients.csv") in error[0]
    assert "line 4: a quote opens on this line and is never closed" in error[0]
    assert "997 lines follow it" in error[0]
    assert stored(tmp_path / "dispatch.db") == []
    assert campaign_state(tmp_path / "dispatch.db") == (0, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_refused_plan_leaves_no_rows_and_replans_once_fixed(
        tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces before (and, in worker processes, after) the bad quote may be written before it
    is found: the refusal removes them all, and the fixed file then plans from line 2, with
    a line removed before the quote, too."""
    monkeypatch.setattr(engine.plan.planner, "WORKER_PIECE_BYTES", 2048)
    monkeypatch.setattr(engine.plan.planner, "CHUNK_BYTES", 2048)
    campaign_path = write_campaign(
        tmp_path, recipients_csv(1000, bad={900: '+421912900002,"Bob'}))
    config = load_config(write_config(tmp_path))
    campaign = load_campaign(campaign_path)
    async with Store.open(config.database) as store:
        with pytest.raises(CampaignError, match="line 900: a quote opens"):
            await plan_campaign(config, campaign, store, workers=workers)
    assert stored(tmp_path / "dispatch.db") == []
    assert campaign_state(tmp_path / "dispatch.db") == (0, 0)
    fixed = recipients_csv(1000, bad={900: '+421912900002,"Bob"'}).splitlines(keepends=True)
    del fixed[10]
    (tmp_path / "recipients.csv").write_text("".join(fixed))
    async with Store.open(config.database) as store:
        summary = await plan_campaign(config, campaign, store, workers=workers)
    assert summary.counts.rows == 999 and summary.counts.valid == 999
    rows = stored(tmp_path / "dispatch.db")
    assert [r[0] for r in rows] == list(range(2, 1001))
    assert campaign_state(tmp_path / "dispatch.db")[1] == 1


def test_run_of_a_broken_file_sends_nothing_and_sends_once_fixed(tmp_path: Path) -> None:
    """`dispatch run` on a file with an unclosed quote exits 2 and the sandbox bills nothing;
    fixed, the same command sends every valid row once, and the row with a NUL is not sent
    (its text is never cut short to "Hi A")."""
    bad = {4: '+421912900002,"Bob', 6: "+421912900004,A\x00nn"}
    campaign = write_campaign(tmp_path, recipients_csv(20, bad=bad))
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(campaign), "--config", str(config), "--no-dlr")
        assert result.returncode == 2, result.stderr
        assert "line 4: a quote opens" in result.stderr
        assert sandbox.count() == 0
        bad[4] = '+421912900002,"Bob"'
        write_campaign(tmp_path, recipients_csv(20, bad=bad))
        result = dispatch("run", str(campaign), "--config", str(config), "--no-dlr")
        assert result.returncode == 0, result.stderr
        texts = sorted(str(e["text"]) for e in sandbox.entries())
    assert len(texts) == 19
    assert "Hi Bob, sale today!" in texts
    assert not any(t.startswith("Hi A,") or "\x00" in t for t in texts)
    rows = {line: (state, reason, detail) for line, state, reason, detail
            in stored(tmp_path / "dispatch.db")}
    assert rows[6][:2] == ("rejected", "malformed_row")
    assert "column 'name'" in str(rows[6][2]) and "U+0000" in str(rows[6][2])


@pytest.mark.parametrize(("lines", "why"), [
    pytest.param(['+421912345670,"Bob', *[f"+42191234567{i},Ann" for i in range(1, 8)],
                  'x"'], "runs to line 11;", id="closes-too-late"),
    pytest.param(['+421912345670,"Bob', *[f"+42191234567{i},Ann" for i in range(1, 8)],
                  '+421912345679,"x"y'], "runs to line 11 (broken there", id="breaks-too-late"),
])
def test_a_quoted_field_past_the_bound_refuses_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], why: str) -> None:
    """A quote that closes, or breaks the CSV, only past MAX_QUOTED_LINES lines refuses the
    file too, naming where it opened and where it ended."""
    monkeypatch.setattr(engine.plan.csv_rows, "MAX_QUOTED_LINES", 5)
    path = tmp_path / "r.csv"
    path.write_text("phone,name\n+421912345678,Ann\n" + "\n".join(lines) + "\n+421912345600,Z\n")
    with RecipientsFile(path, "phone") as rf:
        with pytest.raises(BrokenQuote) as info:
            list(rf.rows())
        error = rf.refuse(info.value)
    assert str(error).startswith(f"{path}: line 3: a quoted field opens on this line")
    assert why in str(error) and "9 lines follow it" in str(error)


def test_a_short_broken_quote_is_one_row_naming_the_lines_it_took(tmp_path: Path) -> None:
    """Within the bound, a quote that breaks after taking lines is one malformed row whose
    detail names the lines it took, so no line is lost unseen; the rows after it count."""
    path = tmp_path / "r.csv"
    path.write_text('phone,name\n+421912345678,"Bob\n+421912345679,Ann\n+421912345670,"x"y\n'
                    "+421912345671,Cy\n")
    with RecipientsFile(path, "phone") as rf:
        rows = [(r.line, r.fields, r.problem) for r in rf.rows()]
    assert rows[0][:2] == (2, None) and "took lines 2-4" in rows[0][2]
    assert rows[1:] == [(5, ["+421912345671", "Cy"], "")]


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
def test_a_control_character_rejects_its_row_naming_the_column(tmp_path: Path,
                                                               char: str) -> None:
    """A control character other than tab, CR or LF in any cell makes its row malformed,
    naming the column and the character; the other rows of the piece are untouched."""
    path = tmp_path / "r.csv"
    path.write_text(f"phone,name\n+421912345678,Ann\n+421912345679,A{char}nn\n"
                    "+421912345670,Cy\tTab\n", encoding="utf-8")
    with RecipientsFile(path, "phone") as rf:
        rows = [(r.line, r.fields, r.problem) for r in rf.rows()]
    assert rows[0] == (2, ["+421912345678", "Ann"], "")
    assert rows[1][:2] == (3, None)
    assert f"column 'name' holds control character U+{ord(char):04X}" in rows[1][2]
    assert rows[2] == (4, ["+421912345670", "Cy\tTab"], "")


def test_nul_in_a_cell_is_rejected_in_the_store_and_nothing_is_cut(tmp_path: Path) -> None:
    """Planned through the CLI into SQLite, in one process and in two: the NUL row is
    ``malformed_row`` naming its column, no stored value holds a cut text."""
    csv_text = recipients_csv(3000, bad={3: "+421912900001,A\x00nn", 2500: "+421912902499,\x00"})
    campaign = write_campaign(tmp_path, csv_text)
    config = write_config(tmp_path)
    for workers in ("1", "2"):
        (tmp_path / "dispatch.db").unlink(missing_ok=True)
        plan = plan_json(campaign, config, "--workers", workers)
        assert plan["rejected"] == {"malformed_row": 2} and plan["valid"] == 2998
        rows = {r[0]: r for r in stored(tmp_path / "dispatch.db")}
        for line in (3, 2500):
            assert rows[line][1:3] == ("rejected", "malformed_row")
            assert "column 'name' holds control character U+0000" in str(rows[line][3])
        with sqlite3.connect(tmp_path / "dispatch.db") as conn:
            assert conn.execute("SELECT count(*) FROM messages WHERE variables = 'A' "
                                "OR text LIKE 'Hi A,%'").fetchone() == (0,)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_blank_lines_are_counted_in_the_plan(tmp_path: Path, workers: str) -> None:
    """Blank lines (and lines of spaces) are counted apart: valid + rejected + skipped +
    blank = lines read, in the JSON and the text summary, fresh and read back from the
    store."""
    csv_text = recipients_csv(50, bad={2: "", 10: "   ", 11: "", 30: "12345,Bad"}) + "\n\n"
    campaign = write_campaign(tmp_path, csv_text)
    config = write_config(tmp_path)
    plan = plan_json(campaign, config, "--workers", workers)
    assert plan["blank"] == 5
    assert plan["rows"] == accounted(plan) == 47
    assert plan["lines"] == accounted(plan) + 5 == 52
    again = plan_json(campaign, config, "--workers", workers)
    assert (again["blank"], again["lines"], again["rows"]) == (5, 52, 47)
    text = dispatch("plan", str(campaign), "--config", str(config))
    assert "lines read 52: valid 46, rejected 1, skipped 0, blank 5" in text.stdout


@pytest.mark.parametrize(("data", "name"), [
    pytest.param("phone,name\n+421912345678,Ann\n".encode("utf-16"),
                 "UTF-16 (little-endian)", id="utf16-bom"),
    pytest.param(b"\xfe\xff" + "phone,name\n+421912345678,Ann\n".encode("utf-16-be"),
                 "UTF-16 (big-endian)", id="utf16be-bom"),
    pytest.param("phone,name\n+421912345678,Ján\n".encode("utf-16-le"),
                 "UTF-16 (little-endian)", id="utf16le-no-bom"),
    pytest.param("phone,name\n+421912345678,Ján\n".encode("utf-16-be"),
                 "UTF-16 (big-endian)", id="utf16be-no-bom"),
    pytest.param("phone,name\n+421912345678,Ann\n".encode("utf-32"),
                 "UTF-32 (little-endian)", id="utf32-bom"),
    pytest.param("phone,name\n+421912345678,Ján\n".encode("utf-32-le"),
                 "UTF-32 (little-endian)", id="utf32le-no-bom"),
    pytest.param("phone,name\n+421912345678,Ann\n".encode("utf-32-be"),
                 "UTF-32 (big-endian)", id="utf32be-no-bom"),
])
def test_a_utf16_or_utf32_file_is_refused_naming_its_encoding(tmp_path: Path, data: bytes,
                                                              name: str) -> None:
    """A file saved as UTF-16 or UTF-32, with a BOM or without, is refused with its encoding
    named, never with its raw bytes."""
    path = tmp_path / "r.csv"
    path.write_bytes(data)
    with pytest.raises(CampaignError) as info:
        RecipientsFile(path, "phone")
    assert str(info.value) == f"{path}: is {name}; save it as UTF-8"


def test_a_utf16_file_stops_the_cli_with_exit_2(tmp_path: Path) -> None:
    """Through the CLI: exit 2, the encoding named, no traceback."""
    campaign = write_campaign(tmp_path, "")
    (tmp_path / "recipients.csv").write_bytes("phone,name\n+421912345678,Ann\n".encode("utf-16"))
    result = dispatch("plan", str(campaign), "--config", str(write_config(tmp_path)))
    assert result.returncode == 2
    assert "is UTF-16 (little-endian); save it as UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_recipients_naming_a_directory_says_so(tmp_path: Path) -> None:
    """`recipients` pointing at a folder: 'is a directory, not a file', exit 2."""
    campaign = write_campaign(tmp_path, "phone,name\n")
    (tmp_path / "folder").mkdir()
    text = campaign.read_text().replace('"recipients.csv"', '"folder"')
    campaign.write_text(text)
    with pytest.raises(CampaignError, match="folder is a directory, not a file"):
        load_campaign(campaign)
    result = dispatch("plan", str(campaign), "--config", str(write_config(tmp_path)))
    assert result.returncode == 2 and "is a directory, not a file" in result.stderr
    with pytest.raises(CampaignError, match="is a directory, not a file"):
        RecipientsFile(tmp_path / "folder", "phone")


def test_a_number_with_an_extension_is_rejected_not_cut(tmp_path: Path) -> None:
    """`ext. 5`, `x5`, `;ext=5`: rejected invalid_number saying extensions cannot receive
    SMS, never sent to the number without its extension."""
    csv_text = ('phone,name\n"+421 912 345 678 ext. 5",Ann\n+421912345679 x5,Bob\n'
                '"+421912345670;ext=5",Cy\n+421912345671,Dee\n')
    campaign = write_campaign(tmp_path, csv_text)
    plan = plan_json(campaign, write_config(tmp_path))
    assert plan["valid"] == 1 and plan["rejected"] == {"invalid_number": 3}
    for line, state, reason, detail in stored(tmp_path / "dispatch.db")[:3]:
        assert (state, reason) == ("rejected", "invalid_number"), line
        assert "has an extension (5): extensions cannot receive SMS" in str(detail)


LINE_PARTS = st.sampled_from([
    "+421903000001,Ann", "+421903000002,Bob", "", "   ", '+421903000003,"Cy, Jr"',
    '+421903000004,"Dee', 'Eve"', '+421903000005,5" screen', "+421903000006,F\x00n",
    "+421903000007", "+421903000008,G,extra", '"+421903000009","Hal"', "+421903000010,\x85",
    '+421903000011,"x"y', "+421903000012,Ján",
])


@settings(max_examples=150)
@given(lines=st.lists(LINE_PARTS, min_size=1, max_size=40), target=st.sampled_from([1, 16, 64]))
def test_every_line_is_a_row_inside_a_row_or_the_file_is_refused(
        tmp_path_factory: pytest.TempPathFactory, lines: list[str], target: int) -> None:
    """Whatever the lines (quotes, blanks, control characters, wrong widths): read as text
    and read by byte spans alike, each line starts a row (blank lines included) or lies
    inside a row that says so (a quoted field holding a line break, or a problem naming the
    lines it took), or the whole file is refused with BrokenQuote."""
    path = tmp_path_factory.mktemp("prop") / "r.csv"
    path.write_text("phone,name\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with RecipientsFile(path, "phone") as rf:
        try:
            rows = [(r.line, r.fields, r.problem) for r in rf.rows()]
        except BrokenQuote:
            rows = None
    with RecipientsFile(path, "phone") as rf:
        spans = rf.spans(target)
        assert spans is not None
        try:
            by_span = [row for s in spans for row in parse_chunk(
                rf.text(s), rf.delimiter, len(rf.header), columns=rf.header)]
        except BrokenQuote:
            by_span = None
    if quote_count_finds_record_ends(path.read_text(encoding="utf-8")):
        assert by_span == rows
    for got in (rows, by_span):
        if got is None:
            continue
        starts = [line for line, _, _ in got] + [len(lines) + 2]
        assert starts[0] == 2
        for (line, fields, problem), after in zip(got, starts[1:], strict=True):
            assert after > line
            if after - line > 1:
                assert ((fields is not None and any("\n" in f for f in fields))
                        or f"took lines {line}-{after - 1}" in problem), (line, fields, problem)


def quote_count_finds_record_ends(text: str) -> bool:
    """Whether every line end after which the ``"`` so far balance ends a record as CSV
    reads it: not so after a ``"`` inside an unquoted field (a known limit of the cuts)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    ends = set()
    while True:
        try:
            next(reader)
        except StopIteration:
            break
        except csv.Error:
            pass
        ends.add(reader.line_num)
    quotes = 0
    for n, line in enumerate(text.split("\n")[:-1], start=1):
        quotes += line.count('"')
        if quotes % 2 == 0 and n not in ends:
            return False
    return True
