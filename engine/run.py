"""`dispatch run`: plan if not planned, preflight, then dispatch; the same command resumes.

Everything happens on one provider session, so a sandbox-backed config runs against one
in-process simulator from rates to the last send. SIGINT/SIGTERM stop taking new messages;
what is in flight finishes and is checkpointed before the process exits.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final

import anyio
import structlog

from engine.campaign import Campaign
from engine.config import Config
from engine.delivery.polling import DURING_DISPATCH, PollSettings, poll_loop
from engine.delivery.reports import endpoints
from engine.delivery.webhooks import describe, running_receiver
from engine.gc_policy import rare_cyclic_gc
from engine.plan.planner import PlanSummary, campaign_providers, plan_campaign
from engine.rates import RateSource, rate_sources, route_table_from
from engine.send.dispatcher import Dispatcher, RunStats
from engine.send.preflight import preflight
from engine.send.session import open_providers
from engine.send.worker import campaign_worker
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.store import Store

log = structlog.get_logger()

PROGRESS_LOG_EVERY_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class RunOutcome:
    plan: PlanSummary
    stats: RunStats
    stopped: str | None
    pending_left: int
    skipped_providers: dict[str, str]
    rates: tuple[RateSource, ...] = ()
    """Where each provider's prices came from; a failed rates preflight in ``problem``."""


Progress = Callable[[Dispatcher], None]


async def run_campaign(config: Config, campaign: Campaign, *, workers: int = 1,
                       on_progress: Progress | None = None, webhooks_port: int | None = None,
                       delivery_wait_s: float = 0.0, poll_delivery: bool = True,
                       polling: PollSettings | None = None) -> RunOutcome:
    """Plan, preflight and dispatch; poll delivery beside the dispatch (unless told not to; with
    *webhooks_port*, receive reports on 127.0.0.1 there, the built-in sandbox posting to it),
    then keep polling up to *delivery_wait_s* for messages still without a final state.
    *polling* paces both; by default beside the dispatch polling is :data:`DURING_DISPATCH`
    (late and small) and after it :class:`PollSettings`' defaults.

    The run is the campaign's one worker (:mod:`engine.send.worker`) from before it plans or
    asks any provider anything: another live run of it raises
    :class:`~engine.errors.CampaignBusy`."""
    providers = campaign_providers(config, campaign)
    async with Store.open(config.database) as store, AsyncExitStack() as stack:
        worker = await stack.enter_async_context(campaign_worker(store, campaign.name))
        deliveries = DeliveryStore(store)
        callbacks: dict[str, str] = {}
        if webhooks_port is not None:
            found = endpoints(providers, await deliveries.webhook_key())
            receiver = await stack.enter_async_context(
                running_receiver(deliveries, found, port=webhooks_port))
            callbacks = describe(receiver)
        session = await stack.enter_async_context(open_providers(providers, callbacks=callbacks))
        sources = await rate_sources(config, providers, store, session=session)
        routes = route_table_from(sources, providers, config)
        plan = await plan_campaign(config, campaign, store, workers=workers, routes=routes)
        record = await store.campaign(campaign.name)
        assert record is not None
        readiness = await preflight(providers, session)
        down = {r.provider: "; ".join(r.problems) for r in readiness if not r.ok}
        for name, why in down.items():
            log.warning("run.provider_left_out", provider=name, reason=why)
        dispatcher = Dispatcher(
            store=store, record=record, campaign=campaign, providers=providers,
            adapters=session.adapters, down=down, plans=await store.rate_plans(record.id),
            routing=config.routing)
        with rare_cyclic_gc():
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, dispatcher)
                tg.start_soon(worker.watch, dispatcher.stop)
                tg.start_soon(_report_progress, dispatcher, on_progress)
                if poll_delivery or webhooks_port is not None or delivery_wait_s > 0:
                    tg.start_soon(poll_loop, deliveries, record.id, providers, session.adapters,
                                  polling or DURING_DISPATCH)
                stats = await dispatcher.run()
                tg.cancel_scope.cancel()
        if delivery_wait_s > 0:
            await poll_loop(deliveries, record.id, providers, session.adapters,
                            polling or PollSettings(),
                            until_final=True, timeout_s=delivery_wait_s)
        if on_progress is not None:
            on_progress(dispatcher)
        pending = sum((await store.pending_by_provider(record.id)).values())
        stopped = dispatcher.stopping or ("messages left" if pending else None)
        log.info("run.finished", campaign=campaign.name, accepted=stats.accepted,
                 failed=stats.failed, unknown=stats.unknown, pending=pending,
                 seconds=round(stats.seconds, 1), stopped=stopped)
        return RunOutcome(plan, stats, stopped, pending, down, tuple(sources))


async def _stop_on_signal(dispatcher: Dispatcher) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("run.signal", signal=signal.Signals(signum).name)
            dispatcher.stop("interrupted")


async def _report_progress(dispatcher: Dispatcher, on_progress: Progress | None) -> None:
    """A progress callback twice a second (the TTY display), or a log line every 5 s."""
    started = time.monotonic()
    while True:
        if on_progress is not None:
            on_progress(dispatcher)
            await anyio.sleep(0.5)
            continue
        await anyio.sleep(PROGRESS_LOG_EVERY_S)
        c = dispatcher.counts
        elapsed = time.monotonic() - started
        log.info("run.progress", accepted=c["accepted"], failed=c["failed"],
                 unknown=c["unknown"], per_s=round(c["accepted"] / elapsed, 1),
                 spent=str(dispatcher.spent_nanos / 1e9))
