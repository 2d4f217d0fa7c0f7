"""Voipex SMS API (document 002): Bearer JWT, owned sender numbers, history, webhooks.

What matters for a bulk campaign:

- Every message goes out from one of the account's own numbers (the provider config's
  ``sender``); :meth:`Voipex.check` holds it against ``GET /SMS/allowed-numbers`` so that a
  wrong number leaves the provider out of routing instead of failing every message.
- There is no idempotency key: a message whose outcome is unknown is settled by finding it
  in the history (``GET /SMS?startTime&endTime``, kept 6 months, times with a zone).
- There is no rates endpoint (the static rate table is used) and no per-request callback:
  delivery reports go to the webhook set in the account's SMS Chat settings
  (:func:`parse_webhook`), and the history can be polled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import structlog

from engine.config import ProviderConfig
from engine.errors import ProviderError, redact
from engine.providers import readings
from engine.providers.base import (
    DeliveryStatus,
    OutboundMessage,
    Outcome,
    Readiness,
    SendResult,
    SentBetween,
    delivery_state,
)
from engine.providers.http import HttpAdapter, by_status, failure, json_body
from engine.providers.readings import entries_of, folded, pick
from engine.routing import RateRow

log = structlog.get_logger()

SMS_PATH: Final = "/SMS"
ALLOWED_NUMBERS_PATH: Final = "/SMS/allowed-numbers"

LOOKUP_SKEW_S: Final = 120.0
"""How far the provider's clock may be behind ours: a lookup reads history from this long
before ``sent_after`` (and as far past now), and accepts a ``createdAt`` that early."""
POLL_MARGIN_S: Final = 2.0
"""How far outside the span in which our clock saw the messages accepted a poll first looks
for them: a request's time on the way, on clocks that agree."""
POLL_WINDOW_S: Final = 72 * 3600.0
"""How far back :meth:`Voipex.poll` reads history: ids are all it gets, and an SMS that is
not final after the usual 72 h validity never will be. The history has no paging, so one
poll reads every SMS of the window."""
HISTORY_KEPT_S: Final = 182 * 24 * 3600.0
"""The documented 6 months of history; a window never starts earlier."""

DESTINATION_CODES: Final = frozenset({"destination_not_supported"})
"""400 codes about where a message goes, which another provider may still take."""
SENDER_CODES: Final = frozenset({"from_not_allowed"})
"""400 codes saying ``from`` is not the account's number: every message would fail alike."""
VALIDATION_CODE: Final = "validation_error"
WRONG_ENDPOINT_STATUSES: Final = frozenset({404, 405})
"""Statuses meaning the configured ``base_url`` is not the API: no message can pass."""


@dataclass(frozen=True, slots=True)
class Sms:
    """One SMS as the send answer, the history and the webhook show it."""

    id: str
    sender: str
    to: str
    text: str
    direction: str
    state: str
    created_at: datetime | None


