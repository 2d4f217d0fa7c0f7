"""How many billable SMS parts a message costs, and how it is split (3GPP TS 23.038 / 23.040).

* **GSM-7** when every character is in the default alphabet or its extension table. An
  extension character is sent as ESC + code and costs two septets. One part holds 160
  septets; a concatenated part holds 153 (the 6-octet concatenation UDH takes 7 septets).
* **UCS-2** (UTF-16 on the wire) as soon as one character is outside GSM-7: 70 code units
  in one part, 67 per concatenated part; a non-BMP character is a 2-unit surrogate pair.
* The split is greedy, as SMSCs and handsets do it, and a 2-unit item (escape pair or
  surrogate pair) never straddles parts: with one unit left it starts the next part. The
  number of parts is what providers bill.

National language **single-shift** tables (``shift_tables=("tr", "es", "pt")``, off by
default) replace the extension table with a national one (which still holds the standard
extension characters), so e.g. Turkish ``ş`` costs two septets instead of forcing UCS-2.
They are used only when the text is not plain GSM-7. The single-shift UDH information
element (3 octets) is sent in every part, so a part holds 155 septets alone and 149 when
concatenated. When several tables fit, the one giving the fewest segments wins (first
listed on a tie); a fitting table never costs more than UCS-2. Locking-shift tables are
not implemented. ``Segmentation`` does not name the table chosen.

Text is expected to be valid Unicode: a lone surrogate code point counts as one UCS-2 unit
and is never paired with its neighbour.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final, Literal

__all__ = [
    "GSM_BASIC_CHARS",
    "GSM_EXTENSION_CHARS",
    "GSM_MULTI_SEPTETS",
    "GSM_SHIFT_MULTI_SEPTETS",
    "GSM_SHIFT_SINGLE_SEPTETS",
    "GSM_SINGLE_SEPTETS",
    "SINGLE_SHIFT_CHARS",
    "UCS2_MULTI_UNITS",
    "UCS2_SINGLE_UNITS",
    "Encoding",
    "Segmentation",
    "measure",
    "segment",
    "to_json",
]

Encoding = Literal["GSM-7", "UCS-2"]

GSM_SINGLE_SEPTETS: Final = 160
GSM_MULTI_SEPTETS: Final = 153
GSM_SHIFT_SINGLE_SEPTETS: Final = 155
GSM_SHIFT_MULTI_SEPTETS: Final = 149
UCS2_SINGLE_UNITS: Final = 70
UCS2_MULTI_UNITS: Final = 67

GSM_BASIC_CHARS: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The 127 one-septet characters of the GSM 7-bit default alphabet, in code order (0x1B,
the escape to the extension table, is not a character)."""

GSM_EXTENSION_CHARS: Final = "\x0c^{}\\[~]|€"
"""The default extension table: each costs ESC + code = two septets."""

SINGLE_SHIFT_CHARS: Final[Mapping[str, str]] = {
    "tr": "\x0c^{}\\[~]|ĞİŞç€ğış",
    "es": "ç\x0c^{}\\[~]|ÁÍÓÚá€íóú",
    "pt": "êç\x0cÔôÁáΦΓ^ΩΠΨΣΘÊ{}\\[~]|ÀÍÓÚÃÕÂ€íóúãõâ",
}
"""National language single-shift tables (TS 23.038 A.2.1-A.2.3), in code order. Characters
also in the default alphabet (Portuguese Greek capitals) are sent from it, at one septet."""

_Plan = tuple[Encoding, int, int, int, int, Callable[[str], bool]]
"""(encoding, units, count of 2-unit characters, single-part limit, per-part limit when
concatenated, is-this-character-2-units)."""


@dataclass(frozen=True, slots=True)
class Segmentation:
    """A message as it would be sent: its encoding, billed parts and the parts themselves."""

    encoding: Encoding
    segments: int
    units: int
    characters: int
    parts: tuple[str, ...]


def _is_astral(ch: str) -> bool:
    return ch > "\uffff"


def _class(chars: str, *, negate: bool = False) -> re.Pattern[str]:
    return re.compile(f"[{'^' if negate else ''}{re.escape(chars)}]")


_is_gsm_ext: Final = frozenset(GSM_EXTENSION_CHARS).__contains__
_NON_GSM_RE: Final = _class(GSM_BASIC_CHARS + GSM_EXTENSION_CHARS, negate=True)
_EURO_UTF8: Final = "€".encode()
_UCS2_PROBE_CHARS: Final = 16
_ASCII_BASIC_BYTES: Final = bytes(ord(c) for c in GSM_BASIC_CHARS if c.isascii())
_ASCII_EXT_BYTES: Final = bytes(ord(c) for c in GSM_EXTENSION_CHARS if c.isascii())


def _shift_table(chars: str) -> tuple[re.Pattern[str], re.Pattern[str], Callable[[str], bool]]:
    doubles = "".join(sorted(set(chars) - set(GSM_BASIC_CHARS)))
    return (
        _class(GSM_BASIC_CHARS + doubles, negate=True),
        _class(doubles),
        frozenset(doubles).__contains__,
    )


