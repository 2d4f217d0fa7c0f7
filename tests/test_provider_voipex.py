"""The Voipex adapter against the sandbox over real HTTP, and its parsing."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sandbox_fixtures import eventually, fast_settings, receiving

from engine.config import ProviderConfig
from engine.errors import ProviderError
from engine.providers.base import OutboundMessage, Outcome, Provider, SendResult
from engine.providers.voipex import (
    LOOKUP_SKEW_S,
    POLL_MARGIN_S,
    Voipex,
    iso_time,
    parse_history,
    parse_send,
    parse_webhook,
)
from engine.sandbox import Faults, ProviderAccount, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

TOKEN = "voipex-sandbox-jwt"
OWNED = "+420777888999"
CONFIG = ProviderConfig(name="voipex", kind="voipex", base_url="sandbox", token=TOKEN,
                        sender=OWNED, concurrency=4)
MESSAGE = OutboundMessage(key="camp-1-2", to="+420607608609", text="Hello", sender="ACME",
                          encoding="GSM-7", segments=1)



def adapter(sandbox: Sandbox, **changes: object) -> Voipex:
    return Voipex(replace(CONFIG, **changes), base_url=sandbox.base_url("voipex"))  # type: ignore[arg-type]


def just_before() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


async def test_send_goes_out_from_the_configured_sender(sandbox: Sandbox) -> None:
    """A send is ACCEPTED with the provider's id, from the config's number, not the campaign's."""
    async with adapter(sandbox) as provider:
        assert isinstance(provider, Provider)
        result = await provider.send(MESSAGE)
        assert await provider.fetch_rates() == []
    assert result.outcome is Outcome.ACCEPTED and result.provider_message_id
    (entry,) = sandbox.ledger
    assert (entry.message_id, entry.sender, entry.recipient, entry.text) == (
        result.provider_message_id, OWNED, "+420607608609", "Hello")


async def test_check_passes_and_caches_the_allowed_numbers(sandbox: Sandbox) -> None:
    """Preflight with an owned sender is ok and keeps the account's numbers."""
    async with adapter(sandbox) as provider:
        readiness = await provider.check()
    assert readiness.ok and readiness.problems == ()
    assert provider.allowed_numbers == (OWNED,)


async def test_check_names_a_sender_the_account_does_not_own(sandbox: Sandbox) -> None:
    """A sender outside the allowed numbers fails preflight, naming it and the owned ones."""
    async with adapter(sandbox, sender="+420111222333") as provider:
        readiness = await provider.check()
    assert not readiness.ok
    assert readiness.problems == (
        "sender +420111222333 is not one of the account's numbers: +420777888999",)


@pytest.mark.parametrize(
    ("suspended", "word"),
    [pytest.param(False, "401", id="bad-token"), pytest.param(True, "403", id="suspended")],
)
async def test_check_fails_when_the_token_is_refused(sandbox: Sandbox, suspended: bool,
                                                     word: str) -> None:
    """A refused or blocked token fails preflight with a clear line and no credential."""
    sandbox.suspend("voipex", suspended)
    token = TOKEN if suspended else "eyJhbGci.wrong"
    async with adapter(sandbox, token=token) as provider:
        readiness = await provider.check()
    (problem,) = readiness.problems
    assert not readiness.ok and problem.startswith(f"token refused (HTTP {word}")
    assert token not in problem and provider.allowed_numbers is None


async def test_send_from_a_number_not_owned_refuses_the_account(sandbox: Sandbox) -> None:
    """'from not allowed' would fail every message: REFUSED_ACCOUNT, nothing billed."""
    async with adapter(sandbox, sender="+420111222333") as provider:
        result = await provider.send(MESSAGE)
    assert (result.outcome, result.code) == (Outcome.REFUSED_ACCOUNT, "from_not_allowed")
    assert sandbox.ledger == []


async def test_suspended_account_is_refused(sandbox: Sandbox) -> None:
    """A blocked account (403) stops the lane."""
    sandbox.suspend("voipex")
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.REFUSED_ACCOUNT


