"""Smart encoding: typographic look-alikes replaced by GSM-7 characters, where that keeps a
message in GSM-7 (160 septets a part) instead of UCS-2 (70 units a part).

One curly apostrophe pasted from a word processor makes a whole message UCS-2 and can more
than double its price. :data:`SMART_CHARS` lists what is replaced: typographic quotes and
apostrophes, dashes, the ellipsis, bullets, no-break, thin and zero-width spaces, fullwidth
ASCII. A text is changed only when every character it has is GSM-7 or replaceable, so text
in a script GSM-7 lacks (Greek, Cyrillic, CJK) stays UCS-2 untouched: replacing one quote
there saves nothing. Letters with diacritics that GSM-7 lacks (``á``, ``č``, ``ł``) change
words, so they are replaced (by :data:`TRANSLITERATE_CHARS`) only when the campaign opts in
with ``transliterate = true``. Text that is GSM-7 already is never changed: no table maps a
GSM-7 character.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal

from engine.segments import GSM_BASIC_CHARS, GSM_EXTENSION_CHARS, SINGLE_SHIFT_CHARS, measure

__all__ = [
    "ENCODINGS",
    "SMART_CHARS",
    "TRANSLITERATE_CHARS",
    "EncodingMode",
    "Replacement",
    "SmartText",
    "describe",
    "explain",
    "smarten",
]

EncodingMode = Literal["smart", "keep"]
ENCODINGS: Final[tuple[EncodingMode, ...]] = ("smart", "keep")

_QUOTES: Final = {
    "\N{LEFT SINGLE QUOTATION MARK}": "'",
    "\N{RIGHT SINGLE QUOTATION MARK}": "'",
    "\N{SINGLE LOW-9 QUOTATION MARK}": "'",
    "\N{SINGLE HIGH-REVERSED-9 QUOTATION MARK}": "'",
    "\N{PRIME}": "'",
    "\N{REVERSED PRIME}": "'",
    "\N{MODIFIER LETTER APOSTROPHE}": "'",
    "\N{GRAVE ACCENT}": "'",
    "\N{ACUTE ACCENT}": "'",
    "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}": "'",
    "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}": "'",
    "\N{LEFT DOUBLE QUOTATION MARK}": '"',
    "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
    "\N{DOUBLE LOW-9 QUOTATION MARK}": '"',
    "\N{DOUBLE HIGH-REVERSED-9 QUOTATION MARK}": '"',
    "\N{DOUBLE PRIME}": '"',
    "\N{REVERSED DOUBLE PRIME}": '"',
    "\N{LEFT-POINTING DOUBLE ANGLE QUOTATION MARK}": '"',
    "\N{RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK}": '"',
}
_DASHES: Final = {
    "\N{HYPHEN}": "-",
    "\N{NON-BREAKING HYPHEN}": "-",
    "\N{FIGURE DASH}": "-",
    "\N{EN DASH}": "-",
    "\N{EM DASH}": "-",
    "\N{HORIZONTAL BAR}": "-",
    "\N{MINUS SIGN}": "-",
    "\N{HYPHEN BULLET}": "-",
    "\N{SMALL EM DASH}": "-",
    "\N{SMALL HYPHEN-MINUS}": "-",
}
_PUNCTUATION: Final = {
    "\N{HORIZONTAL ELLIPSIS}": "...",
    "\N{BULLET}": "-",
    "\N{TRIANGULAR BULLET}": "-",
    "\N{WHITE BULLET}": "-",
    "\N{BULLET OPERATOR}": "-",
    "\N{BLACK SMALL SQUARE}": "-",
    "\N{FRACTION SLASH}": "/",
    "\N{DIVISION SLASH}": "/",
    "\N{MODIFIER LETTER CIRCUMFLEX ACCENT}": "^",
    "\N{SMALL TILDE}": "~",
    "\N{LINE SEPARATOR}": "\n",
    "\N{PARAGRAPH SEPARATOR}": "\n",
}
_SPACES: Final = {
    "\N{NO-BREAK SPACE}": " ",
    "\N{EN QUAD}": " ",
    "\N{EM QUAD}": " ",
    "\N{EN SPACE}": " ",
    "\N{EM SPACE}": " ",
    "\N{THREE-PER-EM SPACE}": " ",
    "\N{FOUR-PER-EM SPACE}": " ",
    "\N{SIX-PER-EM SPACE}": " ",
    "\N{FIGURE SPACE}": " ",
    "\N{PUNCTUATION SPACE}": " ",
    "\N{THIN SPACE}": " ",
    "\N{HAIR SPACE}": " ",
    "\N{NARROW NO-BREAK SPACE}": " ",
    "\N{MEDIUM MATHEMATICAL SPACE}": " ",
    "\N{IDEOGRAPHIC SPACE}": " ",
    "\N{CHARACTER TABULATION}": " ",
}
_INVISIBLE: Final = {  # removed
    "\N{ZERO WIDTH SPACE}": "",
    "\N{ZERO WIDTH NON-JOINER}": "",
    "\N{ZERO WIDTH JOINER}": "",
    "\N{LEFT-TO-RIGHT MARK}": "",
    "\N{RIGHT-TO-LEFT MARK}": "",
    "\N{WORD JOINER}": "",
    "\N{ZERO WIDTH NO-BREAK SPACE}": "",
    "\N{SOFT HYPHEN}": "",
}
_FULLWIDTH: Final = {chr(0xFF01 + i): chr(0x21 + i) for i in range(0x5E)} | {
    "\N{FULLWIDTH GRAVE ACCENT}": "'",  # ` is not GSM-7
}

SMART_CHARS: Final[Mapping[str, str]] = MappingProxyType(
    _QUOTES | _DASHES | _PUNCTUATION | _SPACES | _INVISIBLE | _FULLWIDTH)
"""Each character outside GSM-7 that smart encoding replaces, and its GSM-7 look-alike
(``""``: removed)."""

_GSM: Final = frozenset(GSM_BASIC_CHARS + GSM_EXTENSION_CHARS)
_LETTERS_WITHOUT_DECOMPOSITION: Final = {
    "\N{LATIN SMALL LETTER L WITH STROKE}": "l",
    "\N{LATIN CAPITAL LETTER L WITH STROKE}": "L",
    "\N{LATIN SMALL LETTER D WITH STROKE}": "d",
    "\N{LATIN CAPITAL LETTER D WITH STROKE}": "D",
    "\N{LATIN SMALL LETTER H WITH STROKE}": "h",
    "\N{LATIN CAPITAL LETTER H WITH STROKE}": "H",
    "\N{LATIN SMALL LETTER DOTLESS I}": "i",
    "\N{LATIN SMALL LETTER T WITH STROKE}": "t",
    "\N{LATIN CAPITAL LETTER T WITH STROKE}": "T",
    "\N{LATIN SMALL LIGATURE OE}": "oe",
    "\N{LATIN CAPITAL LIGATURE OE}": "OE",
    "\N{LATIN SMALL LETTER ETH}": "d",
    "\N{LATIN CAPITAL LETTER ETH}": "D",
    "\N{LATIN SMALL LETTER THORN}": "th",
    "\N{LATIN CAPITAL LETTER THORN}": "Th",
    "\N{LATIN SMALL LETTER KRA}": "k",
    "\N{LATIN SMALL LETTER L WITH MIDDLE DOT}": "l",
    "\N{LATIN CAPITAL LETTER L WITH MIDDLE DOT}": "L",
    "\N{LATIN SMALL LETTER N PRECEDED BY APOSTROPHE}": "'n",
    "\N{LATIN SMALL LETTER LONG S}": "s",
}


def _transliterations() -> dict[str, str]:
    """Latin letters with diacritics GSM-7 lacks, to the letter without its marks."""
    table: dict[str, str] = {}
    for code in (*range(0x00C0, 0x0250), *range(0x1E00, 0x1F00)):
        ch = chr(code)
        if ch in _GSM:
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch)
                       if not unicodedata.combining(c))
        if base and base != ch and all(c in _GSM for c in base):
            table[ch] = base
    return table | _LETTERS_WITHOUT_DECOMPOSITION


TRANSLITERATE_CHARS: Final[Mapping[str, str]] = MappingProxyType(_transliterations())
"""Letters replaced as well with ``transliterate = true``: ``á`` -> ``a``, ``č`` -> ``c``,
``ł`` -> ``l``. GSM-7's own accented letters (``é``, ``ü``, ``ñ``, ...) stay."""