_SHIFT_TABLES: Final = {name: _shift_table(chars) for name, chars in SINGLE_SHIFT_CHARS.items()}


def _ucs2_plan(text: str) -> _Plan:
    units = len(text.encode("utf-16-le", "surrogatepass")) >> 1
    return "UCS-2", units, units - len(text), UCS2_SINGLE_UNITS, UCS2_MULTI_UNITS, _is_astral


def _default_plan(text: str) -> _Plan:
    """Classify with bytes operations only, so no Python code runs per character.

    Deleting the one-septet ASCII bytes from the UTF-8 form leaves the extension bytes, the
    non-GSM ASCII bytes and whole multi-byte sequences (UTF-8 never reuses ASCII bytes);
    only that remainder is decoded and searched. Non-Latin text usually shows a non-GSM
    character at once, so a short probe of its head settles it before any of that.
    """
    if not text.isascii() and _NON_GSM_RE.search(text, 0, _UCS2_PROBE_CHARS) is not None:
        return _ucs2_plan(text)
    rest = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BASIC_BYTES)
    others = rest.translate(None, _ASCII_EXT_BYTES) if rest else rest
    ext = len(rest) - len(others)
    if others:
        if others.isascii() or _NON_GSM_RE.search(others.decode("utf-8", "surrogatepass")):
            return _ucs2_plan(text)
        ext += others.count(_EURO_UTF8)
    return "GSM-7", len(text) + ext, ext, GSM_SINGLE_SEPTETS, GSM_MULTI_SEPTETS, _is_gsm_ext


def _plan(text: str, shift_tables: Sequence[str]) -> _Plan:
    if isinstance(shift_tables, str):
        raise TypeError("shift_tables must be a sequence of table names, not a str")
    tables = []
    for name in shift_tables:
        if name not in _SHIFT_TABLES:
            known = ", ".join(sorted(_SHIFT_TABLES))
            raise ValueError(f"unknown shift table {name!r}; known: {known}")
        tables.append(_SHIFT_TABLES[name])
    plan = _default_plan(text)
    if plan[0] == "GSM-7" or not tables:
        return plan
    best: tuple[int, _Plan] | None = None
    for outside, doubles_re, is_double in tables:
        if outside.search(text) is not None:
            continue
        doubles = len(doubles_re.findall(text))
        candidate: _Plan = (
            "GSM-7",
            len(text) + doubles,
            doubles,
            GSM_SHIFT_SINGLE_SEPTETS,
            GSM_SHIFT_MULTI_SEPTETS,
            is_double,
        )
        count = _segments(text, candidate)
        if best is None or count < best[0]:
            best = (count, candidate)
    return plan if best is None else best[1]


def _part_starts(text: str, limit: int, is_double: Callable[[str], bool]) -> list[int]:
    """Indices where each part starts when `text` is packed greedily into `limit` units."""
    starts = [0]
    used = 0
    for i, ch in enumerate(text):
        cost = 2 if is_double(ch) else 1
        if used + cost > limit:
            starts.append(i)
            used = 0
        used += cost
    return starts


def _segments(text: str, plan: _Plan) -> int:
    """Parts billed, from the totals alone unless a 2-unit item could straddle a boundary.

    Greedy packing leaves every concatenated part but the last at least ``multi - 1`` units
    full, so the count lies between ``ceil(units / multi)`` and ``ceil(units / (multi - 1))``;
    only when those differ (and 2-unit items exist) does the text have to be walked.
    """
    _, units, doubles, single, multi, is_double = plan
    if units <= single:
        return 1 if units else 0
    low = -(-units // multi)
    if doubles == 0 or low == -(-units // (multi - 1)):
        return low
    return len(_part_starts(text, multi, is_double))


def measure(text: str, *, shift_tables: Sequence[str] = ()) -> tuple[Encoding, int, int]:
    """(encoding, segments, units) without building parts: the planning hot path."""
    plan = _default_plan(text) if not shift_tables else _plan(text, shift_tables)
    return plan[0], _segments(text, plan), plan[1]


def segment(text: str, *, shift_tables: Sequence[str] = ()) -> Segmentation:
    """Encode-and-split `text` as it would be sent; agrees exactly with :func:`measure`."""
    encoding, units, _, single, multi, is_double = _plan(text, shift_tables)
    if not text:
        parts: tuple[str, ...] = ()
    elif units <= single:
        parts = (text,)
    else:
        starts = _part_starts(text, multi, is_double)
        parts = tuple(text[a:b] for a, b in pairwise([*starts, len(text)]))
    return Segmentation(encoding, len(parts), units, len(text), parts)


def to_json(s: Segmentation) -> dict[str, object]:
    """{"encoding", "segments", "units", "characters", "parts"} for `dispatch segments --json`."""
    return {
        "encoding": s.encoding,
        "segments": s.segments,
        "units": s.units,
        "characters": s.characters,
        "parts": list(s.parts),
    }
