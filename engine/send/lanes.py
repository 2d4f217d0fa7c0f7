"""A lane per provider: its workers' queue, the backlog its feeder keeps ahead of them, its
``Retry-After`` pause and whether it stopped.

A lane's rate limit is not here: the adapter's transport applies it to every request
(:mod:`engine.limits`). The dispatcher's parts share lanes; only the dispatcher makes them.
"""

from __future__ import annotations

import math
import time
from typing import Final

import anyio

from engine.config import ProviderConfig
from engine.limits import SlidingWindowLimiter, Unlimited
from engine.providers.base import Provider
from engine.send.jobs import Job

FEED_AHEAD_PER_WORKER: Final = 8
"""Messages fed ahead per worker of a lane."""
CLAIM_PAGE_MAX: Final = 500
CLAIM_PAGE_SECONDS: Final = 2.0
"""A claim takes about this many seconds of a rate-limited lane's sending (at least its
backlog, at most :data:`CLAIM_PAGE_MAX`): a worker holds no more than it sends soon, so
that other workers of the campaign find work too."""
BULK_WORKERS: Final = 2
"""Batches in flight at once on a provider with a bulk API: one collects while one sends."""


class Backlog:
    """The messages fed to a lane and not yet taken by a worker, at most *limit*.

    A feeder that waited for each slot freed would be woken once per message sent; this one
    is woken when the backlog has drained to half, and then refills it in one go.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._room = anyio.Event()

    def try_take(self) -> bool:
        """Take a slot if one is free, without waiting."""
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    async def take(self) -> None:
        """Take a slot, waiting until the backlog has drained to half if it is full."""
        while self.held >= self.limit:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
        self.held += 1

    def release(self) -> None:
        """Give a slot back (a worker took its message)."""
        self.held -= 1
        if self.held <= self.limit // 2:
            self._room.set()


class Lane:
    """One provider: its workers' queue (an unbounded stream: the backlog bounds what is
    fed), the lines queued on it, its ``Retry-After`` pause, and why it stopped (``down``),
    if it did.

    ``down`` given at the start is preflight's reason; a refusal for the account sets it
    during the run. ``accepted`` counts this run's acceptances through the lane.
    """

    def __init__(self, config: ProviderConfig, adapter: Provider, down: str | None,
                 limiter: SlidingWindowLimiter | Unlimited | None = None,
                 settles_unknown: bool = True) -> None:
        self.name = config.name
        self.config = config
        self.adapter = adapter
        self.send, self.receive = anyio.create_memory_object_stream[Job](math.inf)
        self.down = down
        self.paused_until = 0.0
        """Until when (``time.monotonic``) the provider asked for no request."""
        self.queued: set[int] = set()
        self.accepted = 0
        self.collecting = anyio.Lock()
        """Held by the bulk worker that collects a batch, so that batches fill one by one."""
        self.mark_ahead = settles_unknown and adapter.max_batch == 1 and (
            adapter.supports_idempotency or adapter.can_lookup)
        """Its claims take messages straight to ``sending`` (see :mod:`engine.send.feeding`);
        never in a campaign whose unknown outcomes are only reported."""
        self.workers = (config.concurrency if adapter.max_batch == 1
                        else min(config.concurrency, BULK_WORKERS))
        self.backlog = Backlog(max(config.concurrency * FEED_AHEAD_PER_WORKER,
                                   2 * self.workers * adapter.max_batch))
        """Room for two full batches per bulk worker: a smaller backlog caps every batch."""
        self.limiter = limiter if isinstance(limiter, SlidingWindowLimiter) else None
        """The provider's limiter in this process, where it has a rate limit: its count is
        this process's share of the limit when processes share it."""

    @property
    def claim_rows(self) -> int:
        """How many messages its feeder claims at a time: about :data:`CLAIM_PAGE_SECONDS`
        of the lane's rate (this process's share of it), at least its backlog."""
        limit = self.config.rate_limit
        if limit is None:
            return max(self.backlog.limit, CLAIM_PAGE_MAX)
        count = self.limiter.count if self.limiter is not None else limit.count
        per_claim = int(count / limit.period_s * CLAIM_PAGE_SECONDS * self.adapter.max_batch)
        return max(self.backlog.limit, min(CLAIM_PAGE_MAX, per_claim))

    def enqueue(self, job: Job) -> None:
        """Queue *job* for this lane's workers."""
        self.queued.add(job.line)
        self.send.send_nowait(job)

    async def wait_unpaused(self) -> None:
        """Sleep out a ``Retry-After`` pause, including any extension made meanwhile."""
        while (wait := self.paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await anyio.sleep(wait)
