"""Sky Telecom (document 000): Bearer key, wallet-funded sends, GAMMA channels, SMS logs.

Every send is paid from a prepaid wallet and answers ``segments``, ``total_cost`` and
``wallet_balance``: each result carries what the message actually cost and what is left,
and a wallet too low to pay (HTTP 402) stops the lane. Prices are per country and GAMMA
channel (``available-routes?expand=gamma``); the channel's ``option_id`` is the route a
send names in ``route_option_id``. There is no idempotency key and no delivery callback: a
send whose outcome is unknown is settled by finding the same recipient and text in the SMS
logs, and delivery states are polled from those logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import httpx
import phonenumbers
import structlog

from engine.config import ProviderConfig
from engine.countries import calling_code, region_of
from engine.errors import ProviderError, redact
from engine.providers import readings
from engine.providers.base import (
    STATUS_WORDS,
    DeliveryStatus,
    OutboundMessage,
    Outcome,
    Readiness,
    SendResult,
    SentBetween,
    delivery_state,
)
from engine.providers.http import HttpAdapter, amount, by_status, charge, failure, json_body
from engine.providers.readings import RateReading, describe_keys, loads_exact, price_of
from engine.routing import RateRow

log = structlog.get_logger()

SEND_PATH: Final = "/api/sms/send"
ROUTES_PATH: Final = "/api/sms/available-routes"
LOGS_PATH: Final = "/api/sms/logs"
"""The document gives no path for the SMS logs: this is the sandbox's choice
(``SKY_LOGS_PATH`` in ``engine/sandbox/choices.py``); ``logs_path=`` overrides it."""
LOGS_PAGE_SIZE: Final = 100
LOOKUP_MAX_PAGES: Final = 5
"""A lookup searches one recipient since one day: more than 500 rows means a search too
broad to settle anything, and the lookup reports itself failed rather than "not found"."""
POLL_MAX_PAGES: Final = 10
"""Without a span, ``poll`` reads at most the newest 1000 log rows."""
POLL_SPAN_MAX_PAGES: Final = 30
"""With a span, ``poll`` reads at most 3000 rows from where the span ends: a round asks
about 500 messages, and the span holds every other message sent beside them."""
POLL_SEARCH_MAX_PAGE: Final = 2**20
"""The search for a span's first page gives up past this page (100M rows)."""
POLL_SKEW_S: Final = 5.0
"""How far outside the span in which our clock saw the messages accepted their log dates
may lie: the provider's clock against ours, and a request's time on the way. Only read for
ids not found in the span itself."""
DETAIL_MAX_CHARS: Final = 300

ACCOUNT_CODES: Final = frozenset({"unauthorized", "account_suspended", "insufficient_balance"})
DESTINATION_CODES: Final = frozenset({"no_route", "route_not_available", "invalid_number",
                                      "invalid_recipient", "unsupported_destination"})
"""Refusal codes about where a message goes, which another route may still take."""
ABOUT_DESTINATION: Final = re.compile(r"route|recipient|number|destination", re.IGNORECASE)
"""The sandbox refuses a bad recipient or an unknown ``route_option_id`` with the generic
``validation_error``; its message says which field, and these words mean "not the text"."""
SENT_WORDS: Final = frozenset(word for word, state in STATUS_WORDS.items()
                             if state in ("accepted", "delivered"))
