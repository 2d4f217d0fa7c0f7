"""`dispatch run`: plan if not planned, preflight, then dispatch; the same command resumes.

Everything happens on one provider session, so a sandbox-backed config runs against one
in-process simulator from rates to the last send. SIGINT/SIGTERM stop taking new messages;
what is in flight finishes and is checkpointed before the process exits.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final

import anyio
import structlog

from engine.campaign import Campaign
from engine.config import Config, ProviderConfig
from engine.delivery.polling import DURING_DISPATCH, PollSettings, poll_loop
from engine.delivery.reports import endpoints
from engine.delivery.webhooks import describe, running_receiver
from engine.errors import CampaignError
from engine.gc_policy import rare_cyclic_gc
from engine.plan.planner import PlanSummary, campaign_providers, plan_campaign
from engine.providers.base import Provider
from engine.rates import RateSource, rate_sources, route_table_from
from engine.routing import nanos_to_decimal
from engine.sandbox.state import state_path_for
from engine.send.dispatcher import Dispatcher, RunStats
from engine.send.preflight import preflight
from engine.send.session import open_providers
from engine.send.worker import campaign_worker, lease_rule, wait_for_planner
from engine.store.delivery_records import DeliveryGroup
from engine.store.protocols import DeliveryLedger
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.outbox import SqliteOutbox
from engine.store.sqlite.rate_shares import SqliteRateShares
from engine.store.sqlite.store import Store

log = structlog.get_logger()

PROGRESS_LOG_EVERY_S: Final = 5.0
SANDBOX_REPORT_WAIT_S: Final = 5.0
"""After sending through the built-in sandbox (which decides each message 1 s after it was
billed), how long a run waits at most for the reports still due, so that its summary shows
nearly all of them; ``--dlr-wait`` replaces it, ``--no-dlr`` skips it."""
SANDBOX_REPORT_POLLING: Final = PollSettings(first_interval_s=1.0, max_interval_s=1.0,
                                             one_by_one_ids_per_round=50,
                                             first_round_at_once=False)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    plan: PlanSummary
    stats: RunStats
    stopped: str | None
    pending_left: int
    skipped_providers: dict[str, str]
    rates: tuple[RateSource, ...] = ()
    """Where each provider's prices came from; a failed rates preflight in ``problem``."""
    delivery: DeliveryGroup | None = None
    """The campaign's delivery outcomes known when the run ended."""


Progress = Callable[[Dispatcher], None]
TOP_REASONS_SHOWN: Final = 3


