"""Telekom emulation over real HTTP: sessions, send_message, check_message, ``dsn``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
from sandbox_fixtures import eventually, fast_settings, receiving

from engine.sandbox import ProviderAccount, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

TOKEN = "telekom-sandbox-token"



@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url("telekom")) as c:
        yield c


async def call(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


async def session(client: httpx.AsyncClient) -> str:
    answer = await call(client, "/auth", {"token": TOKEN})
    assert answer["result"] == {"status": "success", "description": "", "code": "OK"}
    session_id: str = answer["session_id"]
    return session_id


def error_code(answer: dict[str, Any]) -> str:
    assert answer["result"]["status"] == "error"
    code: str = answer["result"]["code"]
    return code


async def test_auth_then_send_with_session(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    """``/auth`` gives a session_id; send_message with it answers message_id and parts."""
    sid = await session(client)
    answer = await call(
        client, "/send_message", {"to": "421900123456", "text": "Ahoj", "session_id": sid}
    )
    assert answer["result"]["status"] == "success"
    assert answer["message_count"] == 1
    (message,) = answer["messages"]
    assert message["status"] == "success" and message["code"] == "OK"
    assert isinstance(message["message_id"], int) and message["parts"] == 1
    assert sandbox.ledger[0].price == Decimal("0.0300")


async def test_documented_json_path_and_token_instead_of_session(
    client: httpx.AsyncClient,
) -> None:
    """``/telekom/json/send_message`` works, and the API token may replace the session."""
    answer = await call(
        client, "/json/send_message", {"to": "421900123456", "text": "Ahoj", "token": TOKEN}
    )
    assert answer["result"]["status"] == "success"


async def test_wrong_token_is_invalid_token(client: httpx.AsyncClient) -> None:
    """A wrong token is refused in the ``result`` shape, on /auth and on send_message."""
    assert error_code(await call(client, "/auth", {"token": "nope"})) == "INVALID_TOKEN"
    send = {"to": "421900123456", "text": "a", "token": "nope"}
    assert error_code(await call(client, "/send_message", send)) == "INVALID_TOKEN"
    assert error_code(await call(client, "/send_message", {"to": "421900123456", "text": "a"})) == (
        "MISSING_PARAMETER"
    )


async def test_expired_session_needs_auth_again(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """After ``expire_sessions`` a session is SESSION_NOT_FOUND; a new /auth works again."""
    sid = await session(client)
    assert (await call(client, "/ping", {"session_id": sid}))["result"]["code"] == "OK"
    sandbox.expire_sessions()
    send = {"to": "421900123456", "text": "a", "session_id": sid}
    assert error_code(await call(client, "/send_message", send)) == "SESSION_NOT_FOUND"
    assert error_code(await call(client, "/ping", {"session_id": sid})) == "SESSION_NOT_FOUND"
    assert sandbox.ledger == []
    send["session_id"] = await session(client)
    assert (await call(client, "/send_message", send))["result"]["status"] == "success"


async def test_expire_sessions_over_http(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    """``POST /_sandbox/telekom/expire-sessions`` expires sessions of a remote sandbox."""
    sid = await session(client)
    async with httpx.AsyncClient(base_url=sandbox.url) as control:
        assert (await control.post("/_sandbox/telekom/expire-sessions")).status_code == 200
    assert error_code(await call(client, "/ping", {"session_id": sid})) == "SESSION_NOT_FOUND"


async def test_session_expires_after_idle_ttl_and_use_refreshes_it() -> None:
    """A session lives ``session_ttl_s`` after its last use; each use starts the clock again."""
    ttl = 0.3
    async with (
        running_sandbox(fast_settings(session_ttl_s=ttl)) as sandbox,
        httpx.AsyncClient(base_url=sandbox.base_url("telekom")) as client,
    ):
        sid = await session(client)
        for _ in range(3):
            await anyio.sleep(ttl / 3)
            assert (await call(client, "/ping", {"session_id": sid}))["result"]["code"] == "OK"
        await anyio.sleep(ttl * 1.3)
        assert error_code(await call(client, "/ping", {"session_id": sid})) == "SESSION_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"text": "a"}, "MISSING_PARAMETER", id="no-to"),
        pytest.param({"to": "421900123456"}, "MISSING_PARAMETER", id="no-text"),
        pytest.param({"to": "abc", "text": "a"}, "INVALID_NUMBER", id="bad-number"),
        pytest.param({"to": "15551234567", "text": "a"}, "NO_ROUTE", id="unpriced"),
        pytest.param(
            {"to": "421900123456", "text": "a", "validity": 5000},
            "INVALID_PARAMETER",
            id="validity",
        ),
        pytest.param(
            {"to": "421900123456", "text": "a", "priority": 9}, "INVALID_PARAMETER", id="priority"
        ),
        pytest.param(
            {"to": "421900123456", "text": "a", "delivery_time": "tomorrow"},
            "INVALID_PARAMETER",
            id="delivery-time",
        ),
    ],
)
async def test_invalid_send_is_result_error(
    sandbox: Sandbox, client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    """Validation errors are HTTP 200 with ``result.status = "error"`` and a code."""
    assert error_code(await call(client, "/send_message", {**body, "token": TOKEN})) == code
    assert sandbox.ledger == []


async def test_get_is_not_enabled(client: httpx.AsyncClient) -> None:
    """GET is off for the sandbox key: METHOD_NOT_ALLOWED."""
    answer = (await client.get("/auth", params={"token": TOKEN})).json()
    assert error_code(answer) == "METHOD_NOT_ALLOWED"


async def test_suspended_account_is_ip_not_allowed(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """A suspended account answers the documented IP_NOT_ALLOWED."""
    sandbox.suspend("telekom")
    assert error_code(await call(client, "/auth", {"token": TOKEN})) == "IP_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("text", "unicode", "parts"),
    [
        pytest.param("Ďakujeme, že ste s nami. " * 3, None, 2, id="auto-ucs2"),
        pytest.param("Ďakujeme, že ste s nami. " * 3, False, 1, id="stripped-gsm"),
        pytest.param("a" * 100, True, 2, id="forced-ucs2"),
        pytest.param("a" * 100, "0", 1, id="zero-string-is-false"),
    ],
)
async def test_unicode_flag_decides_encoding(
    client: httpx.AsyncClient, text: str, unicode: object, parts: int
) -> None:
    """``unicode`` false strips diacritics to GSM-7, true forces UCS-2, absent auto-detects."""
    body: dict[str, Any] = {"to": "421900123456", "text": text, "token": TOKEN}
    if unicode is not None:
        body["unicode"] = unicode
    answer = await call(client, "/send_message", body)
    assert answer["messages"][0]["parts"] == parts


async def test_rcs_number_is_ledgered_as_received(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """``+421…`` and ``09…`` (RCS) are accepted, priced as 4219…, ledgered as received."""
    for to in ("+421900123456", "0900123456"):
        answer = await call(client, "/send_message", {"to": to, "text": "a", "token": TOKEN})
        assert answer["result"]["status"] == "success"
    assert [e.recipient for e in sandbox.ledger] == ["+421900123456", "0900123456"]
    assert {str(e.price) for e in sandbox.ledger} == {"0.0300"}


async def test_check_message_goes_from_sent_to_delivered(client: httpx.AsyncClient) -> None:
    """check_message answers SENT, then DELIVERED with a deliveryDateTime; unknown ids fail."""
    sent = await call(client, "/send_message", {"to": "421900123456", "text": "a", "token": TOKEN})
    message_id = sent["messages"][0]["message_id"]
    first = await call(client, "/check_message", {"message_id": message_id, "token": TOKEN})
    assert first["message_id"] == str(message_id)
    assert first["code"] in ("SENT", "DELIVERED")

    async def delivered() -> bool:
        answer = await call(client, "/check_message", {"message_id": message_id, "token": TOKEN})
        return bool(answer["code"] == "DELIVERED" and answer["status"] == "Delivered")

    await eventually(delivered)
    final = await call(client, "/check_message", {"message_id": str(message_id), "token": TOKEN})
    assert len(final["deliveryDateTime"]) == len("2017-01-01 10:45:00")
    unknown = await call(client, "/check_message", {"message_id": 1, "token": TOKEN})
    assert error_code(unknown) == "MESSAGE_NOT_FOUND"


async def test_dsn_callback_unless_callback_false() -> None:
    """A ``dsn`` goes to the account callback URL; ``callback: false`` sends none."""
    async with receiving() as receiver:
        account = ProviderAccount(token=TOKEN, callback_url=receiver.url + "/dsn")
        async with (
            running_sandbox(fast_settings(accounts={"telekom": account})) as sandbox,
            httpx.AsyncClient(base_url=sandbox.base_url("telekom")) as client,
        ):
            quiet = {"to": "421900123456", "text": "a", "token": TOKEN, "callback": False}
            await call(client, "/send_message", quiet)
            loud = {"to": "+421900123456", "text": "b" * 200, "token": TOKEN}
            sent = await call(client, "/send_message", loud)
            (post,) = await receiver.wait_for(1)
            quiet_id = sandbox.ledger[0].message_id

            async def final() -> bool:
                check = {"message_id": quiet_id, "token": TOKEN}
                answer = await call(client, "/check_message", check)
                return bool(answer["code"] == "DELIVERED")

            await eventually(final)
    dsn = json.loads(post.body)
    assert dsn["delivery"] == {"status": "DELIVERED"}
    assert dsn["messageId"] == sent["messages"][0]["message_id"]
    assert dsn["channel"] == "rcs" and dsn["messageParts"] == 2 and dsn["type"] == "dsn"
    assert dsn["timestamp"].endswith("Z")
    assert len(receiver.posts) == 1