"""Status words of a message not refused, as the provider writes them (lower case)."""
ALPHA_SENDER: Final = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}")
NUMERIC_SENDER: Final = re.compile(r"\+?[0-9]{3,15}")
_NOT_DIGIT: Final = re.compile(r"[^0-9]")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the SMS logs, as far as it could be read."""

    id: str
    recipient: str
    message: str
    status: str
    date: datetime | None
    segments: int | None
    cost: Decimal | None


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: tuple[LogEntry, ...]
    has_more: bool

    @property
    def oldest(self) -> datetime | None:
        """The date of the last dated row: rows come newest first."""
        return next((e.date for e in reversed(self.entries) if e.date is not None), None)

    def newer_than(self, moment: datetime) -> bool:
        """Every dated row is after *moment* (and one is dated)."""
        oldest = self.oldest
        return oldest is not None and oldest > moment

    def has_row_before(self, moment: datetime) -> bool:
        oldest = self.oldest
        return oldest is not None and oldest < moment


class SkyTelecom(HttpAdapter):
    kind: Final = "skytelecom"
    supports_idempotency: Final = False
    max_batch: Final = 1
    can_lookup: Final = True

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 logs_path: str = LOGS_PATH) -> None:
        """*base_url* is the origin; the document's ``https://skytelecom.io/api`` works too."""
        super().__init__(config, base_url=(base_url or config.base_url).rstrip("/")
                         .removesuffix("/api"), transport=transport)
        self._logs_path = logs_path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    async def send(self, message: OutboundMessage) -> SendResult:
        body: dict[str, Any] = {"to": digits(message.to), "message": message.text}
        if message.sender:
            body["sender_id"] = message.sender
        if message.route:
            body["route_option_id"] = message.route
        try:
            response = await self.client.post(SEND_PATH, json=body)
        except httpx.HTTPError as exc:
            return failure(exc, secrets=self.config.secrets)
        return self._clean(parse_send(response, currency=self.config.currency))

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return [await self.send(m) for m in messages]

    async def fetch_rates(self) -> list[RateRow]:
        return list((await self.read_rates()).rows)

    async def read_rates(self) -> RateReading:
        """``available-routes?expand=gamma`` read by :func:`read_gamma`; ``ProviderError``
        when no answer, a status other than 200, or neither GAMMA listing in it."""
        try:
            response = await self.client.get(ROUTES_PATH, params={"expand": "gamma"})
        except httpx.HTTPError as exc:
            detail = failure(exc, secrets=self.config.secrets).detail
            raise ProviderError(f"rates unavailable: {detail}", provider=self.name) from None
        data = loads_exact(response.content)
        if response.status_code != 200 or not isinstance(data, dict) or not (
                isinstance(data.get("gamma_by_country"), dict)
                or isinstance(data.get("gamma_options"), list)):
            raise ProviderError(f"rates unavailable: HTTP {response.status_code} without a "
                                "gamma_by_country object", provider=self.name)
        return read_gamma(self.name, data, currency=self.config.currency)

    async def check(self) -> Readiness:
        """An authenticated ``GET available-routes`` and the sender rule of :func:`sender_problems`.

        No read-only endpoint reports the wallet, so ``balance`` stays ``None`` here; every
        send answers it.
        """
        problems = list(sender_problems(self.config.sender))
        try:
            response = await self.client.get(ROUTES_PATH)
        except httpx.HTTPError as exc:
            problems.insert(0, f"unreachable: {failure(exc, secrets=self.config.secrets).detail}")
            return Readiness(self.name, False, tuple(problems))
        if response.status_code != 200:
            code, detail = error_of(json_body(response))
            said = redact(f": {code} {detail}".rstrip(), self.config.secrets) if code else ""
            refused = response.status_code in (401, 402, 403)
            what = "API key or account refused" if refused else f"{ROUTES_PATH} answered"
            problems.insert(0, f"{what} (HTTP {response.status_code}{said})")
        return Readiness(self.name, not problems, tuple(problems))

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        """The newest log row with this recipient and text dated at or after *sent_after*.

        Log dates are whole seconds in UTC (a naive *sent_after* is taken as UTC), so
        *sent_after* is truncated to its second. Rows come newest first: a row older than
        that ends the search with ``None``; running out of pages first is a failed lookup
        (as is any failure to read the logs: NOT_PROCESSED unless the account is refused).
        """
        to = digits(message.to)
        since = _utc(sent_after).replace(microsecond=0)
        params = {"search": to, "from": since.date().isoformat()}
        for number in range(1, LOOKUP_MAX_PAGES + 1):
            page = await self._log_page(params, number)
            if isinstance(page, SendResult):
                return page if page.outcome is Outcome.REFUSED_ACCOUNT else replace(
                    page, outcome=Outcome.NOT_PROCESSED, try_other_route=False)
            for entry in page.entries:
                if entry.date is None:
                    continue
                if entry.date < since:
                    return None
                if digits(entry.recipient) == to and entry.message == message.text:
                    return SendResult(
                        Outcome.ACCEPTED, provider_message_id=entry.id, segments=entry.segments,
                        cost=entry.cost, code=entry.status,
                        currency=self.config.currency if entry.cost is not None else None)
            if not page.has_more:
                return None
        return SendResult(Outcome.NOT_PROCESSED, code="lookup_incomplete",
                          detail=f"not found in the newest {LOOKUP_MAX_PAGES} log pages")

    async def poll(self, provider_message_ids: Sequence[str],
                   sent_between: SentBetween | None = None) -> list[DeliveryStatus]:
        """States of the ids found in the SMS logs.

        With *sent_between*, the log pages of that span. Logs come newest first and filter
        by whole days only, so the page where the span ends is found by its dates
        (:meth:`_page_reaching`); pages are read from there to older ones until one passes
        the span's start less :data:`POLL_SKEW_S`, then, for ids still not found, to newer
        ones up to its end plus the skew; at most :data:`POLL_SPAN_MAX_PAGES` in all, ending
        as soon as every id is found. A log row's date is never after our acceptance of it
        on the same clock, so the newer side is read only for a provider's clock ahead of
        ours. Without a span, the newest :data:`POLL_MAX_PAGES` pages.

        ``at`` stays ``None``: a log row's date is when the message was sent, not when it
        reached its state. A failing page ends the poll with what was found so far.
        """
        wanted = set(provider_message_ids)
        found: list[DeliveryStatus] = []
        if not wanted:
            return found
        if sent_between is None:
            first = await self._numbered_page({}, 1)
            await self._collect({}, first, 1, POLL_MAX_PAGES, wanted, found, _never)
            return found
        skew = timedelta(seconds=POLL_SKEW_S)
        since, end = _utc(sent_between[0]) - skew, _utc(sent_between[1])
        latest = end + skew
        params = {"from": since.date().isoformat(), "to": latest.date().isoformat()}
        start = await self._page_reaching(params, end)
        read = await self._collect(params, start, 1, POLL_SPAN_MAX_PAGES, wanted, found,
                                   lambda page: page.has_row_before(since))
        if isinstance(start, SendResult) or read is None or start[0] == 1:
            return found
        if wanted and read < POLL_SPAN_MAX_PAGES:
            newer = await self._numbered_page(params, start[0] - 1)
            await self._collect(params, newer, -1, POLL_SPAN_MAX_PAGES - read, wanted, found,
                                lambda page: page.newer_than(latest))
        return found

    async def _collect(self, params: Mapping[str, str], first: tuple[int, LogPage] | SendResult,
                       step: int, budget: int, wanted: set[str], found: list[DeliveryStatus],
                       beyond: Callable[[LogPage], bool]) -> int | None:
        """Read log pages from *first*, *step* apart (1: to older rows, -1: to newer), moving
        the states of *wanted* ids to *found*, until every id is found, a page is *beyond*
        the span, there is no next page, or *budget* pages are read; how many were (``None``:
        one failed, which is logged). Rows logged meanwhile push the others to later pages:
        going to older ones a row may be read twice, going to newer ones one may be missed
        (and found in the next round)."""
        read = 0
        while True:
            if isinstance(first, SendResult):
                log.warning("provider.poll_failed", provider=self.name,
                            outcome=first.outcome.value, code=first.code)
                return None
            number, page = first
            read += 1
            for entry in page.entries:
                if entry.id in wanted:
                    wanted.discard(entry.id)
                    found.append(DeliveryStatus(entry.id, delivery_state(entry.status),
                                                entry.status))
            following = number + step
            if (not wanted or beyond(page) or read >= budget or following < 1
                    or (step > 0 and not page.has_more)):
                return read
            first = await self._numbered_page(params, following)

    async def _page_reaching(self, params: Mapping[str, str],
                             until: datetime) -> tuple[int, LogPage] | SendResult:
        """The first log page with a row dated at or before *until*, or the empty page past
        the last: the page number doubles until one is reached, then the pages between are
        halved. About 2 log2(pages) requests, where reading from the newest would be all."""
        low, high = 0, 1
        while True:
            page = await self._log_page(params, high)
            if isinstance(page, SendResult):
                return page
            if not page.newer_than(until):
                reached = page
                break
            if not page.has_more:
                return high + 1, LogPage((), has_more=False)
            if high >= POLL_SEARCH_MAX_PAGE:
                return SendResult(Outcome.NOT_PROCESSED, code="logs_too_long",
                                  detail=f"no log row before {until} in {high} pages")
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            page = await self._log_page(params, middle)
            if isinstance(page, SendResult):
                return page
            if page.newer_than(until):
                low = middle
            else:
                high, reached = middle, page
        return high, reached

    async def _numbered_page(self, params: Mapping[str, str],
                             number: int) -> tuple[int, LogPage] | SendResult:
        page = await self._log_page(params, number)
        return page if isinstance(page, SendResult) else (number, page)

    async def _log_page(self, params: Mapping[str, str], number: int) -> LogPage | SendResult:
        query = {**params, "limit": str(LOGS_PAGE_SIZE), "page": str(number)}
        try:
            response = await self.client.get(self._logs_path, params=query)
        except httpx.HTTPError as exc:
            return failure(exc, secrets=self.config.secrets)
        page = parse_logs(response)
        return self._clean(page) if isinstance(page, SendResult) else page

    def _clean(self, result: SendResult) -> SendResult:
        if not result.detail:
            return result
        return replace(result, detail=redact(result.detail, self.config.secrets))


