"""The sandbox's state file over real HTTP: what one sandbox billed, a later one knows."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_fixtures import SKY, SKYNOO, SMSVOIP, eventually, fast_settings, receiving

from engine.errors import ConfigError
from engine.sandbox import DEFAULT_CREDENTIALS, Faults, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

SKYNOO_API = "/api/sms/v1"


async def skynoo(sandbox: Sandbox, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=sandbox.base_url("skynoo"), headers=SKYNOO) as c:
        response = await c.post(SKYNOO_API + path, json=body)
    assert response.status_code == 200 and response.json()["code"] == "200"
    return response.json()["data"]


async def sky_send(sandbox: Sandbox, text: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sandbox.base_url("skytelecom"), headers=SKY) as c:
        response = await c.post("/sms/send", json={"to": "12025550123", "message": text})
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def failing_half(**overrides: Any) -> dict[str, Any]:
    """Accounts whose every provider fails half the messages."""
    return {kind: replace(account, faults=Faults(undelivered_share=0.5))
            for kind, account in DEFAULT_CREDENTIALS.items()} | overrides


async def test_a_restarted_sandbox_answers_about_what_the_first_billed(tmp_path: Path) -> None:
    """Statuses, batches, the wallet and the id counter outlive the sandbox that billed."""
    state = tmp_path / "sandbox.db"
    settings = fast_settings(state_path=state, accounts=failing_half())
    texts = [f"spring sale {n}" for n in range(12)]
    async with running_sandbox(settings) as first:
        ids = [(await skynoo(first, "/send", {"mobile": "+15551234567", "useType": 2,
                                               "text": t}))["id"] for t in texts]
        task = (await skynoo(first, "/batch/create", {"useType": 2, "content": "batch",
                                                      "numbers": ["+15551230001"]}))["taskId"]
        sky = await sky_send(first, "hello")
        decided = {i: first.delivered("skynoo", i) for i in ids}

        async def final() -> bool:
            data = await skynoo(first, "/getStatus", {"ids": ids})
            return all(row["status"] != "SEND" for row in data)

        await eventually(final)
        before = await skynoo(first, "/getStatus", {"ids": ids})

    async with running_sandbox(settings) as second:
        assert await skynoo(second, "/getStatus", {"ids": ids}) == before
        assert {i: second.delivered("skynoo", i) for i in ids} == decided
        assert set(decided.values()) == {True, False}
        assert (await skynoo(second, "/batch/status", {"taskId": task}))["taskId"] == task
        assert second.wallet == Decimal(str(sky["wallet_balance"]))
        again = await sky_send(second, "hello again")
        assert again["messages"][0]["id"] > sky["messages"][0]["id"]
        assert Decimal(str(again["wallet_balance"])) < Decimal(str(sky["wallet_balance"]))


async def test_reports_owed_are_posted_to_the_next_sandboxs_callback(tmp_path: Path) -> None:
    """A report nobody acknowledged is posted by the next sandbox on the same state file, to
    the account's callback URL it has then; an acknowledged one is not posted again."""
    state = tmp_path / "sandbox.db"
    async with receiving() as refusing, receiving() as later:
        refusing.status = 503
        async with running_sandbox(fast_settings(state_path=state)) as first:
            async with httpx.AsyncClient(base_url=first.base_url("smsvoip"),
                                         headers=SMSVOIP) as c:
                sent = await c.post("/sms/send", json={"to": "+15551234567", "text": "Hi",
                                                       "callback_url": refusing.url + "/x"})
            await refusing.wait_for(3)  # every attempt refused: the report is dropped
        account = replace(DEFAULT_CREDENTIALS["smsvoip"], callback_url=later.url + "/dlr")
        settings = fast_settings(state_path=state, accounts={"smsvoip": account})
        async with running_sandbox(settings) as second:
            (post,) = await later.wait_for(1)
            assert await second.reports_settled(5.0)
        assert post.path == "/dlr" and sent.json()["message_id"].encode() in post.body
        async with running_sandbox(settings) as third:
            assert await third.reports_settled(5.0)
        assert len(later.posts) == 1


async def test_a_message_fails_or_not_whatever_order_it_is_sent_in() -> None:
    """The same messages in another order, in another sandbox, end the same way."""
    settings = fast_settings(accounts=failing_half())
    numbers = [f"+1555123{n:04d}" for n in range(20)]
    outcomes = []
    for order in (numbers, numbers[::-1]):
        async with running_sandbox(settings) as sandbox:
            found = {}
            for number in order:
                sent = await skynoo(sandbox, "/send", {"mobile": number, "useType": 2,
                                                       "text": "Hi"})
                found[number] = sandbox.delivered("skynoo", sent["id"])
            outcomes.append(found)
    assert outcomes[0] == outcomes[1] and set(outcomes[0].values()) == {True, False}


async def test_two_sandboxes_on_one_state_file_hand_out_different_ids(tmp_path: Path) -> None:
    """Two processes' sandboxes at once on one file never give two messages one id."""
    settings = fast_settings(state_path=tmp_path / "sandbox.db")
    async with running_sandbox(settings) as one, running_sandbox(settings) as two:
        first = {(await sky_send(one, f"a{n}"))["messages"][0]["id"] for n in range(5)}
        second = {(await sky_send(two, f"b{n}"))["messages"][0]["id"] for n in range(5)}
    assert len(first | second) == 10


async def test_a_state_file_that_is_not_sqlite_is_named(tmp_path: Path) -> None:
    """A broken state file is a ConfigError (exit 2) naming the file and what to do."""
    state = tmp_path / "sandbox.db"
    state.write_bytes(b"garbage" * 200)
    with pytest.raises(ConfigError, match=r"sandbox\.db: cannot use it as the sandbox's state"):
        async with running_sandbox(fast_settings(state_path=state)):
            pass


async def test_a_same_key_resend_to_a_restarted_sandbox_is_billed_once(
        tmp_path: Path) -> None:
    """A resend under the same Idempotency-Key after the sending process died (a new
    sandbox on the same state file) gets the first answer back and is not billed again;
    the same key with another body is still refused."""
    state = tmp_path / "sandbox.db"
    settings = fast_settings(state_path=state)
    body = {"to": "+421912345678", "text": "spring sale"}
    key = {"Idempotency-Key": "spring-sale-7"}

    async def send(sandbox: Sandbox, payload: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=sandbox.base_url("smsvoip"),
                                     headers={**SMSVOIP, **key}) as c:
            return await c.post("/sms/send", json=payload)

    async with running_sandbox(settings) as first:
        answer = await send(first, body)
        assert answer.status_code == 200
    async with running_sandbox(settings) as second:
        again = await send(second, body)
        other = await send(second, {**body, "text": "another text"})
        billed = [e for e in second.ledger if e.provider == "smsvoip"]
    assert (again.status_code, again.json()) == (200, answer.json())
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert billed == []
