"""What the dispatcher's parts share: its lanes, its outbox, its counts and money, and the
bookkeeping that tells a round when it is over.

The dispatcher is one object made of parts that each read on their own: feeding
(:mod:`engine.send.feeding`), admission (:mod:`engine.send.admission`), sending
(:mod:`engine.send.sending`) and settling (:mod:`engine.send.settling`), put together in
:class:`engine.send.dispatcher.Dispatcher`. They are classes over this one state rather than
objects holding each other, because a message crosses all of them: a call from one part to
another is then a plain method call, with no attribute hop or allocation added to the
per-message path (``bench/dispatcher_overhead.py``).

A round is over when no feeder is feeding (``_feeding``) and no job is alive (``_alive``:
queued, in flight, waiting for a retry or a look-up); every job that is made alive is
finished exactly once (:meth:`RunState._finish`), settled or left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from decimal import Decimal
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from engine.campaign import Campaign
from engine.config import ProviderConfig, RoutingConfig
from engine.limits import SlidingWindowLimiter, Unlimited
from engine.providers.base import Provider
from engine.routing import to_nanos
from engine.send.jobs import Job, Messages, key_prefix
from engine.send.lanes import Lane
from engine.store.protocols import Outbox
from engine.store.records import CampaignRecord, RatePlanRoute

log = structlog.get_logger()


class RunState:
    """The state of one dispatch run, made from the dispatcher's constructor arguments.

    Lanes are made for the providers that have an adapter, each down from the start if
    *down* names it (preflight's reason); *limiters* are the providers' limiters in this
    process (:class:`engine.send.session.Session`), whose share of a shared limit sizes
    each lane's claims. ``stopping`` is the reason the run stops taking
    messages, once it does.
    """

    def __init__(self, *, outbox: Outbox, record: CampaignRecord, campaign: Campaign,
                 providers: Sequence[ProviderConfig], adapters: Mapping[str, Provider],
                 down: Mapping[str, str], plans: Mapping[int, list[RatePlanRoute]],
                 routing: RoutingConfig,
                 limiters: Mapping[str, SlidingWindowLimiter | Unlimited] | None = None
                 ) -> None:
        self.outbox = outbox
        self.record = record
        self.campaign = campaign
        self.routing = routing
        self.plans = plans
        """Each plan's routes in order of preference, for failover."""
        # An unknown outcome only reported is never settled: a message marked before it
        # leaves and then never sent (a crash) would be reported, not sent.
        settles = campaign.on_unknown != "report"
        self.lanes = {p.name: Lane(p, adapters[p.name], down.get(p.name),
                                   (limiters or {}).get(p.name), settles)
                      for p in providers if p.name in adapters}
        self._home_cache: dict[tuple[Decimal, str], int | None] = {}
        self._message = Messages(campaign, key_prefix(record)).build
        """What a provider is asked to send for a job (:meth:`Messages.build`)."""
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

    def _spawn(self, func: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        """Run *func* as a task of the run's group."""
        assert self._tg is not None
        self._tg.start_soon(func, *args)

    def _finish(self, lane: Lane | None, job: Job) -> None:
        """*job* is settled or left: no longer queued, no longer alive."""
        if lane is not None:
            lane.queued.discard(job.line)
        self._alive -= 1
        self._check_done()

    def _check_done(self) -> None:
        if self._feeding == 0 and self._alive == 0:
            self._done.set()
