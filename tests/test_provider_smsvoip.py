"""The SMS & Voice Platform adapter against the sandbox over real HTTP, and its parsing."""

from __future__ import annotations

import socket
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest

from engine.config import ProviderConfig
from engine.providers.base import OutboundMessage, Outcome
from engine.providers.smsvoip import SmsVoip, parse_send
from engine.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio

CONFIG = ProviderConfig(name="smsvoip", kind="smsvoip", base_url="sandbox",
                        api_key="sk_test_sandbox", webhook_secret="whsec_sandbox",
                        concurrency=4)
MESSAGE = OutboundMessage(key="camp-1-2", to="+447400123456", text="Hello", sender="ACME",
                          encoding="GSM-7", segments=1)



def adapter(sandbox: Sandbox, **changes: object) -> SmsVoip:
    return SmsVoip(replace(CONFIG, **changes), base_url=sandbox.base_url("smsvoip"))  # type: ignore[arg-type]


async def test_send_is_accepted_with_id_segments_and_cost(sandbox: Sandbox) -> None:
    """A plain send is ACCEPTED with the provider's id, segments and cost; the sandbox billed it."""
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_message_id and result.segments == 1
    assert (result.cost, result.currency) == (Decimal("0.03"), "EUR")
    assert [(e.recipient, e.idempotency_key) for e in sandbox.ledger] == [
        ("+447400123456", "camp-1-2")]


async def test_same_key_twice_is_billed_once(sandbox: Sandbox) -> None:
    """A resend with the same idempotency key gets the same id and no second charge."""
    async with adapter(sandbox) as provider:
        first = await provider.send(MESSAGE)
        second = await provider.send(MESSAGE)
    assert first.provider_message_id == second.provider_message_id
    assert len(sandbox.ledger) == 1


async def test_wrong_key_and_suspension_refuse_the_account(sandbox: Sandbox) -> None:
    """401 and 403 stop the lane: REFUSED_ACCOUNT, and nothing is billed."""
    async with adapter(sandbox, api_key="sk_wrong") as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.REFUSED_ACCOUNT
        readiness = await provider.check()
    assert not readiness.ok and "refused" in readiness.problems[0]
    sandbox.suspend("smsvoip")
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.REFUSED_ACCOUNT
    assert sandbox.ledger == []


async def test_unpriced_destination_may_fail_over(sandbox: Sandbox) -> None:
    """A destination the provider does not serve is refused with try_other_route."""
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE._replace(to="+819012345678"))
    assert result.outcome is Outcome.REFUSED_MESSAGE
    assert result.try_other_route and result.code == "unsupported_destination"


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        pytest.param(Faults(throttle_every=1, retry_after_s=2.5), Outcome.THROTTLED, id="429"),
        pytest.param(Faults(error_every=1, error_status=503), Outcome.NOT_PROCESSED, id="503"),
        pytest.param(Faults(error_every=1, error_status=500), Outcome.UNKNOWN, id="500"),
        pytest.param(Faults(error_every=1, error_status=502), Outcome.UNKNOWN, id="502"),
        pytest.param(Faults(drop_after_accept_every=1), Outcome.UNKNOWN, id="dropped"),
        pytest.param(Faults(reset_before_every=1), Outcome.UNKNOWN, id="reset"),
    ],
)
async def test_each_failure_is_classified(sandbox: Sandbox, faults: Faults,
                                          outcome: Outcome) -> None:
    """Throttles, 5xx and dropped connections map to what the dispatcher may do next."""
    sandbox.set_faults("smsvoip", faults)
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is outcome, result
    if outcome is Outcome.THROTTLED:
        assert result.retry_after_s == 2.5


async def test_dropped_after_accept_is_settled_by_resending_the_key(sandbox: Sandbox) -> None:
    """The provider billed a send whose answer was lost; the same key settles it, billed once."""
    sandbox.set_faults("smsvoip", Faults(drop_after_accept_every=1))
    async with adapter(sandbox) as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.UNKNOWN
        sandbox.set_faults("smsvoip", Faults())
        settled = await provider.send(MESSAGE)
    assert settled.outcome is Outcome.ACCEPTED
    assert len(sandbox.ledger) == 1
    assert settled.provider_message_id == sandbox.ledger[0].message_id


async def test_nothing_listening_is_not_processed() -> None:
    """Connection refused means the request never left: safe to retry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SmsVoip(CONFIG, base_url=f"http://127.0.0.1:{port}") as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.NOT_PROCESSED


async def test_rates_become_prefix_rows_matching_the_sandbox(sandbox: Sandbox) -> None:
    """/rates by ISO code turns into calling-code rows with the sandbox's prices."""
    async with adapter(sandbox) as provider:
        rows = {r.prefix: (r.price, r.currency) for r in await provider.fetch_rates()}
    assert rows["421"] == (Decimal("0.045"), "EUR")
    assert rows["44"] == (Decimal("0.03"), "EUR")
    assert rows["1"] == (Decimal("0.0085"), "EUR")


def answer(status: int, content: bytes) -> httpx.Response:
    return httpx.Response(status, content=content, request=httpx.Request("POST", "http://x"))


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        pytest.param(200, b'{"message_id": "msg_1", "cost": 0.03', Outcome.UNKNOWN,
                     id="truncated-json"),
        pytest.param(200, b'{"message_id": 17, "status": "queued"}', Outcome.UNKNOWN,
                     id="id-of-wrong-type"),
        pytest.param(200, b"<html>gateway</html>", Outcome.UNKNOWN, id="html-success"),
        pytest.param(200, b'{"message_id": "m", "cost": "n/a"}', Outcome.ACCEPTED,
                     id="odd-cost-still-accepted"),
        pytest.param(400, b'{"error": {"code": "validation_error", "message": "text"}}',
                     Outcome.REFUSED_MESSAGE, id="validation"),
        pytest.param(400, b"not json", Outcome.REFUSED_MESSAGE, id="400-without-json"),
        pytest.param(504, b"", Outcome.UNKNOWN, id="504"),
    ],
)
def test_send_answers_are_parsed_defensively(status: int, body: bytes, outcome: Outcome) -> None:
    """Odd bodies never count as accepted unless they carry a message id."""
    result = parse_send(answer(status, body))
    assert result.outcome is outcome
    if outcome is Outcome.ACCEPTED:
        assert result.cost is None
