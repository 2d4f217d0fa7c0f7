"""SMS & Voice Platform (document 001): Bearer key, ``Idempotency-Key``, ``/rates``, webhooks.

The one provider that honours idempotency keys: a message whose outcome is unknown is
settled by sending it again with the same key, which the provider answers without billing
twice. It has no status or log endpoint; delivery comes by signed webhook only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import httpx
import phonenumbers
import structlog

from engine.config import ProviderConfig
from engine.countries import calling_code, region_of
from engine.errors import ProviderError
from engine.providers import readings
from engine.providers.base import (
    DeliveryStatus,
    OutboundMessage,
    Outcome,
    Readiness,
    SendResult,
    SentBetween,
)
from engine.providers.http import HttpAdapter, by_status, charge, failure, json_body
from engine.providers.readings import (
    RateReading,
    describe_keys,
    entries_of,
    folded,
    loads_exact,
    pick,
    price_of,
)
from engine.routing import RateRow

log = structlog.get_logger()

SEND_PATH: Final = "/api/v1/sms/send"
RATES_PATH: Final = "/api/v1/rates"
PING_PATH: Final = "/api/v1/ping"
DESTINATION_CODES: Final = frozenset({"unsupported_destination", "invalid_number",
                                      "route_unavailable"})
"""Refusal codes about where a message goes, which another provider may still take."""


class SmsVoip(HttpAdapter):
    kind: Final = "smsvoip"
    supports_idempotency: Final = True
    max_batch: Final = 1
    can_lookup: Final = False

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 callback_url: str | None = None) -> None:
        super().__init__(config, base_url=base_url, transport=transport)
        self._callback_url = callback_url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    async def send(self, message: OutboundMessage) -> SendResult:
        body: dict[str, Any] = {"to": message.to, "text": message.text}
        if message.sender:
            body["from"] = message.sender
        if self._callback_url:
            body["callback_url"] = self._callback_url
        try:
            response = await self.client.post(SEND_PATH, json=body,
                                              headers={"Idempotency-Key": message.key})
        except httpx.HTTPError as exc:
            return failure(exc, secrets=self.config.secrets)
        return parse_send(response)

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return [await self.send(m) for m in messages]

    async def fetch_rates(self) -> list[RateRow]:
        return list((await self.read_rates()).rows)

    async def read_rates(self) -> RateReading:
        """``GET /rates`` read by :func:`parse_rates`; ``ProviderError`` when no answer, a
        status other than 200, or no list of rates in it."""
        try:
            response = await self.client.get(RATES_PATH)
        except httpx.HTTPError as exc:
            detail = failure(exc, secrets=self.config.secrets).detail
            raise ProviderError(f"rates unavailable: {detail}", provider=self.name) from None
        if response.status_code != 200:
            raise ProviderError(f"rates unavailable: HTTP {response.status_code}",
                                provider=self.name)
        return parse_rates(self.name, loads_exact(response.content),
                           currency=self.config.currency)

    async def check(self) -> Readiness:
        try:
            response = await self.client.get(PING_PATH)
        except httpx.HTTPError as exc:
            return Readiness(self.name, False, (f"unreachable: {failure(exc).detail}",))
        if response.status_code in (401, 403):
            return Readiness(self.name, False, (f"API key refused (HTTP {response.status_code})",))
        if response.status_code != 200:
            return Readiness(self.name, False, (f"ping answered HTTP {response.status_code}",))
        return Readiness(self.name, True)

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        return None

    async def poll(self, provider_message_ids: Sequence[str],
                   sent_between: SentBetween | None = None) -> list[DeliveryStatus]:
        return []


def parse_send(response: httpx.Response) -> SendResult:
    """Classify one answer to ``POST /sms/send``."""
    data = json_body(response)
    if 200 <= response.status_code < 300:
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if not isinstance(message_id, str) or not message_id:
            return SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                              detail="success answer without a readable message_id")
        assert isinstance(data, dict)
        segments = data.get("segments")
        return SendResult(
            Outcome.ACCEPTED, provider_message_id=message_id,
            segments=segments if isinstance(segments, int) else None,
            cost=charge(data.get("cost")),
            currency=data.get("currency") if isinstance(data.get("currency"), str) else None)
    error = data.get("error") if isinstance(data, dict) else None
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    detail = str(error.get("message", "")) if isinstance(error, dict) else ""
    result = by_status(response, code=code, detail=detail[:300])
    if result.outcome is Outcome.REFUSED_MESSAGE and code in DESTINATION_CODES:
        return SendResult(Outcome.REFUSED_MESSAGE, code=code, detail=result.detail,
                          try_other_route=True)
    return result


def parse_rates(provider: str, data: object, *, currency: str = "") -> RateReading:
    """``/rates`` in any of the readings :mod:`engine.providers.readings` lists for document
    001, one calling-code row per usable entry; every other entry is named in the reading.

    A country is its ISO code, else its English name, else a calling code. Where several
    countries share a calling code (+1: US, CA and the Caribbean), only the code's main
    country is kept (the others are *ignored*): its price cannot be told apart from the
    others' by prefix alone. An entry's currency is its own, else the answer's, else
    *currency* (the account's). Raises ``ProviderError`` when the answer holds no list.
    """
    entries = entries_of(data, readings.SMSVOIP_RATE_LISTS)
    if entries is None:
        raise ProviderError("rates unavailable: no list of rates in the answer "
                            f"({describe_keys(data)})", provider=provider)
    envelope = folded(data) if isinstance(data, Mapping) else {}
    fallback = _currency(pick(envelope, readings.SMSVOIP_CURRENCY)) or currency.upper()
    rows: list[RateRow] = []
    unusable: list[str] = []
    ignored: list[str] = []
    for number, raw in enumerate(entries, start=1):
        if not isinstance(raw, Mapping):
            unusable.append(f"entry {number} is {describe_keys(raw)}")
            continue
        entry = folded(raw)
        where = _destination(entry)
        if isinstance(where, str):
            unusable.append(f"{where} in entry {number}: {describe_keys(raw)}")
            continue
        region, code = where
        sms = pick(entry, readings.SMSVOIP_SMS_PRICE)
        price = price_of(sms)
        inner = folded(sms) if isinstance(sms, Mapping) else {}
        money = (_currency(pick(entry, readings.SMSVOIP_CURRENCY))
                 or _currency(pick(inner, readings.SMSVOIP_CURRENCY)) or fallback)
        if price is None:
            unusable.append(f"no price in entry {number}: {describe_keys(raw)}")
            continue
        if not money:
            unusable.append(f"no currency in entry {number}: {describe_keys(raw)}")
            continue
        main = phonenumbers.region_code_for_country_code(int(code))
        if main != region:
            ignored.append(f"{region} shares +{code} with {main}")
            continue
        route = pick(entry, readings.SMSVOIP_ROUTE)
        rows.append(RateRow(provider, str(route) if isinstance(route, str | int) else "",
                            code, price, money))
    return RateReading(provider, tuple(rows), len(entries), tuple(unusable), tuple(ignored))


def _destination(entry: Mapping[str, Any]) -> tuple[str, str] | str:
    """``(region, calling code)`` of a folded rate entry, or what is wrong with it."""
    for names in (readings.SMSVOIP_ISO, readings.SMSVOIP_COUNTRY, readings.SMSVOIP_PREFIX):
        value = pick(entry, names)
        if value is None:
            continue
        text = str(value).strip() if isinstance(value, str | int) else ""
        if text.lstrip("+").isdigit():
            main = phonenumbers.region_code_for_country_code(int(text.lstrip("+")))
            if main == phonenumbers.UNKNOWN_REGION:
                return f"unknown calling code {text!r}"
            return main, text.lstrip("+")
        region = region_of(text) if text else None
        code = calling_code(region) if region else None
        if region is None or code is None:
            return f"unknown country {str(value)[:40]!r}"
        return region, code
    return "no country"


def _currency(value: object) -> str:
    """A three-letter currency code, upper-cased; ``""`` for anything else."""
    if not isinstance(value, str):
        return ""
    text = value.strip().upper()
    return text if len(text) == 3 and text.isalpha() else ""