@lru_cache(maxsize=8)
def _tables(transliterate: bool, shift_tables: tuple[str, ...]
            ) -> tuple[dict[str, str], dict[int, str], re.Pattern[str]]:
    """The replacements, as a translate table too, and a pattern that finds a character
    neither GSM-7 (default or one of *shift_tables*) nor replaceable: one such character
    leaves the text as it is. A letter a shift table holds is sent from it, not changed."""
    shifted = set("".join(SINGLE_SHIFT_CHARS[t] for t in shift_tables))
    chars = dict(SMART_CHARS)
    if transliterate:
        chars |= {k: v for k, v in TRANSLITERATE_CHARS.items() if k not in shifted}
    allowed = "".join(sorted(_GSM | shifted | set(chars)))
    return chars, str.maketrans(chars), re.compile(f"[^{re.escape(allowed)}]")


def smarten(text: str, *, transliterate: bool = False,
            shift_tables: Sequence[str] = ()) -> str | None:
    """*text* with its replaceable characters replaced, or None where that would not make it
    GSM-7 (or where nothing would change).

    The planning hot path calls it only for text it measured UCS-2: GSM-7 text needs
    nothing. A character that is neither GSM-7 nor in the table stops it after one regex
    search, before anything is built.
    """
    _, table, other = _tables(transliterate, tuple(shift_tables))
    if other.search(text) is not None:
        return None
    new = text.translate(table)
    return new if new != text else None


