"""The outbox contract: every backend keeps the rules of engine/store/states.py, asserted
the same way on each (SQLite on a real file, with its checkpoint writer's process; memory).

A backend here is made from one list of planned messages and gives outboxes for workers and
a few reads (states, one message, committed money, workers) through :class:`Backend`, so
that no test body knows SQL or the memory store's insides.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import NamedTuple, Protocol

import anyio
import pytest

from engine.errors import LeaseLost
from engine.send.worker import WORKER_LEASE_S, Host, lease_rule, process_started
from engine.store.memory import MemoryCampaign, MemoryOutbox, outgoing
from engine.store.protocols import Outbox
from engine.store.records import Outgoing, Settlement, WorkerRecord
from engine.store.sqlite.outbox import SqliteOutbox
from engine.store.sqlite.plan_writer import PlanWriter
from engine.store.sqlite.store import Store
from engine.store.states import CLAIMED, PENDING, SENDING, UNKNOWN

pytestmark = pytest.mark.anyio

CAMPAIGN = "contract"
PROVIDERS = ("alpha", "beta", "gamma")
CENT = 10_000_000
"""A hundredth of the currency, in billionths."""


def planned(count: int = 30) -> list[Outgoing]:
    """*count* pending messages from CSV line 2, the providers in turn, of 1-4 cents a
    segment and 1-2 segments."""
    return [outgoing(line, PROVIDERS[i % len(PROVIDERS)], price_nanos=(1 + i % 4) * CENT,
                     segments=1 + i % 2, route="r1", plan_id=1)
            for i, line in enumerate(range(2, count + 2))]


class Seen(NamedTuple):
    """What a test reads of one stored message."""

    state: str
    worker: str | None
    provider: str
    route: str
    cost_nanos: int
    actual_cost_nanos: int | None
    attempts: int
    reason: str | None
    provider_message_id: str | None


class Backend(Protocol):
    async def outbox(self, worker: WorkerRecord) -> Outbox: ...
    async def states(self) -> Counter[tuple[str, bool]]: ...
    async def message(self, line: int) -> Seen: ...
    async def committed(self) -> int | None: ...
    async def workers(self) -> list[str]: ...


class MemoryBackend:
    def __init__(self, rows: Sequence[Outgoing]) -> None:
        self.campaign = MemoryCampaign.from_rows(rows, CAMPAIGN)

    async def outbox(self, worker: WorkerRecord) -> Outbox:
        return MemoryOutbox(self.campaign, worker, lease_rule())

    async def states(self) -> Counter[tuple[str, bool]]:
        return Counter((state, worker is not None)
                       for (state, worker), n in self.campaign.held().items()
                       for _ in range(n))

    async def message(self, line: int) -> Seen:
        m = self.campaign.message(line)
        return Seen(*(getattr(m, f) for f in Seen._fields))

    async def committed(self) -> int | None:
        return self.campaign.committed_nanos

    async def workers(self) -> list[str]:
        return sorted(self.campaign.workers)


class SqliteBackend:
    """A real SQLite file; each outbox on a connection of its own, as each worker is a
    process of its own."""

    def __init__(self, db: Path, stack: AsyncExitStack) -> None:
        self.db = db
        self.stack = stack
        self.campaign_id = 0
        self.store: Store

    async def start(self, rows: Sequence[Outgoing]) -> None:
        self.store = await self.stack.enter_async_context(Store.open(self.db))
        record = await self.store.open_campaign(
            name=CAMPAIGN, fingerprint="contract", path=self.db.parent / "campaign.toml",
            currency="EUR", plans=[])
        self.campaign_id = record.id
        writer = PlanWriter(self.db, record.id)
        writer.write([(r.line, r.phone, "SK", r.encoding, r.segments, r.provider, r.route,
                       r.price_nanos, r.cost_nanos, r.plan_id, r.variables, r.text or "")
                      for r in rows], [], through=max(r.line for r in rows))
        writer.close()

    async def outbox(self, worker: WorkerRecord) -> Outbox:
        store = await self.stack.enter_async_context(Store.open(self.db))
        await store.register_worker(worker)
        outbox = SqliteOutbox(store, self.campaign_id, worker, lease_rule())
        self.stack.push_async_callback(outbox.stop)
        return outbox

    async def states(self) -> Counter[tuple[str, bool]]:
        return Counter((state, worker is not None) for state, worker in await self.store.page(
            "state, worker", "FROM messages WHERE campaign_id = ?", (self.campaign_id,)))

    async def message(self, line: int) -> Seen:
        (row,) = await self.store.page(
            ", ".join(Seen._fields), "FROM messages WHERE campaign_id = ? AND line = ?",
            (self.campaign_id, line))
        return Seen(*row)

    async def committed(self) -> int | None:
        ((nanos,),) = await self.store.page("committed_nanos", "FROM campaigns WHERE id = ?",
                                            (self.campaign_id,))
        return None if nanos is None else int(nanos)

    async def workers(self) -> list[str]:
        return sorted(w.id for w in await self.store.workers(CAMPAIGN))


Make = Callable[..., Awaitable[Backend]]


@pytest.fixture(params=["sqlite", "memory"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """Makes a backend holding the given planned messages (:func:`planned` by default)."""
    async with AsyncExitStack() as stack:
        async def backend(rows: Sequence[Outgoing] | None = None) -> Backend:
            rows = planned() if rows is None else rows
            if request.param == "memory":
                return MemoryBackend(rows)
            sqlite = SqliteBackend(tmp_path / "dispatch.db", stack)
            await sqlite.start(rows)
            return sqlite

        yield backend


def worker(name: str, *, host: Host | None = None, pid: int | None = None,
           heartbeat_age_s: float = 0.0) -> WorkerRecord:
    """A worker of the campaign: this process on this host unless told otherwise."""
    host = host or Host.here()
    pid = pid or os.getpid()
    now = time.time()
    return WorkerRecord(id=name, campaign=CAMPAIGN, host=host.name, boot_id=host.boot_id,
                        pid=pid, pid_started=process_started(pid) if host == Host.here()
                        else 1, started_at=now - 60, heartbeat_at=now - heartbeat_age_s)


def dead_pid() -> int:
    """The pid of a process of this host that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