def parse_send(response: httpx.Response, *, currency: str) -> SendResult:
    """Classify one answer to ``POST /sms/send``; *currency* is the account's."""
    data = json_body(response)
    status = response.status_code
    if not 200 <= status < 300:
        code, detail = error_of(data)
        result = by_status(response, code=code, detail=detail)
        if result.outcome is not Outcome.REFUSED_MESSAGE:
            return result
        if status in (404, 405):
            return replace(result, outcome=Outcome.REFUSED_ACCOUNT,
                           detail=f"no send endpoint here, check base_url ({detail})")
        return replace(result, try_other_route=_about_destination(code, detail))
    if not isinstance(data, dict):
        return SendResult(Outcome.UNKNOWN, code=str(status),
                          detail="success answer that is not a JSON object")
    if data.get("status") == "error":
        code, detail = error_of(data)
        if code in ACCOUNT_CODES:
            return SendResult(Outcome.REFUSED_ACCOUNT, code=code, detail=detail)
        return SendResult(Outcome.REFUSED_MESSAGE, code=code or str(status), detail=detail,
                          try_other_route=_about_destination(code, detail))
    cost = charge(data.get("total_cost"))
    currency_of_cost = currency if cost is not None else None
    segments = _count(data.get("segments"))
    balance = amount(data.get("wallet_balance"))
    messages = data.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    if not isinstance(first, dict):
        first = {}
    message_id = _id(first.get("id"))
    word = first.get("status", data.get("status"))
    if not isinstance(word, str):
        word = ""
    failed = _count(data.get("failed"))
    # The common answer's word ("sent") is looked up as it came; any other is folded first.
    not_sent = bool(word) and word not in SENT_WORDS and delivery_state(word) not in (
        "accepted", "delivered")
    if failed or not_sent:
        said = f"status {word!r}" if not_sent else f"failed: {failed}"
        return SendResult(Outcome.REFUSED_MESSAGE, message_id, segments, cost,
                          currency_of_cost, code=word if not_sent else "failed",
                          detail=f"the provider reported the message as not sent ({said})",
                          balance=balance)
    if message_id is None:
        return SendResult(Outcome.UNKNOWN, code=str(status),
                          detail="success answer without a readable messages[0].id")
    return SendResult(Outcome.ACCEPTED, message_id, segments, cost, currency_of_cost,
                      code=word, balance=balance)


