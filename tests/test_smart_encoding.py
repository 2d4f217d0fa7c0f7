"""Smart encoding: typographic look-alikes become GSM-7 where that keeps a message GSM-7,
planned, counted, sent and billed as replaced; nothing else is ever changed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.segments import GSM_BASIC_CHARS, GSM_EXTENSION_CHARS, SINGLE_SHIFT_CHARS, measure
from engine.smart_encoding import SMART_CHARS, TRANSLITERATE_CHARS, explain, smarten
from tests.helpers import dispatch, write_campaign, write_config
from tests.run_fixtures import external_sandbox, run_config

pytestmark = pytest.mark.anyio

GSM: str = GSM_BASIC_CHARS + GSM_EXTENSION_CHARS
CURLY = "Hi Ann, don\u2019t miss our \u201cSpring Sale\u201d \u2013 20% off everything\u2026 "
"""Typographic copy as pasted from a word processor; with :data:`TAIL`, 2 UCS-2 segments."""
TAIL = "use code SPRING777 at the till. Reply STOP to opt out."


def is_gsm(text: str) -> bool:
    return all(c in GSM for c in text)


@pytest.mark.parametrize("table", [pytest.param(SMART_CHARS, id="smart"),
                                   pytest.param(TRANSLITERATE_CHARS, id="transliterate")])
def test_every_entry_maps_a_character_gsm7_lacks_to_gsm7(table: dict[str, str]) -> None:
    """No entry replaces a GSM-7 character, and every replacement is GSM-7 (or nothing)."""
    for char, replacement in table.items():
        assert char not in GSM, f"U+{ord(char):04X} is GSM-7 and must never be replaced"
        assert is_gsm(replacement), f"U+{ord(char):04X} -> {replacement!r} is not GSM-7"


@pytest.mark.parametrize("char", sorted(SMART_CHARS))
def test_each_smart_entry_alone_turns_its_text_gsm7(char: str) -> None:
    """A Latin text with one table character is sent with that character replaced, as GSM-7."""
    text = f"Sale {char}today"
    assert measure(text)[0] == "UCS-2"
    new = smarten(text)
    assert new == f"Sale {SMART_CHARS[char]}today"
    assert measure(new)[0] == "GSM-7"


@given(st.text(alphabet=GSM, max_size=400))
def test_gsm7_text_is_never_changed(text: str) -> None:
    """Text that is GSM-7 already comes out exactly as written, with or without transliteration."""
    for transliterate in (False, True):
        result = explain(text, transliterate=transliterate)
        assert not result.changed and result.text == text and not result.replacements


@pytest.mark.parametrize("text", [
    pytest.param("\u0393\u03b5\u03b9\u03b1 \u03c3\u03bf\u03c5 Anna, it\u2019s \u201con\u201d",
                 id="greek"),
    pytest.param("\u041f\u0440\u0438\u0432\u0456\u0442 Olga, it\u2019s \u201con\u201d \u2013 now",
                 id="cyrillic"),
    pytest.param("\u4f60\u597d\u2019 \u201csale\u201d\u2026", id="cjk"),
    pytest.param("Hi \U0001f600, it\u2019s on", id="emoji"),
])
def test_non_latin_text_stays_ucs2_untouched(text: str) -> None:
    """A script GSM-7 lacks keeps the whole text as written: a replaced quote would save nothing."""
    for transliterate in (False, True):
        assert smarten(text, transliterate=transliterate) is None
        result = explain(text, transliterate=transliterate)
        assert result.text == text and result.encoding == "UCS-2"


def test_letters_with_diacritics_change_only_with_transliterate() -> None:
    """``á`` and ``ł`` change words: kept unless asked; GSM-7's own ``é`` always stays."""
    text = "Ol\u00e1 \u0141ukasz, caf\u00e9 it\u2019s on"
    assert smarten(text) is None
    assert smarten(text, transliterate=True) == "Ola Lukasz, caf\u00e9 it's on"


