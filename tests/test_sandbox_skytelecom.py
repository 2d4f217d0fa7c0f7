"""Sky Telecom emulation over real HTTP: sends, wallet, routes, logs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sandbox_fixtures import SKY, eventually, fast_settings

from engine.sandbox import ProviderAccount, Sandbox, running_sandbox

pytestmark = pytest.mark.anyio



@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.base_url("skytelecom"), headers=SKY) as c:
        yield c


async def test_send_answers_documented_shape_and_debits_wallet(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """A send answers status/sent/segments/total_cost/wallet_balance and the wallet goes down."""
    body = {"to": "12025550123", "message": "Hello from SkyTelecom", "sender_id": "SkyTelecom"}
    first = await client.post("/sms/send", json=body)
    assert first.status_code == 200
    answer = first.json()
    assert answer["status"] == "sent" and answer["sent"] == 1 and answer["failed"] == 0
    assert answer["segments"] == 1
    assert answer["total_cost"] == pytest.approx(0.0079)
    assert answer["wallet_balance"] == pytest.approx(99.9921)
    assert answer["messages"][0]["recipient"] == "12025550123"
    assert answer["messages"][0]["status"] == "sent"
    assert isinstance(answer["messages"][0]["id"], int)
    second = (await client.post("/sms/send", json=body)).json()
    assert second["wallet_balance"] == pytest.approx(99.9842)
    assert sandbox.wallet == Decimal("99.9842")
    assert [e.recipient for e in sandbox.ledger] == ["12025550123", "12025550123"]
    assert sandbox.ledger[0].sender == "SkyTelecom"


async def test_documented_api_path_works_too(client: httpx.AsyncClient) -> None:
    """``/skytelecom/api/sms/send`` (the documented full path) is the same endpoint."""
    response = await client.post("/api/sms/send", json={"to": "12025550123", "message": "Hi"})
    assert response.status_code == 200


async def test_route_option_id_prices_chosen_channel(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    """route_option_id picks that GAMMA channel; omitted, the country's cheapest is used."""
    text = "x" * 161
    chosen = (
        await client.post(
            "/sms/send", json={"to": "34600111222", "message": text, "route_option_id": "ch6-2"}
        )
    ).json()
    assert chosen["segments"] == 2
    assert chosen["total_cost"] == pytest.approx(2 * 0.068)
    auto = (await client.post("/sms/send", json={"to": "34600111222", "message": text})).json()
    assert auto["total_cost"] == pytest.approx(2 * 0.065)
    public = await client.post(
        "/sms/send", json={"to": "34600111222", "message": "a", "route_option_id": "epsilon_3"}
    )
    assert public.json()["total_cost"] == pytest.approx(0.065)
    assert [e.price for e in sandbox.ledger] == [
        Decimal("0.1360"),
        Decimal("0.1300"),
        Decimal("0.0650"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"to": "12025550123"}, 400, "validation_error", id="no-message"),
        pytest.param({"to": "12-34", "message": "a"}, 400, "validation_error", id="bad-to"),
        pytest.param({"to": "81312345678", "message": "a"}, 400, "no_route", id="unpriced"),
        pytest.param(
            {"to": "34600111222", "message": "a", "route_option_id": "ch-fr-1"},
            400,
            "route_not_available",
            id="other-country-channel",
        ),
        pytest.param(
            {"to": "34600111222", "message": "a", "route_option_id": "nope"},
            400,
            "validation_error",
            id="unknown-route",
        ),
    ],
)
async def test_invalid_send_refused_in_sky_shape(
    sandbox: Sandbox, client: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    """An invalid send is refused with ``{"status": "error", "code", "message"}``, unbilled."""
    response = await client.post("/sms/send", json=body)
    assert response.status_code == status
    assert response.json()["status"] == "error"
    assert response.json()["code"] == code
    assert sandbox.ledger == []
    assert sandbox.wallet == Decimal("100")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-key"),
        pytest.param({"Authorization": "Basic c2t5X3Rlc3Rfa2V5"}, id="wrong-scheme"),
    ],
)
async def test_bad_key_is_401(sandbox: Sandbox, headers: dict[str, str]) -> None:
    """A missing or wrong Bearer key is refused with 401 and nothing is billed."""
    async with httpx.AsyncClient(base_url=sandbox.base_url("skytelecom")) as client:
        response = await client.post(
            "/sms/send", json={"to": "12025550123", "message": "a"}, headers=headers
        )
    assert response.status_code == 401
    assert response.json()["status"] == "error"
    assert sandbox.ledger == []


