"""Feeding: a feeder per lane claims the lane's pending messages, in line order, and queues
them for its workers, keeping at most the lane's backlog ahead of them.

Claims come from the outbox (:meth:`engine.store.protocols.Outbox.claim`): held by this
worker alone, their estimated cost reserved against ``max_cost``; a claim that finds the
next message past the budget ends the feeding, and the run stops once what it holds is
sent. Where a provider lets an unknown outcome be settled exactly (the same idempotency
key, or a look-up in its logs), the lane's claims take its messages straight to
``sending`` (marked, in the claim's own commit), so that no worker waits for a mark. A
crash can then leave up to a claim's page marked but never sent, which the next run
settles exactly (found absent, sent once); a page not fed is released (``pending`` again).
Where a provider gives no such way, or the campaign only reports unknown outcomes
(``on_unknown = "report"``), an unsent mark would become an ``unknown`` that is never
resent, so the lane's worker marks each message just before sending it.

Before anything new is fed, a round settles the campaign's ``unknown`` messages
(``on_unknown``: resent with the same key or whatever the campaign says, looked up, or left
and reported). A lane that is down feeds nothing: its pending messages are drained to their
next routes instead.
"""

from __future__ import annotations

from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from engine.send.jobs import Job
from engine.send.lanes import Lane
from engine.send.settling import Settling
from engine.store.states import UNKNOWN, Claim

FEED_PAGE_ROWS: Final = 500


class Feeding(Settling):
    """The dispatcher's feeding part: each feeder counts in ``_feeding`` while it runs, and
    every job it queues is alive until settled or left."""

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
        """Claim and queue *lane*'s pending messages until none is left, the budget is
        reached, the run stops or the lane goes down (then drain it)."""
        try:
            if lane.down:
                await self._drain(lane)
                return
            send, receive = anyio.create_memory_object_stream[Claim]()
            async with anyio.create_task_group() as tg, receive:
                tg.start_soon(self._claim_ahead, lane, send)
                async for claim in receive:
                    if not await self._feed_claim(lane, claim) or claim.over_budget:
                        self.over_budget |= claim.over_budget
                        break  # what it claimed fits; the next does not
                tg.cancel_scope.cancel()
            if lane.down and not self.stopping:
                await self._drain(lane)
        finally:
            self._feeding -= 1
            self._check_done()

    async def _claim_ahead(self, lane: Lane, send: MemoryObjectSendStream[Claim]) -> None:
        """Claim *lane*'s next page while the feeder queues the one before. At most two
        pages are held ahead of the workers; a page the feeder no longer takes is given back
        at once (pending again, for a stopped lane's drain)."""
        # A claim waits for the write lock the checkpoint writer holds for each commit, and
        # a lane's backlog drains in less time (bench/dispatcher_overhead.py, claims timed).
        async with send:
            after = 0
            while not (self.stopping or lane.down):
                claim = await self.outbox.claim(lane.name, after_line=after,
                                                limit=lane.claim_rows,
                                                budget_nanos=self.max_cost_nanos,
                                                sending=lane.mark_ahead)
                try:
                    await send.send(claim)
                except BaseException:  # the feeder stopped: its drain must find these
                    with anyio.CancelScope(shield=True):
                        await self.outbox.release([m.line for m in claim.messages])
                    raise
                if claim.over_budget or not claim.messages:
                    return
                after = claim.after_line

    async def _feed_claim(self, lane: Lane, claim: Claim) -> bool:
        """Queue *claim*'s messages, keeping at most the lane's backlog ahead of its workers
        (on a lane that marks ahead, the claim holds them ``sending`` already). False once
        the run stops or the lane goes down (the rest is released)."""
        rows = claim.messages
        template = self.campaign.message
        marked = lane.mark_ahead
        for i, row in enumerate(rows):
            if not lane.backlog.try_take():
                await lane.backlog.take()
            if self.stopping or lane.down:
                lane.backlog.release()
                await self.outbox.release([r.line for r in rows[i:]])
                return False
            job = Job.of(row, template)
            job.fed = True
            if marked:
                job.marked, job.marked_for = True, lane.name
            self._put(lane, job)
        return bool(rows)

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

    def _put(self, lane: Lane, job: Job) -> None:
        """Queue a new job on *lane*: it is alive until settled or left."""
        self._alive += 1
        lane.enqueue(job)
