"""The Telekom adapter against the sandbox over real HTTP, and its parsing."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from httpx_aiohttp import AiohttpTransport
from sandbox_fixtures import eventually, fast_settings

from engine.config import ProviderConfig
from engine.providers.base import DeliveryStatus, OutboundMessage, Outcome, SendResult
from engine.providers.telekom import Telekom, parse_auth, parse_check, parse_send, session_lost
from engine.sandbox import Faults, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

TOKEN = "telekom-sandbox-token"
CONFIG = ProviderConfig(name="telekom", kind="telekom", base_url="sandbox", token=TOKEN,
                        concurrency=4)
MESSAGE = OutboundMessage(key="camp-1-2", to="+421900123456", text="Hello", sender="",
                          encoding="GSM-7", segments=1)
SLOVAK = MESSAGE._replace(text="Ďakujeme, že ste s nami.", encoding="UCS-2")


class Recording(httpx.AsyncBaseTransport):
    """The real aiohttp transport, remembering each request's path and JSON body."""

    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        self._inner = AiohttpTransport(limits=limits)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, json.loads(request.content)))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def count(self, function: str) -> int:
        return sum(path.endswith(f"/json/{function}") for path, _ in self.requests)



def adapter(sandbox: Sandbox, transport: httpx.AsyncBaseTransport | None = None,
            session_idle_s: float | None = None, **changes: Any) -> Telekom:
    extra = {} if session_idle_s is None else {"session_idle_s": session_idle_s}
    return Telekom(replace(CONFIG, **changes), base_url=sandbox.base_url("telekom"),
                   transport=transport, **extra)


async def test_send_is_accepted_with_id_parts_and_the_wire_format(sandbox: Sandbox) -> None:
    """ACCEPTED with id and parts; ``to`` without ``+``, ``unicode`` explicit, diacritics kept."""
    wire = Recording()
    async with adapter(sandbox, wire) as provider:
        ucs2 = await provider.send(SLOVAK)
        gsm = await provider.send(MESSAGE._replace(sender="ACME"))
    assert ucs2.outcome is Outcome.ACCEPTED and gsm.outcome is Outcome.ACCEPTED
    assert [(e.message_id, e.segments) for e in sandbox.ledger] == [
        (ucs2.provider_message_id, ucs2.segments), (gsm.provider_message_id, gsm.segments)]
    assert [(e.recipient, e.text, e.sender) for e in sandbox.ledger] == [
        ("421900123456", SLOVAK.text, None), ("421900123456", "Hello", "ACME")]
    sends = [body for path, body in wire.requests if path.endswith("/send_message")]
    assert [(b["unicode"], "from" in b) for b in sends] == [(True, False), (False, True)]


async def test_concurrent_sends_authenticate_once(sandbox: Sandbox) -> None:
    """Many sends starting together share one lazily created session."""
    wire = Recording()
    async with adapter(sandbox, wire) as provider, anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(provider.send, MESSAGE)
    assert wire.count("auth") == 1
    assert len(sandbox.ledger) == 20


async def test_expired_session_is_renewed_and_billed_once(sandbox: Sandbox) -> None:
    """After the provider forgets the session, the refused send re-authenticates and succeeds."""
    wire = Recording()
    async with adapter(sandbox, wire) as provider:
        assert (await provider.send(MESSAGE)).accepted
        sandbox.expire_sessions()
        result = await provider.send(MESSAGE)
    assert result.accepted and result.provider_message_id == sandbox.ledger[1].message_id
    assert (wire.count("auth"), wire.count("send_message"), len(sandbox.ledger)) == (2, 3, 2)


async def test_concurrent_sends_on_an_expired_session_renew_it_once(sandbox: Sandbox) -> None:
    """Every send refused for the same lost session waits for one shared re-authentication."""
    wire = Recording()
    async with adapter(sandbox, wire) as provider:
        await provider.check()
        sandbox.expire_sessions()
        results: list[SendResult] = []

        async def send() -> None:
            results.append(await provider.send(MESSAGE))

        async with anyio.create_task_group() as tasks:
            for _ in range(12):
                tasks.start_soon(send)
    assert all(r.accepted for r in results) and len(sandbox.ledger) == 12
    assert wire.count("auth") == 2 and wire.count("send_message") > 14


