"""Phone number normalisation to E.164, exactly as phonenumbers decides.

``phonenumbers.parse`` + ``is_valid_number`` costs tens of µs a number, most of it in
``is_valid_number``: it finds the region by running the full type check for each region that
shares a calling code (25 for +1), then runs the type check again, trying ten number types
one regex at a time in a fixed order (mobile last) and recompiling each pattern through the
``re`` cache. :func:`valid_region` answers the same question with the same predicates:
the same general-description check, then *any* type description matching (the order of an
``or`` does not change its value), with mobile and fixed line first because they are what a
campaign holds, and every pattern compiled once. It returns the region as a by-product,
which the report needs anyway. ``tests/test_phone.py`` checks it against
``is_valid_number`` + ``region_code_for_number`` on numbers from every region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber
from phonenumbers import phonenumberutil as _pnu
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

NON_GEO: Final = "001"
_TYPE_DESCS: Final = ("mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost",
                      "voip", "personal_number", "pager", "uan", "voicemail")

_MAX_INPUT: Final = _pnu._MAX_INPUT_STRING_LENGTH
_MIN_NSN: Final = _pnu._MIN_LENGTH_FOR_NSN
_MAX_NSN: Final = _pnu._MAX_LENGTH_FOR_NSN
_LENGTH_REJECTS: Final = (_pnu.ValidationResult.TOO_SHORT,
                          _pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                          _pnu.ValidationResult.INVALID_LENGTH)

_Desc = tuple[frozenset[int] | None, re.Pattern[str]]


@dataclass(frozen=True, slots=True)
class _Rules:
    country_code: int
    valid: re.Pattern[str] | None
    """One pattern for the whole type check (see :func:`_type_check`); ``None``: never."""
    leading_digits: re.Pattern[str] | None


_RULES: dict[str, _Rules | None] = {}


def _desc(desc: object) -> _Desc | None:
    pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
    if not pattern:
        return None
    lengths = getattr(desc, "possible_length", ())
    return (frozenset(lengths) if lengths else None, re.compile(pattern))


def _length_guard(lengths: frozenset[int] | None) -> str:
    if lengths is None:
        return ""
    return "(?=(?:" + "|".join(f".{{{n}}}" for n in sorted(lengths) if n > 0) + r")\Z)"


def _type_check(general: _Desc | None, types: list[_Desc]) -> re.Pattern[str] | None:
    """One pattern whose ``fullmatch`` is phonenumbers' type check of a national number:
    the general description's length and pattern, then any type description's length and
    pattern. The lookaheads test a whole-number condition at the start without consuming,
    and the alternation fails only when no branch matches the whole number, so the verdict
    is that of the ``and``/``or`` of the separate matches, in one C call instead of many.
    """
    types = [d for d in types if d[0] is None or any(n > 0 for n in d[0])]
    if general is None or not types or (general[0] is not None
                                        and not any(n > 0 for n in general[0])):
        return None
    branches = "|".join(f"{_length_guard(lengths)}(?:{p.pattern})" for lengths, p in types)
    return re.compile(f"{_length_guard(general[0])}(?=(?:{general[1].pattern})\\Z)"
                      f"(?:{branches})")


def _rules_for(region: str) -> _Rules | None:
    try:
        return _RULES[region]
    except KeyError:
        pass
    metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
    rules = None
    if metadata is not None and metadata.country_code is not None:
        names = [n for n in _TYPE_DESCS
                 if not (n == "mobile" and metadata.same_mobile_and_fixed_line_pattern)]
        rules = _Rules(
            country_code=metadata.country_code,
            valid=_type_check(_desc(metadata.general_desc),
                              [d for d in (_desc(getattr(metadata, n)) for n in names) if d]),
            leading_digits=(re.compile(metadata.leading_digits)
                            if metadata.leading_digits is not None else None),
        )
    _RULES[region] = rules
    return rules


def _has_type(nsn: str, rules: _Rules) -> bool:
    return rules.valid is not None and rules.valid.fullmatch(nsn) is not None


def national_significant_number(number: PhoneNumber) -> str:
    nsn = str(number.national_number)
    if number.italian_leading_zero:
        zeros = number.number_of_leading_zeros
        return "0" * (1 if zeros is None else zeros) + nsn
    return nsn


def valid_region(number: PhoneNumber) -> str | None:
    """The region *number* is valid for, or ``None`` where ``is_valid_number`` says no."""
    if number.country_code is None:
        return None
    return _valid_region(number.country_code, national_significant_number(number), number)


def _valid_region(cc: int, nsn: str, number: PhoneNumber | None) -> str | None:
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if regions is None:
        return None
    if len(regions) == 1:
        region = regions[0]
    else:
        found = None
        for candidate in regions:
            rules = _rules_for(candidate)
            if rules is None:
                continue
            if rules.leading_digits is not None:
                if rules.leading_digits.match(nsn):
                    found = candidate
                    break
            elif _has_type(nsn, rules):
                return candidate
        if found is None:
            return None
        region = found
    if region == NON_GEO:
        if number is None:
            number = PhoneNumber(country_code=cc)
            _pnu._set_italian_leading_zeros_for_phone_number(nsn, number)
            number.national_number = int(nsn)
        return region if phonenumbers.is_valid_number(number) else None
    rules = _rules_for(region)
    if rules is None or rules.country_code != cc:
        return None
    return region if _has_type(nsn, rules) else None


_CC_STRINGS: Final = frozenset(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)
_CC_OF_HEAD: Final = {
    head: next(head[:size] for size in (1, 2, 3) if head[:size] in _CC_STRINGS)
    for head in (f"{n:03d}" for n in range(1000))
    if any(head[:size] in _CC_STRINGS for size in (1, 2, 3))
}
"""The calling code that starts digits beginning with each three-digit head: the shortest
code that is a prefix, as ``parse`` extracts it (codes are prefix-free, so there is one)."""


@dataclass(frozen=True, slots=True)
class _CallingCode:
    code: int
    metadata: PhoneMetadata
    national_prefix: re.Pattern[str] | None
    only: tuple[str, _Rules] | None
    """The one region a number with this code can be valid for, and its rules, where no
    region has to be chosen by :func:`_valid_region`."""
    plus: str
    """``+`` and the code: the head of every E.164 number with it."""


_CALLING_CODES: dict[str, _CallingCode | None] = {}


def _calling_code(cc: str) -> _CallingCode | None:
    try:
        return _CALLING_CODES[cc]
    except KeyError:
        pass
    code = int(cc)
    number_region = _pnu.region_code_for_country_code(code)
    entry = _parsing_rules(code, PhoneMetadata.metadata_for_region_or_calling_code(
        code, number_region))
    _CALLING_CODES[cc] = entry
    return entry


def _parsing_rules(code: int, metadata: PhoneMetadata | None) -> _CallingCode | None:
    """What ``parse`` strips a number of *code* with (*metadata*'s national prefix), and the
    one region the number can then be valid for, if there is one."""
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    rules = _rules_for(regions[0]) if len(regions) == 1 and regions[0] != NON_GEO else None
    return _CallingCode(code, metadata, re.compile(prefix) if prefix else None,
                        (regions[0], rules) if rules is not None
                        and rules.country_code == code else None, f"+{code}")


@dataclass(frozen=True, slots=True)
class _Home:
    """A default region, for numbers written without a plus."""

    code: str
    idd: re.Pattern[str] | None
    national: _CallingCode
    """Its calling code with the region's own metadata, which ``parse`` strips a national
    number with (for ``CA`` Canada's, where a ``+1`` number gets that of the US)."""


_HOMES: dict[str, _Home | None] = {}


def _home(region: str) -> _Home | None:
    try:
        return _HOMES[region]
    except KeyError:
        pass
    home = None
    metadata = (PhoneMetadata.metadata_for_region(region, None)
                if region in phonenumbers.SUPPORTED_REGIONS else None)
    if metadata is not None and metadata.country_code is not None:
        national = _parsing_rules(metadata.country_code, metadata)
        prefix = metadata.international_prefix
        if national is not None:
            home = _Home(str(metadata.country_code), re.compile(prefix) if prefix else None,
                         national)
    _HOMES[region] = home
    return home


def _drop_punctuation(text: str) -> str:
    """*text* without the punctuation ``parse`` discards. Six ``replace`` calls each run one
    C loop; ``str.translate`` with a deletion table looks every character up in a dict, at
    more than twice the cost for a number like ``+1 (201) 504-3321``."""
    return (text.replace(" ", "").replace("-", "").replace(".", "").replace("(", "")
            .replace(")", "").replace("/", ""))


def _strip_idd(digits: str, idd: re.Pattern[str] | None) -> str | None:
    """The digits after the region's international prefix (``00``, ``011``), ``None`` if
    they do not start with it. ``parse`` keeps the prefix when a ``0`` follows, since no
    calling code starts with one; such digits find no calling code in :func:`_fast_parse`
    and go to ``parse``."""
    match = idd.match(digits) if idd is not None else None
    return digits[match.end():] if match is not None else None


def _fast_parse(raw: str, default_region: str) -> tuple[_CallingCode, str] | None:
    """The calling code and national significant number ``phonenumbers.parse`` would give,
    for plain input; ``None`` where the whole parse is needed.

    Plain input is digits and only the punctuation ``parse`` itself discards (spaces,
    dashes, dots, slashes, parentheses), after a plus, after the default region's
    international prefix (such as ``00``), or alone: a national number. For those, extracting
    a possible number, the viability check, extension stripping and digit normalisation leave
    the digits, and this runs the rest of ``parse`` (country code, national prefix, length test)
    with the same rules and the library's own functions. A national number that starts with
    the region's own calling code is left to ``parse``, which may take it as international.
    The national significant number is the national digits as they stand: ``parse`` keeps
    their leading zeros in ``italian_leading_zero`` and ``number_of_leading_zeros``, which
    ``national_significant_number`` puts back.
    """
    if len(raw) > _MAX_INPUT:
        return None
    entry: _CallingCode | None = None
    if raw[:1] == "+":
        digits = raw[1:]
        if not (digits.isdigit() and digits.isascii()):
            digits = _drop_punctuation(digits)
            if not (digits.isdigit() and digits.isascii()):
                return None
    else:
        cleaned = _drop_punctuation(raw)
        home = _HOMES.get(default_region) or _home(default_region)
        if home is None or not (cleaned.isdigit() and cleaned.isascii()):
            return None
        international = _strip_idd(cleaned, home.idd)
        if international is not None:
            digits = international
        elif cleaned.startswith(home.code):
            return None
        else:
            digits, entry = cleaned, home.national
    if not 7 <= len(digits) <= 16:
        return None
    if entry is None:
        cc = _CC_OF_HEAD.get(digits[:3])
        if cc is None:
            return None
        entry = _CALLING_CODES.get(cc) or _calling_code(cc)
        national = digits[len(cc):]
    else:
        national = digits
    if entry is None or len(national) < _MIN_NSN:
        return None
    if entry.national_prefix is not None and entry.national_prefix.match(national):
        _, stripped, _ = _pnu._maybe_strip_national_prefix_carrier_code(national, entry.metadata)
        if _pnu._test_number_length(stripped, entry.metadata) not in _LENGTH_REJECTS:
            national = stripped
    if not _MIN_NSN <= len(national) <= _MAX_NSN:
        return None
    return entry, national


def parse(raw: str, default_region: str) -> PhoneNumber:
    """``phonenumbers.parse(raw, default_region)``, through :func:`_fast_parse` where it can."""
    fast = _fast_parse(raw, default_region)
    if fast is None:
        return phonenumbers.parse(raw, default_region)
    number = PhoneNumber(country_code=fast[0].code)
    _pnu._set_italian_leading_zeros_for_phone_number(fast[1], number)
    number.national_number = int(fast[1])
    return number


def normalise(raw: str, default_region: str) -> tuple[str, str] | None:
    """``(E.164, region)`` for a number phonenumbers calls valid, else ``None``; also
    ``None`` for a number written with an extension (``ext. 5``, ``x5``, ``;ext=5``): an
    SMS cannot reach an extension, and dropping it would send to another line than meant.
    :func:`why_invalid` tells which."""
    fast = _fast_parse(raw, default_region)
    if fast is not None:
        entry, nsn = fast
        if entry.only is not None:
            region, rules = entry.only
            if rules.valid is None or rules.valid.fullmatch(nsn) is None:
                return None
        else:
            found = _valid_region(entry.code, nsn, None)
            if found is None:
                return None
            region = found
        return entry.plus + nsn, region
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException:
        return None
    found = valid_region(number)
    if found is None or number.country_code is None or number.extension:
        return None
    return f"+{number.country_code}{national_significant_number(number)}", found


_NO_EXTENSION: Final = re.compile(r"[\d\s+\-./()]*")
"""Digits and the punctuation ``parse`` discards: ``parse`` finds no extension in such
input (an extension needs a letter, ``;``, ``#`` or the like), so a rejected number of only
these is not parsed again to say why (``bench/instructions.py plan``: ~2,000 instructions a
row of the bench's file, in which ~2% of numbers are invalid)."""


def why_invalid(raw: str, default_region: str) -> str:
    """Why :func:`normalise` gave ``None`` for *raw*, for a rejected row's detail."""
    if _NO_EXTENSION.fullmatch(raw):
        return f"not a valid number for region {default_region}"
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException:
        number = None
    if number is not None and number.extension and valid_region(number) is not None:
        return (f"has an extension ({number.extension}): extensions cannot receive SMS; "
                "give the number without it if it is a mobile")
    return f"not a valid number for region {default_region}"