def test_a_letter_in_a_chosen_shift_table_is_sent_from_it_not_transliterated() -> None:
    """With the Turkish table, ``ş`` stays (two septets) while the quote is replaced."""
    assert "\u015f" in SINGLE_SHIFT_CHARS["tr"]
    text = "Merhaba Ay\u015fe, it\u2019s on"
    new = smarten(text, transliterate=True, shift_tables=("tr",))
    assert new == "Merhaba Ay\u015fe, it's on"
    assert measure(new, shift_tables=("tr",))[0] == "GSM-7"


def test_two_ucs2_segments_become_one_gsm7_segment() -> None:
    """The typographic copy costs 2 UCS-2 segments as written and 1 GSM-7 segment replaced."""
    result = explain(CURLY + TAIL)
    assert (result.original_encoding, result.original_segments) == ("UCS-2", 2)
    assert (result.encoding, result.segments) == ("GSM-7", 1)
    assert result.text == (
        "Hi Ann, don't miss our \"Spring Sale\" - 20% off everything... " + TAIL)
    assert {(r.char, r.replacement, r.count) for r in result.replacements} == {
        ("\u2019", "'", 1), ("\u201c", '"', 1), ("\u201d", '"', 1), ("\u2013", "-", 1),
        ("\u2026", "...", 1)}


