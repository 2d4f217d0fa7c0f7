"""The scheduler: one lane per provider, exact rate limits, checkpoints, failover, settling.

Each lane has a feeder paging the store's pending rows in line order, and ``concurrency``
workers (two on a bulk lane), one request in flight each, that mark a message ``sending``
(durably: a group commit) and then send it. Where a
provider lets an unknown outcome be settled exactly (the same idempotency key, or a look-up
in its logs), the feeder marks what it feeds, a backlog at a time (one commit waited for per
refill, not one per message), so a worker finds its message marked and sends at once. A
crash can then leave up to the lane's backlog (``FEED_AHEAD_PER_WORKER`` x ``concurrency``)
marked but never sent, which the next run settles exactly (found absent, sent once). Where
a provider gives no such way, an unsent mark would become an ``unknown`` that is never
resent, so its lane marks only what it is about to send. The provider's rate limit (every
window exact, see :mod:`engine.limits`) is applied by its adapter's transport to every
request it makes.

What a failed attempt means decides what happens next (DESIGN.md, "Concurrency and limits"):
throttled pauses the whole lane for ``Retry-After``; not processed is retried with backoff and
jitter, then failed over; outcome unknown is resent with the same key where the provider
honours keys, looked up where it keeps logs, and otherwise left ``unknown`` and reported;
refused for the message fails over when another route may take it; refused for the account
stops the lane and moves its queue to the next routes.

A message that is failed over is written with its new provider before it moves, and each
lane's feeder skips lines that moved during the run, so a line is only ever in one lane.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, Literal

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from engine.campaign import Campaign
from engine.config import ProviderConfig, RoutingConfig
from engine.providers.base import (
    NO_VARIABLES,
    OutboundMessage,
    Outcome,
    Provider,
    SendResult,
)
from engine.routing import to_nanos
from engine.store.protocols import Outbox
from engine.store.records import CampaignRecord, Outgoing, RatePlanRoute, Settlement
from engine.store.sqlite.plan_writer import VARIABLE_SEPARATOR
from engine.store.states import CLAIMED, UNKNOWN
from engine.template import Template

log = structlog.get_logger()

FEED_PAGE_ROWS: Final = 500
HOME_CACHE_ENTRIES: Final = 10_000
WATCH_OTHERS_S: Final = 1.0
"""While other workers hold messages, how often this one looks for dead ones to rescue."""
FEED_AHEAD_PER_WORKER: Final = 4
MAX_NOT_PROCESSED_ATTEMPTS: Final = 6
MAX_SAME_KEY_RESENDS: Final = 4
BACKOFF_BASE_S: Final = 0.25
BACKOFF_MAX_S: Final = 15.0
LOOKUP_DELAY_S: Final = 1.0
LOOKUP_ATTEMPTS: Final = 4
BATCH_LINGER_S: Final = 0.05
BULK_WORKERS: Final = 2
"""Batches in flight at once on a provider with a bulk API: one collects while one sends."""


@dataclass(slots=True)
class Job:
    line: int
    phone: str
    text: str
    encoding: str
    segments: int
    provider: str
    route: str
    price_nanos: int
    cost_nanos: int
    plan_id: int
    attempts: int
    tried: frozenset[str] = frozenset()
    """Providers this run failed it over from (a set made only then: most jobs never are)."""
    first_sent_at: float | None = None
    fed: bool = False
    resends: int = 0
    values: list[str] = field(default_factory=list)
    """The row's value for each placeholder of the campaign message, in order."""
    marked: bool = False
    """Marked ``sending`` in the store during this run."""
    marked_for: str | None = None
    """The lane whose feeder marked it for the attempt to come (:meth:`Dispatcher._feed`)."""
    unsure: bool = False
    """The last attempt's outcome is unknown."""

    def leaving(self, now: float) -> None:
        """Its request is about to leave: it is marked ``sending`` on disk by now."""
        self.attempts += 1
        self.marked = True
        self.marked_for = None
        if self.first_sent_at is None:
            self.first_sent_at = now

    @classmethod
    def of(cls, row: Outgoing, template: Template) -> Job:
        """The job of a stored message; its text is rendered from its variables unless the
        planner stored it (:func:`engine.plan.planner.plan_rows`)."""
        values = row.variables.split(VARIABLE_SEPARATOR) if row.variables else []
        text = row.text if row.text is not None else template.join(values)
        return cls(row.line, row.phone, text, row.encoding, row.segments, row.provider,
                   row.route or "", row.price_nanos, row.cost_nanos, row.plan_id, row.attempts,
                   first_sent_at=row.updated_at if row.state == "unknown" else None,
                   values=values)


