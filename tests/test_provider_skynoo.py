"""The Skynoo adapter against the sandbox over real HTTP, and its parsing and task planning."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from typing import Any

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport
from sandbox_fixtures import eventually

from engine.config import ProviderConfig
from engine.providers.base import OutboundMessage, Outcome
from engine.providers.skynoo import (
    MAX_TEXT_CHARS,
    Skynoo,
    parse_create,
    parse_detail,
    parse_send,
    parse_statuses,
    plan_tasks,
    task_result,
)
from engine.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio

CONFIG = ProviderConfig(name="skynoo", kind="skynoo", base_url="sandbox",
                        api_key="app_sandbox", api_secret="sec_sandbox", concurrency=4)
API = "/api/sms/v1"
TEMPLATE = "Hi {name}, code {code}"
UNPRICED = "+420777888999"


def sms(to: str, text: str = "Spring sale today", **changes: Any) -> OutboundMessage:
    message = OutboundMessage(key=f"c1-{to}", to=to, text=text, sender="ACME",
                              encoding="GSM-7", segments=1)
    return message._replace(**changes)


def personal(to: str, name: str, code: str, template: str = TEMPLATE) -> OutboundMessage:
    variables = {"name": name, "code": code}
    return sms(to, template.format(**variables), template=template, variables=variables)


class Recording(httpx.AsyncBaseTransport):
    """The real transport, noting each request's API path and JSON body."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.requests: list[tuple[str, Any]] = []

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.requests if p == path]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/skynoo").removeprefix(API)
        self.requests.append((path, json.loads(request.content)))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()



@pytest.fixture
def wire() -> Recording:
    return Recording()


def adapter(sandbox: Sandbox, wire: Recording | None = None, **changes: Any) -> Skynoo:
    return Skynoo(replace(CONFIG, **changes), base_url=sandbox.base_url("skynoo"),
                  transport=wire)


async def test_send_is_accepted_with_the_provider_id(sandbox: Sandbox, wire: Recording) -> None:
    """A single send is ACCEPTED with the sandbox's id; mobile keeps its ``+``; useType 3."""
    async with adapter(sandbox, wire) as provider:
        result = await provider.send(sms("+15551234567"))
    assert result.outcome is Outcome.ACCEPTED
    assert [(e.message_id, e.recipient, e.text) for e in sandbox.ledger] == [
        (result.provider_message_id, "+15551234567", "Spring sale today")]
    assert wire.bodies("/send") == [
        {"mobile": "+15551234567", "useType": 3, "text": "Spring sale today"}]


async def test_personalised_batch_is_one_task_with_each_number_variables(
        sandbox: Sandbox, wire: Recording) -> None:
    """One template becomes one ``#var#`` task; every message gets its own record id."""
    batch = [personal("+15551230001", "Ann", "111"), personal("+447700900123", "Bob", "222"),
             personal("+15551230003", "Cy", "333")]
    async with adapter(sandbox, wire) as provider:
        results = await provider.send_batch(batch)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3
    (create,) = wire.bodies("/batch/create")
    assert create["content"] == "Hi #name#, code #code#"
    assert create["templateData"]["+447700900123"] == {"name": "Bob", "code": "222"}
    by_id = {e.message_id: (e.recipient, e.text) for e in sandbox.ledger}
    assert [by_id[r.provider_message_id or ""] for r in results] == [
        ("+15551230001", "Hi Ann, code 111"), ("+447700900123", "Hi Bob, code 222"),
        ("+15551230003", "Hi Cy, code 333")]


async def test_batch_without_templates_is_grouped_by_text(
        sandbox: Sandbox, wire: Recording) -> None:
    """Identical texts share a task without templateData; a lone text goes through /send."""
    batch = [sms("+15551230001", "A"), sms("+15551230002", "B"), sms("+15551230003", "A"),
             sms("+15551230004", "C"), sms("+15551230005", "B")]
    async with adapter(sandbox, wire) as provider:
        results = await provider.send_batch(batch)
    assert all(r.accepted for r in results) and len({r.provider_message_id for r in results}) == 5
    creates = wire.bodies("/batch/create")
    assert [(c["content"], c["numbers"]) for c in creates] == [
        ("A", ["+15551230001", "+15551230003"]), ("B", ["+15551230002", "+15551230005"])]
    assert all("templateData" not in c for c in creates)
    assert [b["text"] for b in wire.bodies("/send")] == ["C"]
    assert sorted((e.recipient, e.text) for e in sandbox.ledger) == sorted(
        (m.to, m.text) for m in batch)