def test_segments_smart_shows_both_texts_counts_and_each_replacement() -> None:
    """``dispatch segments --smart`` prints before and after with their segments, and each
    replacement by name; ``--json`` carries the same."""
    result = dispatch("segments", "--smart", CURLY + TAIL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "before: UCS-2, 2 segment(s)" in out and "after: GSM-7, 1 segment(s)" in out
    assert "U+2019 RIGHT SINGLE QUOTATION MARK -> \"'\" (x1)" in out
    assert "U+2026 HORIZONTAL ELLIPSIS -> '...' (x1)" in out
    data = json.loads(dispatch("segments", "--smart", "--json", CURLY + TAIL).stdout)
    assert (data["before"]["segments"], data["after"]["segments"]) == (2, 1)
    assert data["after"]["text"] == explain(CURLY + TAIL).text
    assert len(data["replacements"]) == 5
    greek = dispatch("segments", "--smart", "\u0393\u03b5\u03b9\u03b1 it\u2019s")
    assert "unchanged: no GSM-7 look-alike for U+03B5 GREEK SMALL LETTER EPSILON" in greek.stdout


@pytest.mark.parametrize(("key", "detail"), [
    pytest.param('encoding = "ascii"', "'ascii' is not one of smart, keep", id="encoding"),
    pytest.param('encoding = "keep"\ntransliterate = true', 'needs encoding = "smart"',
                 id="transliterate-with-keep"),
    pytest.param('transliterate = "yes"', "must be", id="transliterate-type"),
])
def test_bad_encoding_keys_stop_the_plan_naming_file_and_key(tmp_path: Path, key: str,
                                                              detail: str) -> None:
    """A wrong ``encoding`` or ``transliterate`` stops with exit 2 and one line naming both."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n", extra=key + "\n")
    result = dispatch("plan", str(campaign), "--config", str(config))
    assert result.returncode == 2
    name = key.split("\n")[-1].split(" ")[0]
    assert "campaign.toml" in result.stderr and name in result.stderr
    assert detail in result.stderr and "Traceback" not in result.stderr


def _plan(folder: Path, extra: str = "", *workers: str) -> tuple[dict[str, object], list[tuple]]:
    """Plan three rows (a curly one, its duplicate, a plain one) and a Greek row into a new
    database in *folder*: the JSON summary and each row's stored text, encoding, segments."""
    folder.mkdir()
    config = write_config(folder)
    csv_text = ("phone,name,offer\n"
                f'+421912345678,Ann,"{CURLY.strip()}"\n'
                f'0912 345 678,Ann,"{CURLY.strip()}"\n'
                "+421912345679,Bob,plain words\n"
                "+421912345670,\u0393\u03b9\u03ac\u03bd\u03bd\u03b7\u03c2,\u201cyes\u201d\n")
    campaign = write_campaign(folder, csv_text, message="{offer} " + TAIL + " {name}",
                              extra=extra)
    result = dispatch("plan", str(campaign), "--config", str(config), "--json", *workers)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(folder / "dispatch.db") as conn:
        rows = conn.execute("SELECT line, state, text, encoding, segments, cost_nanos "
                            "FROM messages ORDER BY line").fetchall()
    return json.loads(result.stdout), rows


def test_plan_counts_the_changed_messages_and_the_saving_and_stores_the_text_as_sent(
        tmp_path: Path) -> None:
    """The curly row is planned as 1 GSM-7 segment with its replaced text stored; the plan
    reports 1 message changed, 1 segment and its price saved, again when planned twice;
    the duplicate is not counted and the Greek row keeps its quotes."""
    plan, rows = _plan(tmp_path / "smart")
    sent = explain(CURLY + TAIL + " Ann").text
    assert rows[0][1:5] == ("pending", sent, "GSM-7", 1)
    assert rows[1][1] == "skipped"
    assert rows[2][2:5] == (None, "GSM-7", 1)
    assert rows[3][2:4] == (None, "UCS-2")
    price = rows[0][5]
    assert plan["smart_encoding"] == {"messages": 1, "segments_saved": 1,
                                      "cost_saved": str(plan_cost(price))}
    again = json.loads(dispatch("plan", str(tmp_path / "smart/campaign.toml"), "--config",
                                str(tmp_path / "smart/config.toml"), "--json").stdout)
    assert (again["smart_encoding"], again["cost"]) == (plan["smart_encoding"], plan["cost"])
    kept, kept_rows = _plan(tmp_path / "keep", 'encoding = "keep"\n')
    assert kept["smart_encoding"] == {"messages": 0, "segments_saved": 0, "cost_saved": "0"}
    assert kept_rows[0][2:5] == (None, "UCS-2", 2)
    assert kept["cost"] != plan["cost"]


def plan_cost(nanos: int) -> object:
    from engine.routing import nanos_to_decimal

    return nanos_to_decimal(nanos)


def test_planning_workers_apply_smart_encoding_as_one_process_does(tmp_path: Path) -> None:
    """A plan made in a worker process stores the same texts and counts the same saving."""
    one, rows_one = _plan(tmp_path / "one", "", "--workers", "1")
    two, rows_two = _plan(tmp_path / "two", "", "--workers", "2")
    assert rows_two == rows_one
    assert two["smart_encoding"] == one["smart_encoding"]
    assert one["smart_encoding"]["messages"] == 1  # type: ignore[index]


async def test_the_sandbox_bills_the_replaced_text_at_its_gsm7_segments(tmp_path: Path) -> None:
    """Sent through the sandbox, the curly message arrives with straight quotes and is billed
    as 1 segment; with ``encoding = "keep"`` as written, at 2."""
    billed = {}
    for mode in ("smart", "keep"):
        folder = tmp_path / mode
        folder.mkdir()
        campaign = write_campaign(folder, f'phone,offer\n+421912345678,"{CURLY.strip()}"\n',
                                  message="{offer} " + TAIL, extra=f'encoding = "{mode}"\n')
        with external_sandbox(folder) as sandbox:
            config = run_config(folder, sandbox.url)
            result = dispatch("run", str(campaign), "--config", str(config), "--no-dlr")
            assert result.returncode == 0, result.stderr
            (entry,) = sandbox.entries()
        billed[mode] = (entry["text"], entry["segments"])
    assert billed["smart"] == (explain(CURLY + TAIL).text, 1)
    assert billed["keep"] == (CURLY + TAIL, 2)
