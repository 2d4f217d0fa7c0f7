"""The Sky Telecom adapter against the sandbox over real HTTP, and its parsing."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import urlencode

import httpx
import pytest
from sandbox_fixtures import eventually, fast_settings
from structlog.testing import capture_logs

from engine.config import ProviderConfig
from engine.errors import ProviderError
from engine.providers.base import DeliveryStatus, OutboundMessage, Outcome, Provider
from engine.providers.http import _remembered_amount, charge
from engine.providers.skytelecom import (
    POLL_MAX_PAGES,
    SEND_PATH,
    LogPage,
    SkyTelecom,
    parse_logs,
    parse_rates,
    parse_send,
    sender_problems,
)
from engine.routing import RateRow
from engine.sandbox import Faults, ProviderAccount, Sandbox, core, running_sandbox
from engine.sandbox.prices import load_prices

pytestmark = pytest.mark.anyio

KEY = "sky_test_key"
CONFIG = ProviderConfig(name="sky", kind="skytelecom", base_url="https://skytelecom.io",
                        api_key=KEY, sender="ACME", currency="USD", concurrency=4)
MESSAGE = OutboundMessage(key="camp-1-2", to="+447400123456", text="Hello", sender="ACME",
                          encoding="GSM-7", segments=1)



def adapter(sandbox: Sandbox, **changes: object) -> SkyTelecom:
    return SkyTelecom(replace(CONFIG, **changes), base_url=sandbox.base_url("skytelecom"))  # type: ignore[arg-type]


def now() -> datetime:
    return datetime.now(UTC)


def test_is_a_provider_without_idempotency_that_can_look_up() -> None:
    """The adapter meets the Provider protocol: one message per call, settled by lookup."""
    provider = SkyTelecom(CONFIG)
    assert isinstance(provider, Provider)
    assert (provider.supports_idempotency, provider.max_batch, provider.can_lookup) == (
        False, 1, True)


async def test_send_is_accepted_with_id_segments_cost_and_balance(sandbox: Sandbox) -> None:
    """A send is ACCEPTED with the provider's id, segments, cost and wallet left; it was billed."""
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is Outcome.ACCEPTED, result
    assert result.segments == 1
    assert (result.cost, result.currency) == (Decimal("0.035"), "USD")
    assert result.balance == Decimal("99.965") == sandbox.wallet
    [entry] = sandbox.ledger
    assert (entry.message_id, entry.recipient, entry.sender) == (
        result.provider_message_id, "447400123456", "ACME")


async def test_route_option_id_picks_the_channel(sandbox: Sandbox) -> None:
    """``OutboundMessage.route`` goes out as route_option_id: the dearer ES channel is billed."""
    spain = MESSAGE._replace(to="+34600111222")
    async with adapter(sandbox) as provider:
        chosen = await provider.send(spain._replace(route="ch6-2"))
        default = await provider.send(spain)
    assert (chosen.cost, default.cost) == (Decimal("0.068"), Decimal("0.065"))
    assert [e.price for e in sandbox.ledger] == [Decimal("0.0680"), Decimal("0.0650")]


