"""What the HTML report shows, read from the store in one pass of queries.

:func:`gather` reads the store's figures (plan counts, state counts, the delivery summary)
and the report's own reads, all through :class:`~engine.store.protocols.CampaignReads`; the
result is plain data that :mod:`engine.html_report.page` renders without touching the store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from engine.plan.tally import PlanCounts
from engine.store.delivery_records import (
    FAILURE_STATES,
    DeliverySummary,
    FailureCount,
    Span,
    TableRow,
)
from engine.store.protocols import CampaignReads
from engine.store.records import CampaignRecord

FULL_TABLE_ROWS: Final = 5_000
"""A campaign of up to this many rows shows every recipient in its table."""
MAX_FEATURED_ROWS: Final = 20_000
"""Failures (or the ``--state`` rows) shown at most: ~2 MB of the page at 1M recipients."""
SAMPLE_ROWS: Final = 2_000
"""Other recipients shown in a larger campaign: every n-th CSV line, up to this many."""
TIMELINE_BUCKETS: Final = 48
"""About this many points in the messages-over-time chart."""
LATENCY_BUCKETS: Final = 20
"""Bars in the send-to-delivery chart; the last holds everything slower."""
NICE_STEPS_S: Final = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                       10800, 21600, 43200, 86400)


@dataclass(frozen=True, slots=True)
class Table:
    """The per-recipient rows the page holds, and what they are of the whole."""

    rows: list[TableRow]
    total: int
    """Rows of the campaign (every CSV row read but the blank ones)."""
    featured: int
    """Rows of the featured kind (failures, or the ``--state`` rows) in the campaign."""
    featured_shown: int
    sampled_every: int
    """0: every row is shown; else one other row in this many CSV lines."""
    states: tuple[str, ...] | None

    @property
    def complete(self) -> bool:
        return self.sampled_every == 0 and self.featured_shown == self.featured


@dataclass(frozen=True, slots=True)
class Timeline:
    start: float
    bucket_s: int
    points: list[tuple[int, int, int]]
    """(bucket index, sent, delivered)."""


@dataclass(frozen=True, slots=True)
class Latency:
    width_s: float
    counts: list[int]
    median_s: float | None
    p95_s: float | None


@dataclass(frozen=True, slots=True)
class ReportData:
    campaign: str
    currency: str
    generated_at: float
    plan: PlanCounts
    states: dict[str, int]
    spent_nanos: int
    delivery: DeliverySummary
    span: Span
    timeline: Timeline | None
    latency: Latency | None
    failures: list[FailureCount]
    table: Table


def nice_step(span_s: float, buckets: int) -> float:
    """The smallest round step (0.1 s, 0.2 s, 0.5 s, 1 s ... 1 day, then whole days) that
    cuts *span_s* into at most *buckets* pieces."""
    want = span_s / max(buckets, 1)
    for step in NICE_STEPS_S:
        if step >= want:
            return step
    return math.ceil(want / 86400) * 86400


async def gather(reads: CampaignReads, record: CampaignRecord, currency: str, *,
                 states: Sequence[str] | None = None) -> ReportData:
    """Everything the report shows of *record*; *states* chooses the table's rows."""
    plan = await reads.plan_counts(record.id)
    by_state: dict[str, int] = {}
    spent = 0
    for state, _, n, _, nanos in await reads.state_counts(record.id):
        by_state[state] = by_state.get(state, 0) + n
        if state in ("sending", "accepted", "delivered", "undelivered", "unknown"):
            spent += nanos
    delivery = await reads.delivery_summary(record.id)
    span = await reads.span(record.id)
    return ReportData(
        campaign=record.name, currency=currency, generated_at=time.time(), plan=plan,
        states=by_state, spent_nanos=spent, delivery=delivery, span=span,
        timeline=await _timeline(reads, record.id, span),
        latency=await _latency(reads, record.id, delivery),
        failures=await reads.failures(record.id),
        table=await _table(reads, record.id, by_state, states))


async def _timeline(reads: CampaignReads, campaign_id: int, span: Span) -> Timeline | None:
    if span.first_sent is None or span.last_sent is None:
        return None
    end = max(span.last_sent, span.last_delivered or span.last_sent)
    step = max(1, int(nice_step(end - span.first_sent, TIMELINE_BUCKETS)))
    start = math.floor(span.first_sent / step) * step
    return Timeline(start, step, await reads.timeline(campaign_id, start, step))


async def _latency(reads: CampaignReads, campaign_id: int, delivery: DeliverySummary
                   ) -> Latency | None:
    if not delivery.latency_count:
        return None
    p99 = await reads.latency_quantile(campaign_id, 0.99) or 0.0
    # Up to the 99th percentile in round steps; the slowest 1 % share the last bar.
    width = nice_step(p99, LATENCY_BUCKETS - 1)
    counts = await reads.latency_histogram(campaign_id, width, LATENCY_BUCKETS)
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return Latency(width, counts, delivery.latency_median_s, delivery.latency_p95_s)


async def _table(reads: CampaignReads, campaign_id: int, by_state: dict[str, int],
                 states: Sequence[str] | None) -> Table:
    chosen = tuple(states) if states else None
    total = sum(by_state.values())
    if chosen is None and total <= FULL_TABLE_ROWS:
        rows = [*await reads.featured_rows(campaign_id, None, total),
                *await reads.sampled_rows(campaign_id, 1, total)]
        rows.sort(key=lambda r: r.line)
        featured = sum(1 for r in rows if _is_failure(r))
        return Table(rows, total, featured, featured, 0, None)
    featured_rows = await reads.featured_rows(campaign_id, chosen, MAX_FEATURED_ROWS)
    if chosen is not None:
        featured = sum(n for s, n in by_state.items() if s in chosen)
        return Table(featured_rows, total, featured, len(featured_rows), 0, chosen)
    featured = await reads.count_rows(campaign_id, failed=True)
    others = total - featured
    every = max(1, math.ceil(others / SAMPLE_ROWS))
    sample = await reads.sampled_rows(campaign_id, every, SAMPLE_ROWS)
    rows = sorted([*featured_rows, *sample], key=lambda r: r.line)
    return Table(rows, total, featured, len(featured_rows), every, None)


def _is_failure(row: TableRow) -> bool:
    return row.state in FAILURE_STATES or (row.state == "accepted"
                                           and row.reason == "unknown_delivery")