@dataclass(frozen=True, slots=True)
class RunStats:
    accepted: int
    failed: int
    unknown: int
    failed_over: int
    left: int
    spent_nanos: int
    seconds: float
    by_provider: Mapping[str, int]


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
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    async def take(self) -> None:
        while self.held >= self.limit:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
        self.held += 1

    def release(self) -> None:
        self.held -= 1
        if self.held <= self.limit // 2:
            self._room.set()


class Lane:
    """One provider: its workers' queue, its ``Retry-After`` pause, whether it stopped.

    Its rate limit is not here: the adapter's transport applies it to every request.
    """

    def __init__(self, config: ProviderConfig, adapter: Provider, down: str | None) -> None:
        self.name = config.name
        self.config = config
        self.adapter = adapter
        self.send, self.receive = anyio.create_memory_object_stream[Job](math.inf)
        self.down = down
        self.paused_until = 0.0
        self.queued: set[int] = set()
        self.accepted = 0
        self.collecting = anyio.Lock()
        self.mark_ahead = adapter.max_batch == 1 and (adapter.supports_idempotency
                                                      or adapter.can_lookup)
        """Its feeder marks messages ``sending`` as it feeds them."""
        self.workers = (config.concurrency if adapter.max_batch == 1
                        else min(config.concurrency, BULK_WORKERS))
        self.backlog = Backlog(max(config.concurrency * FEED_AHEAD_PER_WORKER,
                                   2 * self.workers * adapter.max_batch))
        """Room for two full batches per bulk worker: a smaller backlog caps every batch."""

    async def wait_unpaused(self) -> None:
        """Sleep out a ``Retry-After`` pause, including any extension made meanwhile."""
        while (wait := self.paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await anyio.sleep(wait)


class Dispatcher:
    def __init__(self, *, outbox: Outbox, record: CampaignRecord, campaign: Campaign,
                 providers: Sequence[ProviderConfig], adapters: Mapping[str, Provider],
                 down: Mapping[str, str], plans: Mapping[int, list[RatePlanRoute]],
                 routing: RoutingConfig) -> None:
        self.outbox = outbox
        self.record = record
        self.campaign = campaign
        self.routing = routing
        self.plans = plans
        self.lanes = {p.name: Lane(p, adapters[p.name], down.get(p.name)) for p in providers
                      if p.name in adapters}
        self._home_cache: dict[tuple[Decimal, str], int | None] = {}
        self._key_prefix = f"{record.name}-{record.fingerprint}-"
        """A message's idempotency key is this and its line."""
        self.max_cost_nanos = (to_nanos(campaign.max_cost) if campaign.max_cost is not None
                               else None)
        self.stopping: str | None = None
        self.spent_nanos = 0
        self.over_budget = False
        """A claim found the campaign's next message past ``max_cost``: once what is held
        is sent, the run stops."""
        self._alive = 0
        self._feeding = 0
        self._done = anyio.Event()
        self._tg: TaskGroup | None = None
        self.started_at = time.monotonic()
        """When the dispatcher was made (``time.monotonic``): its run's seconds count from here."""
        self.counts = {"accepted": 0, "failed": 0, "unknown": 0, "failed_over": 0, "left": 0}
        self.totals: dict[str, int] = {}
        """Messages pending per provider when the run started (for progress displays)."""

    def stop(self, reason: str) -> None:
        """Take no new messages; what is in flight finishes and is checkpointed."""
        if self.stopping is None:
            self.stopping = reason
            log.warning("run.stopping", campaign=self.record.name, reason=reason)
        self._check_done()

    async def run(self) -> RunStats:
        self.spent_nanos = await self.outbox.spent_nanos()
        self.totals = await self.outbox.pending_by_provider()
        try:
            await self._run()
        finally:
            await self.outbox.stop()
            with anyio.CancelScope(shield=True):
                await self.outbox.release()
            for lane in self.lanes.values():
                lane.send.close()
                lane.receive.close()
        return RunStats(spent_nanos=self.spent_nanos,
                        seconds=time.monotonic() - self.started_at,
                        by_provider={n: lane.accepted for n, lane in self.lanes.items()},
                        **self.counts)

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.outbox.run)
            for lane in self.lanes.values():
                for _ in range(lane.workers):
                    tg.start_soon(self._worker, lane)
            while True:
                await self._round(tg)
                if self.stopping or self.over_budget or not await self._others_hold():
                    break
            if self.over_budget:
                self.stop("budget")
            for lane in self.lanes.values():
                lane.send.close()
            await self.outbox.close()
            tg.cancel_scope.cancel()

    async def _round(self, tg: TaskGroup) -> None:
        """Rescue what dead workers held, settle unknown outcomes, then claim and send until
        nothing this worker can claim is left."""
        rescued = await self.outbox.rescue()
        if any(rescued):
            log.warning("run.rescued", campaign=self.record.name, workers=rescued.workers,
                        pending=rescued.pending, unknown=rescued.unknown)
        self._done = anyio.Event()
        self._feeding += 1
        await self._settle_unknown()
        for lane in self.lanes.values():
            self._feeding += 1
            tg.start_soon(self._feed, lane)
        self._feeding -= 1
        self._check_done()
        await self._done.wait()

    async def _others_hold(self) -> bool:
        """Whether other workers hold messages of the campaign, which may come back
        ``pending`` (they stop, or die and are rescued); if so, waits a while first."""
        await self.outbox.flush()
        held = await self.outbox.held_by_others()
        if held:
            log.info("run.waiting_for_workers", campaign=self.record.name, held=held)
            await anyio.sleep(WATCH_OTHERS_S)
        return held > 0

    # --- feeding -------------------------------------------------------------------------

    async def _settle_unknown(self) -> None:
        """Messages whose outcome is unknown are dealt with before anything new is sent."""
        if self.campaign.on_unknown == "report":
            return
        resend = self.campaign.on_unknown == "resend"
        for lane in self.lanes.values():
            after = 0
            while not (lane.down or self.stopping) and (claim := await self.outbox.claim(
                    lane.name, state=UNKNOWN, after_line=after)).messages:
                after = claim.after_line
                for row in claim.messages:
                    job = Job.of(row, self.campaign.message)
                    if resend or lane.adapter.supports_idempotency:
                        self._put(lane, job)
                    elif lane.adapter.can_lookup:
                        self._alive += 1
                        self._spawn(self._lookup, lane, job)

    async def _feed(self, lane: Lane) -> None:
        try:
            if lane.down:
                await self._drain(lane)
                return
            after = 0
            while not (self.stopping or lane.down):
                claim = await self.outbox.claim(lane.name, after_line=after,
                                                limit=FEED_PAGE_ROWS,
                                                budget_nanos=self.max_cost_nanos)
                after = claim.after_line
                fed: list[Job] = []
                for i, row in enumerate(claim.messages):
                    if not lane.backlog.try_take():
                        await self._put_fed(lane, fed)
                        await lane.backlog.take()
                    if self.stopping or lane.down:
                        lane.backlog.release()
                        await self.outbox.release([r.line for r in claim.messages[i:]])
                        break
                    job = Job.of(row, self.campaign.message)
                    job.fed = True
                    fed.append(job)
                await self._put_fed(lane, fed)
                if claim.over_budget:
                    self.over_budget = True  # what it claimed fits; the next does not
                    return
                if not claim.messages:
                    return
            if lane.down and not self.stopping:
                await self._drain(lane)
        finally:
            self._feeding -= 1
            self._check_done()

    async def _drain(self, lane: Lane) -> None:
        """Move a stopped lane's pending messages to their next routes."""
        await self.outbox.flush()
        after = 0
        while not self.stopping:
            claim = await self.outbox.claim(lane.name, after_line=after, limit=FEED_PAGE_ROWS)
            if not claim.messages:
                return
            after = claim.after_line
            for row in claim.messages:
                job = Job.of(row, self.campaign.message)
                self._alive += 1
                await self._fail_over(job, f"{lane.name} stopped: {lane.down}", account=True,
                                      backpressure=True)

    async def _put_fed(self, lane: Lane, jobs: list[Job]) -> None:
        """Queue what the feeder took (and empty *jobs*), marked ``sending`` first in one
        commit on a lane that marks ahead."""
        if not jobs:
            return
        if lane.mark_ahead and not self.stopping:
            await self.outbox.mark_sending([job.line for job in jobs])
            for job in jobs:
                job.marked, job.marked_for = True, lane.name
        for job in jobs:
            self._put(lane, job)
        jobs.clear()

    def _put(self, lane: Lane, job: Job) -> None:
        self._alive += 1
        self._enqueue(lane, job)

    def _enqueue(self, lane: Lane, job: Job) -> None:
        lane.queued.add(job.line)
        lane.send.send_nowait(job)

    def _spawn(self, func: object, *args: object) -> None:
        assert self._tg is not None
        self._tg.start_soon(func, *args)  # type: ignore[arg-type]

    def _finish(self, lane: Lane | None, job: Job) -> None:
        if lane is not None:
            lane.queued.discard(job.line)
        self._alive -= 1
        self._check_done()

    def _check_done(self) -> None:
        if self._feeding == 0 and self._alive == 0:
            self._done.set()

    # --- sending -------------------------------------------------------------------------

    async def _worker(self, lane: Lane) -> None:
        bulk = lane.adapter.max_batch > 1
        async with lane.receive.clone() as receive:
            while (job := await _receive(receive)) is not None:
                if not bulk:
                    if self._admit(lane, job):
                        await self._send_one(lane, job)
                    continue
                batch = [job]
                async with lane.collecting:
                    with anyio.move_on_after(BATCH_LINGER_S):
                        while len(batch) < lane.adapter.max_batch:
                            if (job := await _receive(receive)) is None:
                                break
                            batch.append(job)
                ready = [j for j in batch if self._admit(lane, j)]
                if ready:
                    await self._send_batch(lane, ready)

    def _admit(self, lane: Lane, job: Job) -> bool:
        """Whether *job* may be sent now; if not, it is left or moved."""
        if job.fed:
            lane.backlog.release()
            job.fed = False
        if self.stopping:
            self._leave(lane, job)
            return False
        if lane.down:
            lane.queued.discard(job.line)
            self._spawn(self._fail_over, job, f"{lane.name} stopped: {lane.down}", True)
            return False
        return True

    async def _send_one(self, lane: Lane, job: Job) -> None:
        """One message, one request: nearly every request of a run, so written for the
        loop's CPU, which is what a run's throughput is (no list, no coroutine but the
        request's own when the lane is not paused and the answer is an acceptance)."""
        if lane.paused_until > time.monotonic():
            await lane.wait_unpaused()
        if job.marked_for != lane.name:
            await self.outbox.mark_sending((job.line,))
        job.leaving(time.time())
        result = await lane.adapter.send(self._message(job))
        if result.outcome is Outcome.ACCEPTED:
            self._accept(lane, job, result)
        else:
            await self._handle(lane, job, result)

    async def _send_batch(self, lane: Lane, jobs: list[Job]) -> None:
        """A bulk provider's batch, in one request; a lone message goes as on any lane."""
        if len(jobs) == 1:
            await self._send_one(lane, jobs[0])
            return
        await lane.wait_unpaused()
        if not all(job.marked_for == lane.name for job in jobs):
            await self.outbox.mark_sending([job.line for job in jobs])
        now = time.time()
        for job in jobs:
            job.leaving(now)
        results = await lane.adapter.send_batch([self._message(job, bulk=True) for job in jobs])
        for job, result in zip(jobs, results, strict=True):
            await self._handle(lane, job, result)

    def _message(self, job: Job, bulk: bool = False) -> OutboundMessage:
        """What a provider is asked to send. The template and the row's variables go only
        to a bulk provider (*bulk*), the one kind of API that uses them."""
        key = f"{self._key_prefix}{job.line}"
        encoding: Literal["GSM-7", "UCS-2"] = "UCS-2" if job.encoding == "UCS-2" else "GSM-7"
        if not bulk:
            return OutboundMessage(key, job.phone, job.text, self.campaign.sender, encoding,
                                   job.segments, job.route)
        message = self.campaign.message
        fields, values = message.fields, job.values
        return OutboundMessage(
            key, job.phone, job.text, self.campaign.sender, encoding, job.segments, job.route,
            message.source, dict(zip(fields, values, strict=True)) if len(values) == len(fields)
            else NO_VARIABLES)

    async def _handle(self, lane: Lane, job: Job, result: SendResult) -> None:
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
        actual = self._home_nanos(result.cost, result.currency)
        self.spent_nanos += actual if actual is not None else job.cost_nanos
        if actual is not None:
            self.outbox.adjust_committed(actual - job.cost_nanos)
        lane.accepted += 1
        self.counts["accepted"] += 1
        self.outbox.settle(Settlement(
            "accepted", None, None, job.provider, job.route, job.price_nanos, job.cost_nanos,
            result.provider_message_id, actual, job.attempts, time.time(), job.line))
        self._finish(lane, job)

    def _record(self, lane: Lane | None, job: Job, state: str, reason: str,
                result: SendResult | None, detail: str = "") -> None:
        if state == "unknown":
            self.spent_nanos += job.cost_nanos
        else:
            self.outbox.adjust_committed(-job.cost_nanos)
        self.counts[state] += 1
        self.outbox.settle(Settlement(
            state, reason, (detail or (result.detail if result else ""))[:300] or None,
            job.provider, job.route, job.price_nanos, job.cost_nanos, None, None, job.attempts,
            time.time(), job.line))
        self._finish(lane, job)

    def _leave(self, lane: Lane | None, job: Job) -> None:
        """Not sent this run: left for the next one, ``pending`` again if this run marked it
        ``sending`` (``unknown`` if its last attempt's outcome is unknown)."""
        self.counts["left"] += 1
        if job.marked:
            state = "unknown" if job.unsure else "pending"
            if not job.unsure:
                self.outbox.adjust_committed(-job.cost_nanos)
            self.outbox.settle(Settlement(
                state, "interrupted" if job.unsure else None, None, job.provider, job.route,
                job.price_nanos, job.cost_nanos, None, None, job.attempts, time.time(),
                job.line))
        self._finish(lane, job)

    def _requeue(self, lane: Lane, job: Job, delay_s: float) -> None:
        async def later() -> None:
            await anyio.sleep(delay_s)
            self._enqueue(lane, job)

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
                self._enqueue(lane, job)
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
        later run may send it)."""
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
            self.outbox.adjust_committed(job.cost_nanos - cost_before)
            self.outbox.settle(Settlement(
                CLAIMED, None, f"failed over: {why}"[:300], job.provider, job.route,
                job.price_nanos, job.cost_nanos, None, None, job.attempts, time.time(),
                job.line))
            log.info("run.failover", line=job.line, to=job.provider, why=why)
            job.marked = job.unsure = False
            if backpressure:
                await lane.backlog.take()
                job.fed = True
            if self.stopping:
                self._leave(lane, job)
            else:
                self._enqueue(lane, job)
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


async def _receive(receive: MemoryObjectReceiveStream[Job]) -> Job | None:
    """The next job, ``None`` once the lane is closed; without anyio's checkpoint when one is
    waiting, which yields to the event loop even then: a loop turn per message."""
    try:
        try:
            return receive.receive_nowait()
        except anyio.WouldBlock:
            return await receive.receive()
    except anyio.EndOfStream:
        return None
