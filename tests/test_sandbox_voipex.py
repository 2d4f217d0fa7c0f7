"""Voipex emulation over real HTTP: allowed numbers, sends, history, webhooks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sandbox_fixtures import VOIPEX, eventually, fast_settings, receiving

from engine.sandbox import ProviderAccount, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

SEND = {"from": "+420777888999", "to": "+420607608609", "text": "Hello world!"}



@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url("voipex"), headers=VOIPEX) as c:
        yield c


def window() -> dict[str, str]:
    now = datetime.now(UTC).astimezone()
    return {
        "startTime": (now - timedelta(minutes=5)).isoformat(),
        "endTime": (now + timedelta(minutes=5)).isoformat(),
    }


async def test_allowed_numbers_listed(client: httpx.AsyncClient) -> None:
    """``GET /SMS/allowed-numbers`` lists the account's numbers."""
    assert (await client.get("/SMS/allowed-numbers")).json() == ["+420777888999"]


async def test_send_from_allowed_number(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    """A send from an allowed number answers the SMS record and is ledgered."""
    response = await client.post("/SMS", json=SEND)
    assert response.status_code == 200
    sms = response.json()
    assert {k: sms[k] for k in ("from", "to", "text", "direction")} == {
        **SEND,
        "direction": "OUT",
    }
    assert sms["state"] == "QUEUED" and sms["id"] and sms["createdAt"].endswith("Z")
    (entry,) = sandbox.ledger
    assert entry.sender == "+420777888999" and entry.price == Decimal("0.0290")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({**SEND, "from": "+420111222333"}, "from_not_allowed", id="from-not-owned"),
        pytest.param({**SEND, "to": "420607608609"}, "validation_error", id="to-without-plus"),
        pytest.param({**SEND, "to": "+15551234567"}, "destination_not_supported", id="unpriced"),
        pytest.param(
            {"from": "+420777888999", "to": "+420607608609"}, "validation_error", id="no-text"
        ),
    ],
)
async def test_invalid_send_is_400_problem(
    sandbox: Sandbox, client: httpx.AsyncClient, body: dict[str, str], code: str
) -> None:
    """Refusals are HTTP 400 with ``{title, status, detail, code}`` and bill nothing."""
    response = await client.post("/SMS", json=body)
    assert response.status_code == 400
    problem = response.json()
    assert problem["status"] == 400 and problem["code"] == code and problem["detail"]
    assert sandbox.ledger == []


async def test_bad_token_is_401(sandbox: Sandbox) -> None:
    """A wrong or missing bearer token is HTTP 401."""
    async with httpx.AsyncClient(base_url=sandbox.base_url("voipex")) as client:
        assert (await client.post("/SMS", json=SEND)).status_code == 401
        wrong = {"Authorization": "Bearer eyJhbGci.nope"}
        assert (await client.get("/SMS/allowed-numbers", headers=wrong)).status_code == 401


async def test_history_needs_zoned_times_and_shows_final_state(
    client: httpx.AsyncClient,
) -> None:
    """History lists sends inside [startTime, endTime) and their final state once known."""
    await client.post("/SMS", json=SEND)
    assert (await client.get("/SMS")).status_code == 400
    naive = {"startTime": "2026-01-01T00:00:00", "endTime": "2026-02-01T00:00:00"}
    assert (await client.get("/SMS", params=naive)).status_code == 400
    past = {"startTime": "2021-09-01T00:00:00.000+02:00", "endTime": "2021-10-01T00:00:00+02:00"}
    assert (await client.get("/SMS", params=past)).json() == []

    async def delivered() -> bool:
        rows = (await client.get("/SMS", params=window())).json()
        return len(rows) == 1 and rows[0]["state"] == "DELIVERED"

    await eventually(delivered)


async def test_webhook_posts_final_state() -> None:
    """The account webhook gets id, from, to, text, direction, state and createdAt."""
    async with receiving() as receiver:
        account = ProviderAccount(
            token="voipex-sandbox-jwt",
            allowed_numbers=("+420777888999",),
            callback_url=receiver.url + "/voipex",
        )
        async with (
            running_sandbox(fast_settings(accounts={"voipex": account})) as sandbox,
            httpx.AsyncClient(base_url=sandbox.base_url("voipex"), headers=VOIPEX) as client,
        ):
            sent = (await client.post("/SMS", json=SEND)).json()
            (post,) = await receiver.wait_for(1)
    hook = json.loads(post.body)
    assert set(hook) == {"id", "from", "to", "text", "direction", "state", "createdAt"}
    assert hook["id"] == sent["id"] and hook["state"] == "DELIVERED"
