"""The outbox in memory: the rules of :mod:`engine.store.states` in plain Python, for tests.

:class:`MemoryCampaign` holds one campaign's messages (keyed by line), its workers and its
committed money; :class:`MemoryOutbox` is one worker's
:class:`~engine.store.protocols.Outbox` on it, keeping exactly what
:class:`~engine.store.sqlite.outbox.SqliteOutbox` keeps: conditional claims in line order,
the budget's running sum against committed money, marks and settlements written only for
rows the worker holds (:class:`~engine.errors.LeaseLost` from the write that found one it
does not), rescue by the lease rule. Settlements and committed-money changes are queued and
applied on :meth:`MemoryOutbox.flush`, so what is not flushed is not visible, as on SQLite.
One event loop, no I/O: every call is atomic, as a ``BEGIN IMMEDIATE`` transaction is.
``tests/test_outbox_contract.py`` holds both backends to the same assertions.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from engine.errors import LeaseLost
from engine.store.records import Outgoing, Settlement, WorkerRecord
from engine.store.states import (
    CLAIMED,
    HELD_STATES,
    PENDING,
    SENDING,
    SPENDING_STATES,
    UNKNOWN,
    Claim,
    Rescued,
    fit_budget,
)

_INTERRUPTED_DETAIL = "the worker sending it stopped while it was being sent"


@dataclass(frozen=True, slots=True)
class MemoryMessage:
    """One stored message: what :class:`Outgoing` carries, what a settlement writes, and
    the worker holding it (``None``: nobody)."""

    line: int
    phone: str
    text: str | None
    encoding: str
    segments: int
    provider: str
    route: str
    price_nanos: int
    cost_nanos: int
    plan_id: int
    attempts: int
    state: str
    provider_message_id: str | None
    updated_at: float | None
    variables: str | None
    worker: str | None = None
    reason: str | None = None
    detail: str | None = None
    actual_cost_nanos: int | None = None

    @property
    def spent_nanos(self) -> int:
        """What it cost, or may have cost: the provider's figure where known."""
        return self.cost_nanos if self.actual_cost_nanos is None else self.actual_cost_nanos

    def outgoing(self) -> Outgoing:
        return Outgoing._make(getattr(self, f) for f in Outgoing._fields)


def outgoing(line: int, provider: str, *, price_nanos: int = 1_000_000, segments: int = 1,
             route: str = "", plan_id: int = 0, phone: str | None = None,
             text: str | None = "hello", state: str = PENDING) -> Outgoing:
    """A planned message as the store returns it (for building a test campaign)."""
    return Outgoing(line, phone or f"+42190{line:07d}", text, "GSM-7", segments, provider,
                    route, price_nanos, price_nanos * segments, plan_id, 0, state, None, None,
                    None)


