"""What the engine asks of a store, by the callers' needs; every backend provides these.

The planner knows only :class:`PlanSink` (and hands its worker processes a
:class:`PlanWriters`, never a path); the dispatcher knows only :class:`Outbox`: one worker's
view of one campaign's messages; delivery (webhooks, polling) knows only
:class:`DeliveryLedger`; ``status`` and ``report`` (CSV, JSON, HTML) read through
:class:`CampaignReads`; the providers' sessions split their rate limits through
:class:`RateShares` (SQLite: :class:`engine.store.sqlite.rate_shares.SqliteRateShares`;
memory: :class:`engine.store.memory_rates.MemoryRateShares`; its rule in
:mod:`engine.store.rate_shares`, ``tests/test_rate_shares.py`` runs both).
Backends: :class:`engine.store.sqlite.outbox.SqliteOutbox` (the embedded default) and
:class:`engine.store.memory.MemoryOutbox` (the same rules in plain Python, for fast tests);
:class:`engine.store.sqlite.delivery_store.DeliveryStore` and
:class:`engine.store.sqlite.campaign_reads.SqliteCampaignReads` (SQLite only). Only the
composition points (:mod:`engine.run`, the commands of :mod:`engine.commands`) name a
backend's classes.
The rules every backend keeps are in :mod:`engine.store.states`, and one contract test
suite (``tests/test_outbox_contract.py``) runs against each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.plan.tally import PlanCounts, Tally
from engine.routing import RatePlan, RateRow
from engine.store.delivery_records import (
    ApplyResult,
    AwaitingDelivery,
    DeliveryReport,
    DeliverySummary,
    FailureCount,
    Span,
    TableRow,
)
from engine.store.rate_shares import RateHolder, RateShare, Rebalanced, ShareLimit
from engine.store.records import CampaignRecord, ReportRow, Settlement, WorkerRecord
from engine.store.states import PENDING, Claim, Rescued


class PieceWriter(Protocol):
    """Writes planned pieces of one campaign, in the process that planned them: each piece
    and the plan's resume point in one transaction."""

    def write(self, valid: Sequence[tuple[Any, ...]], not_sent: Sequence[tuple[Any, ...]], *,
              through: int | None) -> None:
        """A piece's rows (``PLANNED_COLUMNS`` / ``NOT_SENT_COLUMNS`` tuples) and the resume
        point (``None``: it stays where it is)."""

    def write_json(self, valid: str, not_sent: str, *, through: int) -> None:
        """:meth:`write` with each list of tuples as one JSON array."""

    def discard(self) -> None:
        """Forget every row of a plan that is not complete, and its resume point."""

    def close(self) -> None: ...


class PlanWriters(Protocol):
    """Opens a :class:`PieceWriter` in whichever process asks (picklable: it crosses to the
    planning worker processes)."""

    def open(self) -> PieceWriter: ...


class PlanSink(Protocol):
    """Where a plan goes: the campaign's record, its planned rows, the duplicates pass."""

    async def open_campaign(self, *, name: str, fingerprint: str, path: Path, currency: str,
                            plans: Sequence[RatePlan]) -> CampaignRecord:
        """The campaign named *name*, created with its rate plans if new; a campaign of
        another fingerprint under that name is a :class:`~engine.errors.CampaignError`."""

    def plan_writers(self, campaign_id: int) -> PlanWriters:
        """What writes the campaign's planned pieces, in this process or another."""

    def planned_numbers(self, campaign_id: int, page: int = ...) -> AsyncIterator[list[str]]:
        """The numbers of the valid rows planned so far, a page at a time."""

    async def finish_plan(self, campaign_id: int, maybe_duplicates: Collection[str],
                          tally: Tally | None = None) -> None:
        """Later occurrences of a number become ``skipped``/``duplicate``; the plan is
        complete."""

    async def plan_counts(self, campaign_id: int) -> PlanCounts:
        """What the stored plan holds, by state and reason."""

    def stored_texts(self, campaign_id: int, page: int = ...
                     ) -> AsyncIterator[list[tuple[str, str | None, int, int]]]:
        """(text, variables, segments, price) of valid rows whose text is stored."""