async def run_campaign(config: Config, campaign: Campaign, *, workers: int = 1,
                       on_progress: Progress | None = None, webhooks_port: int | None = None,
                       delivery_wait_s: float = 0.0, poll_delivery: bool = True,
                       polling: PollSettings | None = None,
                       on_plan: Callable[[PlanSummary], None] | None = None) -> RunOutcome:
    """Plan, preflight and dispatch; poll delivery beside the dispatch (unless told not to; with
    *webhooks_port*, receive reports on 127.0.0.1 there, the built-in sandbox posting to it),
    then keep polling up to *delivery_wait_s* for messages still without a final state.
    Providers on the built-in sandbox post their reports to a receiver on an ephemeral
    127.0.0.1 port without *webhooks_port*, keep their state beside the database (so that a
    later ``dispatch dlr`` finds the messages), and the run waits up to
    :data:`SANDBOX_REPORT_WAIT_S` for the reports still due.
    *polling* paces both; by default beside the dispatch polling is :data:`DURING_DISPATCH`
    (late and small) and after it :class:`PollSettings`' defaults. *on_plan* hears what the
    plan holds before anything is sent; a plan without one valid row raises
    :class:`~engine.errors.CampaignError` (exit 2) naming its most common reasons.

    The run is one of the campaign's workers (:mod:`engine.send.worker`) from before it
    plans or asks any provider anything; another live run of it is another worker: the
    earliest plans while the others wait, then all claim and send together."""
    providers = campaign_providers(config, campaign)
    async with Store.open(config.database) as store, AsyncExitStack() as stack:
        worker = await stack.enter_async_context(campaign_worker(store, campaign.name))
        deliveries: DeliveryLedger = DeliveryStore(store)
        callbacks: dict[str, str] = {}
        sandboxed = [p for p in providers if p.uses_sandbox]
        if webhooks_port is not None:
            found = endpoints(providers, await deliveries.webhook_key())
            receiver = await stack.enter_async_context(
                running_receiver(deliveries, found, port=webhooks_port))
            callbacks = describe(receiver)
        elif sandboxed and (found := endpoints(sandboxed, await deliveries.webhook_key())):
            receiver = await stack.enter_async_context(running_receiver(deliveries, found))
            callbacks = describe(receiver)
        session = await stack.enter_async_context(open_providers(
            providers, callbacks=callbacks,
            sandbox_state=state_path_for(config.database) if sandboxed else None,
            rate_shares=SqliteRateShares(store)))
        sources = await rate_sources(config, providers, store, session=session)
        routes = route_table_from(sources, providers, config)
        await wait_for_planner(store, worker.record)
        plan = await plan_campaign(config, campaign, store, workers=workers, routes=routes)
        if on_plan is not None:
            on_plan(plan)
        _check_sendable(plan, campaign)
        record = await store.campaign(campaign.name)
        assert record is not None
        readiness = await preflight(providers, session)
        down = {r.provider: "; ".join(r.problems) for r in readiness if not r.ok}
        for name, why in down.items():
            log.warning("run.provider_left_out", provider=name, reason=why)
        dispatcher = Dispatcher(
            outbox=SqliteOutbox(store, record.id, worker.record, lease_rule()),
            record=record, campaign=campaign, providers=providers,
            adapters=session.adapters, down=down, plans=await store.rate_plans(record.id),
            routing=config.routing, limiters=session.limiters)
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
        elif sandboxed and poll_delivery and dispatcher.stopping != "interrupted":
            await _await_reports(deliveries, record.id, providers, session.adapters)
        if on_progress is not None:
            on_progress(dispatcher)
        pending = sum((await store.pending_by_provider(record.id)).values())
        stopped = dispatcher.stopping or ("messages left" if pending else None)
        # On a terminal the summary printed next says the same: the log line is for log files.
        (log.debug if on_progress else log.info)(
                 "run.finished", campaign=campaign.name, accepted=stats.accepted,
                 failed=stats.failed, unknown=stats.unknown, pending=pending,
                 seconds=round(stats.seconds, 1), stopped=stopped)
        delivery = (await deliveries.summary(record.id)).total
        return RunOutcome(plan, stats, stopped, pending, down, tuple(sources), delivery)


def _check_sendable(plan: PlanSummary, campaign: Campaign) -> None:
    """Raise :class:`CampaignError` if no row of the plan can be sent."""
    c = plan.counts
    if c.valid:
        return
    if not c.rows:
        raise CampaignError(f"nothing to send: {campaign.recipients.name} has no rows",
                            file=campaign.path)
    reasons = sorted({**c.rejected, **c.skipped}.items(), key=lambda kv: (-kv[1], kv[0]))
    top = ", ".join(f"{k} {v:,}" for k, v in reasons[:TOP_REASONS_SHOWN])
    raise CampaignError(f"nothing to send: none of the {c.rows:,} rows of "
                        f"{campaign.recipients.name} is valid ({top}); list them with "
                        f"dispatch report {campaign.name} --state "
                        f"{'rejected' if c.rejected else 'skipped'}", file=campaign.path)


async def _await_reports(deliveries: DeliveryLedger, campaign_id: int,
                         providers: Sequence[ProviderConfig],
                         adapters: Mapping[str, Provider]) -> None:
    """Up to :data:`SANDBOX_REPORT_WAIT_S` for the reports still due (webhooks arrive, the
    others are polled each second); SIGINT/SIGTERM end the wait."""
    if not any((await deliveries.awaiting_count(campaign_id)).values()):
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_signal, tg.cancel_scope)
        await poll_loop(deliveries, campaign_id, providers, adapters, SANDBOX_REPORT_POLLING,
                        until_final=True, timeout_s=SANDBOX_REPORT_WAIT_S)
        tg.cancel_scope.cancel()


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()


async def _stop_on_signal(dispatcher: Dispatcher) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("run.signal", signal=signal.Signals(signum).name)
            dispatcher.stop("interrupted")


async def _report_progress(dispatcher: Dispatcher, on_progress: Progress | None) -> None:
    """A progress callback twice a second (the TTY display), or a log line every 5 s."""
    while True:
        if on_progress is not None:
            on_progress(dispatcher)
            await anyio.sleep(0.5)
            continue
        await anyio.sleep(PROGRESS_LOG_EVERY_S)
        s = dispatcher.statistics()
        log.info("run.progress", done=s.done, of=s.pending_at_start, accepted=s.accepted,
                 failed=s.failed, unknown=s.unknown,
                 per_s=round(s.accepted / max(s.elapsed_s, 1e-3), 1),
                 spent=str(nanos_to_decimal(s.spent_nanos)))