class Voipex(HttpAdapter):
    """One Voipex account.

    ``from`` is always the config's ``sender``, one of the account's own numbers: Voipex sends
    from nothing else, so :attr:`OutboundMessage.sender` (the campaign's sender) is ignored.
    After a successful :meth:`check`, :attr:`allowed_numbers` holds the account's numbers.
    """

    kind: Final = "voipex"
    supports_idempotency: Final = False
    max_batch: Final = 1
    can_lookup: Final = True

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(config, base_url=base_url, transport=transport)
        self.allowed_numbers: tuple[str, ...] | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"}

    async def send(self, message: OutboundMessage) -> SendResult:
        body = {"from": self.config.sender, "to": message.to, "text": message.text}
        try:
            response = await self.client.post(SMS_PATH, json=body)
        except httpx.HTTPError as exc:
            return failure(exc, secrets=self.config.secrets)
        return self._redacted(parse_send(response))

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return [await self.send(m) for m in messages]

    async def fetch_rates(self) -> list[RateRow]:
        return []

    async def check(self) -> Readiness:
        problem = await self._check_sender()
        if problem is not None:
            log.warning("provider.preflight_failed", provider=self.name, problem=problem)
            return Readiness(self.name, False, (problem,))
        return Readiness(self.name, True)

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        """The oldest OUT SMS to the same number with the same text since ``sent_after``.

        A failed history read is NOT_PROCESSED (or THROTTLED, REFUSED_ACCOUNT): reading bills
        nothing, so a 5xx or a lost answer only means the lookup is to be done again.
        """
        earliest = _aware(sent_after) - timedelta(seconds=LOOKUP_SKEW_S)
        found = await self._history(earliest)
        if isinstance(found, SendResult):
            return lookup_failure(found)
        matches = [s for s in found if s.direction == "OUT" and s.text == message.text
                   and _digits(s.to) == _digits(message.to)
                   and (s.created_at is None or s.created_at >= earliest)]
        if not matches:
            return None
        first = min(matches, key=lambda s: s.created_at or datetime.max.replace(tzinfo=UTC))
        return SendResult(Outcome.ACCEPTED, provider_message_id=first.id, code=first.state)

    async def poll(self, provider_message_ids: Sequence[str],
                   sent_between: SentBetween | None = None) -> list[DeliveryStatus]:
        """The state of each id found in the history: first in the span *sent_between*
        (widened by :data:`POLL_MARGIN_S` each way), then, for the ids not found there, in
        the span widened by :data:`LOOKUP_SKEW_S` (a provider clock that far off ours), then
        in the last :data:`POLL_WINDOW_S` (one accepted through a late lookup).

        The history has no paging: a poll reads every SMS of its window, and over 72 h of a
        busy account that is every message of every campaign. The span of the messages
        asked about is seconds wide, and widened by minutes it held every message of a
        busy run: each poll beside the 100k bench read all Voipex messages sent so far,
        while the sandbox answered no send. Ids not found are left out; a failed history
        read raises :class:`ProviderError`.
        """
        wanted = list(provider_message_ids)
        found: list[DeliveryStatus] = []
        now = datetime.now(UTC)
        skew = timedelta(seconds=LOOKUP_SKEW_S)
        windows = [(now - timedelta(seconds=POLL_WINDOW_S), now + skew)]
        if sent_between is not None:
            first, last = _aware(sent_between[0]), _aware(sent_between[1])
            windows[:0] = [(first - widen, last + widen)
                           for widen in (timedelta(seconds=POLL_MARGIN_S), skew)]
        for start, end in windows:
            if not wanted:
                break
            history = await self._history(start, end)
            if isinstance(history, SendResult):
                raise ProviderError(f"history unavailable: {history.code} {history.detail}"
                                    .strip(), provider=self.name)
            by_id = {s.id: s for s in history if s.direction == "OUT"}
            found += [DeliveryStatus(s.id, delivery_state(s.state), s.state)
                      for i in wanted if (s := by_id.get(i)) is not None]
            wanted = [i for i in wanted if i not in by_id]
        return found

    async def _check_sender(self) -> str | None:
        """What keeps this account from sending, if anything; caches the numbers."""
        sender = self.config.sender
        if not sender:
            return "no sender configured (one of the account's numbers)"
        try:
            response = await self.client.get(ALLOWED_NUMBERS_PATH)
        except httpx.HTTPError as exc:
            return f"unreachable: {failure(exc, secrets=self.config.secrets).detail}"
        if response.status_code != 200:
            _, detail = parse_problem(response)
            what = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
            if response.status_code in (401, 403):
                return self._redact(f"token refused ({what})")
            return self._redact(f"allowed-numbers answered {what}")
        numbers = parse_allowed_numbers(response)
        if numbers is None:
            return "allowed-numbers answer is not a list of numbers"
        self.allowed_numbers = numbers
        if sender not in numbers:
            owned = ", ".join(numbers) or "none"
            return f"sender {sender} is not one of the account's numbers: {owned}"
        return None

    async def _history(self, start: datetime,
                       end: datetime | None = None) -> list[Sms] | SendResult:
        """Every SMS from *start* (at most 6 months back) until *end* (default: a little
        past now)."""
        now = datetime.now(UTC)
        start = max(start, now - timedelta(seconds=HISTORY_KEPT_S))
        if end is None:
            end = now + timedelta(seconds=LOOKUP_SKEW_S)
        params = {"startTime": iso_time(start), "endTime": iso_time(end)}
        try:
            response = await self.client.get(SMS_PATH, params=params)
        except httpx.HTTPError as exc:
            return failure(exc, secrets=self.config.secrets)
        found = parse_history(response)
        return self._redacted(found) if isinstance(found, SendResult) else found

    def _redact(self, text: str) -> str:
        return redact(text, self.config.secrets)

    def _redacted(self, result: SendResult) -> SendResult:
        if not result.detail:
            return result
        return replace(result, detail=self._redact(result.detail))


def parse_send(response: httpx.Response) -> SendResult:
    """Classify one answer to ``POST /SMS`` (the created SMS, or an RFC 7807 problem)."""
    if 200 <= response.status_code < 300:
        # The id and state of parse_sms's record, without reading the rest (createdAt's time
        # cost more than the rest of the answer: bench/throughput.py bare CPU).
        data = json_body(response)
        sms_id = data.get("id") if isinstance(data, Mapping) else None
        if not isinstance(sms_id, str) or not sms_id:
            return SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                              detail="success answer without a readable SMS id")
        return SendResult(Outcome.ACCEPTED, provider_message_id=sms_id,
                          code=_first_text(data, "state"))
    return classify_refusal(response)