async def test_duplicate_number_goes_to_a_second_task(sandbox: Sandbox, wire: Recording) -> None:
    """A number twice in one batch is sent in two tasks, and both are billed."""
    batch = [personal("+15551230001", "Ann", "1"), personal("+15551230002", "Bob", "2"),
             personal("+15551230001", "Ann", "3"), personal("+15551230002", "Bob", "4")]
    async with adapter(sandbox, wire) as provider:
        results = await provider.send_batch(batch)
    assert all(r.accepted for r in results) and len({r.provider_message_id for r in results}) == 4
    assert [c["numbers"] for c in wire.bodies("/batch/create")] == [
        ["+15551230001", "+15551230002"]] * 2
    assert sorted(e.text for e in sandbox.ledger) == [
        "Hi Ann, code 1", "Hi Ann, code 3", "Hi Bob, code 2", "Hi Bob, code 4"]


async def test_template_breaking_the_variable_rules_is_sent_by_text(
        sandbox: Sandbox, wire: Recording) -> None:
    """A variable name of 24 characters cannot be ``#var#``: the texts are sent as they are."""
    long_name = "n" * 24
    template = f"Hello {{{long_name}}}"
    batch = [sms(to, f"Hello {to}", template=template, variables={long_name: to})
             for to in ("+15551230001", "+15551230002")]
    async with adapter(sandbox, wire) as provider:
        results = await provider.send_batch(batch)
    assert all(r.accepted for r in results)
    assert wire.bodies("/batch/create") == []
    assert sorted(e.text for e in sandbox.ledger) == ["Hello +15551230001", "Hello +15551230002"]


async def test_wrong_secret_refuses_the_account(sandbox: Sandbox) -> None:
    """Code "401" inside HTTP 200 is REFUSED_ACCOUNT for a send and every batch message."""
    async with adapter(sandbox, api_secret="sec_wrong") as provider:
        single = await provider.send(sms("+15551234567"))
        batch = await provider.send_batch([sms("+15551230001"), sms("+15551230002")])
    assert (single.outcome, single.code) == (Outcome.REFUSED_ACCOUNT, "401")
    assert [r.outcome for r in batch] == [Outcome.REFUSED_ACCOUNT] * 2
    assert "sec_wrong" not in single.detail and sandbox.ledger == []


async def test_suspended_account_is_refused(sandbox: Sandbox) -> None:
    """A suspended account (code "403") stops the lane: REFUSED_ACCOUNT, nothing billed."""
    sandbox.suspend("skynoo")
    async with adapter(sandbox) as provider:
        single = await provider.send(sms("+15551234567"))
        batch = await provider.send_batch([sms("+15551230001"), sms("+15551230002")])
    assert (single.outcome, single.code) == (Outcome.REFUSED_ACCOUNT, "403")
    assert [r.outcome for r in batch] == [Outcome.REFUSED_ACCOUNT] * 2
    assert sandbox.ledger == []


