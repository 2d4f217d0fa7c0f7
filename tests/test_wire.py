"""The Wire: what reaches a provider, through the fast path (the engine's aiohttp pool) and
through any other httpx transport, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

import engine.providers.http as http
from engine.limits import Slot
from engine.providers.base import Outcome
from engine.providers.http import (
    AiohttpPool,
    RateLimitedTransport,
    Wire,
    classify_error,
    exchange_of,
    json_body,
)

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer k-123"}


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """Answers every request with what it saw, as JSON; ``/gzip`` compressed, ``/drop``
    closes the connection after reading the request, ``/slow`` answers after a second."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        state.seen.append(Seen(request.method, request.path, dict(request.query),
                               dict(request.headers), body))
        state.in_flight += 1
        state.most_in_flight = max(state.most_in_flight, state.in_flight)
        try:
            if request.path.endswith("/drop"):
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            await anyio.sleep(1.0 if request.path.endswith("/slow") else 0.01)
        finally:
            state.in_flight -= 1
        echo = json.dumps({"path": request.path, "body": body.decode()}).encode()
        if request.path.endswith("/gzip"):
            return web.Response(body=gzip.compress(echo), headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"})
        return web.Response(body=echo, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api"
    try:
        yield state
    finally:
        await runner.cleanup()


class Recording(httpx.AsyncBaseTransport):
    """httpx-aiohttp's own transport behind a generic wrapper: the Wire's httpx path."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Counting:
    """A limiter that lets everything through and counts the places it gave."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> Slot:
        self.acquired += 1
        return Slot(None)


def same_request(seen: Seen) -> tuple[Any, ...]:
    kept = ("user-agent", "accept", "authorization", "content-type", "idempotency-key")
    headers = {k.lower(): v for k, v in seen.headers.items() if k.lower() in kept}
    return seen.method, seen.path, seen.query, headers, seen.body


async def exchange_twice(wire: Wire) -> None:
    await wire.post("/send", json={"to": "+421900123456", "text": "Ďakujeme 😀"},
                    headers={"Idempotency-Key": "camp-1-2"})
    await wire.get("/logs", params={"from": "2026-01-20T10:00:00+00:00", "page": "2"})


async def test_fast_path_sends_what_an_httpx_request_sends(server: Server) -> None:
    """Method, path, query, headers and body bytes are the same through the pool's exchange
    as through an httpx.Request on httpx-aiohttp: JSON as httpx encodes it, UTF-8 unescaped."""
    fast = Wire(server.url, AiohttpPool(), AUTH)
    slow = Wire(server.url, Recording(), AUTH)
    assert exchange_of(AiohttpPool()) is not None and exchange_of(Recording()) is None
    for wire in (fast, slow):
        await exchange_twice(wire)
        await wire.aclose()
    first, second = server.seen[:2], server.seen[2:]
    assert [same_request(s) for s in first] == [same_request(s) for s in second]
    assert first[0].body == '{"to":"+421900123456","text":"Ďakujeme 😀"}'.encode()
    assert first[0].headers["Idempotency-Key"] == "camp-1-2"
    assert first[1].query == {"from": "2026-01-20T10:00:00+00:00", "page": "2"}
    assert "Idempotency-Key" not in first[1].headers


async def test_answer_is_read_once_and_decoded(server: Server) -> None:
    """The answer comes back read, and reads the same every way httpx offers: a plain body
    as it came, a gzip body decoded once."""
    wire = Wire(server.url, AiohttpPool())
    try:
        plain = await wire.post("/plain", json={"a": 1})
        packed = await wire.post("/gzip", json={"a": 1})
    finally:
        await wire.aclose()
    for answer, path in ((plain, "/api/plain"), (packed, "/api/gzip")):
        expected = {"path": path, "body": '{"a":1}'}
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert json_body(answer) == answer.json() == json.loads(answer.text) == expected
        assert await answer.aread() == answer.content == answer.read()
        assert [chunk async for chunk in answer.aiter_bytes()] == [answer.content]


async def test_every_request_takes_a_limiter_place_and_a_connection_slot(
        server: Server) -> None:
    """Through the rate-limited pool, 40 requests take 40 places in the limit, and no more
    than the concurrency are at the server at once."""
    limiter = Counting()
    wire = Wire(server.url, RateLimitedTransport(AiohttpPool(), limiter, 3))
    try:
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(lambda i=i: wire.post("/send", json={"n": i}))
    finally:
        await wire.aclose()
    assert limiter.acquired == 40 and len(server.seen) == 40
    assert server.most_in_flight <= 3


async def test_a_connection_dropped_after_the_request_is_unknown(server: Server) -> None:
    """A drop after the request was written raises an httpx error whose aiohttp cause makes it
    UNKNOWN (never retried blind); a refused connection is NOT_PROCESSED."""
    wire = Wire(server.url, AiohttpPool())
    try:
        with pytest.raises(httpx.HTTPError) as dropped:
            await wire.post("/drop", json={"to": "+421900123456"})
    finally:
        await wire.aclose()
    assert len(server.seen) == 1
    assert classify_error(dropped.value) is Outcome.UNKNOWN
    refused = Wire("http://127.0.0.1:9/api", AiohttpPool())
    try:
        with pytest.raises(httpx.HTTPError) as nobody:
            await refused.post("/send", json={})
    finally:
        await refused.aclose()
    assert classify_error(nobody.value) is Outcome.NOT_PROCESSED


async def test_a_read_timeout_is_unknown(server: Server, monkeypatch: pytest.MonkeyPatch,
                                         ) -> None:
    """An answer later than the read timeout is an httpx error classified UNKNOWN."""
    import aiohttp

    monkeypatch.setattr(http, "AIOHTTP_TIMEOUT", aiohttp.ClientTimeout(sock_read=0.1))
    wire = Wire(server.url, AiohttpPool())
    try:
        with pytest.raises(httpx.HTTPError) as late:
            await wire.post("/slow", json={})
    finally:
        await wire.aclose()
    assert classify_error(late.value) is Outcome.UNKNOWN


async def test_mock_transport_gets_an_httpx_request_with_the_timeouts() -> None:
    """Any other httpx transport gets a full httpx.Request (URL joined, headers, timeouts),
    and the answer carries it."""
    got: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(201, json={"id": "m-1"})

    wire = Wire("https://provider.example/v1/", httpx.MockTransport(handler), AUTH)
    answer = await wire.post("/sms", json={"to": "1"})
    await wire.aclose()
    request = got[0]
    assert str(request.url) == "https://provider.example/v1/sms"
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["content-type"] == "application/json"
    assert request.extensions["timeout"] == http.TIMEOUTS
    assert answer.request is request and json_body(answer) == {"id": "m-1"}
