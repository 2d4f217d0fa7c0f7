"""Injected faults over real HTTP: throttle, 5xx, latency, drops, resets, rate limits."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sandbox_fixtures import SKY, SKYNOO, SMSVOIP, VOIPEX, eventually, fast_settings

from engine.sandbox import DEFAULT_CREDENTIALS, Faults, Sandbox, running_sandbox
from engine.sandbox.faults import Action, FaultState

pytestmark = pytest.mark.anyio

SEND = {"to": "+15551234567", "text": "Hi!"}

REQUESTS: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "skytelecom": ("/sms/send", SKY, {"to": "12025550123", "message": "a"}),
    "smsvoip": ("/sms/send", SMSVOIP, SEND),
    "voipex": (
        "/SMS",
        VOIPEX,
        {"from": "+420777888999", "to": "+420607608609", "text": "a"},
    ),
    "telekom": (
        "/send_message",
        {},
        {"to": "421900123456", "text": "a", "token": "telekom-sandbox-token"},
    ),
    "skynoo": ("/api/sms/v1/send", SKYNOO, {"mobile": "+15551234567", "useType": 1, "text": "a"}),
}


def shape_ok(kind: str, body: dict[str, Any]) -> bool:
    """The provider's own error shape."""
    if kind == "skytelecom":
        return bool(body["status"] == "error")
    if kind == "smsvoip":
        return set(body["error"]) == {"code", "message"}
    if kind == "voipex":
        return "detail" in body and "title" in body
    if kind == "telekom":
        return bool(body["result"]["status"] == "error")
    return body["code"] in ("429", "502", "503")



async def send(sandbox: Sandbox, kind: str, client: httpx.AsyncClient) -> httpx.Response:
    path, headers, body = REQUESTS[kind]
    return await client.post(sandbox.base_url(kind) + path, json=body, headers=headers)


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_throttle_every_nth_is_429_with_retry_after(sandbox: Sandbox, kind: str) -> None:
    """Every 3rd request is 429 with Retry-After, in the provider's shape, and unbilled."""
    sandbox.set_faults(kind, Faults(throttle_every=3, retry_after_s=0.25))
    async with httpx.AsyncClient() as client:
        answers = [await send(sandbox, kind, client) for _ in range(6)]
    assert [a.status_code for a in answers] == [200, 200, 429, 200, 200, 429]
    assert answers[2].headers["Retry-After"] == "0.25"
    assert shape_ok(kind, answers[2].json())
    assert len(sandbox.ledger) == 4


async def test_throttle_share_is_seeded(sandbox: Sandbox) -> None:
    """A throttle share refuses about that share, the same requests for the same seed."""

    async def run() -> list[int]:
        sandbox.set_faults("smsvoip", Faults(throttle_share=0.5))
        async with httpx.AsyncClient() as client:
            return [(await send(sandbox, "smsvoip", client)).status_code for _ in range(40)]

    first = await run()
    assert first == await run()
    assert 8 <= first.count(429) <= 32


@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_error_every_nth_is_5xx(sandbox: Sandbox, kind: str) -> None:
    """Every 2nd request answers the configured 5xx in the provider's shape, unbilled."""
    sandbox.set_faults(kind, Faults(error_every=2, error_status=502))
    async with httpx.AsyncClient() as client:
        answers = [await send(sandbox, kind, client) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 502, 200, 502]
    assert shape_ok(kind, answers[1].json())
    assert len(sandbox.ledger) == 2


async def test_latency_with_jitter_delays_answers(sandbox: Sandbox) -> None:
    """Latency 40 ms ± 10 ms: each answer takes at least 30 ms and the send still succeeds."""
    sandbox.set_faults("smsvoip", Faults(latency_ms=40, jitter_ms=10))
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            started = time.monotonic()
            response = await send(sandbox, "smsvoip", client)
            assert response.status_code == 200
            assert time.monotonic() - started >= 0.029
    assert len(sandbox.ledger) == 3