def parse_rates(provider: str, data: Mapping[str, Any], *, currency: str) -> list[RateRow]:
    """The rows of :func:`read_gamma`."""
    return list(read_gamma(provider, data, currency=currency).rows)


def read_gamma(provider: str, data: Mapping[str, Any], *, currency: str) -> RateReading:
    """``gamma_by_country`` (English country name to channels) as one prefix row per channel,
    or, where the answer has no such object, ``gamma_options`` (channels naming their
    ``country``), as the document shows both; every channel not read is named.

    A country becomes its calling code. Where several countries share one (+1: US, CA and
    the Caribbean), only the code's main country is kept: its price cannot be told apart
    from the others' by prefix alone. The document's "Other" bucket is ignored: it is no
    one country.
    """
    by_country = data.get("gamma_by_country")
    if not isinstance(by_country, dict):
        by_country = {}
        for channel in data.get("gamma_options") or ():
            name = channel.get("country") if isinstance(channel, dict) else None
            by_country.setdefault(str(name) if name else "", []).append(channel)
    rows: list[RateRow] = []
    unusable: list[str] = []
    ignored: list[str] = []
    entries = 0
    for name, channels in by_country.items():
        listed = channels if isinstance(channels, list) else [channels]
        entries += len(listed)
        iso = region_of(str(name)) if name else None
        code = calling_code(iso) if iso else None
        if code is None or not isinstance(channels, list):
            log.warning("rates.row_skipped", provider=provider, country=str(name),
                        reason="unknown country")
            if str(name).strip().lower() in readings.SKY_NOT_A_COUNTRY:
                ignored += [f"{name}: no one country"] * len(listed)
            else:
                unusable += [f"unknown country {str(name)[:40]!r}"] * len(listed)
            continue
        main = phonenumbers.region_code_for_country_code(int(code))
        if main != iso:
            ignored += [f"{iso} shares +{code} with {main}"] * len(listed)
            continue
        for number, channel in enumerate(listed, start=1):
            option = channel.get("option_id") if isinstance(channel, dict) else None
            price = price_of(channel.get("price")) if isinstance(channel, dict) else None
            if not isinstance(option, str) or not option or price is None:
                log.warning("rates.row_skipped", provider=provider, country=str(name),
                            reason="channel without option_id or price")
                what = "no price" if isinstance(option, str) and option else "no option_id"
                unusable.append(f"{what} in {name} channel {number}: {describe_keys(channel)}")
                continue
            rows.append(RateRow(provider, option, code, price, currency))
    return RateReading(provider, tuple(rows), entries, tuple(unusable), tuple(ignored))