async def test_request_is_written_as_documented() -> None:
    """Documented path under the origin, Bearer key, digits-only ``to`` and the optional fields."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "sent", "sent": 1, "failed": 0,
                                         "messages": [{"id": 7, "status": "sent"}]})

    async with SkyTelecom(CONFIG, transport=httpx.MockTransport(answer)) as provider:
        result = await provider.send(MESSAGE._replace(route="ch-gb-1"))
    assert result.provider_message_id == "7"
    [request] = seen
    assert str(request.url) == "https://skytelecom.io/api/sms/send"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {"to": "447400123456", "message": "Hello",
                                           "sender_id": "ACME", "route_option_id": "ch-gb-1"}


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        pytest.param(Faults(throttle_every=1, retry_after_s=2.5), Outcome.THROTTLED, id="429"),
        pytest.param(Faults(error_every=1, error_status=503), Outcome.NOT_PROCESSED, id="503"),
        pytest.param(Faults(error_every=1, error_status=500), Outcome.UNKNOWN, id="500"),
        pytest.param(Faults(error_every=1, error_status=502), Outcome.UNKNOWN, id="502"),
        pytest.param(Faults(error_every=1, error_status=504), Outcome.UNKNOWN, id="504"),
        pytest.param(Faults(drop_after_accept_every=1), Outcome.UNKNOWN, id="dropped"),
        pytest.param(Faults(reset_before_every=1), Outcome.UNKNOWN, id="reset"),
    ],
)
async def test_each_failure_is_classified(sandbox: Sandbox, faults: Faults,
                                          outcome: Outcome) -> None:
    """Throttles, 5xx and dropped connections map to what the dispatcher may do next."""
    sandbox.set_faults("skytelecom", faults)
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is outcome, result
    assert KEY not in result.detail
    if outcome is Outcome.THROTTLED:
        assert result.retry_after_s == 2.5


async def test_dropped_after_accept_is_found_in_the_logs(sandbox: Sandbox) -> None:
    """The provider billed a send whose answer was lost; lookup finds its id in the SMS logs."""
    sandbox.set_faults("skytelecom", Faults(drop_after_accept_every=1))
    async with adapter(sandbox) as provider:
        before = now()
        assert (await provider.send(MESSAGE)).outcome is Outcome.UNKNOWN
        sandbox.set_faults("skytelecom", Faults())
        await provider.send(MESSAGE._replace(text="Another text"))
        found = await provider.lookup(MESSAGE, before)
    assert found is not None and found.outcome is Outcome.ACCEPTED
    assert found.provider_message_id == sandbox.ledger[0].message_id
    assert (found.segments, found.cost, found.currency) == (1, Decimal("0.035"), "USD")


async def test_reset_before_send_is_not_in_the_logs(sandbox: Sandbox) -> None:
    """A connection reset before processing billed nothing; lookup says there is no record."""
    sandbox.set_faults("skytelecom", Faults(reset_before_every=1))
    async with adapter(sandbox) as provider:
        before = now()
        assert (await provider.send(MESSAGE)).outcome is Outcome.UNKNOWN
        sandbox.set_faults("skytelecom", Faults())
        assert await provider.lookup(MESSAGE, before) is None
    assert sandbox.ledger == []


async def test_lookup_ignores_the_same_message_sent_earlier(sandbox: Sandbox) -> None:
    """A log row dated before sent_after is an older send of the same text, not this one."""
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).accepted
        assert await provider.lookup(MESSAGE, now() + timedelta(seconds=2)) is None


async def test_failing_lookup_is_classified(sandbox: Sandbox) -> None:
    """A lookup that cannot read the logs is NOT_PROCESSED, or REFUSED_ACCOUNT for the key."""
    sandbox.set_faults("skytelecom", Faults(error_every=1, error_status=500))
    async with adapter(sandbox) as provider:
        failed = await provider.lookup(MESSAGE, now())
    assert failed is not None and failed.outcome is Outcome.NOT_PROCESSED
    sandbox.set_faults("skytelecom", Faults())
    async with adapter(sandbox, api_key="wrong") as provider:
        refused = await provider.lookup(MESSAGE, now())
    assert refused is not None and refused.outcome is Outcome.REFUSED_ACCOUNT


async def test_wrong_key_and_suspension_refuse_the_account(sandbox: Sandbox) -> None:
    """401 and 403 stop the lane: REFUSED_ACCOUNT, nothing billed, no key in the detail."""
    async with adapter(sandbox, api_key="sky_wrong_key") as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is Outcome.REFUSED_ACCOUNT and result.code == "unauthorized"
    sandbox.suspend("skytelecom")
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.REFUSED_ACCOUNT
    assert sandbox.ledger == []


async def test_low_wallet_refuses_the_account() -> None:
    """A wallet too low to pay (HTTP 402) is the account's fault, not the message's."""
    poor = ProviderAccount(api_key=KEY, wallet=Decimal("0.01"))
    async with running_sandbox(fast_settings(accounts={"skytelecom": poor})) as sandbox:
        async with adapter(sandbox) as provider:
            result = await provider.send(MESSAGE)
        assert result.outcome is Outcome.REFUSED_ACCOUNT
        assert result.code == "insufficient_balance"
        assert sandbox.ledger == []


@pytest.mark.parametrize(
    ("to", "route", "code"),
    [
        pytest.param("+81312345678", "", "no_route", id="unpriced"),
        pytest.param("+34600111222", "ch-fr-1", "route_not_available", id="other-country"),
        pytest.param("+34600111222", "nope", "validation_error", id="unknown-route"),
    ],
)
async def test_destination_refusals_may_fail_over(sandbox: Sandbox, to: str, route: str,
                                                  code: str) -> None:
    """A destination or route the provider does not serve is refused with try_other_route."""
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE._replace(to=to, route=route))
    assert result.outcome is Outcome.REFUSED_MESSAGE
    assert result.try_other_route and result.code == code


async def test_nothing_listening_is_not_processed() -> None:
    """Connection refused means the request never left: safe to retry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SkyTelecom(CONFIG, base_url=f"http://127.0.0.1:{port}") as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.NOT_PROCESSED