def classify_refusal(response: httpx.Response) -> SendResult:
    """The outcome of an answer that is not a success, from its status and problem code."""
    code, detail = parse_problem(response)
    detail = detail[:300]
    status = response.status_code
    if status in WRONG_ENDPOINT_STATUSES:
        return SendResult(Outcome.REFUSED_ACCOUNT, code=code or str(status),
                          detail=detail or f"HTTP {status}: is base_url the API's origin?")
    if status == 400 and code in SENDER_CODES:
        return SendResult(Outcome.REFUSED_ACCOUNT, code=code, detail=detail)
    result = by_status(response, code=code, detail=detail)
    if result.outcome is Outcome.REFUSED_MESSAGE and _about_destination(code, detail):
        return replace(result, try_other_route=True)
    return result


def parse_problem(response: httpx.Response) -> tuple[str, str]:
    """``(code, detail)`` of an RFC 7807 style body; ``("", "")`` when there is none.

    ``code`` is the sandbox's extension member, else the problem ``type``; ``detail`` falls
    back to ``title``.
    """
    data = json_body(response)
    if not isinstance(data, dict):
        return "", ""
    return _first_text(data, "code", "type"), _first_text(data, "detail", "title")


def parse_allowed_numbers(response: httpx.Response) -> tuple[str, ...] | None:
    """The account's numbers from ``GET /SMS/allowed-numbers`` (a JSON list of strings)."""
    data = json_body(response)
    if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
        return None
    return tuple(data)


def parse_history(response: httpx.Response) -> list[Sms] | SendResult:
    """The SMS records of ``GET /SMS``, or the classified failure; bad records are skipped.

    The document gives the history no shape: the records are read in any of the readings
    :mod:`engine.providers.readings` lists for document 002 (:func:`parse_history_record`).
    """
    if not 200 <= response.status_code < 300:
        return classify_refusal(response)
    data = entries_of(json_body(response), readings.VOIPEX_HISTORY_LISTS)
    if data is None:
        return SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                          detail="history answer holds no list of SMS")
    records = [parse_history_record(item) for item in data]
    if None in records:
        log.warning("provider.history_records_skipped", kind="voipex",
                    count=records.count(None))
    return [r for r in records if r is not None]


def parse_history_record(record: object) -> Sms | None:
    """One history record: the webhook's fields or their variants (``status`` for
    ``state``, ``created_at`` for ``createdAt``, ``OUTBOUND`` for ``OUT``); ``None``
    without a string id (a send answers one, and ids are matched as sent)."""
    if not isinstance(record, Mapping):
        return None
    entry = folded(record)
    sms_id = pick(entry, readings.VOIPEX_ID)
    if not isinstance(sms_id, str):
        return None
    direction = _text(pick(entry, readings.VOIPEX_DIRECTION)).lower()
    return Sms(id=sms_id, sender=_text(pick(entry, readings.VOIPEX_FROM)),
               to=_text(pick(entry, readings.VOIPEX_TO)),
               text=_text(pick(entry, readings.VOIPEX_TEXT)),
               direction="OUT" if direction in readings.VOIPEX_OUT_WORDS else
               "IN" if direction in readings.VOIPEX_IN_WORDS else direction.upper(),
               state=_text(pick(entry, readings.VOIPEX_STATE)),
               created_at=parse_time(pick(entry, readings.VOIPEX_CREATED)))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def parse_sms(record: object) -> Sms | None:
    """An SMS record with a non-empty string ``id``; other fields are ``""`` when not text."""
    if not isinstance(record, Mapping):
        return None
    sms_id = record.get("id")
    if not isinstance(sms_id, str) or not sms_id:
        return None
    return Sms(id=sms_id, sender=_first_text(record, "from"), to=_first_text(record, "to"),
               text=_first_text(record, "text"),
               direction=_first_text(record, "direction").upper(),
               state=_first_text(record, "state"),
               created_at=parse_time(record.get("createdAt")))


def parse_webhook(payload: Mapping[str, Any]) -> DeliveryStatus | None:
    """A delivery report from the account webhook; ``None`` for a received SMS or junk.

    ``at`` stays ``None``: ``createdAt`` is when the SMS was created, not when it was
    delivered.
    """
    sms = parse_sms(payload)
    if sms is None or sms.direction != "OUT" or not sms.state:
        return None
    state = delivery_state(sms.state)
    return DeliveryStatus(sms.id, state, sms.state,
                          reason=sms.state if state in ("undelivered", "expired") else "")


def lookup_failure(result: SendResult) -> SendResult:
    """A failed history read as :meth:`Voipex.lookup` reports it (see there)."""
    if result.outcome in (Outcome.THROTTLED, Outcome.REFUSED_ACCOUNT, Outcome.NOT_PROCESSED):
        return result
    return replace(result, outcome=Outcome.NOT_PROCESSED, try_other_route=False)


def iso_time(moment: datetime) -> str:
    """ISO-8601 with milliseconds and the zone, as the history wants (``...000+00:00``)."""
    return _aware(moment).astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time (``Z`` allowed); a time without a zone is taken as UTC."""
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _about_destination(code: str, detail: str) -> bool:
    """A refusal another route may not share: the destination, or the ``to`` field."""
    return code in DESTINATION_CODES or (code == VALIDATION_CODE and detail.startswith("to "))


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def _first_text(data: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return ""
