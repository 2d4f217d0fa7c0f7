"""The records of delivery and of the campaign's figures that cross the store's boundary:
what the delivery ledger (:class:`engine.store.protocols.DeliveryLedger`) takes and gives,
and what the reads behind ``status`` and ``report`` (:class:`engine.store.protocols.
CampaignReads`) give.

Like :mod:`engine.store.records`, this module imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

UNKNOWN_DELIVERY: Final = "unknown_delivery"
"""``delivery_reason`` of an accepted message whose report never came before the expiry."""
FAILURE_STATES: Final = ("rejected", "skipped", "failed", "undelivered", "unknown",
                         "expired", "cancelled")
"""States of a message that did not reach its recipient (besides an accepted one given up
with :data:`UNKNOWN_DELIVERY`)."""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One delivery report as received (webhook) or read (poll), in the engine's words."""

    provider: str
    """The provider's name in the config (``messages.provider``)."""
    provider_message_id: str
    state: str
    """accepted, delivered, undelivered, expired or unknown."""
    provider_status: str
    """The provider's own word, kept beside ours."""
    reason: str
    at: float | None
    """When the provider says the message reached ``state`` (epoch s), if it says."""
    received_at: float


@dataclass(frozen=True, slots=True)
class ApplyResult:
    stored: int
    """Reports not seen before (a repeated report is not stored twice)."""
    unmatched: int
    """Stored reports still waiting for their message."""


@dataclass(frozen=True, slots=True)
class AwaitingDelivery:
    line: int
    provider_message_id: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class DeliveryGroup:
    """Sent messages of one provider or country by delivery outcome, and their cost."""

    sent: int = 0
    delivered: int = 0
    undelivered: int = 0
    pending: int = 0
    unknown: int = 0
    estimated_nanos: int = 0
    actual_nanos: int = 0

    @property
    def rate(self) -> float | None:
        """Delivered among those with a final state; ``None`` before any is final."""
        final = self.delivered + self.undelivered
        return self.delivered / final if final else None


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    by_provider: dict[str, DeliveryGroup]
    by_country: dict[str, DeliveryGroup]
    total: DeliveryGroup
    latency_count: int
    latency_median_s: float | None
    latency_p95_s: float | None


@dataclass(frozen=True, slots=True)
class TableRow:
    """One recipient in the report's table; cost in billionths, seconds to delivery."""

    line: int
    phone: str
    country: str | None
    state: str
    provider: str | None
    segments: int | None
    cost_nanos: int | None
    delivery_s: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Span:
    """When sending started and ended, and when the last delivery report came (epoch s)."""

    first_sent: float | None
    last_sent: float | None
    last_delivered: float | None


@dataclass(frozen=True, slots=True)
class FailureCount:
    state: str
    provider: str | None
    reason: str
    messages: int


def row_values(row: TableRow) -> list[Any]:
    """*row* as a plain list, in :class:`TableRow`'s field order."""
    return [row.line, row.phone, row.country, row.state, row.provider, row.segments,
            row.cost_nanos, row.delivery_s, row.reason]