async def written(outbox: Outbox, *, marks: Sequence[int] = (),
                  settlements: Sequence[Settlement] = (), adjust_nanos: int = 0) -> bool:
    """Queue *settlements* (the first moving *adjust_nanos* of committed money), mark
    *marks* ``sending`` and flush: True if it was all applied, False if the outbox said its
    lease was lost."""
    for i, settlement in enumerate(settlements):
        outbox.settle(settlement, adjust_nanos if i == 0 else 0)
    lost = False
    try:
        async with anyio.create_task_group() as tg:
            if marks:
                tg.start_soon(outbox.mark_sending, marks)
                await anyio.wait_all_tasks_blocked()
            await outbox.flush()
    except* LeaseLost:
        lost = True
    return not lost


def settled(row: Outgoing, state: str, *, provider: str | None = None, route: str = "r1",
            cost_nanos: int | None = None, message_id: str | None = None,
            actual_nanos: int | None = None, reason: str | None = None) -> Settlement:
    return Settlement(state, reason, None, provider or row.provider, route, row.price_nanos,
                      row.cost_nanos if cost_nanos is None else cost_nanos, message_id,
                      actual_nanos, row.attempts + 1, time.time(), row.line)


def of(provider: str, rows: Sequence[Outgoing] | None = None) -> list[Outgoing]:
    return [r for r in (planned() if rows is None else rows) if r.provider == provider]


async def test_claims_are_in_line_order_and_never_overlap(make: Make) -> None:
    """Two workers claiming one provider's messages at once, a page at a time, each get
    lines in ascending order after the last they had, never the same line, and every
    pending message of that provider between them, now claimed and held."""
    backend = await make()
    a, b = await backend.outbox(worker("a")), await backend.outbox(worker("b"))
    taken: dict[str, list[list[int]]] = {"a": [], "b": []}

    async def take(outbox: Outbox) -> None:
        after = 0
        while (claim := await outbox.claim("alpha", after_line=after, limit=3)).messages:
            lines = [m.line for m in claim.messages]
            assert lines == sorted(lines) and lines[0] > after
            assert claim.after_line == lines[-1]
            assert {m.state for m in claim.messages} == {CLAIMED}
            taken[outbox.worker_id].append(lines)
            after = claim.after_line

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, a)
        tg.start_soon(take, b)
    mine = {name: {line for page in pages for line in page} for name, pages in taken.items()}
    assert not mine["a"] & mine["b"]
    assert mine["a"] | mine["b"] == {r.line for r in of("alpha")}
    assert (await backend.states())[(CLAIMED, True)] == len(of("alpha"))
    assert (await backend.message(min(mine["a"] or mine["b"]))).worker in ("a", "b")
    assert await a.pending_by_provider() == {"beta": len(of("beta")),
                                             "gamma": len(of("gamma"))}