async def test_unpriced_destination_may_fail_over(sandbox: Sandbox) -> None:
    """A destination the provider does not serve is refused with try_other_route."""
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE._replace(to="+15551234567"))
    assert result.outcome is Outcome.REFUSED_MESSAGE
    assert result.try_other_route and result.code == "destination_not_supported"


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        pytest.param(Faults(throttle_every=1, retry_after_s=2.5), Outcome.THROTTLED, id="429"),
        pytest.param(Faults(error_every=1, error_status=503), Outcome.NOT_PROCESSED, id="503"),
        pytest.param(Faults(error_every=1, error_status=500), Outcome.UNKNOWN, id="500"),
        pytest.param(Faults(error_every=1, error_status=502), Outcome.UNKNOWN, id="502"),
        pytest.param(Faults(error_every=1, error_status=504), Outcome.UNKNOWN, id="504"),
    ],
)
async def test_each_failure_is_classified(sandbox: Sandbox, faults: Faults,
                                          outcome: Outcome) -> None:
    """Throttles and 5xx map to what the dispatcher may do next."""
    sandbox.set_faults("voipex", faults)
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is outcome, result
    if outcome is Outcome.THROTTLED:
        assert result.retry_after_s == 2.5


async def test_dropped_after_accept_is_found_by_lookup(sandbox: Sandbox) -> None:
    """A billed send whose answer was lost is UNKNOWN, then found in history with its id."""
    sent_after = just_before()
    sandbox.set_faults("voipex", Faults(drop_after_accept_every=1))
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.UNKNOWN
        sandbox.set_faults("voipex", Faults())
        found = await provider.lookup(MESSAGE, sent_after)
        other_text = await provider.lookup(MESSAGE._replace(text="Hello!"), sent_after)
        other_to = await provider.lookup(MESSAGE._replace(to="+420607608600"), sent_after)
        later = await provider.lookup(MESSAGE, datetime.now(UTC) + timedelta(hours=1))
    (entry,) = sandbox.ledger
    assert found is not None and found.outcome is Outcome.ACCEPTED
    assert found.provider_message_id == entry.message_id
    assert (other_text, other_to, later) == (None, None, None)


async def test_reset_before_send_is_unknown_and_not_in_history(sandbox: Sandbox) -> None:
    """A connection reset leaves the outcome unknown; the history shows it never arrived."""
    sent_after = just_before()
    sandbox.set_faults("voipex", Faults(reset_before_every=1))
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.UNKNOWN
        sandbox.set_faults("voipex", Faults())
        assert await provider.lookup(MESSAGE, sent_after) is None
    assert sandbox.ledger == []


async def test_failed_lookup_says_why(sandbox: Sandbox) -> None:
    """A history read that fails is NOT_PROCESSED (5xx) or REFUSED_ACCOUNT (blocked)."""
    async with adapter(sandbox) as provider:
        sandbox.set_faults("voipex", Faults(error_every=1, error_status=500))
        errored = await provider.lookup(MESSAGE, just_before())
        sandbox.set_faults("voipex", Faults())
        sandbox.suspend("voipex")
        blocked = await provider.lookup(MESSAGE, just_before())
    assert errored is not None and errored.outcome is Outcome.NOT_PROCESSED
    assert blocked is not None and blocked.outcome is Outcome.REFUSED_ACCOUNT


async def test_nothing_listening_is_not_processed() -> None:
    """Connection refused means the request never left: safe to retry; preflight says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Voipex(CONFIG, base_url=f"http://127.0.0.1:{port}") as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.NOT_PROCESSED
        readiness = await provider.check()
    assert not readiness.ok and readiness.problems[0].startswith("unreachable")


@pytest.mark.parametrize(
    ("undelivered_share", "state", "word"),
    [
        pytest.param(0.0, "delivered", "DELIVERED", id="delivered"),
        pytest.param(1.0, "undelivered", "FAILED", id="undelivered"),
    ],
)
async def test_poll_reads_the_final_state_from_history(
    sandbox: Sandbox, undelivered_share: float, state: str, word: str
) -> None:
    """After the delivery delay, poll maps the history's state; unknown ids are left out."""
    sandbox.set_faults("voipex", Faults(undelivered_share=undelivered_share))
    async with adapter(sandbox) as provider:
        sent = await provider.send(MESSAGE)
        assert sent.provider_message_id is not None
        ids = [sent.provider_message_id, "no-such-id"]

        async def final() -> bool:
            (status,) = await provider.poll(ids)
            return status.final

        await eventually(final)
        (status,) = await provider.poll(ids)
    assert (status.provider_message_id, status.state, status.provider_status) == (
        sent.provider_message_id, state, word)


