"""Delivery reports: posted to the callback URL when a message becomes final.

One pump task waits for the next due report and hands it to a few poster tasks; every task
runs in the sandbox's task group. A report that cannot be posted is retried a few times,
then dropped with a log line; nothing here can stop the server. Only loopback URLs are
posted to.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.sandbox.choices import (
    CALLBACK_ATTEMPTS,
    CALLBACK_BACKOFF_S,
    CALLBACK_TIMEOUT_S,
    CALLBACK_WORKERS,
)
from engine.sandbox.messages import SentMessage
from engine.sandbox.settings import is_loopback_url

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("engine.sandbox")

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Report:
    """One callback to post; ``sign`` gives extra headers for each attempt (e.g. a signature)."""

    provider: str
    message_id: str
    url: str
    body: bytes
    sign: Callable[[bytes], Headers] | None = None


ReportMaker = Callable[[SentMessage], Report | None]


class Reporter:
    """Schedules reports at each message's ``final_at`` and posts them; *on_posted* hears
    (provider kind, message id) of each report the receiver acknowledged."""

    def __init__(self, on_posted: Callable[[str, str], None] | None = None) -> None:
        self.on_posted = on_posted
        self._heap: list[tuple[float, int, SentMessage, ReportMaker]] = []
        self._order = itertools.count()
        self._wakeup = anyio.Event()
        self._send: MemoryObjectSendStream[Report]
        self._receive: MemoryObjectReceiveStream[Report]
        self._send, self._receive = anyio.create_memory_object_stream[Report](math.inf)
        self._session: aiohttp.ClientSession | None = None
        self.posted = 0
        self.dropped = 0
        self._in_flight = 0

    def settled(self, now: float | None = None) -> bool:
        """True when no report due by *now* is waiting or being posted."""
        due = self._heap and self._heap[0][0] <= (time.time() if now is None else now)
        return not due and self._in_flight == 0

    def schedule(self, message: SentMessage, make: ReportMaker) -> None:
        heapq.heappush(self._heap, (message.final_at, next(self._order), message, make))
        self._wakeup.set()

    async def run(self, task_group: TaskGroup) -> None:
        """Start the pump and posters in ``task_group``; they run until it is cancelled."""
        import aiohttp  # ~0.3 s to import: only a serving sandbox pays for it

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            headers={"User-Agent": "dispatch-sandbox"},
        )
        task_group.start_soon(self._pump)
        for _ in range(CALLBACK_WORKERS):
            task_group.start_soon(self._post_forever, self._receive.clone())

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _pump(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            wait = heap[0][0] - time.time()
            if wait > 0:
                with anyio.move_on_after(wait):
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                continue
            _, _, message, make = heapq.heappop(heap)
            try:
                report = make(message)
            except Exception:
                log.exception("sandbox.callback_build_failed", provider=message.kind)
                continue
            if report is not None:
                self._in_flight += 1
                self._send.send_nowait(report)

    async def _post_forever(self, receive: MemoryObjectReceiveStream[Report]) -> None:
        async with receive:
            async for report in receive:
                try:
                    await self._post(report)
                finally:
                    self._in_flight -= 1

    async def _post(self, report: Report) -> None:
        import aiohttp

        if not is_loopback_url(report.url):
            self.dropped += 1
            log.warning("sandbox.callback_refused", provider=report.provider, url=_safe(report.url))
            return
        error = ""
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            headers = {"Content-Type": "application/json"}
            if report.sign is not None:
                headers.update(report.sign(report.body))
            try:
                assert self._session is not None
                async with self._session.post(report.url, data=report.body, headers=headers) as r:
                    await r.read()
                    if r.status < 500:
                        self.posted += 1
                        if self.on_posted is not None:
                            self.on_posted(report.provider, report.message_id)
                        return
                    error = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = type(exc).__name__
            if attempt < CALLBACK_ATTEMPTS:
                await anyio.sleep(CALLBACK_BACKOFF_S * 2 ** (attempt - 1))
        self.dropped += 1
        log.warning(
            "sandbox.callback_dropped",
            provider=report.provider,
            message_id=report.message_id,
            url=_safe(report.url),
            error=error,
            attempts=CALLBACK_ATTEMPTS,
        )


def _safe(url: str) -> str:
    """The URL without user info or query, which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