async def test_wallet_too_low_is_refused() -> None:
    """A send costing more than the wallet holds is refused (402) and the wallet is unchanged."""
    account = ProviderAccount(api_key="sky_test_key", wallet=Decimal("0.1"))
    async with (
        running_sandbox(fast_settings(accounts={"skytelecom": account})) as sandbox,
        httpx.AsyncClient(base_url=sandbox.base_url("skytelecom"), headers=SKY) as client,
    ):
        response = await client.post(
            "/sms/send", json={"to": "4915112345678", "message": "x" * 200}
        )
        assert response.status_code == 402
        assert response.json()["code"] == "insufficient_balance"
        assert sandbox.wallet == Decimal("0.1")
        assert sandbox.ledger == []


async def test_available_routes_expand_gamma_by_country(client: httpx.AsyncClient) -> None:
    """``?expand=gamma`` groups channels by country name with option_id, name and price."""
    plain = (await client.get("/sms/available-routes")).json()
    assert "gamma_by_country" not in plain
    assert {"option_id": "epsilon_13", "name": "EPSILON_13"} in plain["routes"]
    expanded = (await client.get("/sms/available-routes", params={"expand": "gamma"})).json()
    spain = expanded["gamma_by_country"]["Spain"]
    assert {(c["option_id"], c["price"]) for c in spain} == {("ch6-1", 0.065), ("ch6-2", 0.068)}
    assert expanded["gamma_by_country"]["United States"][0]["option_id"] == "ch-us-1"
    assert {"option_id": "ch-fr-1", "name": "CH-FR-1", "country": "France", "price": 0.052} in (
        expanded["gamma_options"]
    )


async def test_routes_for_numbers_lists_destination_channels(client: httpx.AsyncClient) -> None:
    """``routes?numbers=`` gives each number's country and its GAMMA channels."""
    response = await client.get("/sms/routes", params={"numbers": "34600111222,81312345678"})
    spain, japan = response.json()["data"]
    assert spain["country"] == "Spain"
    assert [c["option_id"] for c in spain["gamma"]] == ["ch6-1", "ch6-2"]
    assert japan["country"] is None and japan["gamma"] == []
    missing = await client.get("/sms/routes")
    assert missing.status_code == 400


async def test_sms_logs_pages_end_where_the_matching_rows_end(
    client: httpx.AsyncClient,
) -> None:
    """Pages of the newest rows first, with a search or without: ``has_more`` is false on the
    page that holds the last match, and a page past it is empty."""
    for i in range(5):
        to = "12025550123" if i % 2 else f"44770090012{i}"
        await client.post("/sms/send", json={"to": to, "message": f"m{i}"})

    async def page(number: int, **params: str) -> tuple[list[str], bool]:
        answer = (await client.get("/sms/logs", params={"limit": 2, "page": number, **params}))
        body = answer.json()
        return [row["message"] for row in body["data"]], body["has_more"]

    assert [await page(n) for n in (1, 2, 3, 4)] == [
        (["m4", "m3"], True), (["m2", "m1"], True), (["m0"], False), ([], False)]
    assert [await page(n, search="1202") for n in (1, 2)] == [(["m3", "m1"], False), ([], False)]


async def test_sms_logs_search_dates_paging_and_final_status(client: httpx.AsyncClient) -> None:
    """Logs find a message by recipient and date, page, and show it delivered once final."""
    await client.post("/sms/send", json={"to": "12025550123", "message": "one"})
    await client.post("/sms/send", json={"to": "447700900123", "message": "two"})
    today = datetime.now(UTC).date()
    found = (await client.get("/sms/logs", params={"search": "1202"})).json()
    assert [row["message"] for row in found["data"]] == ["one"]
    assert found["data"][0]["direction"] == "United States Mobile"
    assert found["data"][0]["segments"] == 1 and found["data"][0]["cost"] == 0.0079
    paged = (await client.get("/sms/logs", params={"limit": 1, "page": 1})).json()
    assert paged["has_more"] is True and [r["message"] for r in paged["data"]] == ["two"]
    window = {"from": today.isoformat(), "to": today.isoformat()}
    assert len((await client.get("/sms/logs", params=window)).json()["data"]) == 2
    yesterday = (today - timedelta(days=1)).isoformat()
    old = {"from": yesterday, "to": yesterday}
    assert (await client.get("/sms/logs", params=old)).json()["data"] == []
    assert (await client.get("/sms/logs", params={"from": "01/02/2026"})).status_code == 400

    async def delivered() -> bool:
        rows = (await client.get("/sms/logs")).json()["data"]
        return all(row["status"] == "delivered" for row in rows)

    await eventually(delivered)
