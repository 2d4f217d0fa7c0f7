"""The scheduler: one lane per provider, exact rate limits, checkpoints, failover, settling.

A :class:`Dispatcher` is one worker of a campaign (the claim model: :mod:`engine.store.states`)
sending through its outbox (:class:`engine.store.protocols.Outbox`). Each lane has a feeder
claiming the provider's pending messages in line order (:mod:`engine.send.feeding`) and
``concurrency`` workers (two on a bulk lane), one request in flight each
(:mod:`engine.send.sending`), that ask admission whether a message may go now
(:mod:`engine.send.admission`) and hand each answer to settling
(:mod:`engine.send.settling`: accept, record, retry, look up, fail over, the money). Lanes
are in :mod:`engine.send.lanes`, the jobs they carry in :mod:`engine.send.jobs`.

The run goes in rounds: rescue what dead workers held, settle ``unknown`` outcomes, then
feed and send until nothing this worker can claim is left; another round follows while
other workers hold messages of the campaign (which may come back ``pending``). Live state is
read through :meth:`Dispatcher.statistics`.
"""

from __future__ import annotations

import time
from typing import Final

import anyio
import structlog
from anyio.abc import TaskGroup

from engine.send.feeding import Feeding
from engine.send.sending import Sending
from engine.send.statistics import DispatcherStatistics, LaneStatistics, RunStats

__all__ = ["Dispatcher", "DispatcherStatistics", "LaneStatistics", "RunStats"]

log = structlog.get_logger()

WATCH_OTHERS_S: Final = 1.0
"""While other workers hold messages, how often this one looks for dead ones to rescue."""


class Dispatcher(Feeding, Sending):
    """Sends a planned campaign's messages as one of its workers.

    ``Dispatcher(outbox=, record=, campaign=, providers=, adapters=, down=, plans=,
    routing=, limiters=)``: *providers* with an adapter in *adapters* get a lane, down from
    the start if *down* names it; *plans* gives each rate plan's routes for failover;
    *limiters* (optional) size each lane's claims to this process's share of its rate.

    :meth:`run` once; it returns when nothing this worker can send is left, or after
    :meth:`stop` once what is in flight is settled and checkpointed, and then the outbox is
    closed and everything still held given back. :meth:`stop` may be called at any time,
    from any task of the loop; :attr:`stopping` holds the first reason given (``"budget"``
    when the run stopped at ``max_cost``, ``"every provider is down"``). :meth:`statistics`
    may be read at any time, before, during or after the run.
    """

    async def run(self) -> RunStats:
        """Send until done or stopped; what this run did."""
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

    def statistics(self) -> DispatcherStatistics:
        """A snapshot of the run's counts, money and lanes, now."""
        now = time.monotonic()
        counts = self.counts
        totals = self.totals
        return DispatcherStatistics(
            accepted=counts["accepted"], failed=counts["failed"], unknown=counts["unknown"],
            failed_over=counts["failed_over"], left=counts["left"],
            spent_nanos=self.spent_nanos, currency=self.routing.currency,
            pending_at_start=sum(totals.values()),
            lanes=tuple(LaneStatistics(
                provider=name, pending_at_start=totals.get(name, 0), accepted=lane.accepted,
                queued=len(lane.queued), workers=lane.workers, down=lane.down,
                paused_s=max(lane.paused_until - now, 0.0))
                for name, lane in self.lanes.items()),
            started_at=self.started_at, elapsed_s=now - self.started_at,
            over_budget=self.over_budget, stopping=self.stopping)

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