@pytest.mark.parametrize(
    ("idle_s", "sends"),
    [
        pytest.param(None, 3, id="refused-then-renewed"),
        pytest.param(0.1, 2, id="renewed-before-use"),
    ],
)
async def test_idle_session_past_its_lifetime_is_renewed(idle_s: float | None,
                                                         sends: int) -> None:
    """A session idle past the provider's TTL is renewed: after a refusal, or before use."""
    wire = Recording()
    async with running_sandbox(fast_settings(session_ttl_s=0.2)) as sandbox:
        async with adapter(sandbox, wire, session_idle_s=idle_s) as provider:
            assert (await provider.send(MESSAGE)).accepted
            await anyio.sleep(0.3)
            assert (await provider.send(MESSAGE)).accepted
        assert len(sandbox.ledger) == 2
    assert (wire.count("auth"), wire.count("send_message")) == (2, sends)


async def test_wrong_token_refuses_the_account_with_one_auth(sandbox: Sandbox) -> None:
    """A refused token is REFUSED_ACCOUNT for every queued send, asked once; check() says why."""
    wire = Recording()
    results: list[SendResult] = []

    async def send(provider: Telekom) -> None:
        results.append(await provider.send(MESSAGE))

    async with adapter(sandbox, wire, token="wrong-token-123") as provider:
        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(send, provider)
        readiness = await provider.check()
    assert {(r.outcome, r.code) for r in results} == {(Outcome.REFUSED_ACCOUNT, "INVALID_TOKEN")}
    assert wire.count("auth") == 2 and wire.count("send_message") == 0
    assert not readiness.ok and "token refused" in readiness.problems[0]
    assert all("wrong-token-123" not in r.detail for r in results)
    assert sandbox.ledger == []


async def test_ip_not_allowed_refuses_the_account(sandbox: Sandbox) -> None:
    """IP_NOT_ALLOWED (a suspended account) stops the lane, at /auth or at a send."""
    async with adapter(sandbox) as provider:
        await provider.check()
        sandbox.suspend("telekom")
        at_send = await provider.send(MESSAGE)
    async with adapter(sandbox) as provider:
        at_auth = await provider.send(MESSAGE)
        readiness = await provider.check()
    assert (at_send.outcome, at_send.code) == (Outcome.REFUSED_ACCOUNT, "IP_NOT_ALLOWED")
    assert (at_auth.outcome, at_auth.code) == (Outcome.REFUSED_ACCOUNT, "IP_NOT_ALLOWED")
    assert not readiness.ok and "IP address is not allowed" in readiness.problems[0]
    assert sandbox.ledger == []


async def test_base_url_may_include_the_documented_json_path(sandbox: Sandbox) -> None:
    """``…/json`` as configured in the document's form is not doubled."""
    async with Telekom(CONFIG, base_url=sandbox.base_url("telekom") + "/json/") as provider:
        assert (await provider.send(MESSAGE)).accepted


async def test_unpriced_destination_may_fail_over(sandbox: Sandbox) -> None:
    """A destination without a route is refused with try_other_route."""
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE._replace(to="+15551234567"))
    assert (result.outcome, result.code, result.try_other_route) == (
        Outcome.REFUSED_MESSAGE, "NO_ROUTE", True)


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        pytest.param(Faults(throttle_every=1, retry_after_s=2.5), Outcome.THROTTLED, id="429"),
        pytest.param(Faults(error_every=1, error_status=503), Outcome.NOT_PROCESSED, id="503"),
        pytest.param(Faults(error_every=1, error_status=500), Outcome.UNKNOWN, id="500"),
        pytest.param(Faults(error_every=1, error_status=504), Outcome.UNKNOWN, id="504"),
        pytest.param(Faults(drop_after_accept_every=1), Outcome.UNKNOWN, id="dropped"),
        pytest.param(Faults(reset_before_every=1), Outcome.UNKNOWN, id="reset"),
    ],
)
async def test_each_send_failure_is_classified(sandbox: Sandbox, faults: Faults,
                                               outcome: Outcome) -> None:
    """With a live session, throttles, 5xx and dropped connections map to the next step."""
    async with adapter(sandbox) as provider:
        assert (await provider.check()).ok
        sandbox.set_faults("telekom", faults)
        result = await provider.send(MESSAGE)
    assert result.outcome is outcome, result
    if outcome is Outcome.THROTTLED:
        assert result.retry_after_s == 2.5


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [
        pytest.param(Faults(throttle_every=1, retry_after_s=0.5), Outcome.THROTTLED, id="429"),
        pytest.param(Faults(error_every=1, error_status=500), Outcome.NOT_PROCESSED, id="500"),
        pytest.param(Faults(reset_before_every=1), Outcome.NOT_PROCESSED, id="reset"),
    ],
)
async def test_failed_auth_leaves_the_message_unsent(sandbox: Sandbox, faults: Faults,
                                                     outcome: Outcome) -> None:
    """A send that could not authenticate never went out: never UNKNOWN, never billed."""
    sandbox.set_faults("telekom", faults)
    async with adapter(sandbox) as provider:
        result = await provider.send(MESSAGE)
    assert result.outcome is outcome and result.detail.startswith("auth: ")
    assert sandbox.ledger == []