async def test_unpriced_destination_may_fail_over(sandbox: Sandbox) -> None:
    """Code "400" about the destination is REFUSED_MESSAGE with try_other_route."""
    async with adapter(sandbox) as provider:
        result = await provider.send(sms(UNPRICED))
    assert (result.outcome, result.code) == (Outcome.REFUSED_MESSAGE, "400")
    assert result.try_other_route and "Destination" in result.detail


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("【ACME】 sale", id="forbidden-symbol"),
        pytest.param("Go → shop", id="arrow"),
        pytest.param("x" * (MAX_TEXT_CHARS + 1), id="too-long"),
    ],
)
async def test_text_the_provider_refuses_is_refused_locally(
        sandbox: Sandbox, wire: Recording, text: str) -> None:
    """Forbidden symbols and over 460 characters never leave: REFUSED_MESSAGE, no request."""
    async with adapter(sandbox, wire) as provider:
        single = await provider.send(sms("+15551234567", text))
        batch = await provider.send_batch([sms("+15551230001", text), sms("+15551230002", text),
                                           sms("+15551230003", "fine")])
    for result in (single, *batch[:2]):
        assert result.outcome is Outcome.REFUSED_MESSAGE and result.try_other_route
    assert batch[2].accepted
    assert wire.paths() == ["/send"] and [e.text for e in sandbox.ledger] == ["fine"]


FAULTS = [
    pytest.param(Faults(throttle_every=1, retry_after_s=2.5), Outcome.THROTTLED, id="429"),
    pytest.param(Faults(error_every=1, error_status=503), Outcome.NOT_PROCESSED, id="503"),
    pytest.param(Faults(error_every=1, error_status=500), Outcome.UNKNOWN, id="500"),
    pytest.param(Faults(drop_after_accept_every=1), Outcome.UNKNOWN, id="dropped"),
    pytest.param(Faults(reset_before_every=1), Outcome.UNKNOWN, id="reset"),
]


@pytest.mark.parametrize(("faults", "outcome"), FAULTS)
async def test_each_send_failure_is_classified(sandbox: Sandbox, faults: Faults,
                                               outcome: Outcome) -> None:
    """Throttles, 5xx and dropped connections on /send map to what the dispatcher does next."""
    sandbox.set_faults("skynoo", faults)
    async with adapter(sandbox) as provider:
        result = await provider.send(sms("+15551234567"))
    assert result.outcome is outcome, result
    if outcome is Outcome.THROTTLED:
        assert result.retry_after_s == 2.5


@pytest.mark.parametrize(("faults", "outcome"), FAULTS)
async def test_each_batch_create_failure_reaches_every_message(
        sandbox: Sandbox, faults: Faults, outcome: Outcome) -> None:
    """A failed ``batch/create`` gives each of its messages that one classified outcome."""
    sandbox.set_faults("skynoo", faults)
    async with adapter(sandbox) as provider:
        results = await provider.send_batch([sms("+15551230001"), sms("+15551230002")])
    assert results[0] is results[1] and results[0].outcome is outcome, results
    if outcome is Outcome.THROTTLED:
        assert results[0].retry_after_s == 2.5


async def test_failure_of_unknown_outcome_stops_later_tasks(
        sandbox: Sandbox, wire: Recording) -> None:
    """After a task's answer is lost, the batch's other tasks are not sent: NOT_PROCESSED."""
    sandbox.set_faults("skynoo", Faults(error_every=1, error_status=500))
    batch = [sms("+15551230001", "A"), sms("+15551230002", "A"),
             sms("+15551230003", "B"), sms("+15551230004", "B")]
    async with adapter(sandbox, wire) as provider:
        results = await provider.send_batch(batch)
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 2 + [Outcome.NOT_PROCESSED] * 2
    assert wire.paths() == ["/batch/create"]


