"""SMS & Voice Platform emulation over real HTTP: sends, idempotency, rates, signed reports."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sandbox_fixtures import SMSVOIP, fast_settings, receiving

from engine.sandbox import Faults, ProviderAccount, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

SEND = {"to": "+15551234567", "text": "Hi!"}



@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url("smsvoip"), headers=SMSVOIP) as c:
        yield c


def verify(header: str, body: bytes, secret: str) -> int:
    """Check ``t=...,v1=...`` as a receiver would; return t."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = fields["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    return int(fields["t"])


async def test_send_answers_id_status_cost(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    """A send answers message_id, status and cost; the ledger keeps it as received."""
    response = await client.post("/sms/send", json=SEND)
    assert response.status_code == 200
    answer = response.json()
    assert answer["message_id"].startswith("msg_")
    assert answer["status"] == "queued"
    assert answer["cost"] == pytest.approx(0.0085)
    assert answer["currency"] == "EUR" and answer["segments"] == 1
    (entry,) = sandbox.ledger
    assert (entry.recipient, entry.text, entry.message_id) == (
        "+15551234567",
        "Hi!",
        answer["message_id"],
    )


async def test_documented_full_path_works_too(client: httpx.AsyncClient) -> None:
    """``/smsvoip/api/v1/sms/send`` is the same endpoint as ``/smsvoip/sms/send``."""
    assert (await client.post("/api/v1/sms/send", json=SEND)).status_code == 200


async def test_delivery_report_is_signed_with_webhook_secret(client: httpx.AsyncClient) -> None:
    """The report goes to the request's callback_url, signed HMAC-SHA256 over ``t.body``."""
    async with receiving() as receiver:
        answer = (
            await client.post("/sms/send", json={**SEND, "callback_url": receiver.url + "/dlr"})
        ).json()
        (post,) = await receiver.wait_for(1)
    assert post.path == "/dlr"
    stamp = verify(post.headers["X-Signature"], post.body, "whsec_sandbox")
    assert abs(stamp - time.time()) < 60
    report = json.loads(post.body)
    assert report["event"] == "delivery_report"
    assert report["message_id"] == answer["message_id"]
    assert report["status"] == "delivered"
    assert report["delivered_at"].endswith("Z")
    assert report["cost"] == pytest.approx(0.0085)


async def test_account_callback_and_undelivered_share() -> None:
    """Without a per-request URL the account's is used; undelivered_share=1 fails them all."""
    async with receiving() as receiver:
        account = ProviderAccount(
            api_key="sk_test_sandbox",
            webhook_secret="whsec_sandbox",
            callback_url=receiver.url + "/hook",
            faults=Faults(undelivered_share=1.0),
        )
        async with (
            running_sandbox(fast_settings(accounts={"smsvoip": account})) as sandbox,
            httpx.AsyncClient(base_url=sandbox.base_url("smsvoip"), headers=SMSVOIP) as client,
        ):
            await client.post("/sms/send", json=SEND)
            (post,) = await receiver.wait_for(1)
    report = json.loads(post.body)
    assert report["status"] == "undelivered" and report["delivered_at"] is None


async def test_same_idempotency_key_and_body_replays_and_bills_once(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """The same key with the same body gives the same answer and one ledger entry."""
    headers = {"Idempotency-Key": "msg-123-otp"}
    first = await client.post("/sms/send", json=SEND, headers=headers)
    again = await client.post("/sms/send", content=json.dumps(SEND, indent=2), headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(sandbox.ledger) == 1
    assert sandbox.ledger[0].idempotency_key == "msg-123-otp"


async def test_same_idempotency_key_other_body_is_refused(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """The same key with another body is a 400 and bills nothing more."""
    headers = {"Idempotency-Key": "k1"}
    await client.post("/sms/send", json=SEND, headers=headers)
    other = await client.post("/sms/send", json={**SEND, "text": "Other"}, headers=headers)
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(sandbox.ledger) == 1


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(json.dumps({"to": "15551234567", "text": "a"}), {}, id="to-without-plus"),
        pytest.param(json.dumps({"to": "+15551234567"}), {}, id="no-text"),
        pytest.param(json.dumps({"to": "+81312345678", "text": "a"}), {}, id="unpriced"),
        pytest.param("{not json", {}, id="not-json"),
        pytest.param(
            json.dumps({**SEND, "callback_url": "http://example.com/dlr"}), {}, id="remote-hook"
        ),
        pytest.param(json.dumps(SEND), {"Idempotency-Key": "k" * 256}, id="long-key"),
    ],
)
async def test_invalid_send_is_400_in_platform_shape(
    sandbox: Sandbox, client: httpx.AsyncClient, content: str, headers: dict[str, str]
) -> None:
    """Validation errors are HTTP 400 ``{"error": {"code", "message"}}`` and bill nothing."""
    response = await client.post("/sms/send", content=content, headers=headers)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message"}
    assert sandbox.ledger == []


@pytest.mark.parametrize(
    "headers",
    [pytest.param({}, id="missing"), pytest.param({"Authorization": "Bearer sk_x"}, id="wrong")],
)
async def test_bad_key_is_401(sandbox: Sandbox, headers: dict[str, str]) -> None:
    """A missing or invalid API key is HTTP 401."""
    async with httpx.AsyncClient(base_url=sandbox.base_url("smsvoip")) as client:
        response = await client.post("/sms/send", json=SEND, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_suspended_key_is_403(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    """A suspended account answers 403 until it is lifted."""
    sandbox.suspend("smsvoip")
    assert (await client.post("/sms/send", json=SEND)).status_code == 403
    sandbox.suspend("smsvoip", False)
    assert (await client.post("/sms/send", json=SEND)).status_code == 200


async def test_rates_list_iso_code_price_currency_route(sandbox: Sandbox) -> None:
    """``/rates`` needs no key and lists ISO codes with SMS price, currency and route label."""
    async with httpx.AsyncClient(base_url=sandbox.base_url("smsvoip")) as client:
        rates = (await client.get("/rates")).json()["rates"]
        wrong = await client.get("/rates", headers={"Authorization": "Bearer nope"})
    slovakia = next(r for r in rates if r["iso_code"] == "SK")
    assert slovakia == {
        "country": "Slovakia",
        "iso_code": "SK",
        "prefix": "421",
        "sms": 0.045,
        "voice": None,
        "currency": "EUR",
        "route": "standard",
    }
    assert wrong.status_code == 401


async def test_ping_and_status(client: httpx.AsyncClient) -> None:
    """``/ping`` and ``/status`` answer."""
    assert (await client.get("/ping")).json() == {"status": "ok"}
    assert (await client.get("/status")).json()["status"] == "operational"
    assert (await client.get("/nowhere")).status_code == 404
    assert (await client.get("/sms/send")).status_code == 405
