"""Tolerant readers: every faithful reading of a loosely documented answer is understood."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from engine.config import ProviderConfig
from engine.errors import ProviderError
from engine.providers.base import DeliveryStatus
from engine.providers.readings import RateReading
from engine.providers.skytelecom import read_gamma
from engine.providers.smsvoip import SmsVoip
from engine.providers.telekom import parse_check
from engine.providers.voipex import parse_history
from engine.routing import RateRow

pytestmark = pytest.mark.anyio

CONFIG = ProviderConfig(name="smsvoip", kind="smsvoip", base_url="http://127.0.0.1:9",
                        api_key="sk_test", currency="EUR")
GB = RateRow("smsvoip", "std", "44", Decimal("0.0300"), "EUR")


async def read(body: Any) -> RateReading:
    """*body* served as ``GET /api/v1/rates`` through the adapter's own read."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/rates"
        return httpx.Response(200, content=content)

    async with SmsVoip(CONFIG, transport=httpx.MockTransport(answer)) as provider:
        return await provider.read_rates()


@pytest.mark.parametrize("body", [
    pytest.param({"rates": [{"iso_code": "GB", "sms": "0.0300", "currency": "EUR",
                             "route": "std"}]}, id="documented-reading"),
    pytest.param([{"iso_code": "GB", "sms": "0.0300", "currency": "EUR", "route": "std"}],
                 id="bare-list"),
    pytest.param({"data": [{"iso_code": "GB", "sms": "0.0300", "currency": "EUR",
                            "route": "std"}]}, id="under-data"),
    pytest.param({"items": [{"iso_code": "GB", "sms": "0.0300", "currency": "EUR",
                             "route": "std"}]}, id="under-items"),
    pytest.param({"results": [{"iso_code": "GB", "sms": "0.0300", "currency": "EUR",
                               "route": "std"}]}, id="under-results"),
    pytest.param({"count": 1, "prices_v2": [{"iso_code": "GB", "sms": "0.0300",
                                             "currency": "EUR", "route": "std"}]},
                 id="only-list-key"),
    pytest.param({"data": {"rates": [{"iso_code": "GB", "sms": "0.0300", "currency": "EUR",
                                      "route": "std"}]}}, id="nested-data-rates"),
    pytest.param({"rates": {"GB": {"sms": "0.0300", "currency": "EUR", "route": "std"}}},
                 id="keyed-by-iso"),
    pytest.param({"rates": [{"isoCode": "GB", "smsPrice": "0.0300", "currencyCode": "EUR",
                             "routeLabel": "std"}]}, id="camel-case"),
    pytest.param({"rates": [{"iso": "GB", "sms_price": "0.0300", "currency_code": "EUR",
                             "route_label": "std"}]}, id="snake-variants"),
    pytest.param({"rates": [{"country_code": "GB", "price": "0.0300", "currency": "EUR",
                             "label": "std"}]}, id="country-code-price-label"),
    pytest.param({"rates": [{"countryCode": "+44", "price": "0.0300", "currency": "EUR",
                             "label": "std"}]}, id="calling-code-under-country-code"),
    pytest.param({"rates": [{"country": "United Kingdom", "sms": "0.0300",
                             "currency": "EUR", "route": "std"}]}, id="country-name-only"),
    pytest.param({"rates": [{"iso_code": "GB", "sms": {"price": "0.0300", "currency": "EUR"},
                             "route": "std"}]}, id="price-object"),
    pytest.param({"currency": "EUR", "rates": [{"iso_code": "GB", "sms": "0.0300",
                                                "route": "std"}]}, id="envelope-currency"),
    pytest.param({"rates": [{"iso_code": "GB", "sms": "0.0300", "route": "std"}]},
                 id="account-currency"),
    pytest.param(b'{"rates": [{"iso_code": "GB", "sms": 0.0300, "currency": "EUR",'
                 b' "route": "std"}]}', id="json-number"),
])
async def test_each_reading_of_the_rates_document_gives_the_same_row(body: Any) -> None:
    """Every faithful reading of document 001's /rates yields the GB row, price exact."""
    reading = await read(body)
    assert reading.rows == (GB,)
    assert reading.problem == ""


async def test_rate_prices_are_read_exactly_never_through_a_float() -> None:
    """A price with more digits than a float holds keeps every digit."""
    reading = await read(b'{"rates": [{"iso": "GB", "sms": 0.012345678901234567891,'
                         b' "currency": "EUR"}]}')
    assert reading.rows[0].price == Decimal("0.012345678901234567891")


async def test_unusable_entries_are_counted_and_named() -> None:
    """Nothing usable: the problem says how many entries and what each unusable one held."""
    reading = await read({"rates": [{"iso": "GB", "foo": 1}, "junk", {"iso": "XQ", "sms": 1}]})
    assert reading.rows == ()
    assert reading.problem == (
        "0 usable of 3 entries (no price in entry 1: keys iso, foo; entry 2 is a str, not an "
        "object; unknown country 'XQ' in entry 3: keys iso, sms)")