async def test_nothing_listening_is_not_processed() -> None:
    """Connection refused means nothing left: NOT_PROCESSED, and check() says unreachable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Skynoo(CONFIG, base_url=f"http://127.0.0.1:{port}") as provider:
        assert (await provider.send(sms("+15551234567"))).outcome is Outcome.NOT_PROCESSED
        readiness = await provider.check()
    assert not readiness.ok and readiness.problems[0].startswith("unreachable")


async def test_check_authenticates_without_sending(sandbox: Sandbox) -> None:
    """check() is ok with the right credentials, names the refusal otherwise; bills nothing."""
    async with adapter(sandbox) as provider:
        assert (await provider.check()).ok
    async with adapter(sandbox, api_secret="sec_wrong") as provider:
        wrong = await provider.check()
    sandbox.suspend("skynoo")
    async with adapter(sandbox) as provider:
        suspended = await provider.check()
    assert not wrong.ok and "key or secret refused" in wrong.problems[0]
    assert "sec_wrong" not in wrong.problems[0]
    assert not suspended.ok and "account refused (code 403)" in suspended.problems[0]
    assert sandbox.ledger == []


@pytest.mark.parametrize(
    ("undelivered_share", "state", "reason"),
    [
        pytest.param(0.0, "delivered", "", id="delivered"),
        pytest.param(1.0, "undelivered", "E66", id="undelivered"),
    ],
)
async def test_poll_reads_single_and_batch_ids(sandbox: Sandbox, undelivered_share: float,
                                               state: str, reason: str) -> None:
    """Ids from /send and from batch detail end in the sandbox's final state and errorCode."""
    sandbox.set_faults("skynoo", Faults(undelivered_share=undelivered_share))
    async with adapter(sandbox) as provider:
        single = await provider.send(sms("+15551234567"))
        batch = await provider.send_batch([personal("+15551230001", "Ann", "1"),
                                           personal("+15551230002", "Bob", "2")])
        ids = [r.provider_message_id or "" for r in (single, *batch)]

        async def final() -> bool:
            return all(s.final for s in await provider.poll(ids))

        await eventually(final)
        statuses = await provider.poll(ids)
    assert sorted(s.provider_message_id for s in statuses) == sorted(ids)
    assert {(s.state, s.reason) for s in statuses} == {(state, reason)}


async def test_poll_asks_at_most_100_ids_per_request(sandbox: Sandbox, wire: Recording) -> None:
    """150 ids from one task are polled in two getStatus requests, and all are answered."""
    batch = [personal(f"+1555123{n:04d}", f"N{n}", str(n)) for n in range(150)]
    async with adapter(sandbox, wire) as provider:
        results = await provider.send_batch(batch)
        ids = [r.provider_message_id or "" for r in results]
        assert len(wire.bodies("/batch/create")) == 1 and len(set(ids)) == 150
        assert [b["pageNo"] for b in wire.bodies("/batch/detail")] == [1, 2]

        async def delivered() -> bool:
            return [s.state for s in await provider.poll(ids)] == ["delivered"] * 150

        await eventually(delivered)
    assert {len(b["ids"]) for b in wire.bodies("/getStatus")} == {100, 50}


async def test_ids_not_read_in_time_are_task_ids_that_poll_resolves(sandbox: Sandbox) -> None:
    """When the task cannot be read within the wait, ``task:<id>:<number>`` ids stand in."""
    sandbox.set_faults("skynoo", Faults(rate_limit=(1, 60.0)))
    batch = [personal("+15551230001", "Ann", "1"), personal("+15551230002", "Bob", "2")]
    async with adapter(sandbox) as provider:
        results = await provider.send_batch(batch)
        ids = [r.provider_message_id or "" for r in results]
        assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
        assert ids[0].startswith("task:") and ids[0].endswith(":+15551230001")
        sandbox.set_faults("skynoo", Faults())

        async def delivered() -> bool:
            statuses = await provider.poll(ids)
            return sorted((s.provider_message_id, s.state) for s in statuses) == sorted(
                (i, "delivered") for i in ids)

        await eventually(delivered)
    assert len(sandbox.ledger) == 2


