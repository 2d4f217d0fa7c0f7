"""Sending: a lane's workers, one request in flight each.

A worker takes the next job of its lane, asks admission (:mod:`engine.send.admission`),
marks the message ``sending`` durably unless its feeder already did (a group commit shared
with every lane), sends it, and hands the answer to settling (:mod:`engine.send.settling`).
On a lane with a bulk API a worker collects up to the provider's batch size, waiting at
most ``BATCH_LINGER_S`` for more, and sends them in one request; two such workers per lane
(one collects while one sends). The provider's rate limit (every window exact, see
:mod:`engine.limits`) is applied by its adapter's transport to every request it makes; a
``Retry-After`` pause is slept out here, before the request.

The per-message path (:meth:`Sending._worker` -> ``_admit`` -> :meth:`Sending._send_one` ->
``_accept``) is nearly every request of a run, and the event loop's CPU is what a run's
throughput is: measure a change with ``bench/dispatcher_overhead.py``.
"""

from __future__ import annotations

import time
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from engine.providers.base import Outcome
from engine.send.admission import Admission
from engine.send.jobs import Job
from engine.send.lanes import Lane

BATCH_LINGER_S: Final = 0.05


class Sending(Admission):
    """The dispatcher's sending part: the worker tasks of each lane, ending when their lane's
    queue is closed and empty."""

    async def _worker(self, lane: Lane) -> None:
        """Send *lane*'s jobs until its queue closes."""
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
