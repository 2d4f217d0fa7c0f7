"""Country names and codes for provider price lists, from phonenumbers' own data."""

from __future__ import annotations

import subprocess
import sys

import phonenumbers
from phonenumbers import geocoder

from engine.countries import _names, calling_code, region_of
from tests.helpers import ROOT


def test_names_are_the_geocoders_for_every_region() -> None:
    """The same English name for every region as ``geocoder.country_name_for_number`` gives
    its example number, none where regions share a code and the number fits several."""
    expected = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        name = geocoder.country_name_for_number(example, "en") if example else ""
        if name:
            expected[region] = name
    assert _names() == expected
    assert "EH" not in expected and expected["MA"] == "Morocco"


def test_names_and_codes_resolve() -> None:
    assert region_of("Slovakia") == region_of("slovakia ") == region_of("SK") == "SK"
    assert region_of("Côte d'Ivoire") == region_of("Cote d'Ivoire") == "CI"
    assert region_of("Czechia") == "CZ" and region_of("Atlantis") is None
    assert calling_code("SK") == "421" and calling_code("XX") is None


def test_country_names_do_not_load_the_place_names_of_every_prefix() -> None:
    """Importing the geocoder costs a process about 100 MB for data no command uses."""
    code = ("import sys; from engine.countries import region_of; "
            "assert region_of('Slovakia') == 'SK'; "
            "print('phonenumbers.geodata' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
