"""The webhook receiver: one HTTP server on 127.0.0.1 for every provider that pushes reports.

It reuses the sandbox's small HTTP/1.1 server (:mod:`engine.sandbox.wire`, ``httptools`` on
an asyncio ``Protocol``): a request is checked and parsed synchronously, its report queued,
and one writer task stores queued reports in batches (one transaction each,
:meth:`~engine.store.protocols.DeliveryLedger.record_reports`). A ``200`` is sent
only once the batch holding the request's report is committed (group commit), so an answered
report is never lost; a provider retries anything else.

Answers: ``200`` stored (or a well-formed callback that is not a delivery report);
``401`` bad, missing, replayed-with-stale-``t`` or forged signature, or a wrong path token;
``400`` unreadable body or missing fields; ``404`` unknown path; ``405`` not POST;
``503`` the queue is full (the provider retries). Nothing a client sends can stop it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import structlog
from anyio.abc import TaskGroup

from engine.delivery.reports import (
    PARSERS,
    BadReport,
    Endpoint,
    callback_urls,
    to_report,
    verify_signature,
)
from engine.errors import ConfigError
from engine.sandbox.wire import HttpProtocol, Request, Response, json_response
from engine.store.delivery_records import DeliveryReport
from engine.store.protocols import DeliveryLedger

log = structlog.get_logger()

LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_QUEUED: Final = 50_000
"""Reports waiting for the writer before new ones are answered 503."""
BATCH_MAX: Final = 5_000
RETRY_UNMATCHED_S: Final = 1.0
"""How often stored reports still without their message are tried again while idle."""
WRITE_ATTEMPTS: Final = 3
WRITE_BACKOFF_S: Final = 0.2

_OK: Final = json_response({"status": "ok"})
_IGNORED: Final = json_response({"status": "ignored"})
_UNAUTHORIZED: Final = json_response({"error": "unauthorized"}, 401)
_NOT_FOUND: Final = json_response({"error": "not found"}, 404)
_NOT_ALLOWED: Final = Response(405, b'{"error":"POST only"}', (("Allow", "POST"),))
_BUSY: Final = Response(503, b'{"error":"busy"}', (("Retry-After", "1"),))


@dataclass(slots=True)
class ReceiverStats:
    received: int = 0
    queued: int = 0
    ignored: int = 0
    unauthorized: int = 0
    bad: int = 0
    not_found: int = 0
    busy: int = 0
    stored: int = 0
    batches: int = 0
    unmatched: int = 0
    write_failures: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)


class Receiver:
    """Checks and queues reports; :meth:`run_writer` stores them."""

    def __init__(self, store: DeliveryLedger, found: Sequence[Endpoint]) -> None:
        self._store = store
        self._routes = {e.path: e for e in found}
        self._names = {e.provider: e for e in found}
        self._pending: list[DeliveryReport] = []
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()
        self._queued_total = 0
        self._written_total = 0
        self._wake = anyio.Event()
        self._task_group: TaskGroup | None = None
        self.stats = ReceiverStats()
        self.endpoints = tuple(found)
        self.url = ""

    # --- the wire.Application protocol --------------------------------------------------

    def handle(self, request: Request) -> Response:
        self.stats.received += 1
        endpoint = self._routes.get(request.path)
        if endpoint is None:
            name = request.path.strip("/").partition("/")[0]
            if name in self._names:
                self.stats.unauthorized += 1
                return _UNAUTHORIZED
            self.stats.not_found += 1
            return _NOT_FOUND
        if request.method != "POST":
            return _NOT_ALLOWED
        if endpoint.signed and not verify_signature(
                request.headers.get("x-signature"), request.body, endpoint.secret):
            self.stats.unauthorized += 1
            return _UNAUTHORIZED
        try:
            status = PARSERS[endpoint.kind](request.body)
        except BadReport as exc:
            self.stats.bad += 1
            return json_response({"error": str(exc)}, 400)
        if status is None:
            self.stats.ignored += 1
            return _IGNORED
        if len(self._pending) >= MAX_QUEUED:
            self.stats.busy += 1
            return _BUSY
        self._pending.append(to_report(endpoint.provider, status, time.time()))
        self._queued_total += 1
        self.stats.queued += 1
        by = self.stats.by_provider
        by[endpoint.provider] = by.get(endpoint.provider, 0) + 1
        self._wake.set()
        return _OK

    def after_commit(self, action: Callable[[], None]) -> None:
        """Answer once every report queued so far is stored (now, if none is waiting)."""
        if self._queued_total > self._written_total:
            self._waiters.append((self._queued_total, action))
        else:
            action()

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._task_group is not None:
            self._task_group.start_soon(work)

    # --- the writer -----------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Store queued reports in batches until cancelled; what is queued then is stored."""
        try:
            while True:
                with anyio.move_on_after(RETRY_UNMATCHED_S):
                    await self._wake.wait()
                self._wake = anyio.Event()
                if self._pending or self.stats.unmatched:
                    await self._flush()
        finally:
            with anyio.CancelScope(shield=True):
                while self._pending:
                    await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                result = await self._store.record_reports(batch)
            except Exception as exc:
                self.stats.write_failures += 1
                log.warning("webhooks.write_failed", reports=len(batch), attempt=attempt,
                            error=type(exc).__name__)
                if attempt < WRITE_ATTEMPTS:
                    await anyio.sleep(WRITE_BACKOFF_S * attempt)
                continue
            self.stats.stored += result.stored
            self.stats.unmatched = result.unmatched
            break
        else:
            log.error("webhooks.reports_dropped", reports=len(batch))
        self.stats.batches += 1
        self._written_total += len(batch)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self._written_total:
            waiters.popleft()[1]()


@asynccontextmanager
async def running_receiver(store: DeliveryLedger, found: Sequence[Endpoint], *,
                           host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Receiver]:
    """Serve *found* endpoints on *host*:*port* (0: any free port) in the current asyncio
    loop; ``receiver.url`` is the base URL. Queued reports are stored before it returns."""
    if host not in LOOPBACK:
        raise ConfigError(f"the webhook receiver listens on 127.0.0.1 only, not {host!r}",
                          key="--host")
    receiver = Receiver(store, found)
    connections: set[HttpProtocol] = set()
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(lambda: HttpProtocol(receiver, connections), host,
                                          port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}", key="--webhooks") from None
    bound = server.sockets[0].getsockname()[1]
    receiver.url = f"http://{'127.0.0.1' if host == 'localhost' else host}:{bound}"
    log.debug("webhooks.listening", url=receiver.url, providers=[e.provider for e in found])
    try:
        async with anyio.create_task_group() as tg:
            receiver._task_group = tg
            tg.start_soon(receiver.run_writer)
            try:
                yield receiver
            finally:
                server.close()
                for connection in list(connections):
                    connection.close()
                tg.cancel_scope.cancel()
    finally:
        await server.wait_closed()
        s = receiver.stats
        # Worth a person's attention only when something was turned away.
        (log.info if s.unauthorized or s.bad else log.debug)(
            "webhooks.stopped", received=s.received, stored=s.stored, batches=s.batches,
            unauthorized=s.unauthorized, bad=s.bad, ignored=s.ignored, unmatched=s.unmatched)


def describe(receiver: Receiver) -> dict[str, str]:
    """Provider name -> the callback URL to configure (holds path tokens: print, never log)."""
    return callback_urls(receiver.endpoints, receiver.url)
