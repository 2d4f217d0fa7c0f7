"""The store's delivery half: delivery reports, their matching to messages, and the figures.

Kept beside :mod:`engine.store.sqlite.store` (which holds the campaign and message queries)
so that each stays a module of one job; the two share the database, its schema and its
connection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import anyio

from engine.store.delivery_records import (
    UNKNOWN_DELIVERY,
    ApplyResult,
    AwaitingDelivery,
    DeliveryGroup,
    DeliveryReport,
    DeliverySummary,
)
from engine.store.sqlite.sql import query
from engine.store.sqlite.store import Store, paged

FINAL_DELIVERY_STATES: Final = ("delivered", "undelivered", "expired")
AWAITING_REPORT: Final = query("awaiting_report_condition", unknown_delivery=UNKNOWN_DELIVERY)
"""The condition on ``messages`` of a sent message whose delivery report is still to come."""
UNMATCHED_PER_PASS: Final = 20_000
"""Stored reports without a message yet, newest first, that one apply pass tries again."""

_INSERT_REPORT: Final = query("insert_report")
_APPLY_PROGRESS: Final = query(
    "apply_progress", unknown_delivery=UNKNOWN_DELIVERY,
    unapplied=query("unapplied", states="'accepted', 'unknown'", limit=str(UNMATCHED_PER_PASS)))
_APPLY_FINAL: Final = query(
    "apply_final", unapplied=query("unapplied", states=", ".join(map(repr, FINAL_DELIVERY_STATES)),
                                   limit=str(UNMATCHED_PER_PASS)))
_MARK_APPLIED: Final = query("mark_applied")
_AWAITING: Final = paged(query("awaiting_columns"),
                         query("awaiting_from", awaiting=AWAITING_REPORT))
_GIVEN_UP: Final = query("given_up_by_provider", unknown_delivery=UNKNOWN_DELIVERY)
_OLDEST_AWAITING: Final = query("oldest_awaiting", awaiting=AWAITING_REPORT)
_EXPIRE: Final = query("expire", unknown_delivery=UNKNOWN_DELIVERY, awaiting=AWAITING_REPORT)


async def _record_reports(store: Store, reports: Sequence[DeliveryReport]) -> ApplyResult:
    async with store.transaction() as db:
        before = db.total_changes
        if reports:
            await db.executemany(_INSERT_REPORT, [
                (r.provider, r.provider_message_id, r.state, r.provider_status, r.reason, r.at,
                 r.received_at) for r in reports])
        stored = db.total_changes - before
        await db.execute(_APPLY_PROGRESS)
        await db.execute(_APPLY_FINAL)
        await db.execute(_MARK_APPLIED)
        async with db.execute(query("unapplied_count")) as cur:
            row = await cur.fetchone()
    return ApplyResult(stored, int(row[0]) if row else 0)


def _delivery_group(rows: Sequence[tuple[Any, ...]]) -> DeliveryGroup:
    sent = delivered = undelivered = pending = unknown = estimated = actual = 0
    for state, reason, n, est, act in rows:
        sent += n
        estimated += est
        actual += act
        if state == "delivered":
            delivered += n
        elif state == "undelivered":
            undelivered += n
        elif reason == UNKNOWN_DELIVERY:
            unknown += n
        else:
            pending += n
    return DeliveryGroup(sent, delivered, undelivered, pending, unknown, estimated, actual)


async def _delivery_summary(store: Store, campaign_id: int) -> DeliverySummary:
    rows = await store._rows(query("delivery_groups"), (campaign_id,))
    per_provider: dict[str, list[tuple[Any, ...]]] = {}
    per_country: dict[str, list[tuple[Any, ...]]] = {}
    for provider, country, *rest in rows:
        per_provider.setdefault(provider or "", []).append(tuple(rest))
        per_country.setdefault(country or "", []).append(tuple(rest))
    count = int(await store._scalar(query("delivered_latency_count"), (campaign_id,)))

    async def quantile(q: float) -> float | None:
        if not count:
            return None
        offset = min(count - 1, int(q * (count - 1) + 0.5))
        value = await store._scalar(query("delivered_latency_at"), (campaign_id, offset))
        return max(0.0, float(value)) if value is not None else None

    return DeliverySummary(
        by_provider={k: _delivery_group(v) for k, v in sorted(per_provider.items())},
        by_country={k: _delivery_group(v) for k, v in sorted(per_country.items())},
        total=_delivery_group([tuple(r[2:]) for r in rows]),
        latency_count=count, latency_median_s=await quantile(0.5),
        latency_p95_s=await quantile(0.95))


class DeliveryStore:
    """The store's delivery-report queries, on the same connection and transaction lock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._none_before: dict[int, float] = {}
        """By campaign: no message awaiting a report was accepted before this time."""

    async def record_reports(self, reports: Sequence[DeliveryReport]) -> ApplyResult:
        """Store *reports* (a repeated one changes nothing) and apply every stored report
        whose message is known to it, the earlier unmatched ones included; one transaction.

        A final report moves an ``accepted`` message to ``delivered`` or ``undelivered``
        (``expired`` is ``undelivered`` with reason ``expired``, ``delivery_state`` keeps
        ``expired``); the first final report wins. A non-final one only updates
        ``delivery_state``/``delivery_status`` of a message still ``accepted``.
        """
        with anyio.CancelScope(shield=True):  # a cancelled BEGIN would leave it open
            result = await _record_reports(self.store, reports)
        return result

    async def awaiting(self, campaign_id: int, provider: str, *, after_line: int = 0,
                       limit: int = 1000) -> list[AwaitingDelivery]:
        """Accepted messages of *provider* without a final delivery state, in line order."""
        rows = await self.store.page_of(_AWAITING, (campaign_id, provider, after_line, limit))
        return [AwaitingDelivery(int(line), str(pmid), float(t)) for line, pmid, t in rows]

    async def awaiting_count(self, campaign_id: int) -> dict[str, int]:
        """Accepted messages without a final delivery state, by provider: the accepted, from
        the state index alone, less those given up (``messages_unknown_delivery``). Asked
        in one pass over every accepted row, each read for its reason, it took 0.2 s a
        100k messages each poll round."""
        accepted = await self.store._rows(query("accepted_by_provider"), (campaign_id,))
        given_up = dict(await self.store._rows(_GIVEN_UP, (campaign_id,)))
        counts = {str(p): int(n) - int(given_up.get(p, 0)) for p, n in accepted}
        return {p: n for p, n in counts.items() if n}

    async def expire(self, campaign_id: int, *, sent_before: float) -> int:
        """Accepted messages sent before *sent_before* with no final report: delivery
        ``unknown``, reason ``unknown_delivery`` (the state stays ``accepted``: the message was
        sent and billed; only its fate is unknown). A later final report still applies.

        Looked for without the write lock first, and nearly always not found: the search
        passes every accepted message of the campaign, and beside a run the checkpoint
        writer, which every send waits for, would wait for it too. The search finds when the
        oldest awaiting message was accepted, and until *sent_before* passes that, later
        calls know there is nothing to expire without searching: messages accepted meanwhile
        are newer (or, not yet checkpointed, older by the checkpoint's 100 ms at most, and
        given up that much later)."""
        if sent_before <= self._none_before.get(campaign_id, 0.0):
            return 0
        oldest = await self.store._scalar(_OLDEST_AWAITING, (campaign_id,))
        if oldest is None or oldest >= sent_before:
            self._none_before[campaign_id] = time.time() if oldest is None else float(oldest)
            return 0
        self._none_before.pop(campaign_id, None)
        with anyio.CancelScope(shield=True):
            async with self.store.transaction() as db:
                cur = await db.execute(_EXPIRE, (campaign_id, sent_before))
                changed = int(cur.rowcount)
        return changed

    async def webhook_key(self) -> bytes:
        """This database's secret for webhook path tokens, made on first use."""
        import secrets

        value = await self.store._scalar(query("webhook_key"))
        if value is None:
            with anyio.CancelScope(shield=True):
                async with self.store.transaction() as db:
                    await db.execute(query("insert_webhook_key"), (secrets.token_hex(32),))
            value = await self.store._scalar(query("webhook_key"))
        return bytes.fromhex(str(value))

    async def summary(self, campaign_id: int) -> DeliverySummary:
        """Delivery outcome and cost per provider and country; send-to-delivery time."""
        return await _delivery_summary(self.store, campaign_id)