class MemoryCampaign:
    """One campaign's messages, its workers and its committed money, in memory."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.messages: dict[int, MemoryMessage] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.committed_nanos: int | None = None
        """Everything held, sent or reserved by every worker: computed from the messages
        at the first claim of ``pending`` ones, then kept (``None`` before)."""

    @classmethod
    def from_rows(cls, rows: Iterable[Outgoing], name: str = "memory") -> MemoryCampaign:
        campaign = cls(name)
        for row in rows:
            campaign.messages[row.line] = MemoryMessage(*row)
        return campaign

    def message(self, line: int) -> MemoryMessage:
        return self.messages[line]

    def states(self) -> Counter[str]:
        """Messages counted by state."""
        return Counter(m.state for m in self.messages.values())

    def held(self) -> Counter[tuple[str, str | None]]:
        """Messages counted by (state, holding worker)."""
        return Counter((m.state, m.worker) for m in self.messages.values())

    def register(self, worker: WorkerRecord) -> None:
        self.workers.setdefault(worker.id, worker)

    def heartbeat(self, worker_id: str, at: float) -> None:
        self.workers[worker_id] = dataclasses.replace(self.workers[worker_id], heartbeat_at=at)

    def update(self, line: int, /, **changes: object) -> None:
        """Change message *line* (the outbox's writes; a test may set a state up too)."""
        self.messages[line] = dataclasses.replace(self.messages[line], **changes)  # type: ignore[arg-type]

    def committed(self) -> int:
        """The committed money, computed from the messages the first time (as SQLite's
        ``committed_nanos`` is: sent or possibly sent, and claimed)."""
        if self.committed_nanos is None:
            self.committed_nanos = sum(m.spent_nanos for m in self.messages.values()
                                       if m.state in SPENDING_STATES or m.state == CLAIMED)
        return self.committed_nanos

    def add_committed(self, nanos: int) -> None:
        """Change the committed money, once it is kept (before, it is computed when needed)."""
        if self.committed_nanos is not None:
            self.committed_nanos += nanos


class MemoryOutbox:
    """:class:`engine.store.protocols.Outbox` on a :class:`MemoryCampaign`, as *worker*
    (registered among the campaign's workers when made); *live* is the lease rule."""

    def __init__(self, campaign: MemoryCampaign, worker: WorkerRecord,
                 live: Callable[[WorkerRecord], bool]) -> None:
        self.campaign = campaign
        campaign.register(worker)
        self.worker = worker
        self.worker_id = worker.id
        self._live = live
        self._settlements: list[tuple[Settlement, int]] = []
        self._marks: list[tuple[float, int]] = []
        self._closed = anyio.Event()
        self.flushes = 0

    # --- marks and settlements -------------------------------------------------------------

    async def run(self) -> None:
        await self._closed.wait()

    async def mark_sending(self, lines: Sequence[int]) -> None:
        now = time.time()
        self._marks.extend((now, line) for line in lines)
        await self.flush()

    def settle(self, settlement: Settlement, committed_nanos: int = 0) -> None:
        self._settlements.append((settlement, committed_nanos))

    async def flush(self) -> None:
        """Apply what is queued, settlements before marks (a line failed over and then
        marked by its new lane must end ``sending``), as the SQLite writer does."""
        await anyio.lowlevel.checkpoint()
        settlements, self._settlements = self._settlements, []
        marks, self._marks = self._marks, []
        if not (settlements or marks):
            return
        messages, me = self.campaign.messages, self.worker_id
        not_held = nanos = 0
        for s, moves in settlements:
            if messages[s.line].worker != me:
                not_held += 1
                continue
            self.campaign.update(s.line, **s._asdict(),
                                  worker=me if s.state == CLAIMED else None)
            nanos += moves
        for at, line in marks:
            if messages[line].worker != me:
                not_held += 1
                continue
            self.campaign.update(line, state=SENDING, attempts=messages[line].attempts + 1,
                                  updated_at=at)
        self.campaign.add_committed(nanos)
        self.flushes += 1
        if not_held:
            raise LeaseLost(f"{not_held} message(s) this run held were taken over by another "
                            "worker (this run's lease lapsed); it stops here")

    async def close(self) -> None:
        self._closed.set()
        await self.flush()

    async def stop(self) -> None:
        self._closed.set()

    # --- reads -----------------------------------------------------------------------------

    async def spent_nanos(self) -> int:
        await anyio.lowlevel.checkpoint()
        return sum(m.spent_nanos for m in self.campaign.messages.values()
                   if m.state in SPENDING_STATES)

    async def pending_by_provider(self) -> dict[str, int]:
        await anyio.lowlevel.checkpoint()
        return dict(Counter(m.provider for m in self.campaign.messages.values()
                            if m.state == PENDING))

    async def held_by_others(self) -> int:
        await anyio.lowlevel.checkpoint()
        return sum(1 for m in self.campaign.messages.values()
                   if m.state in HELD_STATES and m.worker is not None
                   and m.worker != self.worker_id)

    # --- claims ----------------------------------------------------------------------------

    async def claim(self, provider: str, *, after_line: int = 0, limit: int = 500,
                    state: str = PENDING, budget_nanos: int | None = None,
                    sending: bool = False) -> Claim:
        await anyio.lowlevel.checkpoint()
        campaign = self.campaign
        rows = sorted((m for m in campaign.messages.values()
                       if m.state == state and m.provider == provider and m.worker is None
                       and m.line > after_line), key=lambda m: m.line)[:limit]
        over_budget = False
        if state == PENDING and rows:
            committed = campaign.committed()
            if budget_nanos is not None:
                rows, over_budget = fit_budget(rows, budget_nanos - committed)
            campaign.add_committed(sum(m.cost_nanos for m in rows))
        if not rows:
            return Claim((), over_budget, after_line)
        new_state = (SENDING if sending else CLAIMED) if state == PENDING else state
        claimed = tuple(m.outgoing()._replace(state=new_state) for m in rows)
        now = time.time()
        for m in rows:
            if new_state == SENDING:
                campaign.update(m.line, state=SENDING, worker=self.worker_id,
                                attempts=m.attempts + 1, updated_at=now)
            else:
                campaign.update(m.line, state=new_state, worker=self.worker_id)
        return Claim(claimed, over_budget, rows[-1].line)

    async def rescue(self) -> Rescued:
        await anyio.lowlevel.checkpoint()
        campaign = self.campaign
        dead = {w.id for w in campaign.workers.values()
                if w.id != self.worker_id and w.campaign == self.worker.campaign
                and not self._live(w)}
        pending = unknown = 0
        returned = 0
        for m in list(campaign.messages.values()):
            by_dead = m.worker is None or m.worker in dead
            if m.state == CLAIMED and by_dead:
                campaign.update(m.line, state=PENDING, worker=None)
                pending += 1
                returned += m.cost_nanos
            elif m.state == SENDING and by_dead:
                campaign.update(m.line, state=UNKNOWN, reason="interrupted",
                                 detail=_INTERRUPTED_DETAIL, worker=None)
                unknown += 1
            elif m.state == UNKNOWN and m.worker in dead:
                campaign.update(m.line, worker=None)
        if pending:
            campaign.add_committed(-returned)
        for worker_id in dead:
            del campaign.workers[worker_id]
        return Rescued(len(dead), pending, unknown)

    async def release(self, lines: Sequence[int] | None = None) -> int:
        await anyio.lowlevel.checkpoint()
        campaign, me = self.campaign, self.worker_id
        which = set(campaign.messages) if lines is None else set(lines)
        count = returned = 0
        for line in which:
            m = campaign.messages.get(line)
            if m is None or m.worker != me:
                continue
            if m.state == CLAIMED or (m.state == SENDING and lines is not None):
                campaign.update(line, state=PENDING, worker=None,
                                attempts=m.attempts - (m.state == SENDING))
                count += 1
                returned += m.cost_nanos
            elif m.state == UNKNOWN:
                campaign.update(line, worker=None)
        if count:
            campaign.add_committed(-returned)
        return count