async def test_batch_waits_for_a_pending_task_and_reads_refused_records() -> None:
    """A pending task is asked again until its detail lists every number; REJECTED refuses."""
    asked: list[str] = []
    statuses = iter(["pending", "executing", "executing"])
    details = iter([
        [{"id": "r1", "toNumber": "+15551230001", "status": "SEND"}],
        [{"id": "r1", "toNumber": "+15551230001", "status": "SEND"},
         {"id": "r2", "toNumber": "+15551230002", "status": "REJECTED", "errorCode": "BLOCKED"}],
    ])

    def provider_side(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(API)
        asked.append(path)
        data: Any = {"taskId": 7, "status": "pending"}
        if path == "/batch/status":
            data = {"taskId": 7, "status": next(statuses)}
        elif path == "/batch/detail":
            data = {"records": next(details), "total": 2, "pageNo": 1, "pageSize": 100}
        return httpx.Response(200, json={"code": "200", "message": "ok", "data": data})

    async with Skynoo(CONFIG, base_url="http://skynoo.test",
                      transport=httpx.MockTransport(provider_side)) as provider:
        ok, refused = await provider.send_batch([sms("+15551230001"), sms("+15551230002")])
    assert asked == ["/batch/create", "/batch/status", "/batch/status", "/batch/detail",
                     "/batch/status", "/batch/detail"]
    assert (ok.outcome, ok.provider_message_id) == (Outcome.ACCEPTED, "r1")
    assert (refused.outcome, refused.code, refused.provider_message_id) == (
        Outcome.REFUSED_MESSAGE, "BLOCKED", "r2")


def answer(status: int, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers,
                          request=httpx.Request("POST", "http://x"))


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code"),
    [
        pytest.param(200, b'{"code": "200", "message": "ok", "data": {"id": "ab12"}}',
                     Outcome.ACCEPTED, "200", id="accepted"),
        pytest.param(200, b'{"code": 200, "message": "ok", "data": {"id": "ab12"}}',
                     Outcome.ACCEPTED, "200", id="numeric-code-200"),
        pytest.param(200, b'{"code": 401, "message": "bad"}', Outcome.REFUSED_ACCOUNT, "401",
                     id="numeric-code-401"),
        pytest.param(200, b'{"code": "400", "message": "Invalid mobile"}',
                     Outcome.REFUSED_MESSAGE, "400", id="400-in-http-200"),
        pytest.param(200, b'{"code": "403", "message": "Account is disabled"}',
                     Outcome.REFUSED_ACCOUNT, "403", id="403-in-http-200"),
        pytest.param(200, b'{"code": "429"}', Outcome.THROTTLED, "429", id="429-in-http-200"),
        pytest.param(200, b'{"code": "503"}', Outcome.NOT_PROCESSED, "503", id="503-in-http-200"),
        pytest.param(200, b'{"code": "500"}', Outcome.UNKNOWN, "500", id="500-in-http-200"),
        pytest.param(200, b'{"code": "200", "data": {"id": "ab', Outcome.UNKNOWN, "200",
                     id="truncated-json"),
        pytest.param(200, b'{"code": "200", "data": ["ab12"]}', Outcome.UNKNOWN, "200",
                     id="data-is-a-list"),
        pytest.param(200, b'{"code": "200", "data": "ab12"}', Outcome.UNKNOWN, "200",
                     id="data-is-a-string"),
        pytest.param(200, b'{"code": true, "data": {"id": "ab12"}}', Outcome.UNKNOWN, "200",
                     id="code-is-a-bool"),
        pytest.param(200, b'{"code": "E_BUSY"}', Outcome.UNKNOWN, "E_BUSY", id="code-not-digits"),
        pytest.param(200, b"<html>gateway</html>", Outcome.UNKNOWN, "200", id="html"),
        pytest.param(502, b"", Outcome.UNKNOWN, "502", id="502"),
    ],
)
def test_send_answers_are_parsed_defensively(status: int, body: bytes, outcome: Outcome,
                                             code: str) -> None:
    """Only code "200" with a string id is ACCEPTED; other codes read like HTTP statuses."""
    result = parse_send(answer(status, body))
    assert (result.outcome, result.code) == (outcome, code)
    assert result.try_other_route == (code == "400")


def test_throttle_keeps_retry_after_and_details_never_hold_secrets() -> None:
    """A transport 429 keeps Retry-After; a provider message echoing a secret is redacted."""
    throttled = parse_send(answer(429, b'{"code": "429"}', {"Retry-After": "3"}))
    assert (throttled.outcome, throttled.retry_after_s) == (Outcome.THROTTLED, 3.0)
    refused = parse_send(answer(200, b'{"code": "401", "message": "bad sec_sandbox"}'),
                         secrets=("sec_sandbox",))
    assert refused.detail == "bad ***"


