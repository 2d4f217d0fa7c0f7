"""Countries by ISO 3166 code, English name and calling code, from phonenumbers' own data.

Providers publish prices per country (Sky Telecom by English name, SMS & Voice Platform by
ISO code); routing works on E.164 prefixes. The names come from phonenumbers' geocoder, so
no second country list has to be kept in step with the number metadata.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from typing import Final

import phonenumbers
from phonenumbers import geocoder

ALIASES: Final[Mapping[str, str]] = {
    "czechia": "CZ", "usa": "US", "united states of america": "US", "uk": "GB",
    "great britain": "GB", "russian federation": "RU", "korea, republic of": "KR",
    "republic of korea": "KR", "viet nam": "VN", "ivory coast": "CI", "turkiye": "TR",
    "holland": "NL", "the netherlands": "NL", "slovak republic": "SK",
}


def _fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.strip().lower())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


@functools.cache
def _names() -> dict[str, str]:
    names: dict[str, str] = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        name = geocoder.country_name_for_number(example, "en") if example else ""
        if name:
            names[region] = name
    return names


@functools.cache
def _by_folded_name() -> dict[str, str]:
    index = {_fold(name): region for region, name in _names().items()}
    index.update(ALIASES)
    return index



def region_of(name: str) -> str | None:
    """``"Slovakia"`` (any case or accents) or ``"SK"`` -> ``"SK"``; ``None`` if unknown."""
    if len(name.strip()) == 2 and name.strip().upper() in phonenumbers.SUPPORTED_REGIONS:
        return name.strip().upper()
    return _by_folded_name().get(_fold(name))


def calling_code(region: str) -> str | None:
    """``"SK"`` -> ``"421"``; ``None`` for a code phonenumbers does not know."""
    code = phonenumbers.country_code_for_region(region.upper())
    return str(code) if code else None
