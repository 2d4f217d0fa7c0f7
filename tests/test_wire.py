"""The Wire: what reaches a provider, through the fast path (the engine's aiohttp pool) and
through any other httpx transport, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
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
from hypothesis import given
from hypothesis import strategies as st

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
    read_response,
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
                tg.start_soon(functools.partial(wire.post, "/send", json={"n": i}))
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


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


def loads_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


@given(JSON_VALUES)
def test_a_body_is_encoded_as_httpx_encodes_it(value: Any) -> None:
    """The Wire's JSON body is byte for byte httpx's (``json.dumps`` compact, UTF-8
    unescaped), and what httpx refuses (NaN, infinities) is refused the same way."""
    try:
        expected: str | None = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                          allow_nan=False)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            http._encode_json(value)
    else:
        assert http._encode_json(value) == expected


ODD_BODIES = [b"", b"{", b"null", b' {"a": 1} ', b'{"a": 1}\n', b'{"a": 1} x', b"\xef\xbb\xbf{}",
              '{"a": "\u010f"}'.encode("utf-16"), '[1, "\u010f"]'.encode("utf-16-le"),
              b'{"a": NaN, "b": Infinity}', b'{"a": 1, "a": 2}', b'"\xff"', b"<html>503</html>",
              b'{"big": 123456789012345678901234567890, "f": 1e400}', b'{"s": "\\ud800"}']


@pytest.mark.parametrize("content", ODD_BODIES)
def test_a_body_is_parsed_as_json_loads_parses_it(content: bytes) -> None:
    """``json_body`` reads every body as ``json.loads`` does (``None`` where it raises),
    whichever way it takes: encodings, BOM, whitespace, trailing data, NaN, huge numbers."""
    for response in (read_response(200, [], content, None),
                     httpx.Response(200, content=content)):
        assert repr(json_body(response)) == repr(loads_or_none(content))


@given(JSON_VALUES, st.sampled_from(["", " ", "\n"]))
def test_any_json_answer_is_parsed_as_json_loads_parses_it(value: Any, around: str) -> None:
    """For any JSON value, compact or spaced, as sent: the same as ``json.loads``."""
    content = f"{around}{json.dumps(value, ensure_ascii=False)}{around}".encode()
    assert repr(json_body(read_response(200, [], content, None))) == repr(loads_or_none(content))


def test_an_answer_is_parsed_once_and_reads_its_headers_when_asked() -> None:
    """The engine's read answer gives the same parsed body every time it is asked (one
    parse), and its headers, status and text as an httpx.Response of the same bytes."""
    raw = [(b"Content-Type", b"application/json"), (b"Retry-After", b"7")]
    content = b'{"id": "m-1"}'
    answer = read_response(429, raw, content, None)
    same = httpx.Response(429, headers=raw, stream=httpx.ByteStream(content))
    same.read()
    assert json_body(answer) is json_body(answer) == {"id": "m-1"}
    assert answer.status_code == same.status_code and answer.text == same.text
    assert answer.headers == same.headers and answer.headers["retry-after"] == "7"
    assert answer.is_closed and answer.content == content


async def test_a_failed_or_cancelled_request_gives_its_slot_back(server: Server) -> None:
    """Requests that fail (refused, dropped) or are cancelled while waiting for a slot give
    their places back: afterwards all the concurrency is free for the next requests."""
    transport = RateLimitedTransport(AiohttpPool(), Counting(), 2)
    wire = Wire(server.url, transport)
    refused = Wire("http://127.0.0.1:9/api", RateLimitedTransport(AiohttpPool(), Counting(), 2))
    try:
        for _ in range(3):
            with pytest.raises(httpx.HTTPError):
                await wire.post("/drop", json={})
            with pytest.raises(httpx.HTTPError):
                await refused.post("/send", json={})
        with anyio.move_on_after(0.2):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(functools.partial(wire.post, "/slow", json={}))
        with anyio.fail_after(5):  # a slot not given back would leave these waiting
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(functools.partial(wire.post, "/send", json={"n": i}))
    finally:
        await wire.aclose()
        await refused.aclose()
    assert sorted(s.body for s in server.seen if s.path == "/api/send") == [
        b'{"n":%d}' % i for i in range(4)]