async def test_pipelined_requests_answer_in_order_under_latency(sandbox: Sandbox) -> None:
    """Two pipelined requests on one connection with latency are answered in order."""
    sandbox.set_faults("smsvoip", Faults(latency_ms=20))
    port = int(sandbox.url.rsplit(":", 1)[1])
    ok = (
        b"POST /smsvoip/sms/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_sandbox\r\n"
        b'Content-Length: 36\r\n\r\n{"to": "+15551234567", "text": "Hi"}'
    )
    unauthorized = b"GET /smsvoip/sms/send HTTP/1.1\r\nHost: x\r\n\r\n"
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        await stream.send(ok + unauthorized)
        received = b""
        with anyio.fail_after(5):
            while received.count(b"HTTP/1.1") < 2 or not received.endswith(b"}"):
                received += await stream.receive()
    first, second = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and second.startswith(b"405")


async def test_drop_after_accept_bills_then_closes(sandbox: Sandbox) -> None:
    """The client sees a dropped connection, yet the message is billed and ledgered."""
    sandbox.set_faults("skytelecom", Faults(drop_after_accept_every=1))
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await send(sandbox, "skytelecom", client)
    assert [e.recipient for e in sandbox.ledger] == ["12025550123"]
    assert sandbox.wallet is not None and sandbox.wallet < 100


async def test_drop_after_accept_then_idempotent_retry_bills_once(sandbox: Sandbox) -> None:
    """A dropped send retried with the same Idempotency-Key is answered and billed once."""
    sandbox.set_faults("smsvoip", Faults(drop_after_accept_every=1))
    headers = {**SMSVOIP, "Idempotency-Key": "retry-1"}
    url = sandbox.base_url("smsvoip") + "/sms/send"
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await client.post(url, json=SEND, headers=headers)
        retried = await client.post(url, json=SEND, headers=headers)
    assert retried.status_code == 200
    assert [e.message_id for e in sandbox.ledger] == [retried.json()["message_id"]]


async def test_reset_before_processing_bills_nothing(sandbox: Sandbox) -> None:
    """The connection is reset before processing: a transport error and an empty ledger."""
    sandbox.set_faults("skynoo", Faults(reset_before_every=1))
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.TransportError):
            await send(sandbox, "skynoo", client)
    assert sandbox.ledger == []


