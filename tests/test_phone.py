"""engine.phone must agree with phonenumbers exactly: same numbers valid, same E.164."""

import random
from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.phone import normalise, parse, valid_region, why_invalid

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def reference(raw: str, region: str) -> tuple[str, str] | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number)


def examples() -> Iterator[tuple[str, phonenumbers.PhoneNumber]]:
    """Every region's example mobile, fixed-line and toll-free number, with the region."""
    for region in REGIONS:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
                     phonenumbers.PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                yield region, example


def sample_numbers(seed: int, per_region: int) -> list[str]:
    """Example numbers of every type and region, and random digit mutations of them."""
    rng = random.Random(seed)
    out: list[str] = []
    for _, example in examples():
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        out.append(e164)
        for _ in range(per_region):
            digits = list(e164[1:])
            for _ in range(rng.randint(1, 3)):
                digits[rng.randrange(1, len(digits))] = str(rng.randint(0, 9))
            if rng.random() < 0.2:
                digits.insert(rng.randrange(1, len(digits)), str(rng.randint(0, 9)))
            if rng.random() < 0.2 and len(digits) > 4:
                del digits[rng.randrange(1, len(digits))]
            out.append("+" + "".join(digits))
    return out


@pytest.mark.parametrize("raw", ["+421 912 345 678 ext. 5", "+421912345678 x5",
                                 "+421912345678;ext=5", "0912 345 678 ext 5"])
def test_a_number_with_an_extension_is_not_valid(raw: str) -> None:
    """An extension cannot receive SMS: the number is not normalised without it, and the
    reason says why (phonenumbers alone would call it valid and drop the extension)."""
    assert phonenumbers.parse(raw, "SK").extension == "5"
    assert normalise(raw, "SK") is None
    assert why_invalid(raw, "SK").startswith("has an extension (5): extensions cannot")
    assert why_invalid("+421 12", "SK") == "not a valid number for region SK"


def test_valid_region_agrees_with_phonenumbers_on_every_region() -> None:
    """For example numbers of every region and mutations of them, the verdict and region match."""
    for raw in sample_numbers(seed=7, per_region=12):
        try:
            number = phonenumbers.parse(raw, "US")
        except phonenumbers.NumberParseException:
            continue
        expected = (phonenumbers.region_code_for_number(number)
                    if phonenumbers.is_valid_number(number) else None)
        assert valid_region(number) == expected, raw


@pytest.mark.parametrize("region", ["US", "GB", "DE", "IT", "SK", "BR", "IN", "AR", "MX"])
def test_normalise_agrees_with_phonenumbers_for_e164_and_national_input(region: str) -> None:
    """The fast E.164 path and the national path give exactly phonenumbers' answer."""
    numbers = sample_numbers(seed=hash(region) & 0xFFFF, per_region=3)
    for raw in numbers:
        assert normalise(raw, region) == reference(raw, region), raw
        national = raw.lstrip("+")
        assert normalise(national, region) == reference(national, region), national
        assert normalise("00" + national, region) == reference("00" + national, region)
        spaced = f"+{national[:2]} ({national[2:5]}) {national[5:8]}-{national[8:]}"
        assert normalise(spaced, region) == reference(spaced, region), spaced


def national_numbers(seed: int, per_example: int) -> list[tuple[str, str]]:
    """Every region's example numbers as its people write them (``0905 123 456``), without
    their area codes as dialled locally (``412-3456`` in Barbados is ``+1 246 412 3456``),
    and random digit mutations of those, each with the region as the default."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for region, example in examples():
        written = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
        nsn = phonenumbers.national_significant_number(example)
        out += [(written, region), (nsn[1:], region), (nsn[3:], region), (nsn[4:], region)]
        digits = [i for i, c in enumerate(written) if c.isdigit()]
        for _ in range(per_example):
            chars = list(written)
            for _ in range(rng.randint(1, 2)):
                chars[rng.choice(digits)] = str(rng.randint(0, 9))
            if rng.random() < 0.2:
                chars.insert(rng.choice(digits), str(rng.randint(0, 9)))
            out.append(("".join(chars), region))
    return out


def test_normalise_agrees_with_phonenumbers_on_national_input_of_every_region() -> None:
    """Numbers written nationally in their own region (trunk prefixes, area codes in
    parentheses, numbers that begin with the calling code) give phonenumbers' answer."""
    numbers = national_numbers(seed=11, per_example=6)
    assert len(numbers) > 2000
    for raw, region in numbers:
        assert normalise(raw, region) == reference(raw, region), (raw, region)
        digits = "".join(c for c in raw if c.isdigit())
        assert normalise(digits, region) == reference(digits, region), (digits, region)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.from_regex(r"\+[0-9]{1,18}", fullmatch=True),
                 st.from_regex(r"\+[0-9 ()./-]{1,24}", fullmatch=True),
                 st.from_regex(r"\+ ?[1-9][0-9]{0,2} ?(\(0\))? ?[0-9 -]{6,14}", fullmatch=True),
                 st.from_regex(r"(00|011|810|0011|000) ?[0-9][0-9 -]{5,16}", fullmatch=True),
                 st.from_regex(r"\(?0?[0-9]{1,4}\)?[ /]?[0-9][0-9 ./-]{4,14}", fullmatch=True),
                 st.from_regex(r"[0-9]{6,17}", fullmatch=True)),
       st.sampled_from(REGIONS))
def test_fast_parse_equals_library_parse(raw: str, region: str) -> None:
    """A plus, an IDD or a national number, digits and punctuation parse to the same
    PhoneNumber, or fail the same way."""
    try:
        expected = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        with pytest.raises(phonenumbers.NumberParseException) as info:
            parse(raw, region)
        assert info.value.error_type == exc.error_type
        return
    assert parse(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        pytest.param("+44 7911 123456", "DE", "+447911123456", id="spaces"),
        pytest.param("0905 123 456", "SK", "+421905123456", id="national-sk"),
        pytest.param("(415) 555-2671", "US", "+14155552671", id="national-us"),
        pytest.param("0905/123 456", "SK", "+421905123456", id="national-slash"),
        pytest.param("234-5678", "BB", "+12462345678", id="local-barbados"),
        pytest.param("+39 06 6982 1234", "IT", "+390669821234", id="italian-leading-zero"),
        pytest.param("12345", "US", None, id="too-short"),
        pytest.param("not a number", "US", None, id="letters"),
        pytest.param("", "US", None, id="empty"),
        pytest.param("+999123456789", "US", None, id="no-such-country-code"),
    ],
)
def test_normalise_examples(raw: str, region: str, expected: str | None) -> None:
    """Formatted, national and invalid inputs normalise as a person would expect."""
    result = normalise(raw, region)
    assert (result[0] if result else None) == expected