async def test_read_timeout_is_unknown_and_never_shows_the_key() -> None:
    """A read timeout may have been billed: UNKNOWN, with the key redacted from the detail."""

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out, {request.headers['Authorization']}")

    async with SkyTelecom(CONFIG, transport=httpx.MockTransport(hang)) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is Outcome.UNKNOWN
    assert "ReadTimeout" in result.detail and KEY not in result.detail


async def test_check_passes_with_a_good_key_and_sender(sandbox: Sandbox) -> None:
    """The sandbox account with a valid alphanumeric sender is ready."""
    async with adapter(sandbox) as provider:
        readiness = await provider.check()
    assert readiness.ok and readiness.problems == () and readiness.provider == "sky"
    assert sandbox.ledger == []


async def test_check_reports_each_problem(sandbox: Sandbox) -> None:
    """A refused key and an invalid sender are two problems, each on its own line."""
    async with adapter(sandbox, api_key="sky_wrong_key", sender="Far Too Long Name") as provider:
        readiness = await provider.check()
    assert not readiness.ok
    key_line, sender_line = readiness.problems
    assert "refused (HTTP 401" in key_line and "sky_wrong_key" not in key_line
    assert "Far Too Long Name" in sender_line


@pytest.mark.parametrize(
    ("sender", "ok"),
    [
        pytest.param("", True, id="default-sender"),
        pytest.param("SkyTelecom", True, id="alphanumeric"),
        pytest.param("Shop24", True, id="letters-and-digits"),
        pytest.param("+12025550123", True, id="plus-digits"),
        pytest.param("12345", True, id="short-code"),
        pytest.param("TwelveLetter", False, id="alpha-too-long"),
        pytest.param("12", False, id="digits-too-short"),
        pytest.param("ACME Ltd", False, id="space"),
        pytest.param("+ACME", False, id="plus-letters"),
    ],
)
def test_sender_rule(sender: str, ok: bool) -> None:
    """1-11 letters and digits with a letter, or 3-15 digits with an optional '+'."""
    assert (sender_problems(sender) == ()) is ok


async def test_rates_equal_the_sandbox_price_table(sandbox: Sandbox) -> None:
    """Every GAMMA channel becomes a calling-code row with the sandbox's price, both ES ones too."""
    async with adapter(sandbox) as provider:
        rows = await provider.fetch_rates()
    expected = {RateRow("sky", r.route, r.prefix, r.price, r.currency)
                for r in load_prices().for_provider("skytelecom")}
    assert len(rows) == len(expected) and set(rows) == expected
    assert RateRow("sky", "ch-gb-1", "44", Decimal("0.0350"), "USD") in rows
    assert {r.route for r in rows if r.prefix == "34"} == {"ch6-1", "ch6-2"}


async def test_rates_with_a_refused_key_raise(sandbox: Sandbox) -> None:
    """No price list can be had without a valid key: ProviderError, without the key in it."""
    async with adapter(sandbox, api_key="sky_wrong_key") as provider:
        with pytest.raises(ProviderError, match="HTTP 401") as caught:
            await provider.fetch_rates()
    assert "sky_wrong_key" not in str(caught.value)