async def test_rate_limit_window_refuses_excess_and_records_violations(
    sandbox: Sandbox,
) -> None:
    """With 3 per 1 s, the 4th and 5th requests are 429, recorded, and the window frees."""
    sandbox.set_faults("voipex", Faults(rate_limit=(3, 1.0)))
    async with httpx.AsyncClient() as client:
        answers = [await send(sandbox, "voipex", client) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert 0 < float(answers[3].headers["Retry-After"]) <= 1.0
        assert answers[3].json()["status"] == 429
        assert [(v.provider, v.limit, v.period_s) for v in sandbox.violations] == [
            ("voipex", 3, 1.0)
        ] * 2
        remote = (await client.get(sandbox.url + "/_sandbox/violations")).json()
        assert remote["count"] == 2 and remote["violations"][0]["path"] == "/voipex/SMS"

        async def admitted() -> bool:
            return (await send(sandbox, "voipex", client)).status_code == 200

        await eventually(admitted)
    assert len(sandbox.ledger) == 4


async def test_faults_set_over_http_and_reset_clears(sandbox: Sandbox) -> None:
    """``POST /_sandbox/faults/{kind}`` sets faults; ``/_sandbox/reset`` clears the records."""
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        await send(sandbox, "smsvoip", client)
        bad = await client.post("/_sandbox/faults/smsvoip", json={"nonsense": 1})
        assert bad.status_code == 400
        unknown = await client.post("/_sandbox/faults/nowhere", json={})
        assert unknown.status_code == 404
        ok = await client.post(
            "/_sandbox/faults/smsvoip", json={"throttle_every": 1, "rate_limit": [1, 60]}
        )
        assert ok.status_code == 200
        assert (await send(sandbox, "smsvoip", client)).status_code == 429
        assert (await send(sandbox, "smsvoip", client)).status_code == 429
        assert len(sandbox.violations) == 1
        assert (await client.get("/_sandbox/ledger")).json()["count"] == 1
        assert (await client.post("/_sandbox/reset")).status_code == 200
        assert (await client.get("/_sandbox/ledger")).json() == {"count": 0, "entries": []}
        assert sandbox.violations == []
        await client.post("/_sandbox/faults/smsvoip", json={})
        assert (await send(sandbox, "smsvoip", client)).status_code == 200
        await client.post("/_sandbox/suspend/smsvoip", json={"suspended": True})
        assert (await send(sandbox, "smsvoip", client)).status_code == 403


async def test_faults_from_settings_apply_from_the_start() -> None:
    """Faults given in the settings are active from the first request."""
    accounts = {"smsvoip": replace(DEFAULT_CREDENTIALS["smsvoip"], faults=Faults(throttle_every=1))}
    async with (
        running_sandbox(fast_settings(accounts=accounts)) as sandbox,
        httpx.AsyncClient() as client,
    ):
        assert (await send(sandbox, "smsvoip", client)).status_code == 429
        assert (await send(sandbox, "skynoo", client)).status_code == 200


async def test_server_survives_garbage_on_the_wire(sandbox: Sandbox) -> None:
    """A malformed request gets 400 and closes that connection only."""
    port = int(sandbox.url.rsplit(":", 1)[1])
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        await stream.send(b"NOT HTTP AT ALL\r\n\r\n")
        with anyio.fail_after(5):
            assert (await stream.receive()).startswith(b"HTTP/1.1 400")
    async with httpx.AsyncClient() as client:
        assert (await send(sandbox, "smsvoip", client)).status_code == 200


@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200),
    count=st.integers(min_value=1, max_value=10),
    period=st.floats(min_value=0.05, max_value=2.0),
)
def test_sliding_window_never_admits_more_than_count_per_period(
    gaps: list[float], count: int, period: float
) -> None:
    """Whatever the arrival times, no window of ``period`` holds more than ``count`` admitted."""
    state = FaultState("smsvoip", Faults(rate_limit=(count, period)), seed=0)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if state.admit(now) is None:
            admitted.append(now)
    for i, start in enumerate(admitted):
        assert sum(1 for t in admitted[i:] if t < start + period) <= count


def test_every_nth_fault_counts_requests_and_sends_separately() -> None:
    """Throttle counts every admitted request; drop-after-accept counts billed ones only."""
    state = FaultState("skynoo", Faults(throttle_every=2, drop_after_accept_every=2), seed=0)
    assert [state.before() for _ in range(4)] == [Action.PROCESS, Action.THROTTLE] * 2
    assert [state.drop_after_accept() for _ in range(4)] == [False, True, False, True]


async def test_requests_pipelined_after_a_reset_are_not_processed(sandbox: Sandbox) -> None:
    """Three pipelined sends, the 2nd reset: only the 1st is billed, the 3rd never runs."""
    sandbox.set_faults("smsvoip", Faults(reset_before_every=2))
    port = int(sandbox.url.rsplit(":", 1)[1])
    send = (
        b"POST /smsvoip/sms/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_sandbox\r\n"
        b'Content-Length: 36\r\n\r\n{"to": "+15551234567", "text": "Hi"}'
    )
    stream = await anyio.connect_tcp("127.0.0.1", port)
    received = b""
    async with stream:
        await stream.send(send * 3)
        with anyio.fail_after(5):
            try:
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass
    assert received.count(b"HTTP/1.1 200") <= 1
    assert len(sandbox.ledger) == 1