async def test_some_unusable_entries_fail_the_check_but_keep_the_rest() -> None:
    """Usable rows are kept; the unusable entry is still a named problem."""
    reading = await read({"rates": [{"iso": "GB", "sms": "0.0300", "currency": "EUR",
                                     "route": "std"}, {"iso": "DE", "sms": "-1"}]})
    assert reading.rows == (GB,)
    assert reading.problem == "1 of 2 entries unusable (no price in entry 2: keys iso, sms)"


async def test_an_answer_without_a_list_is_a_provider_error() -> None:
    """A body with no list at all says so, naming the keys it had."""
    with pytest.raises(ProviderError, match=r"no list of rates in the answer \(keys status\)"):
        await read({"status": "ok"})


def test_countries_sharing_a_calling_code_are_ignored_not_unusable() -> None:
    """+1 keeps the US; Canada is named as ignored, which alone is no problem."""
    from engine.providers.smsvoip import parse_rates

    reading = parse_rates("smsvoip", [{"iso": "US", "sms": 1}, {"iso": "CA", "sms": 2}],
                          currency="EUR")
    assert [r.prefix for r in reading.rows] == ["1"]
    assert reading.ignored == ("CA shares +1 with US",)
    assert reading.problem == ""


@pytest.mark.parametrize("data", [
    pytest.param({"gamma_by_country": {"Spain": [{"option_id": "ch6-1", "price": "0.065"}],
                                       "Other": [{"option_id": "x", "price": 1}]}},
                 id="gamma-by-country"),
    pytest.param({"gamma_options": [{"option_id": "ch6-1", "name": "CH6-1", "country": "Spain",
                                     "price": Decimal("0.065")}]}, id="gamma-options-only"),
])
def test_sky_telecom_reads_either_gamma_listing_of_its_document(data: dict[str, Any]) -> None:
    """Both listings the document shows give the same row; "Other" is ignored."""
    reading = read_gamma("sky", data, currency="USD")
    assert reading.rows == (RateRow("sky", "ch6-1", "34", Decimal("0.065"), "USD"),)
    assert reading.problem == ""


def test_sky_telecom_names_a_channel_without_a_price() -> None:
    """A channel it cannot price is counted and named."""
    reading = read_gamma("sky", {"gamma_by_country": {"Spain": [{"option_id": "ch6-1"}]}},
                         currency="USD")
    assert reading.problem == "0 usable of 1 entries (no price in Spain channel 1: keys option_id)"


def answer(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          request=httpx.Request("POST", "http://x"))


RECORD = {"id": "a1", "from": "+420777888999", "to": "+420607608609", "text": "Hi",
          "direction": "OUT", "state": "DELIVERED", "createdAt": "2026-01-12T20:15:00Z"}


@pytest.mark.parametrize("body", [
    pytest.param([RECORD], id="bare-list"),
    pytest.param({"data": [RECORD]}, id="under-data"),
    pytest.param({"total": 1, "content": [RECORD]}, id="under-content"),
    pytest.param([{"id": "a1", "from": "+420777888999", "to": "+420607608609", "text": "Hi",
                   "direction": "outbound", "status": "DELIVERED",
                   "created_at": "2026-01-12T20:15:00Z"}], id="snake-and-status"),
])
def test_voipex_history_is_read_in_any_envelope_and_naming(body: Any) -> None:
    """The undocumented history shape: every reading gives the same SMS."""
    [sms] = parse_history(answer(200, body))  # type: ignore[misc]
    assert (sms.id, sms.direction, sms.state, sms.to, sms.created_at) == (
        "a1", "OUT", "DELIVERED", "+420607608609", datetime(2026, 1, 12, 20, 15, tzinfo=UTC))


@pytest.mark.parametrize(("body", "at"), [
    pytest.param({"result": {"status": "success", "code": "OK"}, "status": "Delivered",
                  "code": "DELIVERED", "deliveryDateTime": "2017-01-01 10:45:00"},
                 datetime(2017, 1, 1, 10, 45, tzinfo=UTC), id="json-example"),
    pytest.param({"result": {"status": "success", "code": "OK"},
                  "message": {"status": "Delivered", "code": "DELIVERED",
                              "deliveryDateTime": "2017-01-01 10:45:00"}},
                 datetime(2017, 1, 1, 10, 45, tzinfo=UTC), id="xml-nesting"),
    pytest.param({"result": {"status": "success", "code": "OK"}, "status": "Delivered",
                  "deliveryDateTime": 1483267500},
                 datetime(2017, 1, 1, 10, 45, tzinfo=UTC), id="status-word-epoch"),
])
def test_telekom_check_message_reads_both_example_shapes(body: Any, at: datetime) -> None:
    """The JSON and the XML examples' nesting both give delivered, with its time."""
    status = parse_check("883315048", answer(200, body))
    assert isinstance(status, DeliveryStatus)
    assert (status.state, status.at) == ("delivered", at)