def test_rates_skip_unknown_names_and_shared_codes() -> None:
    """Unmappable names are logged and skipped; +1 keeps the US only; bad channels are skipped."""
    data = {"gamma_by_country": {
        "Other": [{"option_id": "x-1", "price": 0.1}],
        "Canada": [{"option_id": "ch-ca-1", "price": 0.01}],
        "United States": [{"option_id": "ch-us-1", "price": "0.0079"}],
        "Czechia": [{"option_id": "ch-cz-1", "price": 0.04}, {"option_id": "ch-cz-2"}],
    }}
    with capture_logs() as logs:
        rows = parse_rates("sky", data, currency="USD")
    assert rows == [RateRow("sky", "ch-us-1", "1", Decimal("0.0079"), "USD"),
                    RateRow("sky", "ch-cz-1", "420", Decimal("0.04"), "USD")]
    assert [(e["event"], e["country"]) for e in logs] == [
        ("rates.row_skipped", "Other"), ("rates.row_skipped", "Czechia")]


async def test_poll_reads_delivered_from_the_logs(sandbox: Sandbox) -> None:
    """After the delivery delay the log status reads delivered; unknown ids are left out."""
    async with adapter(sandbox) as provider:
        sent = await provider.send(MESSAGE)
        assert sent.provider_message_id is not None
        ids = [sent.provider_message_id, "999999999"]
        statuses: list[DeliveryStatus] = []

        async def final() -> bool:
            statuses[:] = await provider.poll(ids)
            return bool(statuses) and statuses[0].final

        await eventually(final)
    [status] = statuses
    assert (status.provider_message_id, status.state, status.provider_status) == (
        sent.provider_message_id, "delivered", "delivered")


async def test_poll_reads_undelivered_from_the_logs(sandbox: Sandbox) -> None:
    """A message the network failed reads ``failed`` in the logs: undelivered."""
    sandbox.set_faults("skytelecom", Faults(undelivered_share=1.0))
    async with adapter(sandbox) as provider:
        sent = await provider.send(MESSAGE)
        assert sent.provider_message_id is not None
        ids = [sent.provider_message_id]
        first = await provider.poll(ids)
        assert [s.state for s in first] in (["accepted"], ["undelivered"])
        statuses: list[DeliveryStatus] = []

        async def final() -> bool:
            statuses[:] = await provider.poll(ids)
            return bool(statuses) and statuses[0].final

        await eventually(final)
    assert [(s.state, s.provider_status) for s in statuses] == [("undelivered", "failed")]


FILLERS_PER_SEND = 50
FILLER_SENDS = 40