async def test_unknown_messages_are_claimed_held_and_keep_their_state(make: Make) -> None:
    """A claim of ``unknown`` messages holds them as they are (no reservation, not
    ``claimed``), a ``pending`` claim never takes them, and releasing lets them go."""
    backend = await make()
    a, b = await backend.outbox(worker("a")), await backend.outbox(worker("b"))
    rows = (await a.claim("alpha", limit=3)).messages
    assert await written(a, marks=[r.line for r in rows])
    assert await written(a, settlements=[settled(r, UNKNOWN, reason="outcome_unknown")
                                         for r in rows])
    committed = await backend.committed()
    claim = await b.claim("alpha", state=UNKNOWN)
    assert [m.line for m in claim.messages] == [r.line for r in rows]
    assert {m.state for m in claim.messages} == {UNKNOWN}
    assert (await backend.message(rows[0].line)).worker == "b"
    assert await backend.committed() == committed
    assert not set(m.line for m in (await b.claim("alpha")).messages) & {r.line for r in rows}
    assert not (await a.claim("alpha", state=UNKNOWN)).messages
    assert await b.release([r.line for r in rows]) == 0
    assert (await backend.states())[(UNKNOWN, False)] == 3


async def test_the_budget_is_a_running_sum_in_line_order(make: Make) -> None:
    """Pending messages are claimed while their costs, in line order, fit beside all the
    money committed by every worker; the first that does not fit ends the claim (a cheaper
    one after it waits) and the claim says so; another worker's claim sees the same room."""
    rows = [outgoing(2, "alpha", price_nanos=3 * CENT), outgoing(3, "alpha", price_nanos=3 * CENT),
            outgoing(4, "alpha", price_nanos=5 * CENT), outgoing(5, "alpha", price_nanos=CENT),
            outgoing(6, "beta", price_nanos=2 * CENT), outgoing(7, "beta", price_nanos=CENT)]
    backend = await make(rows)
    a, b = await backend.outbox(worker("a")), await backend.outbox(worker("b"))
    budget = 8 * CENT
    first = await a.claim("alpha", budget_nanos=budget)
    assert [m.line for m in first.messages] == [2, 3] and first.over_budget
    assert await backend.committed() == 6 * CENT
    second = await b.claim("beta", budget_nanos=budget)
    assert [m.line for m in second.messages] == [6] and second.over_budget
    assert await backend.committed() == budget
    assert not (await b.claim("beta", after_line=6, budget_nanos=budget - 1)).messages
    unlimited = await b.claim("alpha", after_line=3)
    assert [m.line for m in unlimited.messages] == [4, 5] and not unlimited.over_budget
    assert await backend.committed() == 14 * CENT


async def test_release_returns_the_reservation(make: Make) -> None:
    """Released ``claimed`` messages are ``pending`` and unheld again and their reservation
    is given back; only the worker's own are released."""
    backend = await make()
    a, b = await backend.outbox(worker("a")), await backend.outbox(worker("b"))
    rows = (await a.claim("alpha", limit=5)).messages
    full = await backend.committed()
    assert full == sum(r.cost_nanos for r in rows)
    assert await b.release([r.line for r in rows]) == 0
    assert await a.release([r.line for r in rows[:2]]) == 2
    assert await backend.committed() == full - sum(r.cost_nanos for r in rows[:2])
    assert (await backend.message(rows[0].line))[:2] == (PENDING, None)
    assert (await backend.message(rows[2].line))[:2] == (CLAIMED, "a")
    assert await a.release() == 3
    assert await backend.committed() == 0
    assert (await backend.states())[(PENDING, False)] == len(planned())


async def test_a_claim_may_mark_what_it_holds_and_release_gives_back_what_was_not_sent(
        make: Make) -> None:
    """A claim with ``sending`` holds pending messages ``sending`` at once, their attempt
    counted, their cost reserved; released by line (never sent) they are ``pending``
    again, the attempt uncounted and the reservation returned, while a release of all
    leaves a ``sending`` message alone (it may have been sent)."""
    backend = await make()
    a = await backend.outbox(worker("a"))
    claim = await a.claim("alpha", limit=4, sending=True)
    rows = claim.messages
    assert {m.state for m in rows} == {SENDING} and [m.attempts for m in rows] == [0] * 4
    assert [(await backend.message(r.line))[:2] for r in rows] == [(SENDING, "a")] * 4
    assert (await backend.message(rows[0].line)).attempts == 1
    assert await backend.committed() == sum(r.cost_nanos for r in rows)
    assert await a.release([r.line for r in rows[:3]]) == 3
    assert (await backend.message(rows[0].line))[:2] == (PENDING, None)
    assert (await backend.message(rows[0].line)).attempts == 0
    assert await backend.committed() == rows[3].cost_nanos
    assert await a.release() == 0
    assert (await backend.message(rows[3].line))[:2] == (SENDING, "a")


