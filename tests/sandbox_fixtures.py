"""Helpers shared by the sandbox tests: fast settings, auth headers, a callback receiver."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from aiohttp import web

from engine.sandbox import SandboxSettings, default_settings

DELAY_S: Final = 0.03
DEADLINE_S: Final = 5.0

SKY: Final = {"Authorization": "Bearer sky_test_key"}
SMSVOIP: Final = {"Authorization": "Bearer sk_test_sandbox"}
VOIPEX: Final = {"Authorization": "Bearer voipex-sandbox-jwt"}
SKYNOO: Final = {"Authorization": "Basic " + base64.b64encode(b"app_sandbox:sec_sandbox").decode()}


def fast_settings(**overrides: Any) -> SandboxSettings:
    """Default sandbox settings with a delivery delay of a few milliseconds."""
    overrides.setdefault("delivery_delay_s", DELAY_S)
    return default_settings(**overrides)


async def eventually(check: Callable[[], Awaitable[bool]], deadline_s: float = DEADLINE_S) -> None:
    """Poll ``check`` until it holds; fail after ``deadline_s``."""
    give_up = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > give_up:
            raise AssertionError("condition not reached before the deadline")
        await anyio.sleep(0.005)


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST it gets; answers ``status`` (200 unless a test changes it)."""

    url: str = ""
    posts: list[Post] = field(default_factory=list)
    status: int = 200

    async def wait_for(self, count: int) -> list[Post]:
        async def enough() -> bool:
            return len(self.posts) >= count

        await eventually(enough)
        return self.posts


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A delivery-report receiver on 127.0.0.1."""
    receiver = Receiver()

    async def record(request: web.Request) -> web.Response:
        receiver.posts.append(Post(request.path, dict(request.headers), await request.read()))
        return web.Response(status=receiver.status, text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