async def history(provider: SkyTelecom, monkeypatch: pytest.MonkeyPatch,
                  ) -> tuple[str, datetime, list[str]]:
    """2,000 log rows a minute apart in groups of 50, yesterday at noon (one day, which is
    all the logs' filter can tell apart), with MESSAGE sent among them: 1,450 rows are newer.
    Its id, its log date, and the URLs of the requests the provider is sent afterwards."""
    clock = (time.time() // 86400 - 1) * 86400 + 12 * 3600
    monkeypatch.setattr(core, "time", SimpleNamespace(time=lambda: clock))
    numbers = ",".join(f"1202555{n:04d}" for n in range(FILLERS_PER_SEND))
    sent: str | None = None
    for group in range(FILLER_SENDS):
        clock += 60
        answered = await provider.client.post(SEND_PATH, json={"to": numbers, "message": "fill"})
        assert answered.status_code == 200, answered.text
        if group == 10:
            result = await provider.send(MESSAGE)
            sent = result.provider_message_id
    assert sent is not None
    at = datetime.fromtimestamp(clock - 29 * 60, UTC)
    requested: list[str] = []

    wire = provider.client
    get = wire.get

    async def noted(path: str, *, params: Mapping[str, str] | None = None) -> httpx.Response:
        requested.append(f"{path}?{urlencode(params or {})}")
        return await get(path, params=params)

    monkeypatch.setattr(wire, "get", noted)
    return sent, at, requested


async def test_poll_finds_the_span_of_an_old_message_by_the_logs_dates(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message 1,450 rows down the logs is found through the span it was sent in, in about
    2 log2(pages) requests: the pages are searched by their dates, not read from the newest.
    Without a span only the newest pages are read, and it is not found."""
    async with adapter(sandbox) as provider:
        sent, at, requested = await history(provider, monkeypatch)
        statuses = await provider.poll([sent, "999999999"], (at, at))
        assert [(s.provider_message_id, s.state) for s in statuses] == [(sent, "delivered")]
        pages = FILLERS_PER_SEND * FILLER_SENDS // 100 + 1
        assert len(requested) <= 2 * math.ceil(math.log2(pages)) + 2
        assert all(f"from={at.date()}" in url and "page=" in url for url in requested)
        requested.clear()
        assert await provider.poll([sent]) == []
        assert len(requested) == POLL_MAX_PAGES


async def test_poll_reads_newer_pages_for_a_provider_clock_ahead_of_ours(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logged 3 s after the span our clock saw it accepted in (the provider's clock ahead):
    not on the pages of the span (from 16 on), found on the newer page before them."""
    async with adapter(sandbox) as provider:
        sent, at, requested = await history(provider, monkeypatch)
        early = at - timedelta(seconds=3)
        statuses = await provider.poll([sent], (early, early))
        assert [s.provider_message_id for s in statuses] == [sent]
        assert requested[-1].endswith("page=15") and len(requested) <= 10


async def test_poll_of_a_span_without_the_ids_stops_past_the_span(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids not in the logs: reading ends at the first page older than the span, and a span
    newer than every row ends the search with nothing read."""
    async with adapter(sandbox) as provider:
        _, at, requested = await history(provider, monkeypatch)
        assert await provider.poll(["1", "2"], (at, at)) == []
        searched = len(requested)
        assert searched <= 2 * math.ceil(math.log2(21)) + 3
        requested.clear()
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await provider.poll(["1"], (later, later)) == []
        assert len(requested) == 1


def answer(status: int, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers,
                          request=httpx.Request("POST", "http://x"))


SENT: bytes = (b'{"status": "sent", "sent": 1, "failed": 0, "segments": 2, "total_cost": 0.07,'
               b' "wallet_balance": 19.93, "messages": [{"id": 2381, "status": "sent"}]}')


@pytest.mark.parametrize(
    ("status", "body", "outcome", "other_route"),
    [
        pytest.param(200, SENT, Outcome.ACCEPTED, False, id="documented"),
        pytest.param(200, SENT[:60], Outcome.UNKNOWN, False, id="truncated-json"),
        pytest.param(200, b"<html>gateway</html>", Outcome.UNKNOWN, False, id="html-success"),
        pytest.param(200, SENT.replace(b'"id": 2381', b'"id": {"n": 1}'), Outcome.UNKNOWN,
                     False, id="id-of-wrong-type"),
        pytest.param(200, b'{"status": "sent", "failed": 0, "messages": []}', Outcome.UNKNOWN,
                     False, id="no-messages"),
        pytest.param(200, SENT.replace(b'"failed": 0', b'"failed": 1'),
                     Outcome.REFUSED_MESSAGE, False, id="failed-count"),
        pytest.param(200, SENT.replace(b'"id": 2381, "status": "sent"',
                                       b'"id": 2381, "status": "failed"'),
                     Outcome.REFUSED_MESSAGE, False, id="message-failed"),
        pytest.param(200, b'{"status": "error", "code": "no_route", "message": "no route"}',
                     Outcome.REFUSED_MESSAGE, True, id="error-inside-200"),
        pytest.param(200, b'{"status": "error", "code": "insufficient_balance"}',
                     Outcome.REFUSED_ACCOUNT, False, id="wallet-error-inside-200"),
        pytest.param(400, b'{"status": "error", "code": "validation_error",'
                          b' "message": "message is required"}',
                     Outcome.REFUSED_MESSAGE, False, id="text-validation"),
        pytest.param(400, b'{"status": "error", "code": "validation_error",'
                          b' "message": "invalid recipient \'12-34\'"}',
                     Outcome.REFUSED_MESSAGE, True, id="number-validation"),
        pytest.param(400, b"not json", Outcome.REFUSED_MESSAGE, False, id="400-without-json"),
        pytest.param(402, b'{"status": "error", "code": "insufficient_balance"}',
                     Outcome.REFUSED_ACCOUNT, False, id="402"),
        pytest.param(404, b'{"status": "error", "code": "not_found"}', Outcome.REFUSED_ACCOUNT,
                     False, id="wrong-base-url"),
        pytest.param(504, b"", Outcome.UNKNOWN, False, id="504"),
    ],
)
def test_send_answers_are_parsed_defensively(status: int, body: bytes, outcome: Outcome,
                                             other_route: bool) -> None:
    """Odd bodies never count as accepted unless they carry a message id and say it was sent."""
    result = parse_send(answer(status, body), currency="USD")
    assert result.outcome is outcome, result
    assert result.try_other_route is other_route


def test_accepted_answer_carries_cost_and_balance() -> None:
    """The documented answer gives id, segments, total cost and balance as Decimals."""
    result = parse_send(answer(200, SENT), currency="USD")
    assert (result.provider_message_id, result.segments, result.code) == ("2381", 2, "sent")
    assert (result.cost, result.currency, result.balance) == (
        Decimal("0.07"), "USD", Decimal("19.93"))


@pytest.mark.parametrize(
    ("total_cost", "cost"),
    [
        pytest.param(b'"0.014"', Decimal("0.014"), id="numeric-string"),
        pytest.param(b'"n/a"', None, id="text"),
        pytest.param(b"[1]", None, id="list"),
        pytest.param(b"-1", None, id="negative"),
    ],
)
def test_odd_cost_is_still_accepted(total_cost: bytes, cost: Decimal | None) -> None:
    """A cost that is not a usable amount is dropped; the send is still accepted."""
    body = SENT.replace(b"0.07", total_cost)
    result = parse_send(answer(200, body), currency="USD")
    assert result.outcome is Outcome.ACCEPTED
    assert result.cost == cost
    assert result.currency == ("USD" if cost is not None else None)


def test_the_same_charge_is_the_same_decimal_and_a_balance_is_not_remembered() -> None:
    """A charge seen before is the very Decimal parsed the first time (the dispatcher's
    currency conversion looks its hash up per message); the wallet balance, new every
    time, is parsed but not remembered; a float and a string stay apart."""
    first = parse_send(answer(200, SENT), currency="USD")
    second = parse_send(answer(200, SENT), currency="USD")
    assert first.cost == Decimal("0.07") and first.cost is second.cost
    assert charge(0.07) is charge(0.07) and charge(0.07) is not charge("0.07")
    assert charge(True) is None and charge([1]) is None and charge("-1") is None
    before = _remembered_amount.cache_info().currsize
    third = parse_send(answer(200, SENT.replace(b"19.93", b"12345.67")), currency="USD")
    assert third.balance == Decimal("12345.67") and third.cost is first.cost
    assert _remembered_amount.cache_info().currsize == before


def test_throttle_carries_retry_after() -> None:
    """429 is THROTTLED with the Retry-After seconds."""
    result = parse_send(answer(429, b"{}", {"Retry-After": "3"}), currency="USD")
    assert (result.outcome, result.retry_after_s) == (Outcome.THROTTLED, 3.0)


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        pytest.param(b'{"data": [{"id": 1, "recipient": "44", "status": "sent", "date": "x"},'
                     b' {"id": {}, "recipient": "44", "status": "sent"}, "junk"],'
                     b' "has_more": false}', ["1"], id="skips-unreadable-rows"),
        pytest.param(b'{"data": [], "has_more": true}', [], id="empty-page"),
    ],
)
def test_log_pages_are_parsed_defensively(body: bytes, ids: list[str]) -> None:
    """Rows without a readable id, recipient or status are skipped; a bad date is None."""
    page = parse_logs(answer(200, body))
    assert isinstance(page, LogPage)
    assert [e.id for e in page.entries] == ids
    assert all(e.date is None for e in page.entries)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        pytest.param(200, b'{"data": {"id": 1}}', Outcome.UNKNOWN, id="data-not-a-list"),
        pytest.param(200, b'{"data": [', Outcome.UNKNOWN, id="truncated"),
        pytest.param(401, b'{"status": "error", "code": "unauthorized"}',
                     Outcome.REFUSED_ACCOUNT, id="401"),
        pytest.param(503, b"", Outcome.NOT_PROCESSED, id="503"),
    ],
)
def test_log_failures_are_classified(status: int, body: bytes, outcome: Outcome) -> None:
    """A logs answer that is not a page is a classified failure."""
    result = parse_logs(answer(status, body))
    assert not isinstance(result, LogPage) and result.outcome is outcome