LEASE_CASES = [
    pytest.param("dead-process-here", True, id="dead-process-here"),
    pytest.param("live-process-old-heartbeat", False, id="live-process-old-heartbeat"),
    pytest.param("other-host-fresh-heartbeat", False, id="other-host-fresh-heartbeat"),
    pytest.param("other-host-lapsed-heartbeat", True, id="other-host-lapsed-heartbeat"),
]


def holder(case: str) -> WorkerRecord:
    elsewhere = Host("other-machine", "0000-boot")
    return {
        "dead-process-here": lambda: worker("other", pid=dead_pid()),
        "live-process-old-heartbeat": lambda: worker("other",
                                                     heartbeat_age_s=WORKER_LEASE_S * 4),
        "other-host-fresh-heartbeat": lambda: worker("other", host=elsewhere, pid=4242,
                                                     heartbeat_age_s=1.0),
        "other-host-lapsed-heartbeat": lambda: worker("other", host=elsewhere, pid=4242,
                                                      heartbeat_age_s=WORKER_LEASE_S + 1),
    }[case]()


@pytest.mark.parametrize(("case", "rescued"), LEASE_CASES)
async def test_rescue_is_by_the_lease_rule(make: Make, case: str, rescued: bool) -> None:
    """Only a worker the lease rule calls dead loses what it held: ``claimed`` messages are
    ``pending`` again with their reservation returned, ``sending`` ones ``unknown``
    (interrupted), held ``unknown`` ones unheld, and its row is gone; a live worker keeps
    everything."""
    backend = await make()
    theirs = await backend.outbox(holder(case))
    mine = await backend.outbox(worker("me"))
    rows = (await theirs.claim("alpha", limit=10)).messages
    assert await written(theirs, marks=[r.line for r in rows[:6]])
    assert await written(theirs, settlements=[settled(r, UNKNOWN) for r in rows[4:6]])
    assert len((await theirs.claim("alpha", state=UNKNOWN)).messages) == 2
    before, committed = await backend.states(), await backend.committed()
    assert before[(CLAIMED, True)] == 4 and before[(UNKNOWN, True)] == 2
    result = await mine.rescue()
    after = await backend.states()
    if not rescued:
        assert result == (0, 0, 0) and after == before
        assert await backend.workers() == ["me", "other"]
        return
    assert result == (1, 4, 4)
    assert after[(CLAIMED, True)] == after[("sending", True)] == after[(UNKNOWN, True)] == 0
    assert after[(PENDING, False)] == before[(PENDING, False)] + 4
    assert after[(UNKNOWN, False)] == 4 + 2
    assert (await backend.message(rows[0].line)).reason == "interrupted"
    assert committed is not None
    assert await backend.committed() == committed - sum(r.cost_nanos for r in rows[6:])
    assert await backend.workers() == ["me"]


async def test_a_write_for_a_message_not_held_is_not_applied(make: Make) -> None:
    """A mark or settlement for a message the worker does not hold (another worker's, or
    nobody's) changes nothing and is reported as a lost lease; the holder's own applies."""
    backend = await make()
    a, b = await backend.outbox(worker("a")), await backend.outbox(worker("b"))
    row, free = (await a.claim("alpha", limit=1)).messages[0], of("beta")[0]
    before = await backend.states()
    assert not await written(b, settlements=[settled(row, "accepted", message_id="x")])
    assert not await written(b, marks=[row.line])
    assert not await written(b, settlements=[settled(free, "failed")])
    assert not await written(a, marks=[free.line])
    assert await backend.states() == before
    assert (await backend.message(row.line))[:2] == (CLAIMED, "a")
    assert await written(a, marks=[row.line])
    assert (await backend.message(row.line))[:2] == ("sending", "a")


