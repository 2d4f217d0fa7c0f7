"""Countries by ISO 3166 code, English name and calling code, from phonenumbers' own data.

Providers publish prices per country (Sky Telecom by English name, SMS & Voice Platform by
ISO code); routing works on E.164 prefixes. The names are those phonenumbers' geocoder
gives, so no second country list has to be kept in step with the number metadata. They are
read from the geocoder's table of region names alone: importing the geocoder also loads the
place names of every number prefix, about 100 MB that a run would keep to its end.
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import phonenumbers

ALIASES: Final[Mapping[str, str]] = {
    "czechia": "CZ", "usa": "US", "united states of america": "US", "uk": "GB",
    "great britain": "GB", "russian federation": "RU", "korea, republic of": "KR",
    "republic of korea": "KR", "viet nam": "VN", "ivory coast": "CI", "turkiye": "TR",
    "holland": "NL", "the netherlands": "NL", "slovak republic": "SK",
}


def _fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.strip().lower())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


def _region_names() -> Mapping[str, Mapping[str, str]]:
    """phonenumbers' ``LOCALE_DATA`` (region -> language -> name), run from its file
    without importing the package it sits in, which loads every prefix's place names (its
    one import, ``..util``, resolves from the module's name). Through the package if the
    file moves."""
    path = Path(phonenumbers.__file__).parent / "geodata" / "locale.py"
    spec = importlib.util.spec_from_file_location("phonenumbers.geodata.locale", path)
    if not path.is_file() or spec is None or spec.loader is None:
        from phonenumbers.geodata.locale import LOCALE_DATA
        return LOCALE_DATA
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data: Mapping[str, Mapping[str, str]] = module.LOCALE_DATA
    return data


def _english(names: Mapping[str, str]) -> str:
    """A region's English name; ``"*xx"`` means "the name in language xx"."""
    name = names.get("en", "")
    return names.get(name[1:], "") if name.startswith("*") else name


@functools.cache
def _names() -> dict[str, str]:
    """Each region's English name, as ``geocoder.country_name_for_number`` gives it for the
    region's example number: for a calling code that regions share, the name of the one
    region the number is valid for, and none if it is valid for several."""
    english = {region: _english(names) for region, names in _region_names().items()}
    names: dict[str, str] = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        if example is None or example.country_code is None:
            continue
        sharing = phonenumbers.region_codes_for_country_code(example.country_code)
        owners = sharing if len(sharing) == 1 else [
            r for r in sharing if phonenumbers.is_valid_number_for_region(example, r)]
        name = english.get(owners[0], "") if len(owners) == 1 else ""
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
