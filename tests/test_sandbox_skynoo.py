"""Skynoo emulation over real HTTP: Basic auth, single send, batch, status."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sandbox_fixtures import SKYNOO, eventually, fast_settings

from engine.sandbox import DEFAULT_CREDENTIALS, Faults, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

API = "/api/sms/v1"
BATCH = {
    "useType": 2,
    "content": "Your order #order_no# has been shipped.",
    "numbers": ["+15551230001", "+447700900123", "+15551234567"],
    "templateData": {
        "+15551230001": {"order_no": "A001"},
        "+447700900123": {"order_no": "A002"},
        "+15551234567": {"order_no": 3},
    },
}



@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url("skynoo"), headers=SKYNOO) as c:
        yield c


async def call(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(API + path, json=body)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


async def test_send_answers_code_200_with_id(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    """A send answers ``{"code": "200", data: {id, toNumber, status: pending}}``."""
    answer = await call(client, "/send", {"mobile": "+15551234567", "useType": 1, "text": "123456"})
    assert answer["code"] == "200" and answer["message"]
    assert re.fullmatch(r"[0-9a-f]{32}", answer["data"]["id"])
    assert answer["data"]["toNumber"] == "+15551234567"
    assert answer["data"]["status"] == "pending"
    assert sandbox.ledger[0].recipient == "+15551234567"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Basic YXBwX3NhbmRib3g6d3Jvbmc="}, id="wrong-secret"),
        pytest.param({"Authorization": "Basic !!!"}, id="not-base64"),
        pytest.param({"Authorization": "Bearer app_sandbox"}, id="bearer"),
    ],
)
async def test_bad_credentials_are_code_401(sandbox: Sandbox, headers: dict[str, str]) -> None:
    """Wrong Basic credentials answer HTTP 200 with body code "401"."""
    async with httpx.AsyncClient(base_url=sandbox.base_url("skynoo")) as client:
        response = await client.post(
            API + "/send",
            json={"mobile": "+15551234567", "useType": 1, "text": "a"},
            headers=headers,
        )
    assert response.status_code == 200
    assert response.json()["code"] == "401"
    assert sandbox.ledger == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"mobile": "15551234567", "useType": 1, "text": "a"}, id="no-plus"),
        pytest.param({"mobile": "+15551234567", "useType": 7, "text": "a"}, id="use-type"),
        pytest.param({"mobile": "+15551234567", "useType": 1}, id="no-text"),
        pytest.param({"mobile": "+15551234567", "useType": 1, "templateId": 8}, id="template"),
        pytest.param({"mobile": "+15551234567", "useType": 1, "text": "a" * 461}, id="too-long"),
        pytest.param({"mobile": "+15551234567", "useType": 1, "text": "【Shop】 hi"}, id="symbol"),
        pytest.param({"mobile": "+420777888999", "useType": 1, "text": "a"}, id="unpriced"),
    ],
)
async def test_invalid_send_is_code_400(
    sandbox: Sandbox, client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """Validation failures are HTTP 200 with body code "400" and bill nothing."""
    answer = await call(client, "/send", body)
    assert answer["code"] == "400" and answer["message"]
    assert sandbox.ledger == []


async def test_batch_create_status_detail_get_status(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """A batch substitutes ``#var#`` per number, bills each, and ends in ``success``."""
    created = await call(client, "/batch/create", BATCH)
    assert created["code"] == "200"
    task_id = created["data"]["taskId"]
    assert created["data"]["status"] == "pending"
    assert [e.text for e in sandbox.ledger] == [
        "Your order A001 has been shipped.",
        "Your order A002 has been shipped.",
        "Your order 3 has been shipped.",
    ]

    async def done() -> bool:
        status = await call(client, "/batch/status", {"taskId": task_id})
        assert status["data"]["status"] in ("executing", "success")
        return bool(status["data"]["status"] == "success")

    await eventually(done)
    page = await call(client, "/batch/detail", {"taskId": task_id, "pageNo": 2, "pageSize": 2})
    assert page["data"]["total"] == 3 and page["data"]["pageNo"] == 2
    (record,) = page["data"]["records"]
    assert record["toNumber"] == "+15551234567" and record["status"] == "DELIVERED"
    assert record["errorCode"] == "" and isinstance(record["sendTime"], int)
    everything = await call(client, "/batch/detail", {"taskId": task_id})
    ids = [r["id"] for r in everything["data"]["records"]]
    statuses = await call(client, "/getStatus", {"ids": [*ids, "f" * 32]})
    assert [s["sid"] for s in statuses["data"]] == ids
    assert {s["status"] for s in statuses["data"]} == {"DELIVERED"}


async def test_undelivered_messages_report_error_code() -> None:
    """With undelivered_share=1 every message ends UNDELIVERED with an errorCode."""
    failing = replace(DEFAULT_CREDENTIALS["skynoo"], faults=Faults(undelivered_share=1.0))
    async with (
        running_sandbox(fast_settings(accounts={"skynoo": failing})) as sandbox,
        httpx.AsyncClient(base_url=sandbox.base_url("skynoo"), headers=SKYNOO) as client,
    ):
        sent = await call(client, "/send", {"mobile": "+15551234567", "useType": 3, "text": "a"})

        async def failed() -> bool:
            answer = await call(client, "/getStatus", {"ids": [sent["data"]["id"]]})
            return bool(answer["data"][0]["status"] == "UNDELIVERED")

        await eventually(failed)
        answer = await call(client, "/getStatus", {"ids": [sent["data"]["id"]]})
        assert answer["data"][0]["errorCode"] == "E66"


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        pytest.param(
            "/batch/create",
            {**BATCH, "templateData": {"+15551230001": {"order_no": "A001"}}},
            "400",
            id="missing-variable",
        ),
        pytest.param("/batch/create", {**BATCH, "numbers": []}, "400", id="no-numbers"),
        pytest.param(
            "/batch/create", {**BATCH, "numbers": ["+15551230001", "12"]}, "400", id="bad-number"
        ),
        pytest.param("/batch/status", {"taskId": 999}, "404", id="unknown-task"),
        pytest.param("/batch/detail", {"taskId": "x"}, "400", id="task-not-number"),
        pytest.param("/getStatus", {"ids": ["a"] * 101}, "400", id="too-many-ids"),
        pytest.param("/getStatus", {}, "400", id="no-ids"),
        pytest.param("/nowhere", {}, "404", id="unknown-path"),
    ],
)
async def test_batch_and_status_errors(
    sandbox: Sandbox, client: httpx.AsyncClient, path: str, body: dict[str, Any], code: str
) -> None:
    """Batch and status refusals use the ``code`` string; a refused batch bills nothing."""
    assert (await call(client, path, body))["code"] == code
    assert sandbox.ledger == []
