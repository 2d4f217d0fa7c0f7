"""SMS & Voice Platform (document 001): Bearer key, ``Idempotency-Key``, ``/rates``, webhooks.

The one provider that honours idempotency keys: a message whose outcome is unknown is
settled by sending it again with the same key, which the provider answers without billing
twice. It has no status or log endpoint; delivery comes by signed webhook only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import httpx
import phonenumbers
import structlog

from engine.config import ProviderConfig
from engine.countries import calling_code
from engine.errors import ProviderError
from engine.providers.base import (
    DeliveryStatus,
    OutboundMessage,
    Outcome,
    Readiness,
    SendResult,
    SentBetween,
)
from engine.providers.http import HttpAdapter, amount, by_status, charge, failure, json_body
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
        try:
            response = await self.client.get(RATES_PATH)
        except httpx.HTTPError as exc:
            raise ProviderError(f"rates unavailable: {failure(exc).detail}",
                                provider=self.name) from None
        data = json_body(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise ProviderError(f"rates unavailable: HTTP {response.status_code}",
                                provider=self.name)
        return parse_rates(self.name, data)

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


def parse_rates(provider: str, data: dict[str, Any]) -> list[RateRow]:
    """``{"rates": [{"iso_code", "sms", "currency", "route"}...]}`` as prefix rows.

    A country becomes its calling code. Where several countries share one (+1: US, CA and
    the Caribbean), only the code's main country is kept: its price cannot be told apart
    from the others' by prefix alone.
    """
    rows: list[RateRow] = []
    for entry in data.get("rates") or ():
        if not isinstance(entry, dict):
            continue
        iso = str(entry.get("iso_code", "")).upper()
        code = calling_code(iso)
        price = amount(entry.get("sms"))
        currency = str(entry.get("currency", "")).upper()
        if code is None or price is None or len(currency) != 3:
            log.warning("rates.row_skipped", provider=provider, iso_code=iso)
            continue
        if phonenumbers.region_code_for_country_code(int(code)) != iso:
            continue
        rows.append(RateRow(provider, str(entry.get("route") or ""), code, price, currency))
    return rows

