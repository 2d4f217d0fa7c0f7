"""Segment counting: GSM-7 / UCS-2 choice, exact part boundaries, measure == segment."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.segments import (
    GSM_BASIC_CHARS,
    GSM_EXTENSION_CHARS,
    SINGLE_SHIFT_CHARS,
    Segmentation,
    measure,
    segment,
    to_json,
)

# 3GPP TS 23.038 6.2.1, column by column as printed in the spec (0x1B ESC left out).
SPEC_COLUMNS = (
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
)
BASIC = frozenset("".join(SPEC_COLUMNS))
EXTENSION = frozenset("\x0c^{}\\[~]|€")
ALL_TABLES = ("tr", "es", "pt")
SHIFT_DOUBLES = frozenset("".join(SINGLE_SHIFT_CHARS.values())) - BASIC


def reference(text: str) -> tuple[str, int, int]:
    """Slow, independent re-statement of the rules for the default tables."""
    if all(c in BASIC or c in EXTENSION for c in text):
        encoding, single, multi = "GSM-7", 160, 153
        costs = [2 if c in EXTENSION else 1 for c in text]
    else:
        encoding, single, multi = "UCS-2", 70, 67
        costs = [len(c.encode("utf-16-le")) // 2 for c in text]
    units = sum(costs)
    if units <= single:
        return encoding, min(units, 1), units
    parts, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            parts, used = parts + 1, 0
        used += cost
    return encoding, parts, units


def cost(ch: str, s: Segmentation, shifted: bool) -> int:
    if s.encoding == "UCS-2":
        return len(ch.encode("utf-16-le")) // 2
    return 2 if ch in (SHIFT_DOUBLES if shifted else EXTENSION) else 1


def limit(s: Segmentation, shifted: bool) -> int:
    if s.encoding == "UCS-2":
        return 70 if s.segments == 1 else 67
    if shifted:
        return 155 if s.segments == 1 else 149
    return 160 if s.segments == 1 else 153


def uses_shift(text: str, s: Segmentation) -> bool:
    return s.encoding == "GSM-7" and segment(text).encoding == "UCS-2"


GSM_ALPHABET = "aZ0 @£é\nΔ¤Ç" + GSM_EXTENSION_CHARS
ANY_ALPHABET = GSM_ALPHABET + "ж`\t😀🎉şğİçáêã"


@st.composite
def messages(draw: st.DrawFn, alphabet: str = ANY_ALPHABET) -> str:
    """A long run of one filler around boundary lengths, framed by random characters."""
    filler = draw(st.sampled_from([c for c in "a€жş😀" if c in alphabet]))
    head = draw(st.text(alphabet, max_size=6))
    tail = draw(st.text(alphabet, max_size=40))
    return head + filler * draw(st.integers(0, 320)) + tail


TEXTS = st.one_of(messages(GSM_ALPHABET), messages(), st.text(max_size=200))
TABLES = st.sampled_from([(), ALL_TABLES])


def test_default_alphabet_matches_the_spec() -> None:
    """The basic table is exactly the 127 characters of TS 23.038 6.2.1, extension exact."""
    assert len(GSM_BASIC_CHARS) == 127
    assert frozenset(GSM_BASIC_CHARS) == BASIC
    assert frozenset(GSM_EXTENSION_CHARS) == EXTENSION
    assert "`" not in BASIC | EXTENSION
    assert "¤" in BASIC
    assert not BASIC & EXTENSION


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [
        pytest.param("", "GSM-7", 0, 0, id="empty"),
        pytest.param("a" * 160, "GSM-7", 1, 160, id="gsm-160-one-part"),
        pytest.param("a" * 161, "GSM-7", 2, 161, id="gsm-161-two-parts"),
        pytest.param("a" * 306, "GSM-7", 2, 306, id="gsm-306-two-parts"),
        pytest.param("a" * 307, "GSM-7", 3, 307, id="gsm-307-three-parts"),
        pytest.param("€", "GSM-7", 1, 2, id="euro-costs-two"),
        pytest.param("\x0c", "GSM-7", 1, 2, id="form-feed-costs-two"),
        pytest.param("€" * 80, "GSM-7", 1, 160, id="euro-x80-one-part"),
        pytest.param("€" * 81, "GSM-7", 2, 162, id="euro-x81-two-parts"),
        pytest.param("a" * 159 + "^", "GSM-7", 2, 161, id="caret-as-161st-septet"),
        pytest.param("a" * 151 + "€" + "a" * 153, "GSM-7", 2, 306, id="pair-ends-part-1"),
        pytest.param("a" * 152 + "€" + "a" * 152, "GSM-7", 3, 306, id="pair-moves-adds-part"),
        pytest.param("¤@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà", "GSM-7", 1, 42, id="gsm-ex"),
        pytest.param("`", "UCS-2", 1, 1, id="backtick-is-not-gsm"),
        pytest.param("\t", "UCS-2", 1, 1, id="tab-is-not-gsm"),
        pytest.param("ç", "UCS-2", 1, 1, id="lowercase-c-cedilla-is-not-gsm"),
        pytest.param("a" * 159 + "ж", "UCS-2", 3, 160, id="one-non-gsm-switches-all"),
        pytest.param("ж" * 70, "UCS-2", 1, 70, id="ucs2-70-one-part"),
        pytest.param("ж" * 71, "UCS-2", 2, 71, id="ucs2-71-two-parts"),
        pytest.param("ж" * 134, "UCS-2", 2, 134, id="ucs2-134-two-parts"),
        pytest.param("ж" * 135, "UCS-2", 3, 135, id="ucs2-135-three-parts"),
        pytest.param("😀" * 35, "UCS-2", 1, 70, id="emoji-x35-one-part"),
        pytest.param("😀" * 36, "UCS-2", 2, 72, id="emoji-x36-two-parts"),
        pytest.param("ж" * 65 + "😀" + "ж" * 67, "UCS-2", 2, 134, id="surrogates-end-part-1"),
        pytest.param("ж" * 66 + "😀" + "ж" * 66, "UCS-2", 3, 134, id="surrogates-move-add-part"),
    ],
)
def test_boundaries_are_exact(text: str, encoding: str, segments: int, units: int) -> None:
    """measure and segment give the billed count exactly at every part boundary."""
    assert measure(text) == (encoding, segments, units)
    s = segment(text)
    assert (s.encoding, s.segments, s.units, s.characters) == (encoding, segments, units, len(text))
    assert len(s.parts) == segments


def test_escape_pair_straddling_153_moves_to_next_part() -> None:
    """An extension char that would start on septet 153 opens part 2; part 1 keeps 152."""
    s = segment("a" * 152 + "€" + "a" * 152)
    assert s.parts == ("a" * 152, "€" + "a" * 151, "a")


def test_surrogate_pair_straddling_67_moves_to_next_part() -> None:
    """An emoji that would start on unit 67 opens part 2; part 1 keeps 66 units."""
    s = segment("ж" * 66 + "😀" + "ж" * 66)
    assert s.parts == ("ж" * 66, "😀" + "ж" * 65, "ж")


def test_empty_text_has_no_parts() -> None:
    """The empty string is zero GSM-7 segments with no parts."""
    assert segment("") == Segmentation("GSM-7", 0, 0, 0, ())


def test_to_json_has_the_cli_shape() -> None:
    """to_json gives the five documented keys, JSON-serialisable, parts as a list."""
    out = to_json(segment("a" * 159 + "€"))
    assert out == {
        "encoding": "GSM-7",
        "segments": 2,
        "units": 161,
        "characters": 160,
        "parts": ["a" * 153, "a" * 6 + "€"],
    }
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize(
    ("text", "tables", "encoding", "segments", "units"),
    [
        pytest.param("ş", (), "UCS-2", 1, 1, id="turkish-off-by-default"),
        pytest.param("ş", ("tr",), "GSM-7", 1, 2, id="turkish-shift-costs-two"),
        pytest.param("ş" * 77 + "a", ("tr",), "GSM-7", 1, 155, id="shift-155-one-part"),
        pytest.param("ş" * 77 + "aa", ("tr",), "GSM-7", 2, 156, id="shift-156-two-parts"),
        pytest.param("ş" + "a" * 296, ("tr",), "GSM-7", 2, 298, id="shift-2x149-two-parts"),
        pytest.param("ş" + "a" * 297, ("tr",), "GSM-7", 3, 299, id="shift-299-three-parts"),
        pytest.param("ş" + "a" * 146 + "ğ" + "a" * 148, ("tr",), "GSM-7", 3, 298, id="shift-pair"),
        pytest.param("a" * 160, ("tr",), "GSM-7", 1, 160, id="plain-gsm-keeps-160"),
        pytest.param("€ ş", ("tr",), "GSM-7", 1, 5, id="euro-is-in-turkish-table"),
        pytest.param("á", ("tr",), "UCS-2", 1, 1, id="char-not-in-chosen-table"),
        pytest.param("á", ALL_TABLES, "GSM-7", 1, 2, id="spanish-accent"),
        pytest.param("ão", ALL_TABLES, "GSM-7", 1, 3, id="portuguese-only"),
        pytest.param("ΦΓ ê", ("pt",), "GSM-7", 1, 5, id="pt-greek-from-basic-table"),
        pytest.param("şã", ALL_TABLES, "UCS-2", 1, 2, id="two-tables-needed-is-ucs2"),
    ],
)
def test_single_shift_tables(
    text: str, tables: tuple[str, ...], encoding: str, segments: int, units: int
) -> None:
    """Opt-in national single-shift tables cost 2 septets a char and cap parts at 155/149."""
    assert measure(text, shift_tables=tables) == (encoding, segments, units)
    s = segment(text, shift_tables=tables)
    assert (s.encoding, s.segments, s.units) == (encoding, segments, units)


def test_unknown_shift_table_is_rejected() -> None:
    """An unknown table name is a ValueError and a bare str a TypeError, even for GSM text."""
    with pytest.raises(ValueError, match="'xx'"):
        measure("hello", shift_tables=["xx"])
    with pytest.raises(TypeError):
        segment("hello", shift_tables="tr")


@given(TEXTS, TABLES)
def test_parts_join_back_to_the_text(text: str, tables: tuple[str, ...]) -> None:
    """Parts join back to the text, one per billed segment, characters == len(text)."""
    s = segment(text, shift_tables=tables)
    assert "".join(s.parts) == text
    assert len(s.parts) == s.segments
    assert s.characters == len(text)
    assert all(s.parts)


@given(TEXTS, TABLES)
def test_measure_agrees_with_segment(text: str, tables: tuple[str, ...]) -> None:
    """measure(t) is exactly (encoding, segments, units) of segment(t)."""
    s = segment(text, shift_tables=tables)
    assert measure(text, shift_tables=tables) == (s.encoding, s.segments, s.units)


@given(TEXTS)
def test_measure_matches_independent_reference(text: str) -> None:
    """The fast paths give what a naive per-character walk gives."""
    assert measure(text) == reference(text)


@given(TEXTS, TABLES)
def test_every_part_fits_and_is_packed_greedily(text: str, tables: tuple[str, ...]) -> None:
    """Each part fits its limit and could not take the next part's first character."""
    s = segment(text, shift_tables=tables)
    shifted = uses_shift(text, s)
    cap = limit(s, shifted)
    loads = [sum(cost(c, s, shifted) for c in part) for part in s.parts]
    assert sum(loads) == s.units
    assert all(load <= cap for load in loads)
    for load, following in zip(loads, s.parts[1:], strict=False):
        assert load + cost(following[0], s, shifted) > cap


@given(TEXTS, TABLES)
def test_no_boundary_splits_a_pair(text: str, tables: tuple[str, ...]) -> None:
    """No part ends in a lone high surrogate: every part encodes to UTF-16 on its own."""
    s = segment(text, shift_tables=tables)
    for part in s.parts:
        encoded = part.encode("utf-16-le")
        assert not 0xD800 <= int.from_bytes(encoded[-2:], "little") <= 0xDBFF


@given(TEXTS, st.sampled_from(ANY_ALPHABET), TABLES)
def test_appending_never_decreases_segments(text: str, ch: str, tables: tuple[str, ...]) -> None:
    """Adding a character never makes a message cheaper."""
    before = measure(text, shift_tables=tables)[1]
    assert measure(text + ch, shift_tables=tables)[1] >= before