async def test_poll_reads_the_span_the_messages_were_sent_in(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given when the messages were sent, a poll reads that span of history (the history has
    no paging), widened by seconds; what is not there is read from it widened by the clock
    skew, then from the last 72 h (accepted through a late lookup), as is everything when
    the span is not given."""
    async with adapter(sandbox) as provider:
        sent = await provider.send(MESSAGE)
        sms_id = sent.provider_message_id
        assert sms_id is not None
        at = datetime.now(UTC)
        windows: list[tuple[datetime, datetime | None]] = []
        read = provider._history

        async def recorded(start: datetime, end: datetime | None = None) -> Any:
            windows.append((start, end))
            return await read(start, end)

        monkeypatch.setattr(provider, "_history", recorded)
        polls = {
            "span": await provider.poll([sms_id], (at - timedelta(seconds=1), at)),
            "elsewhere": await provider.poll([sms_id], (at - timedelta(hours=2),
                                                        at - timedelta(hours=1))),
            "no span": await provider.poll([sms_id]),
        }
    assert {k: [s.provider_message_id for s in v] for k, v in polls.items()} == {
        "span": [sms_id], "elsewhere": [sms_id], "no span": [sms_id]}
    widths = [(end - start) if end else None for start, end in windows]
    assert [w and round(w.total_seconds() / 3600) for w in widths] == [0, 1, 1, 72, 72]
    assert widths[0] == timedelta(seconds=1 + 2 * POLL_MARGIN_S)
    assert widths[2] == timedelta(hours=1, seconds=2 * LOOKUP_SKEW_S)


async def test_poll_failure_raises_provider_error(sandbox: Sandbox) -> None:
    """A history read that fails raises the engine's error, not httpx's."""
    sandbox.set_faults("voipex", Faults(error_every=1, error_status=503))
    async with adapter(sandbox) as provider:
        assert await provider.poll([]) == []
        with pytest.raises(ProviderError, match="history unavailable"):
            await provider.poll(["some-id"])


async def test_sandbox_webhook_parses_to_the_final_state() -> None:
    """The report the sandbox posts to the account webhook becomes a DeliveryStatus."""
    async with receiving() as receiver:
        account = ProviderAccount(token=TOKEN, allowed_numbers=(OWNED,),
                                  callback_url=receiver.url + "/voipex")
        async with running_sandbox(fast_settings(accounts={"voipex": account})) as sandbox:
            async with adapter(sandbox) as provider:
                sent = await provider.send(MESSAGE)
            (post,) = await receiver.wait_for(1)
    status = parse_webhook(json.loads(post.body))
    assert status is not None and status.final
    assert (status.provider_message_id, status.state) == (sent.provider_message_id, "delivered")


async def test_provider_text_never_carries_the_token() -> None:
    """A problem detail that echoes the token is redacted before it leaves the adapter."""

    def echo(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(400, json={"status": 400, "code": "validation_error",
                                         "detail": f"bad header {echoed}"})

    async with Voipex(CONFIG, base_url="http://voipex.test",
                      transport=httpx.MockTransport(echo)) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is Outcome.REFUSED_MESSAGE
    assert TOKEN not in result.detail and "***" in result.detail


def answer(status: int, content: bytes) -> httpx.Response:
    return httpx.Response(status, content=content, request=httpx.Request("POST", "http://x"))


def problem(status: int, code: str, detail: str) -> bytes:
    return json.dumps({"title": "Bad Request", "status": status, "detail": detail,
                       "code": code}).encode()


@pytest.mark.parametrize(
    ("status", "body", "outcome", "other_route"),
    [
        pytest.param(200, b'{"id": "5f0c", "state": "QUEUED"', Outcome.UNKNOWN, False,
                     id="truncated-json"),
        pytest.param(200, b'{"id": 17, "state": "QUEUED"}', Outcome.UNKNOWN, False,
                     id="id-a-number"),
        pytest.param(200, b'{"id": {"value": "5f0c"}}', Outcome.UNKNOWN, False, id="id-a-dict"),
        pytest.param(200, b'["5f0c"]', Outcome.UNKNOWN, False, id="list-not-object"),
        pytest.param(502, b"<html><h1>502 Bad Gateway</h1></html>", Outcome.UNKNOWN, False,
                     id="html-502"),
        pytest.param(400, problem(400, "destination_not_supported", "no rate for +1555"),
                     Outcome.REFUSED_MESSAGE, True, id="problem-destination"),
        pytest.param(400, problem(400, "validation_error", "to must be E.164"),
                     Outcome.REFUSED_MESSAGE, True, id="problem-bad-to"),
        pytest.param(400, problem(400, "validation_error", "text is required"),
                     Outcome.REFUSED_MESSAGE, False, id="problem-bad-text"),
        pytest.param(400, problem(400, "from_not_allowed", "+420 is not yours"),
                     Outcome.REFUSED_ACCOUNT, False, id="problem-from"),
        pytest.param(401, problem(401, "unauthorized", "invalid token"),
                     Outcome.REFUSED_ACCOUNT, False, id="problem-401"),
        pytest.param(404, b"", Outcome.REFUSED_ACCOUNT, False, id="wrong-base-url"),
        pytest.param(400, b"not json", Outcome.REFUSED_MESSAGE, False, id="400-without-json"),
    ],
)
def test_send_answers_are_parsed_defensively(status: int, body: bytes, outcome: Outcome,
                                             other_route: bool) -> None:
    """Odd bodies are never accepted without a string id; problems are classified by code."""
    result = parse_send(answer(status, body))
    assert (result.outcome, result.try_other_route) == (outcome, other_route), result
    if status == 400 and body.startswith(b"{"):
        assert result.detail and result.code == json.loads(body)["code"]


def test_accepted_send_keeps_the_provider_id() -> None:
    """The created SMS in a 200 gives the provider's id and its state word."""
    result = parse_send(answer(200, b'{"id": "5f0c", "direction": "OUT", "state": "QUEUED"}'))
    assert (result.outcome, result.provider_message_id, result.code) == (
        Outcome.ACCEPTED, "5f0c", "QUEUED")


def test_history_skips_bad_records_and_classifies_bad_answers() -> None:
    """Records without a string id are skipped; a 200 holding no list or a 5xx is a failure."""
    rows = b'[{"id": "a", "to": "+420607608609", "createdAt": "2026-01-12T20:15:00.123Z"},' \
           b' {"id": 3}, "junk"]'
    records = parse_history(answer(200, rows))
    assert isinstance(records, list)
    (sms,) = records
    assert sms.id == "a" and sms.created_at == datetime(2026, 1, 12, 20, 15, 0, 123000, UTC)
    for status, body in ((200, b'{"page": 1}'), (500, b"")):
        failed = parse_history(answer(status, body))
        assert isinstance(failed, SendResult) and failed.outcome is Outcome.UNKNOWN


def test_history_times_carry_a_zone() -> None:
    """Query times are ISO-8601 with milliseconds and a zone, naive ones taken as UTC."""
    assert iso_time(datetime(2021, 9, 1)) == "2021-09-01T00:00:00.000+00:00"


WEBHOOK: dict[str, Any] = {"id": "5f0c", "from": OWNED, "to": "+420607608609",
                           "text": "Hello", "direction": "OUT", "state": "DELIVERED",
                           "createdAt": "2026-01-12T20:15:00.123Z"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(WEBHOOK, ("delivered", "DELIVERED"), id="delivered"),
        pytest.param({**WEBHOOK, "state": "FAILED"}, ("undelivered", "FAILED"), id="failed"),
        pytest.param({**WEBHOOK, "state": "SOMETHING"}, ("unknown", "SOMETHING"),
                     id="unknown-word"),
        pytest.param({**WEBHOOK, "direction": "IN"}, None, id="received-sms"),
        pytest.param({**WEBHOOK, "id": 42}, None, id="id-a-number"),
        pytest.param({k: v for k, v in WEBHOOK.items() if k != "state"}, None, id="no-state"),
        pytest.param({k: v for k, v in WEBHOOK.items() if k != "direction"}, None,
                     id="no-direction"),
        pytest.param({}, None, id="empty"),
    ],
)
def test_webhook_payloads_are_parsed(payload: dict[str, Any],
                                     expected: tuple[str, str] | None) -> None:
    """Delivery reports map to our states; received SMS and malformed payloads are None."""
    status = parse_webhook(payload)
    if expected is None:
        assert status is None
    else:
        assert status is not None and status.provider_message_id == "5f0c"
        assert (status.state, status.provider_status) == expected
