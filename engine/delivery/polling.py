"""Polling for delivery: providers that are asked, not told.

A round takes, per provider whose kind can be polled (Sky Telecom SMS logs, Voipex history,
Telekom ``check_message``, Skynoo ``getStatus`` at most 100 ids a request: the adapters
chunk), the campaign's accepted messages without a final state, asks the adapter in slices
of :attr:`PollSettings.ids_per_call`, and stores what it says
(:class:`~engine.store.protocols.DeliveryLedger`). A message accepted longer ago than the
expiry (72 h) is given up: delivery ``unknown``, reason ``unknown_delivery``. Rounds repeat
with exponential backoff while nothing becomes final, back to the first interval when
something does; every loop is bounded in rounds and time. SMS & Voice Platform has no status
endpoint: its reports come by webhook only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import anyio
import structlog

from engine.config import ProviderConfig
from engine.delivery.reports import ONE_ID_PER_REQUEST_KINDS, POLLED_KINDS, to_report
from engine.providers.base import Provider, SentBetween
from engine.store.delivery_records import AwaitingDelivery
from engine.store.protocols import DeliveryLedger

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How delivery polling paces itself. A round asks about up to :attr:`ids_per_round`
    messages still waiting, per provider, oldest line first, and some providers answer one id
    per request (Telekom). Beside a running dispatch polling shares the provider's rate limit,
    the store and the event loop with the sends, so there it starts late and stays small
    (:data:`DURING_DISPATCH`): every 30-120 s, up to 500 messages a provider in a request or
    a few, and a sample of 50 where each message asked about is a request, one send fewer
    within the provider's rate limit. What it leaves is asked after the dispatch
    (``--dlr-wait``, or ``dispatch dlr``)."""

    first_interval_s: float = 2.0
    max_interval_s: float = 300.0
    expiry_s: float = 72 * 3600.0
    ids_per_call: int = 500
    ids_per_round: int = 50_000
    """At most this many messages of one provider asked about in one round."""
    one_by_one_ids_per_round: int | None = None
    """The same for a provider asked one id per request (Telekom), where each message asked
    about costs a request, as a send does; ``None``: :attr:`ids_per_round`."""
    max_rounds: int = 100_000
    first_round_at_once: bool = True
    """False: the first round comes after :attr:`first_interval_s`, as a message just sent
    has no report yet."""

    def round_limit(self, kind: str) -> int:
        """At most this many messages of a provider of *kind* asked about in one round."""
        if kind in ONE_ID_PER_REQUEST_KINDS and self.one_by_one_ids_per_round is not None:
            return self.one_by_one_ids_per_round
        return self.ids_per_round


DURING_DISPATCH: Final = PollSettings(first_interval_s=30.0, max_interval_s=120.0,
                                      ids_per_round=500, one_by_one_ids_per_round=50,
                                      first_round_at_once=False)


@dataclass(frozen=True, slots=True)
class RoundResult:
    asked: int
    answered: int
    final: int
    """Reports with a final state read in this round."""
    expired: int
    awaiting: Mapping[str, int]
    """Accepted messages still without a final state, by provider."""

    @property
    def left(self) -> int:
        return sum(self.awaiting.values())


def sent_between(rows: Sequence[AwaitingDelivery]) -> SentBetween | None:
    """When *rows* were accepted, the earliest and the latest; ``None`` when one's time is
    not known."""
    times = [r.sent_at for r in rows]
    if not times or min(times) <= 0:
        return None
    return (datetime.fromtimestamp(min(times), UTC), datetime.fromtimestamp(max(times), UTC))


async def poll_round(store: DeliveryLedger, campaign_id: int, providers: Sequence[ProviderConfig],
                     adapters: Mapping[str, Provider],
                     settings: PollSettings = PollSettings()) -> RoundResult:
    """One round over every pollable provider; failures are logged, never raised."""
    expired = await store.expire(campaign_id, sent_before=time.time() - settings.expiry_s)
    asked = answered = final = 0
    for p in providers:
        adapter = adapters.get(p.name)
        if p.kind not in POLLED_KINDS or adapter is None:
            continue
        after, left = 0, settings.round_limit(p.kind)
        while left > 0:
            rows = await store.awaiting(campaign_id, p.name, after_line=after,
                                        limit=min(settings.ids_per_call, left))
            if not rows:
                break
            left -= len(rows)
            after = rows[-1].line
            asked += len(rows)
            wanted = {r.provider_message_id for r in rows}
            try:
                statuses = await adapter.poll(sorted(wanted), sent_between(rows))
            except Exception as exc:
                log.warning("delivery.poll_failed", provider=p.name, error=type(exc).__name__)
                break
            now = time.time()
            reports = [to_report(p.name, s, now) for s in statuses
                       if s.provider_message_id in wanted]
            answered += len(reports)
            final += sum(1 for s in statuses if s.final)
            if reports:
                await store.record_reports(reports)
    awaiting = await store.awaiting_count(campaign_id)
    log.debug("delivery.poll_round", asked=asked, answered=answered, final=final,
              expired=expired, awaiting=sum(awaiting.values()))
    return RoundResult(asked, answered, final, expired, awaiting)


async def poll_loop(store: DeliveryLedger, campaign_id: int, providers: Sequence[ProviderConfig],
                    adapters: Mapping[str, Provider], settings: PollSettings = PollSettings(),
                    *, until_final: bool = False,
                    timeout_s: float = math.inf) -> RoundResult | None:
    """Rounds with backoff until cancelled or *timeout_s* passes; with *until_final*, also
    until no accepted message awaits a final state. The last round's result."""
    deadline = time.monotonic() + timeout_s
    interval = settings.first_interval_s
    last: RoundResult | None = None
    if not settings.first_round_at_once:
        await anyio.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
        if time.monotonic() >= deadline:
            return None
    for _ in range(settings.max_rounds):
        if until_final:
            await store.record_reports([])  # webhook reports that came before their message
        last = await poll_round(store, campaign_id, providers, adapters, settings)
        if until_final and last.left == 0:
            break
        interval = (settings.first_interval_s if last.final
                    else min(interval * 2, settings.max_interval_s))
        wait = min(interval, deadline - time.monotonic())
        if wait <= 0:
            break
        await anyio.sleep(wait)
    return last