class Outbox(Protocol):
    """One worker's claims, marks and settlements on one campaign.

    Claims, rescues and releases take effect at once for every worker. Marks are durable
    when :meth:`mark_sending` returns; settlements are queued and written by :meth:`run` (a
    task), at the latest by :meth:`flush` or :meth:`close`. A mark or settlement for a
    message the worker no longer holds is not written and raises
    :class:`engine.errors.LeaseLost` from the write that found it.
    """

    worker_id: str

    async def run(self) -> None:
        """Write what is queued, whenever a mark waits and at least every few 100 ms,
        until :meth:`close`."""

    async def claim(self, provider: str, *, after_line: int = 0, limit: int = 500,
                    state: str = PENDING, budget_nanos: int | None = None,
                    sending: bool = False) -> Claim:
        """Hold up to *limit* unheld messages of *provider* in *state*, in line order after
        *after_line*; ``pending`` ones become ``claimed`` (with *sending*: ``sending`` at
        once, their attempt counted, as :meth:`mark_sending` makes them) and reserve their
        estimated cost (only those that fit *budget_nanos* beside all committed money, in
        line order). The messages come back as they were read, their state the new one."""

    async def mark_sending(self, lines: Sequence[int]) -> None:
        """Held messages are ``sending``, durably, their attempt counted."""

    def settle(self, settlement: Settlement, committed_nanos: int = 0) -> None:
        """Queue a held message's new state (accepted, failed, unknown, pending, or claimed
        on its next route), and what it changes in the campaign's committed money (settled
        for more or less than reserved, given back, or failed over to another price): the
        money moves only if the settlement is written."""

    async def flush(self) -> None:
        """Write everything queued, now."""

    async def close(self) -> None:
        """Flush and stop writing."""

    async def stop(self) -> None:
        """Stop writing, whatever state the run ended in (again is fine)."""

    async def rescue(self) -> Rescued:
        """Take back what dead workers held (the lease rule decides who is dead)."""

    async def held_by_others(self) -> int:
        """How many messages other workers hold: they may come back ``pending``."""

    async def release(self, lines: Sequence[int] | None = None) -> int:
        """Give back held ``claimed`` messages (of *lines*, or all) and unknown ones, and of
        *lines* the ``sending`` ones too (the caller never sent them: claimed ``sending``,
        their attempt uncounted): ``pending`` again, their reservation returned; the count
        made ``pending``."""

    async def spent_nanos(self) -> int:
        """What the campaign has cost or may have cost so far."""

    async def pending_by_provider(self) -> dict[str, int]:
        """Pending messages per provider."""


class DeliveryLedger(Protocol):
    """Delivery reports of every campaign in one store, and what they make of the messages
    (webhooks, polling, ``dispatch dlr``, the end of a run)."""

    async def record_reports(self, reports: Sequence[DeliveryReport]) -> ApplyResult:
        """Store *reports* (a repeated one changes nothing) and apply every stored report
        whose message is known, the earlier unmatched ones included; the first final report
        of a message wins. An empty *reports* applies the stored ones only."""

    async def awaiting(self, campaign_id: int, provider: str, *, after_line: int = 0,
                       limit: int = 1000) -> list[AwaitingDelivery]:
        """Accepted messages of *provider* without a final delivery state nor given up, in
        line order after *after_line*, at most *limit*."""

    async def awaiting_count(self, campaign_id: int) -> dict[str, int]:
        """How many messages still await a final report, by provider (none: left out)."""

    async def expire(self, campaign_id: int, *, sent_before: float) -> int:
        """Give up accepted messages sent before *sent_before* without a final report
        (delivery ``unknown``, reason ``unknown_delivery``, state stays ``accepted``); how
        many. A later final report still applies."""

    async def webhook_key(self) -> bytes:
        """This store's secret for webhook path tokens, made on first use, then the same."""

    async def summary(self, campaign_id: int) -> DeliverySummary:
        """Delivery outcome and cost per provider and country, and send-to-delivery time."""