def parse_logs(response: httpx.Response) -> LogPage | SendResult:
    """One page of SMS logs; the classified failure when the answer is not one."""
    data = json_body(response)
    if response.status_code != 200:
        code, detail = error_of(data)
        return by_status(response, code=code, detail=detail)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return SendResult(Outcome.UNKNOWN, code="200", detail="logs answer without a data list")
    entries = tuple(e for e in map(_log_entry, data["data"]) if e is not None)
    return LogPage(entries, data.get("has_more") is True)


def sender_problems(sender: str) -> tuple[str, ...]:
    """The rule this adapter applies to ``sender_id`` (the document states none).

    Empty (the provider's default sender), 1-11 letters and digits with at least one letter
    (the GSM alphanumeric sender), or 3-15 digits with an optional leading ``+``.
    """
    if not sender or ALPHA_SENDER.fullmatch(sender) or NUMERIC_SENDER.fullmatch(sender):
        return ()
    return (f"sender {sender!r} is neither 1-11 letters and digits nor 3-15 digits "
            "with an optional '+'",)


def error_of(data: object) -> tuple[str, str]:
    """``(code, message)`` of a ``{"status": "error", "code", "message"}`` body."""
    if not isinstance(data, dict):
        return "", ""
    code, message = data.get("code"), data.get("message")
    return (str(code) if isinstance(code, str | int) and not isinstance(code, bool) else "",
            str(message)[:DETAIL_MAX_CHARS] if isinstance(message, str) else "")


def digits(number: str) -> str:
    """``+44 7400 123456`` -> ``447400123456``: the document writes numbers without ``+``."""
    bare = number[1:] if number[:1] == "+" else number
    if bare.isascii() and bare.isdigit():  # E.164 as the engine writes it
        return bare
    return _NOT_DIGIT.sub("", number)


def _about_destination(code: str, detail: str) -> bool:
    return code in DESTINATION_CODES or (
        code == "validation_error" and ABOUT_DESTINATION.search(detail) is not None)


def _log_entry(raw: object) -> LogEntry | None:
    if not isinstance(raw, dict):
        return None
    entry_id, recipient, status = _id(raw.get("id")), raw.get("recipient"), raw.get("status")
    if entry_id is None or not isinstance(recipient, str) or not isinstance(status, str):
        return None
    text = raw.get("message")
    return LogEntry(entry_id, recipient, text if isinstance(text, str) else "", status,
                    _log_date(raw.get("date")), _count(raw.get("segments")),
                    charge(raw.get("cost")))


def _log_date(value: object) -> datetime | None:
    """``2026-01-20 14:45:12`` (the SMS logs) or ``... UTC`` (the call logs), as UTC."""
    if not isinstance(value, str):
        return None
    try:
        return _utc(datetime.fromisoformat(value.strip().removesuffix("UTC").strip()))
    except ValueError:
        return None


def _never(page: LogPage) -> bool:
    return False


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _id(value: object) -> str | None:
    if type(value) is int:  # the common case: a JSON number
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    return text or None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

