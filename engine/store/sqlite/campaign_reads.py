"""The SQLite backend's :class:`~engine.store.protocols.CampaignReads`: the campaign and
message reads of :class:`~engine.store.sqlite.store.Store`, the delivery summary of
:class:`~engine.store.sqlite.delivery_store.DeliveryStore` and the report's reads of
:class:`~engine.store.sqlite.report_reads.ReportReads`, on one connection.

Every read is theirs, unchanged; this class only puts them behind one name, so that
``status`` and ``report`` take one object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

from engine.plan.tally import PlanCounts
from engine.store.delivery_records import DeliverySummary
from engine.store.records import CampaignRecord, ReportRow
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.report_reads import ReportReads
from engine.store.sqlite.store import Store


class SqliteCampaignReads(ReportReads):
    """The reads behind ``status`` and ``report`` on *store* (read-only is enough)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._deliveries = DeliveryStore(store)

    async def campaign_named(self, name: str) -> CampaignRecord:
        return await self.store.campaign_named(name)

    async def state_counts(self, campaign_id: int
                           ) -> list[tuple[str, str | None, int, int, int]]:
        return await self.store.state_counts(campaign_id)

    async def plan_counts(self, campaign_id: int) -> PlanCounts:
        return await self.store.plan_counts(campaign_id)

    def report_rows(self, campaign_id: int, states: Collection[str] = ()
                    ) -> AsyncIterator[ReportRow]:
        return self.store.report_rows(campaign_id, states)

    async def delivery_summary(self, campaign_id: int) -> DeliverySummary:
        return await self._deliveries.summary(campaign_id)
