"""Settling: what an answer means for its message, and the money.

What a failed attempt means decides what happens next (DESIGN.md, "Concurrency and limits"):
throttled pauses the whole lane for ``Retry-After``; not processed is retried with backoff and
jitter, then failed over; outcome unknown is resent with the same key where the provider
honours keys, looked up where it keeps logs, and otherwise left ``unknown`` and reported;
refused for the message fails over when another route may take it; refused for the account
stops the lane and moves its queue to the next routes.

Every job ends here once: accepted, recorded (``failed`` or ``unknown``) or left for a later
run (``pending`` again, or ``unknown`` if its last outcome is), each a settlement queued in
the outbox. The money: an acceptance counts what the provider charged (in the routing
currency) or else the estimate, and corrects the campaign's committed money by the
difference; an ``unknown`` counts its estimate as spent (it may have been sent); a failure
or a message left ``pending`` gives its reservation back. A message failed over is written
with its new route and price, still held, before it moves, so a line is only ever in one
lane.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import anyio
import structlog

from engine.providers.base import Outcome, SendResult
from engine.routing import to_nanos
from engine.send.jobs import Job
from engine.send.lanes import Lane
from engine.send.state import RunState
from engine.store.records import Settlement
from engine.store.states import CLAIMED, UNKNOWN

log = structlog.get_logger()

HOME_CACHE_ENTRIES: Final = 10_000
MAX_NOT_PROCESSED_ATTEMPTS: Final = 6
MAX_SAME_KEY_RESENDS: Final = 4
BACKOFF_BASE_S: Final = 0.25
BACKOFF_MAX_S: Final = 15.0
LOOKUP_DELAY_S: Final = 1.0
LOOKUP_ATTEMPTS: Final = 4


class Settling(RunState):
    """The dispatcher's settling part: interprets a :class:`SendResult` for its job and
    settles, retries, looks up or fails the job over. Each job reaches exactly one of
    :meth:`_accept`, :meth:`_record` or :meth:`_leave` (which finish it) unless it is
    requeued or moved, and then it comes back here."""

    async def _handle(self, lane: Lane, job: Job, result: SendResult) -> None:
        """Act on the answer to *job*'s attempt through *lane*."""
        outcome = result.outcome
        job.unsure = outcome is Outcome.UNKNOWN
        if outcome is Outcome.ACCEPTED:
            self._accept(lane, job, result)
        elif outcome is Outcome.THROTTLED:
            pause = result.retry_after_s if result.retry_after_s is not None else 1.0
            lane.paused_until = max(lane.paused_until, time.monotonic() + pause)
            log.info("provider.throttled", provider=lane.name, retry_after=pause)
            self._requeue(lane, job, 0.0)
        elif outcome is Outcome.NOT_PROCESSED:
            if job.attempts >= MAX_NOT_PROCESSED_ATTEMPTS:
                lane.queued.discard(job.line)
                await self._fail_over(job, f"{lane.name}: not processed ({result.code})")
            else:
                self._requeue(lane, job, _backoff(job.attempts))
        elif outcome is Outcome.UNKNOWN:
            if lane.adapter.supports_idempotency and job.resends < MAX_SAME_KEY_RESENDS:
                job.resends += 1
                self._requeue(lane, job, _backoff(job.resends))
            elif lane.adapter.can_lookup:
                self._spawn(self._lookup, lane, job)
            else:
                self._record(lane, job, "unknown", "outcome_unknown", result)
        elif outcome is Outcome.REFUSED_MESSAGE:
            if result.try_other_route:
                lane.queued.discard(job.line)
                await self._fail_over(job, f"{lane.name} refused: {result.code}")
            else:
                self._record(lane, job, "failed", result.code or "refused", result)
        else:
            if lane.down is None:
                lane.down = f"{result.code}: {result.detail}"[:200]
                log.error("provider.stopped", provider=lane.name, reason=lane.down)
            lane.queued.discard(job.line)
            await self._fail_over(job, f"{lane.name} stopped: {lane.down}", account=True)

    def _accept(self, lane: Lane, job: Job, result: SendResult) -> None:
        """*job* was accepted: spent what the provider charged, else its estimate."""
        actual = self._home_nanos(result.cost, result.currency)
        self.spent_nanos += actual if actual is not None else job.cost_nanos
        lane.accepted += 1
        self.counts["accepted"] += 1
        self.outbox.settle(Settlement(
            "accepted", None, None, job.provider, job.route, job.price_nanos, job.cost_nanos,
            result.provider_message_id, actual, job.attempts, time.time(), job.line),
            actual - job.cost_nanos if actual is not None else 0)
        self._finish(lane, job)

    def _record(self, lane: Lane | None, job: Job, state: str, reason: str,
                result: SendResult | None, detail: str = "") -> None:
        """*job* ends ``failed`` or ``unknown`` (*state*) for *reason*."""
        if state == "unknown":
            self.spent_nanos += job.cost_nanos
        self.counts[state] += 1
        self.outbox.settle(Settlement(
            state, reason, (detail or (result.detail if result else ""))[:300] or None,
            job.provider, job.route, job.price_nanos, job.cost_nanos, None, None, job.attempts,
            time.time(), job.line), 0 if state == "unknown" else -job.cost_nanos)
        self._finish(lane, job)

    def _leave(self, lane: Lane | None, job: Job) -> None:
        """Not sent this run: left for the next one. It stays held (``claimed`` again if
        this run marked it ``sending``) until the run releases what it holds as it ends, so
        that no part of this run takes it up again; ``unknown`` if its last attempt's
        outcome is unknown."""
        self.counts["left"] += 1
        if job.marked:
            self.outbox.settle(Settlement(
                UNKNOWN if job.unsure else CLAIMED, "interrupted" if job.unsure else None, None,
                job.provider, job.route, job.price_nanos, job.cost_nanos, None, None,
                job.attempts, time.time(), job.line))
        self._finish(lane, job)

    def _requeue(self, lane: Lane, job: Job, delay_s: float) -> None:
        """Queue *job* on *lane* again after *delay_s*."""
        async def later() -> None:
            await anyio.sleep(delay_s)
            lane.enqueue(job)

        self._spawn(later)

    async def _lookup(self, lane: Lane, job: Job) -> None:
        """Find a message whose answer was lost in the provider's logs; resend if absent."""
        await anyio.sleep(LOOKUP_DELAY_S)
        sent_after = datetime.fromtimestamp((job.first_sent_at or time.time()) - 1, UTC)
        message = self._message(job)
        for attempt in range(1, LOOKUP_ATTEMPTS + 1):
            found = await lane.adapter.lookup(message, sent_after)
            if found is None:
                if job.resends >= MAX_SAME_KEY_RESENDS or self.stopping:
                    self._record(lane, job, "unknown", "outcome_unknown", None,
                                 "not in the provider's logs; not resent")
                    return
                job.resends += 1
                log.info("run.resend_after_lookup", provider=lane.name, line=job.line)
                lane.enqueue(job)
                return
            if found.outcome is Outcome.ACCEPTED:
                self._accept(lane, job, found)
                return
            if found.outcome is Outcome.REFUSED_ACCOUNT:
                break
            await anyio.sleep(_backoff(attempt))
        self._record(lane, job, "unknown", "lookup_failed", None,
                     "the provider's logs could not be read")

    async def _fail_over(self, job: Job, why: str, account: bool = False,
                         backpressure: bool = False) -> None:
        """Move *job* to its next route, still held (``claimed``); ``failed`` when none is
        left (``pending`` instead when no route is left only because providers are down: a
        later run may send it). With *backpressure* (a stopped lane's queue drained), wait
        for room in the next lane's backlog first."""
        self.counts["failed_over"] += 1
        job.tried |= {job.provider}
        for route in self.plans.get(job.plan_id, ()):
            lane = self.lanes.get(route.provider)
            if route.provider in job.tried or lane is None or lane.down:
                continue
            cost_before = job.cost_nanos
            job.provider, job.route = route.provider, route.route
            job.price_nanos = route.price_nanos
            job.cost_nanos = route.price_nanos * job.segments
            self.outbox.settle(Settlement(
                CLAIMED, None, f"failed over: {why}"[:300], job.provider, job.route,
                job.price_nanos, job.cost_nanos, None, None, job.attempts, time.time(),
                job.line), job.cost_nanos - cost_before)
            log.info("run.failover", line=job.line, to=job.provider, why=why)
            job.marked = job.unsure = False
            if backpressure:
                await lane.backlog.take()
                job.fed = True
            if self.stopping:
                self._leave(lane, job)
            else:
                lane.enqueue(job)
            return
        if account or all(lane.down for lane in self.lanes.values()):
            self._leave(None, job)
            if all(lane.down for lane in self.lanes.values()):
                self.stop("every provider is down")
            return
        self._record(None, job, "failed", "no_route_left", None, why)

    def _home_nanos(self, cost: Decimal | None, currency: str | None) -> int | None:
        """*cost* in the routing currency, in billionths; remembered, as a provider charges
        the same few amounts over and over and Decimal arithmetic is slow."""
        if cost is None or currency is None:
            return None
        try:
            return self._home_cache[cost, currency]
        except KeyError:
            pass
        nanos = (to_nanos(self.routing.to_home(cost, currency))
                 if currency == self.routing.currency or currency in self.routing.fx else None)
        if len(self._home_cache) < HOME_CACHE_ENTRIES:
            self._home_cache[cost, currency] = nanos
        return nanos


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt))