@dataclass(frozen=True, slots=True)
class Replacement:
    """One replaced character, what replaced it (``""``: removed) and how many times."""

    char: str
    replacement: str
    count: int


@dataclass(frozen=True, slots=True)
class SmartText:
    """A text as smart encoding would send it, beside the text as written; *kept*: the
    characters GSM-7 lacks that have no replacement, which keep the text UCS-2."""

    original: str
    text: str
    replacements: tuple[Replacement, ...]
    kept: tuple[str, ...]
    original_encoding: str
    original_segments: int
    encoding: str
    segments: int

    @property
    def changed(self) -> bool:
        return self.text != self.original


def explain(text: str, *, transliterate: bool = False,
            shift_tables: Sequence[str] = ()) -> SmartText:
    """What smart encoding does to *text*, character by character, with the segments before
    and after (``dispatch segments --smart``)."""
    before, before_segments, _ = measure(text, shift_tables=shift_tables)
    new = (smarten(text, transliterate=transliterate, shift_tables=shift_tables)
           if before == "UCS-2" else None)
    chars, _, other = _tables(transliterate, tuple(shift_tables))
    if new is None:
        kept = tuple(dict.fromkeys(other.findall(text))) if before == "UCS-2" else ()
        return SmartText(text, text, (), kept, before, before_segments, before,
                         before_segments)
    counts: dict[str, int] = {}
    for ch in text:
        if ch in chars:
            counts[ch] = counts.get(ch, 0) + 1
    after, after_segments, _ = measure(new, shift_tables=shift_tables)
    return SmartText(text, new, tuple(Replacement(ch, chars[ch], n) for ch, n in counts.items()),
                     (), before, before_segments, after, after_segments)


def describe(char: str) -> str:
    """``U+2019 RIGHT SINGLE QUOTATION MARK`` for a character, as the CLI lists them."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"