async def test_nothing_listening_is_not_processed() -> None:
    """Connection refused means the request never left: safe to retry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Telekom(CONFIG, base_url=f"http://127.0.0.1:{port}") as provider:
        assert (await provider.send(MESSAGE)).outcome is Outcome.NOT_PROCESSED
        assert not (await provider.check()).ok


@pytest.mark.parametrize(
    ("share", "state"),
    [pytest.param(0.0, "delivered", id="delivered"),
     pytest.param(1.0, "undelivered", id="undelivered")],
)
async def test_poll_reads_the_final_state(sandbox: Sandbox, share: float, state: str) -> None:
    """check_message per id reaches the final state; an id the provider does not know is left
    out."""
    sandbox.set_faults("telekom", Faults(undelivered_share=share))
    async with adapter(sandbox) as provider:
        ids = [(await provider.send(MESSAGE)).provider_message_id or "" for _ in range(3)]
        statuses: list[DeliveryStatus] = []

        async def final() -> bool:
            statuses[:] = await provider.poll([*ids, "1"])
            return all(s.final for s in statuses)

        await eventually(final)
        assert await provider.fetch_rates() == []
        assert await provider.lookup(MESSAGE, datetime.now(UTC)) is None
    assert [s.provider_message_id for s in statuses] == ids
    assert {s.state for s in statuses} == {state}
    assert all((s.at is not None) == (state == "delivered") for s in statuses)


def answer(status: int, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, request=httpx.Request("POST", "http://x"))


OK = {"status": "success", "description": "", "code": "OK"}


def error(code: str, description: str = "no") -> dict[str, Any]:
    return {"result": {"status": "error", "description": description, "code": code}}


def accepted(**message: Any) -> dict[str, Any]:
    first = {"status": "success", "code": "OK", "description": "", "message_id": 100427,
             "parts": 1, **message}
    return {"result": OK, "message_count": 1, "messages": [first]}


@pytest.mark.parametrize(
    ("status", "body", "outcome", "other_route"),
    [
        pytest.param(200, accepted(), Outcome.ACCEPTED, False, id="accepted"),
        pytest.param(200, error("INVALID_NUMBER"), Outcome.REFUSED_MESSAGE, True,
                     id="error-envelope-number"),
        pytest.param(200, error("INVALID_PARAMETER"), Outcome.REFUSED_MESSAGE, False,
                     id="error-envelope-parameter"),
        pytest.param(200, error("IP_NOT_ALLOWED"), Outcome.REFUSED_ACCOUNT, False,
                     id="error-envelope-ip"),
        pytest.param(200, error("SESSION_NOT_FOUND"), Outcome.NOT_PROCESSED, False,
                     id="session-still-lost"),
        pytest.param(200, error("INTERNAL_ERROR"), Outcome.UNKNOWN, False,
                     id="internal-error-in-200"),
        pytest.param(200, accepted(status="error", code="NO_ROUTE", message_id=None),
                     Outcome.REFUSED_MESSAGE, True, id="per-message-error"),
        pytest.param(200, b'{"result": {"status": "success"}, "messages": [{"message_id": 1',
                     Outcome.UNKNOWN, False, id="truncated-json"),
        pytest.param(200, accepted(message_id={"id": 1}), Outcome.UNKNOWN, False,
                     id="message-id-a-dict"),
        pytest.param(200, {"result": OK, "messages": {"message_id": 1}}, Outcome.UNKNOWN,
                     False, id="messages-not-a-list"),
        pytest.param(200, {"message_id": 1}, Outcome.UNKNOWN, False, id="no-result"),
        pytest.param(200, b"<html>gateway</html>", Outcome.UNKNOWN, False, id="html-success"),
        pytest.param(429, error("TOO_MANY_REQUESTS"), Outcome.THROTTLED, False, id="429"),
        pytest.param(502, b"", Outcome.UNKNOWN, False, id="502-empty"),
    ],
)
def test_send_answers_are_parsed_defensively(status: int, body: object, outcome: Outcome,
                                             other_route: bool) -> None:
    """Only a success envelope with a readable message id counts as accepted."""
    result = parse_send(answer(status, body))
    assert (result.outcome, result.try_other_route) == (outcome, other_route), result
    if outcome is Outcome.ACCEPTED:
        assert (result.provider_message_id, result.segments) == ("100427", 1)


def test_details_never_hold_a_credential() -> None:
    """A provider description echoing the token or session is redacted."""
    result = parse_send(answer(200, error("INVALID_TOKEN", "token sekret-token-1 is bad")),
                        secrets=("sekret-token-1",))
    assert result.outcome is Outcome.REFUSED_ACCOUNT and "sekret" not in result.detail


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        pytest.param(200, error("INVALID_TOKEN"), Outcome.REFUSED_ACCOUNT, id="token"),
        pytest.param(200, error("MISSING_PARAMETER"), Outcome.REFUSED_ACCOUNT, id="no-token"),
        pytest.param(500, error("INTERNAL_ERROR"), Outcome.NOT_PROCESSED, id="500"),
        pytest.param(200, b'{"result": {"status": "succ', Outcome.NOT_PROCESSED, id="truncated"),
        pytest.param(200, {"result": OK, "session_id": 7}, Outcome.NOT_PROCESSED,
                     id="session-id-not-a-string"),
        pytest.param(429, error("TOO_MANY_REQUESTS"), Outcome.THROTTLED, id="429"),
    ],
)
def test_auth_failures_mean_the_message_was_not_sent(status: int, body: object,
                                                     outcome: Outcome) -> None:
    """A failed /auth is never UNKNOWN, and any refusal of it is the account's."""
    result = parse_auth(answer(status, body))
    assert isinstance(result, SendResult) and result.outcome is outcome