async def test_settling_to_claimed_keeps_the_holder_and_other_states_drop_it(
        make: Make) -> None:
    """A settlement is invisible until flushed; one to ``claimed`` (failover to the next
    route) keeps the message held, one to ``accepted``, ``failed`` or ``pending`` lets it
    go; a failover and its new lane's mark in one flush leave it ``sending``."""
    backend = await make()
    a = await backend.outbox(worker("a"))
    moved, ok, bad, left, remarked = (await a.claim("alpha", limit=5)).messages
    assert await written(a, marks=[ok.line, bad.line, remarked.line])
    a.settle(settled(moved, CLAIMED, provider="beta", route="r2", cost_nanos=7 * CENT))
    assert (await backend.message(moved.line)).provider == "alpha"
    assert await written(a, settlements=[
        settled(ok, "accepted", message_id="m-1", actual_nanos=CENT),
        settled(bad, "failed", reason="no_route_left"), settled(left, PENDING),
        settled(remarked, CLAIMED, provider="gamma", route="r3")], marks=[remarked.line])
    seen = {r.line: await backend.message(r.line) for r in (moved, ok, bad, left, remarked)}
    assert seen[moved.line][:5] == (CLAIMED, "a", "beta", "r2", 7 * CENT)
    assert seen[ok.line][:2] == ("accepted", None)
    assert seen[ok.line].provider_message_id == "m-1" and seen[ok.line].actual_cost_nanos == CENT
    assert seen[bad.line][:2] == ("failed", None) and seen[bad.line].reason == "no_route_left"
    assert seen[left.line][:2] == (PENDING, None)
    assert seen[remarked.line][:3] == ("sending", "a", "gamma")
    assert seen[remarked.line].attempts == 2


async def test_committed_money_is_kept_from_the_first_claim_and_adjusted(
        make: Make) -> None:
    """Committed money is computed from the messages at the first claim of ``pending``
    ones and kept from then on: what a settlement moves applies when flushed, not before."""
    backend = await make()
    a = await backend.outbox(worker("a"))
    assert await backend.committed() is None
    rows = (await a.claim("alpha", limit=4)).messages
    reserved = sum(r.cost_nanos for r in rows)
    assert await backend.committed() == reserved
    a.settle(settled(rows[0], "accepted", message_id="m-1", actual_nanos=123),
             123 - rows[0].cost_nanos)
    assert await backend.committed() == reserved
    assert await written(a)
    assert await backend.committed() == reserved - rows[0].cost_nanos + 123


async def test_spent_and_pending_by_provider_follow_the_states(make: Make) -> None:
    """What has cost or may have cost (sending, accepted at the provider's figure where it
    gave one, unknown) is what spent_nanos says, whoever holds it; pending counts per
    provider leave out what is held or settled."""
    backend = await make()
    a, b = await backend.outbox(worker("a")), await backend.outbox(worker("b"))
    assert await a.spent_nanos() == 0
    assert await a.pending_by_provider() == {p: len(of(p)) for p in PROVIDERS}
    sending, accepted, priced, failed, unknown, held = (await a.claim("beta", limit=6)).messages
    assert await written(a, marks=[r.line for r in (sending, accepted, priced, failed, unknown)])
    assert await written(a, settlements=[
        settled(accepted, "accepted", message_id="m-1"),
        settled(priced, "accepted", message_id="m-2", actual_nanos=CENT // 2),
        settled(failed, "failed"), settled(unknown, UNKNOWN)])
    expected = sending.cost_nanos + accepted.cost_nanos + CENT // 2 + unknown.cost_nanos
    assert await a.spent_nanos() == await b.spent_nanos() == expected
    assert await b.pending_by_provider() == {"alpha": len(of("alpha")),
                                             "beta": len(of("beta")) - 6,
                                             "gamma": len(of("gamma"))}
    assert await b.held_by_others() == 2 and await a.held_by_others() == 0
    assert held.state == CLAIMED


async def test_money_of_a_refused_settlement_is_not_taken_back(make: Make) -> None:
    """A worker whose lease lapsed mid-send settles its message failed and gives back its
    reservation; the settlement is refused (the rescue made the message ``unknown``: it
    may have been sent) and so must the money be, or committed money stays short of what
    may have been spent, for good."""
    backend = await make()
    late = await backend.outbox(worker("late", host=Host("other-machine", "0000-boot"),
                                       pid=4242, heartbeat_age_s=WORKER_LEASE_S + 1))
    rescuer = await backend.outbox(worker("rescuer"))
    (row,) = (await late.claim("alpha", limit=1)).messages
    assert await written(late, marks=[row.line])
    assert (await rescuer.rescue()).unknown == 1
    committed = await backend.committed()
    assert not await written(late, settlements=[settled(row, "failed")],
                             adjust_nanos=-row.cost_nanos)
    assert (await backend.message(row.line)).state == UNKNOWN
    assert await backend.committed() == committed
