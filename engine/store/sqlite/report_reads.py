"""The reads behind the HTML campaign report (:mod:`engine.html_report`): messages over time,
send-to-delivery times, failures by reason and provider, and a bounded choice of rows.

Beside :mod:`engine.store.sqlite.store` and :mod:`engine.store.sqlite.delivery_store`, on
the same connection; read-only, so that a report can be written from a read-only store.
Every query reads a campaign's rows in one pass at most (1M rows: well under a second each,
``bench/html_report.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from engine.store.delivery_records import (
    FAILURE_STATES,
    UNKNOWN_DELIVERY,
    FailureCount,
    Span,
    TableRow,
)
from engine.store.sqlite.sql import query
from engine.store.sqlite.store import Store

SENT_STATES: Final = ("accepted", "delivered", "undelivered")
"""States of a message a provider took (``updated_at`` is then when it took it)."""
_FAILED: Final = query("failed_condition", states=", ".join(map(repr, FAILURE_STATES)),
                       unknown_delivery=UNKNOWN_DELIVERY)
"""A message that did not reach its recipient, or whose fate is not known."""
_SENT: Final = ", ".join(map(repr, SENT_STATES))
_ROW_COLUMNS: Final = query("report_columns")
_SAMPLED_ROWS: Final = query("sampled_rows", columns=_ROW_COLUMNS, failed=_FAILED)
_FEATURED_FAILURES: Final = query("featured_rows", columns=_ROW_COLUMNS, where=_FAILED)


class ReportReads:
    """Read queries for the campaign report, on *store*'s connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def span(self, campaign_id: int) -> Span:
        row = (await self.store._rows(query("sent_span", states=_SENT), (campaign_id,)))[0]
        return Span(*row)

    async def timeline(self, campaign_id: int, start: float, bucket_s: float
                       ) -> list[tuple[int, int, int]]:
        """(bucket index from *start*, sent, delivered) for every bucket with either."""
        sent = await self.store._rows(query("sent_timeline", states=_SENT),
                                      (start, bucket_s, campaign_id))
        delivered = await self.store._rows(query("delivered_timeline"),
                                           (start, bucket_s, campaign_id))
        merged: dict[int, list[int]] = {}
        for b, n in sent:
            merged.setdefault(int(b), [0, 0])[0] = int(n)
        for b, n in delivered:
            merged.setdefault(int(b), [0, 0])[1] = int(n)
        return [(b, s, d) for b, (s, d) in sorted(merged.items())]

    async def latency_quantile(self, campaign_id: int, q: float) -> float | None:
        """The *q* quantile of send-to-delivery seconds of delivered messages."""
        count = int(await self.store._scalar(query("delivered_latency_count"), (campaign_id,)))
        if not count:
            return None
        value = await self.store._scalar(
            query("delivered_latency_floor_at"),
            (campaign_id, min(count - 1, int(q * (count - 1) + 0.5))))
        return float(value) if value is not None else None

    async def latency_histogram(self, campaign_id: int, width_s: float, buckets: int
                                ) -> list[int]:
        """Delivered messages by send-to-delivery time in *buckets* of *width_s* seconds;
        the last bucket also holds every slower one."""
        rows = await self.store._rows(query("latency_histogram"),
                                      (width_s, buckets - 1, campaign_id))
        counts = [0] * buckets
        for b, n in rows:
            counts[int(b)] += int(n)
        return counts

    async def failures(self, campaign_id: int) -> list[FailureCount]:
        """Messages that did not reach their recipient, by state, provider and reason."""
        rows = await self.store._rows(query("failures", failed=_FAILED), (campaign_id,))
        return [FailureCount(str(s), p, str(r), int(n)) for s, p, r, n in rows]

    async def featured_rows(self, campaign_id: int, states: Sequence[str] | None,
                            limit: int) -> list[TableRow]:
        """The first *limit* rows in *states* (by default, the failures), in line order."""
        sql = _FEATURED_FAILURES if states is None else query(  # states: per call
            "featured_rows", columns=_ROW_COLUMNS,
            where=f"state IN ({', '.join('?' * len(states))})")
        rows = await self.store._rows(sql, (campaign_id, *(states or ()), limit))
        return [TableRow(*r) for r in rows]

    async def sampled_rows(self, campaign_id: int, every: int, limit: int) -> list[TableRow]:
        """Up to *limit* of the rows that are not failures: every *every*-th CSV line."""
        rows = await self.store._rows(_SAMPLED_ROWS, (campaign_id, every, limit))
        return [TableRow(*r) for r in rows]

    async def count_rows(self, campaign_id: int, *, failed: bool) -> int:
        return int(await self.store._scalar(
            query("count_failed" if failed else "count_not_failed", failed=_FAILED),
            (campaign_id,)))