class CampaignReads(Protocol):
    """The reads behind ``status`` and ``report`` (``--csv``/``--json``, ``--html``); each
    works on a store opened read-only."""

    async def campaign_named(self, name: str) -> CampaignRecord:
        """The campaign stored under *name*; else a :class:`~engine.errors.StoreError` that
        lists the ones there are."""

    async def state_counts(self, campaign_id: int
                           ) -> list[tuple[str, str | None, int, int, int]]:
        """(state, provider, messages, segments, cost nanos) for every state and provider."""

    async def plan_counts(self, campaign_id: int) -> PlanCounts:
        """What the stored plan holds, by state and reason, provider and country."""

    def report_rows(self, campaign_id: int, states: Collection[str] = ...
                    ) -> AsyncIterator[ReportRow]:
        """Every CSV row of the campaign in line order (only those in *states*, if any)."""

    async def delivery_summary(self, campaign_id: int) -> DeliverySummary:
        """As :meth:`DeliveryLedger.summary`."""

    async def span(self, campaign_id: int) -> Span:
        """When sending started and ended, and when the last delivery report came."""

    async def timeline(self, campaign_id: int, start: float, bucket_s: float
                       ) -> list[tuple[int, int, int]]:
        """(bucket index from *start*, sent, delivered) for every bucket with either, in
        bucket order."""

    async def latency_quantile(self, campaign_id: int, q: float) -> float | None:
        """The *q* quantile of send-to-delivery seconds of delivered messages; ``None``
        before any is delivered."""

    async def latency_histogram(self, campaign_id: int, width_s: float, buckets: int
                                ) -> list[int]:
        """Delivered messages by send-to-delivery time in *buckets* of *width_s* seconds;
        the last bucket also holds every slower one."""

    async def failures(self, campaign_id: int) -> list[FailureCount]:
        """Messages that did not reach their recipient, by state, provider and reason."""

    async def featured_rows(self, campaign_id: int, states: Sequence[str] | None,
                            limit: int) -> list[TableRow]:
        """The first *limit* rows in *states* (``None``: the failures), in line order."""

    async def sampled_rows(self, campaign_id: int, every: int, limit: int) -> list[TableRow]:
        """Up to *limit* of the rows that are not failures: every *every*-th CSV line."""

    async def count_rows(self, campaign_id: int, *, failed: bool) -> int:
        """How many rows are failures (*failed*), or are not."""


class RateCache(Protocol):
    """The providers' fetched rate tables, kept between commands (``rate_ttl``)."""

    async def cached_rates(self, provider: str) -> tuple[float, list[RateRow]] | None:
        """The provider's last fetched table and when it was fetched (epoch seconds)."""

    async def save_rates(self, provider: str, fetched_at: float, rows: Sequence[RateRow]
                         ) -> None:
        """Keep *rows* as the provider's table, fetched at *fetched_at*."""


class Heartbeats(Protocol):
    """A worker's heartbeat writer, used from a thread of its own."""

    def beat(self, now: float) -> bool:
        """The worker is alive at *now*; False if its row is gone (it was rescued)."""

    def close(self) -> None: ...


class WorkerRegistry(Protocol):
    """The campaigns' workers: who is sending, since when, and whether still alive."""

    async def register_worker(self, me: WorkerRecord) -> None:
        """Add *me* to its campaign's workers."""

    async def release_worker(self, worker_id: str) -> None:
        """Remove the worker's row (its campaign no longer waits for it)."""

    async def workers(self, campaign: str) -> list[WorkerRecord]:
        """The campaign's registered workers, live or not."""

    async def campaign(self, name: str) -> CampaignRecord | None:
        """The campaign named *name*, if planned at all."""

    def heartbeat(self, worker_id: str) -> Heartbeats:
        """A heartbeat writer for the worker, for a thread of its own."""


class RateShares(Protocol):
    """The providers' rate limits split among the processes using this store
    (:mod:`engine.store.rate_shares` holds the rule; the sum of the counted shares of a
    provider never exceeds its limit's count)."""

    async def rebalance(self, me: RateHolder, limits: Mapping[str, ShareLimit], now: float,
                        live: Callable[[RateShare], bool],
                        used: Mapping[str, int] | None = None,
                        wants: Mapping[str, bool] | None = None,
                        demand: Mapping[str, int] | None = None) -> dict[str, Rebalanced]:
        """Rebalance *me*'s share of each provider of *limits* at *now*, in one
        transaction (*me* joins where it holds none); *live* is the lease rule, *used* what
        *me* has in each provider's window, *wants* whether *me* wants each now (absent:
        it does), *demand* how many requests a window (absent: as many as it can get)
        (:func:`engine.store.rate_shares.rebalance`)."""

    async def leave(self, holder_id: str, limits: Mapping[str, ShareLimit], now: float,
                    used: Mapping[str, int] | None = None) -> None:
        """The holder's shares end at *now*: what they count (or *used*, if less) is
        counted one period more, then they are forgotten (at once if that is 0)."""

    async def shares(self, provider: str) -> list[RateShare]:
        """Every stored share of *provider*, ended ones too."""