@pytest.mark.parametrize(
    ("body", "task_id"),
    [
        pytest.param(b'{"code": "200", "data": {"taskId": 1001, "status": "pending"}}', "1001",
                     id="number"),
        pytest.param(b'{"code": "200", "data": {"taskId": "1002"}}', "1002", id="digit-string"),
        pytest.param(b'{"code": "200", "data": {"taskId": true}}', None, id="bool"),
        pytest.param(b'{"code": "200", "data": null}', None, id="no-data"),
    ],
)
def test_batch_create_answer_gives_the_task_id(body: bytes, task_id: str | None) -> None:
    """The task id is read from a number or a digit string, anything else is UNKNOWN."""
    result = parse_create(answer(200, body))
    assert result.provider_message_id == task_id
    assert result.outcome is (Outcome.ACCEPTED if task_id else Outcome.UNKNOWN)


def test_detail_records_map_to_outcomes() -> None:
    """FAILED and REJECTED records are refusals; malformed records are left out."""
    body = {"code": "200", "data": {"total": 4, "records": [
        {"id": "r1", "toNumber": "+15551230001", "status": "SEND", "errorCode": ""},
        {"id": "r2", "toNumber": "+15551230002", "status": "REJECTED", "errorCode": "BLOCKED"},
        {"id": 3, "toNumber": "+15551230003", "status": "SEND"},
        "junk"]}}
    page, failed = parse_detail(answer(200, json.dumps(body).encode()))
    assert failed is None and page is not None and page.total == 4
    assert [r.id for r in page.records] == ["r1", "r2"]
    ok, refused = (task_result(1001, r.to_number, r, "executing") for r in page.records)
    assert (ok.outcome, ok.provider_message_id) == (Outcome.ACCEPTED, "r1")
    assert (refused.outcome, refused.code, refused.try_other_route) == (
        Outcome.REFUSED_MESSAGE, "BLOCKED", True)
    assert task_result(1001, "+1555", None, "executing").provider_message_id == "task:1001:+1555"
    assert task_result(1001, "+1555", None, "fail").outcome is Outcome.REFUSED_MESSAGE
    assert parse_detail(answer(200, b'{"code": "200", "data": []}'))[0] is None


@pytest.mark.parametrize(
    ("body", "count"),
    [
        pytest.param(b'{"code": "200", "data": [{"sid": "a", "status": "DELIVERED"}, 7]}', 1,
                     id="list"),
        pytest.param(b'{"code": "200", "data": {"sid": "a", "status": "DELIVERED"}}', 0,
                     id="object-instead-of-list"),
        pytest.param(b'{"code": "200", "data": [', 0, id="truncated"),
    ],
)
def test_status_answers_are_parsed_defensively(body: bytes, count: int) -> None:
    """getStatus entries become statuses; an unexpected data type gives none and a failure."""
    statuses, failed = parse_statuses(answer(200, body))
    assert len(statuses) == count and (failed is None) == (count > 0)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("Hi {name}, {name} again", id="variable-twice"),
        pytest.param("Order #{name}# ready", id="literal-hash"),
        pytest.param("Hi {first name}", id="name-with-space"),
        pytest.param("Hi {name", id="not-a-template"),
    ],
)
def test_templates_outside_the_document_rules_group_by_text(template: str) -> None:
    """A template Skynoo cannot take as ``#var#`` content falls back to one task per text."""
    messages = [sms(to, "same text", template=template,
                    variables={"name": "A", "first name": "A"})
                for to in ("+15551230001", "+15551230002")]
    (plan,) = plan_tasks(enumerate(messages))
    assert (plan.content, plan.variables) == ("same text", None)


def test_variables_that_do_not_render_the_text_group_by_text() -> None:
    """Variables that would not reproduce the message's text are not trusted."""
    messages = [personal("+15551230001", "Ann", "1"),
                personal("+15551230002", "Bob", "2")._replace(text="Hi Robert, code 2")]
    plans = plan_tasks(enumerate(messages))
    assert [(p.content, p.indices) for p in plans] == [
        ("Hi #name#, code #code#", (0,)), ("Hi Robert, code 2", (1,))]