def test_auth_answer_gives_the_session_and_lost_sessions_are_recognised() -> None:
    """/auth success yields session_id; SESSION_NOT_FOUND in a 200 body is a lost session."""
    assert parse_auth(answer(200, {"result": OK, "session_id": "a1d"})) == "a1d"
    assert session_lost(answer(200, error("SESSION_NOT_FOUND")))
    assert not session_lost(answer(200, error("INVALID_TOKEN")))
    assert not session_lost(answer(200, b"{"))


@pytest.mark.parametrize(
    ("code", "when", "state", "final"),
    [
        pytest.param("DELIVERED", "2017-01-01 10:45:00", "delivered", True, id="delivered"),
        pytest.param("SENT", "", "accepted", False, id="sent"),
        pytest.param("ERROR", "", "unknown", False, id="error-is-still-retried"),
        pytest.param("UNDELIVERABLE", "", "undelivered", True, id="undeliverable"),
        pytest.param("EXPIRED", "garbage", "expired", True, id="bad-time-ignored"),
    ],
)
def test_check_answers_map_to_delivery_states(code: str, when: str, state: str,
                                              final: bool) -> None:
    """``code`` goes through the shared vocabulary; deliveryDateTime becomes an aware time."""
    body = {"result": OK, "message_id": "154786", "status": code.title(), "code": code,
            "deliveryDateTime": when}
    status = parse_check("154786", answer(200, body))
    assert isinstance(status, DeliveryStatus)
    assert (status.state, status.final, status.provider_status) == (state, final, code)
    expected = datetime(2017, 1, 1, 10, 45, tzinfo=UTC) if code == "DELIVERED" else None
    assert status.at == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(error("MESSAGE_NOT_FOUND"), id="not-found"),
        pytest.param({"result": OK, "code": 5}, id="code-of-wrong-type"),
        pytest.param(b"[]", id="not-an-object"),
    ],
)
def test_unreadable_check_answers_give_no_status(body: object) -> None:
    """A check without a readable code is a failure, never a guessed state."""
    assert isinstance(parse_check("1", answer(200, body)), SendResult)
