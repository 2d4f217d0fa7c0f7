"""One provider's rate limit shared by every process on one database: the rebalancing rule
(over the memory backend and a real SQLite file), the limiter's resize, and two real
`dispatch run` processes against a sandbox that enforces the limit."""

from __future__ import annotations

import bisect
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from unittest import mock

import anyio
import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import engine.limits as limits_module
from bench.generate import generate
from engine.config import Config, RateLimit, load_config
from engine.limits import SlidingWindowLimiter, Slot
from engine.sandbox import Sandbox
from engine.send.session import open_providers, share_lease_rule
from engine.send.worker import Host, process_started
from engine.store.memory_rates import MemoryRateShares
from engine.store.protocols import RateShares
from engine.store.rate_shares import SHRINK_SLACK_S, RateHolder, RateShare, ShareLimit
from engine.store.sqlite.rate_shares import SqliteRateShares
from engine.store.sqlite.sql import QUERIES
from engine.store.sqlite.store import Store
from tests.run_fixtures import external_sandbox, run_config
from tests.test_concurrent_runs import accepted_by, dead_pid, start_run
from tests.test_run import assert_once_or_reported, sent_counts

LIMIT = ShareLimit(count=10, period_s=1.0)
COUNTED_S = LIMIT.period_s + SHRINK_SLACK_S
"""How long a shrunk or ended share stays counted."""
P = "telekom"
HERE = Host.here()

pytestmark = pytest.mark.anyio


def holder(name: str, joined_at: float, pid: int | None = None) -> RateHolder:
    """A holder of this host: this process unless *pid* says otherwise."""
    pid = pid or os.getpid()
    return RateHolder(name, HERE.name, HERE.boot_id, pid, process_started(pid), joined_at)


def all_live(row: RateShare) -> bool:
    return True


@pytest.fixture(params=["memory", "sqlite"])
async def shares(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[RateShares]:
    """Each backend: in memory, and over a real SQLite file."""
    if request.param == "memory":
        yield MemoryRateShares()
        return
    async with Store.open(tmp_path / "dispatch.db") as store:
        yield SqliteRateShares(store)


async def tick(shares: RateShares, who: RateHolder, now: float,
               live: Callable[[RateShare], bool] = all_live, wants: bool = True,
               used: int | None = None, demand: int | None = None) -> int:
    """Rebalance *who* at *now* (wanting the provider or not, *demand* requests a window of
    it or as many as it can get, with *used* of it in its window): its share; the counted
    shares never exceed the count."""
    share = (await shares.rebalance(who, {P: LIMIT}, now, live,
                                    None if used is None else {P: used},
                                    {P: wants},
                                    None if demand is None else {P: demand}))[P].mine.share
    rows = await shares.shares(P)
    assert sum(r.counted_at(now) for r in rows) <= LIMIT.count, rows
    return share


async def at_five_each(shares: RateShares, a: RateHolder, b: RateHolder) -> None:
    """*a* and *b* at 5 each by 5.0: *a* took the whole limit, *b* joined, *a* shrank."""
    await tick(shares, a, 0.0)
    await tick(shares, b, 0.0)
    await tick(shares, a, 0.5)
    assert await tick(shares, b, 5.0) == 5


async def test_two_holders_split_the_limit_once_the_first_ones_requests_lapse(
        shares: RateShares) -> None:
    """The first holder takes the whole limit; a second gets nothing until the first's
    shrink has been counted for a period, then half."""
    a, b = holder("a", 0.0), holder("b", 0.1)
    assert await tick(shares, a, 0.0) == 10
    assert await tick(shares, b, 0.1) == 0
    assert await tick(shares, a, 1.0) == 5
    assert await tick(shares, b, 1.0 + COUNTED_S - 0.01) == 0
    assert await tick(shares, b, 1.0 + COUNTED_S) == 5
    assert await tick(shares, a, 1.0 + COUNTED_S + 0.1) == 5


async def test_a_third_holder_gets_its_share_only_after_the_others_counted_shares_lapse(
        shares: RateShares) -> None:
    """Of 10 among three, the earliest gets the remainder (4, 3, 3); the newcomer grows only
    into what the others' shrunk shares free as each lapses."""
    a, b, c = holder("a", 0.0), holder("b", 0.1), holder("c", 9.0)
    await at_five_each(shares, a, b)
    assert await tick(shares, c, 10.0) == 0
    assert await tick(shares, a, 10.1) == 4
    assert await tick(shares, b, 10.2) == 3
    assert await tick(shares, c, 10.1 + COUNTED_S - 0.01) == 0
    assert await tick(shares, c, 10.1 + COUNTED_S) == 1
    assert await tick(shares, c, 10.2 + COUNTED_S) == 3


async def test_after_a_holder_leaves_the_others_grow_a_period_later(
        shares: RateShares) -> None:
    """A leaving holder's share stays counted for a period, then is free to the others, and
    its row is forgotten; one that used none of it in the window goes at once."""
    a, b, c = holder("a", 0.0), holder("b", 0.1), holder("c", 9.0)
    await at_five_each(shares, a, b)
    assert await tick(shares, c, 9.0) == 0
    await shares.leave(c.id, {P: LIMIT}, 9.5, {P: 0})
    assert [r.holder.id for r in await shares.shares(P)] == ["a", "b"]
    await shares.leave(b.id, {P: LIMIT}, 10.0)
    assert await tick(shares, a, 10.0 + COUNTED_S - 0.01) == 5
    assert await tick(shares, a, 10.0 + COUNTED_S) == 10
    assert [r.holder.id for r in await shares.shares(P)] == ["a"]


async def test_a_dead_holders_share_keeps_counting_for_a_period_after_it_is_found_dead(
        shares: RateShares) -> None:
    """A holder whose process is gone (a pid of this host that exited) is ended by the
    lease rule; its share counts one period more, then the live one takes the whole limit."""
    a, dead = holder("a", 0.0), holder("dead", 0.1, pid=dead_pid())
    live = share_lease_rule(HERE)
    await tick(shares, a, 0.0, all_live)
    await tick(shares, dead, 0.0, all_live)
    await tick(shares, a, 0.5, all_live)
    assert await tick(shares, dead, 5.0, all_live) == 5
    assert await tick(shares, a, 20.0, live) == 5
    assert [r.ended for r in await shares.shares(P)] == [False, True]
    assert await tick(shares, a, 20.0 + COUNTED_S - 0.01, live) == 5
    assert await tick(shares, a, 20.0 + COUNTED_S, live) == 10
    assert [r.holder.id for r in await shares.shares(P)] == ["a"]


async def test_an_idle_holder_gives_its_share_to_a_busy_one_and_gets_one_back_when_it_wants(
        shares: RateShares) -> None:
    """Of two holders at 5 each, one that stops wanting shrinks to 0 and the other has the
    whole limit a period and its slack later; wanting again, the first grows back to half
    once the other's shrink has been counted for a period."""
    a, b = holder("a", 0.0), holder("b", 0.1)
    await at_five_each(shares, a, b)
    assert await tick(shares, b, 10.0, wants=False) == 0
    assert await tick(shares, a, 10.0 + COUNTED_S - 0.01) == 5
    assert await tick(shares, a, 10.0 + COUNTED_S) == 10
    assert [r.wants for r in await shares.shares(P)] == [True, False]
    assert await tick(shares, b, 20.0) == 0
    assert await tick(shares, a, 20.1) == 5
    assert await tick(shares, b, 20.1 + COUNTED_S - 0.01) == 0
    assert await tick(shares, b, 20.1 + COUNTED_S) == 5


async def test_an_idle_holder_counts_only_what_is_in_its_window_once_it_shrinks(
        shares: RateShares) -> None:
    """An idle holder (its limiter held at 0 while it rebalances) counts at once only the
    requests it has in the window: the busy one grows into the rest at its next rebalance,
    and into all of it once the idle one says none is left, before a period."""
    a, b = holder("a", 0.0), holder("b", 0.1)
    await at_five_each(shares, a, b)
    assert await tick(shares, b, 10.0, wants=False, used=3) == 0
    assert await tick(shares, a, 10.1) == 7
    assert await tick(shares, b, 10.5, wants=False, used=0) == 0
    assert await tick(shares, a, 10.6) == 10


async def test_a_holder_joining_idle_beside_a_busy_one_takes_nothing_from_it(
        shares: RateShares) -> None:
    """A process that opens its providers without using them (dlr beside a run) gets no
    share, and the busy holder keeps the whole limit; alone, an idle joiner takes it all."""
    a, b = holder("a", 0.0), holder("b", 0.1)
    assert await tick(shares, a, 0.0, wants=False) == 10
    assert await tick(shares, a, 1.0) == 10
    assert await tick(shares, b, 1.5, wants=False) == 0
    assert await tick(shares, a, 2.0) == 10
    assert await tick(shares, b, 20.0, wants=False) == 0


async def test_a_holder_that_wants_little_gets_that_much_and_the_busy_one_keeps_the_rest(
        shares: RateShares) -> None:
    """Beside a holder with the whole limit, one that wants 2 requests a window (a delivery
    poll beside a run) takes 2 once the other's shrink has been counted for a period, not
    half; wanting as many as it can get, it grows to half; the demand is stored."""
    a, b = holder("a", 0.0), holder("b", 0.1)
    assert await tick(shares, a, 0.0) == 10
    assert await tick(shares, b, 1.0, demand=2) == 0
    assert await tick(shares, a, 1.5) == 8
    assert await tick(shares, b, 1.5 + COUNTED_S - 0.01, demand=2) == 0
    assert await tick(shares, b, 1.5 + COUNTED_S, demand=2) == 2
    assert await tick(shares, a, 5.0) == 8
    assert [r.demand for r in await shares.shares(P)] == [None, 2]
    assert await tick(shares, b, 6.0) == 2
    assert await tick(shares, a, 6.5) == 5
    assert await tick(shares, b, 6.5 + COUNTED_S) == 5


async def test_modest_demands_are_met_and_the_rest_split_evenly(shares: RateShares) -> None:
    """Max-min fair among three that want: demands 1 and 7 beside one that wants all of 10
    are 1, and 9 split 5 and 4 (the earlier joined gets the odd one): the 7 is more than
    an even part of what is left."""
    a, b, c = holder("a", 0.0), holder("b", 0.1), holder("c", 0.2)
    await tick(shares, a, 0.0, demand=7)
    await tick(shares, b, 0.0, demand=1)
    await tick(shares, c, 0.0)
    for now in (0.1, 0.1 + COUNTED_S, 0.2 + 2 * COUNTED_S):
        got = [await tick(shares, a, now, demand=7), await tick(shares, b, now, demand=1),
               await tick(shares, c, now)]
    assert got == [5, 1, 4]


async def test_while_no_holder_wants_no_share_shrinks_and_what_is_free_is_taken_evenly(
        shares: RateShares) -> None:
    """The first of two to go idle gives its half to the other (still wanting, as it last
    said); once that one is idle too it keeps its half, the first takes the free half back,
    and after the first left the other grows into the whole limit without wanting it."""
    a, b = holder("a", 0.0), holder("b", 0.1)
    await at_five_each(shares, a, b)
    assert await tick(shares, a, 6.0, wants=False) == 0
    assert await tick(shares, b, 6.0, wants=False) == 5
    assert await tick(shares, a, 6.0 + COUNTED_S, wants=False) == 5
    assert await tick(shares, b, 9.0, wants=False) == 5
    await shares.leave(a.id, {P: LIMIT}, 10.0, {P: 0})
    assert await tick(shares, b, 10.1, wants=False) == 10


async def test_the_sqlite_class_has_every_rate_shares_method() -> None:
    """Each method of the RateShares protocol is on both backends, with its parameters."""
    import inspect

    for name in ("rebalance", "leave", "shares"):
        want = list(inspect.signature(getattr(RateShares, name)).parameters)
        for backend in (SqliteRateShares, MemoryRateShares):
            assert list(inspect.signature(getattr(backend, name)).parameters) == want


OPS = st.lists(st.tuples(st.sampled_from(["tick", "tick", "tick", "leave", "die", "wait",
                                          "idle", "want", "burst", "modest"]),
                         st.integers(0, 2), st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.6])),
               max_size=60)


class FakeClock:
    """``time`` for engine.limits, read from the test's own clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@settings(max_examples=400)
@given(OPS)
@example([("tick", 0, 0.0), ("tick", 1, 0.05), ("tick", 0, 0.05), ("leave", 1, 0.05),
          ("tick", 0, 0.05), ("wait", 0, 0.05)])  # shrunk, then grown within a period
@example([("tick", 0, 0.0), ("tick", 1, 0.05), ("tick", 0, 0.05), ("tick", 0, 0.05),
          ("tick", 1, 0.05), ("wait", 0, 0.05)])  # shrunk, its window still full
@example([("tick", 0, 0.0), ("tick", 1, 0.05), ("tick", 0, 0.05), ("idle", 1, 0.05),
          ("tick", 1, 0.05), ("tick", 1, 0.3), ("tick", 0, 0.05), ("want", 1, 0.05),
          ("tick", 1, 0.05), ("tick", 0, 0.05), ("tick", 1, 0.6), ("wait", 0, 0.6),
          ("tick", 1, 0.6)])  # gave its share up, wants it back
@example([("tick", 0, 0.0), ("idle", 0, 0.05), ("tick", 1, 0.05), ("tick", 0, 0.05),
          ("tick", 1, 0.3), ("idle", 1, 0.05), ("want", 0, 0.05), ("tick", 0, 0.05),
          ("tick", 1, 0.6), ("tick", 0, 0.6)])  # nobody wanted, then one does
@example([("tick", 0, 0.0), ("tick", 1, 0.05), ("tick", 0, 0.05), ("wait", 0, 0.6),
          ("wait", 0, 0.6), ("wait", 0, 0.6), ("tick", 1, 0.05), ("idle", 0, 0.05),
          ("wait", 0, 0.6), ("tick", 0, 0.0), ("tick", 1, 0.05),
          ("wait", 0, 0.05)])  # idle, with nothing in its window, while it rebalances
async def test_no_window_ever_holds_more_than_the_limit(ops: list[tuple[str, int, float]]
                                                        ) -> None:
    """Holders that join, rebalance, leave, die, go idle, want a few or want again at random,
    each sending what its limiter lets through (at once answered; up to a burst that
    changes at random) while it wants, and all of it while it rebalances (between measuring
    what it used and the result, idle or not): the counted shares never sum past the count,
    and no window of the period holds more than the count of all their requests."""
    shares = MemoryRateShares()
    clock = FakeClock()
    holders = [holder(f"h{i}", float(i)) for i in range(3)]
    limiters: dict[str, SlidingWindowLimiter] = {}
    dead: set[str] = set()
    idle: set[str] = set()
    demand: dict[str, int] = {}
    """A holder's demand, where it wants only so many requests a window."""
    sent: list[float] = []
    burst = LIMIT.count
    """At most this many requests of a holder between two operations."""

    def live(row: RateShare) -> bool:
        return row.holder.id not in dead

    with mock.patch.object(limits_module, "time", clock):
        period = limiter(LIMIT.count, LIMIT.period_s).period_s
        share_limit = {P: ShareLimit(LIMIT.count, period)}
        for op, i, dt in ops:
            clock.now += dt
            if op == "burst":
                burst = i * 5 + 1
            for hid, sending in limiters.items():
                for _ in range(burst):
                    if hid in dead | idle or sending.ready_in() != 0:
                        break
                    (await sending.acquire()).done()
                    sent.append(clock.now)
            h = holders[i]
            if h.id in dead:
                continue
            lim = limiters.get(h.id)
            if op == "tick":
                if lim is not None and h.id in idle:
                    lim.resize(0)  # held while it rebalances, as open_providers does
                used = {P: lim.in_window()} if lim else None
                while lim is not None and lim.ready_in() == 0:  # during its transaction
                    (await lim.acquire()).done()
                    sent.append(clock.now)
                share = (await shares.rebalance(
                    h, share_limit, clock.now, live, used, {P: h.id not in idle},
                    {P: demand[h.id]} if h.id in demand else None))[P].mine.share
                limiters.setdefault(h.id, limiter(LIMIT.count, LIMIT.period_s)).resize(share)
            elif op == "leave" and lim is not None:
                await shares.leave(h.id, share_limit, clock.now, {P: lim.in_window()})
                dead.add(h.id)
                holders[i] = holder(f"{h.id}'", clock.now)
            elif op == "die":
                dead.add(h.id)
            elif op == "idle":
                idle.add(h.id)
            elif op == "want":
                idle.discard(h.id)
                demand.pop(h.id, None)
            elif op == "modest":
                demand[h.id] = round(dt * 10) + 1
            rows = await shares.shares(P)
            assert sum(r.counted_at(clock.now) for r in rows) <= LIMIT.count
    sent.sort()
    for k, at in enumerate(sent):
        assert bisect.bisect_left(sent, at + LIMIT.period_s) - k <= LIMIT.count, sent


def limiter(count: int, period_s: float) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(RateLimit(count, period_s))


async def take(lim: SlidingWindowLimiter, n: int) -> list[Slot]:
    """*n* requests through *lim*, each answered at once: their slots."""
    slots = []
    for _ in range(n):
        slot = await lim.acquire()
        slot.done()
        slots.append(slot)
    return slots


async def test_a_shrunk_limiter_waits_a_period_after_the_oldest_of_its_newest_entries() -> None:
    """Shrunk from 4 to 2 after 4 requests, the next starts a period after the third (the
    older of the newest two), the one after it a period after the fourth."""
    lim = limiter(4, 0.3)
    slots = await take(lim, 4)
    lim.resize(2)
    starts = []
    for _ in range(2):
        before = await lim.acquire()
        starts.append(before.at)
        before.done()
    assert starts[0] >= slots[2].at + lim.period_s
    assert starts[1] >= slots[3].at + lim.period_s


async def test_a_limiter_shrunk_then_grown_within_a_period_counts_what_it_dropped() -> None:
    """4 requests, shrunk to 2 and grown back to 4: the window still holds the 4, so the
    next waits a period after the first; in_window counts the dropped ones throughout."""
    lim = limiter(4, 60.0)
    await take(lim, 4)
    lim.resize(2)
    assert lim.in_window() == 4
    lim.resize(4)
    assert lim.in_window() == 4
    with anyio.move_on_after(0.2) as waited:
        await lim.acquire()
    assert waited.cancelled_caught


async def test_a_grown_limiter_lets_the_new_places_start_at_once() -> None:
    """Grown from 2 to 4 in a long window, two more start at once, and a fifth waits."""
    lim = limiter(2, 60.0)
    await take(lim, 2)
    lim.resize(4)
    with anyio.fail_after(5):
        await take(lim, 2)
    with anyio.move_on_after(0.2) as waited:
        await lim.acquire()
    assert waited.cancelled_caught


async def test_a_limiter_of_zero_blocks_until_it_grows_and_wakes_a_waiter() -> None:
    """At count 0 nothing starts; growing wakes a request already waiting, also one waiting
    out a long period."""
    lim = limiter(1, 60.0)
    lim.resize(0)
    with anyio.move_on_after(0.2) as waited:
        await lim.acquire()
    assert waited.cancelled_caught
    started: list[Slot] = []

    async def one() -> None:
        slot = await lim.acquire()
        slot.done()
        started.append(slot)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
            await anyio.sleep(0.05)
            assert started == []
            lim.resize(1)
            await anyio.sleep(0.05)
            assert len(started) == 1
            lim.resize(2)
    assert len(started) == 2


async def test_a_limiter_wants_while_a_request_waits_or_one_started_within_the_time(
        ) -> None:
    """A new limiter wants nothing; one that started a request wants within the time
    given, not after; one whose request waited says so once, and wants while one waits
    (however often asked), not once no request waits and none was reported."""
    lim = limiter(1, 60.0)
    assert not lim.wanted(10.0)
    await take(lim, 1)
    assert lim.wanted(10.0)
    assert not lim.wanted(0.0)
    with anyio.move_on_after(0.05):
        await lim.acquire()
    assert lim.wanted(0.0)
    assert not lim.wanted(0.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lim.acquire)
        await anyio.sleep(0.05)
        assert lim.wanted(0.0)
        assert lim.wanted(0.0)
        tg.cancel_scope.cancel()
    assert not lim.wanted(0.0)  # its wait was reported while it waited


def telekom_at_10_a_second(tmp_path: Path, sandbox: Sandbox) -> Config:
    return load_config(run_config(tmp_path, sandbox.url, rate_limits={"telekom": "10/s"},
                                  providers=("telekom",)))


@asynccontextmanager
async def telekom_limiter(config: Config, store: Store
                          ) -> AsyncIterator[SlidingWindowLimiter]:
    """A session on *store*'s rate shares, as a command opens one: its Telekom limiter."""
    async with open_providers(config.providers, rate_shares=SqliteRateShares(store)) as s:
        limiter = s.limiters["telekom"]
        assert isinstance(limiter, SlidingWindowLimiter)
        yield limiter


async def test_an_idle_session_gives_its_share_to_one_whose_requests_wait(
        tmp_path: Path, sandbox: Sandbox) -> None:
    """Two sessions on one SQLite file: the first, alone, holds the whole limit and uses
    none of it; the second's request waits at share 0 until the first has given its share
    up, then starts, and the second holds the whole limit."""
    config = telekom_at_10_a_second(tmp_path, sandbox)
    async with Store.open(config.database) as one, Store.open(config.database) as two:
        async with telekom_limiter(config, one) as first:
            assert first.count == 10
            async with telekom_limiter(config, two) as second:
                assert second.count == 0
                with anyio.fail_after(15):
                    (await second.acquire()).done()
                rows = await SqliteRateShares(one).shares(P)
                assert sorted(r.share for r in rows) == [0, 10]
                assert first.count == 0


async def test_a_session_making_one_request_beside_a_busy_one_takes_two_places_not_half(
        tmp_path: Path, sandbox: Sandbox) -> None:
    """Two sessions on one SQLite file: the first sends all its limiter lets through; the
    second's one request (a delivery poll beside a run) waits until it has a share of 2
    (twice the one it asks for), not half of the limit, and the first keeps 8."""
    config = telekom_at_10_a_second(tmp_path, sandbox)
    async with Store.open(config.database) as one, Store.open(config.database) as two:
        async with telekom_limiter(config, one) as busy, anyio.create_task_group() as tg:
            assert busy.count == 10

            async def send_all_it_may() -> None:
                while True:
                    (await busy.acquire()).done()

            tg.start_soon(send_all_it_may)
            async with telekom_limiter(config, two) as second:
                assert second.count == 0
                with anyio.fail_after(15):
                    (await second.acquire()).done()
                rows = await SqliteRateShares(one).shares(P)
                assert sorted((r.share, r.demand) for r in rows)[0] == (2, 2), rows
                assert sorted(r.share for r in rows) == [2, 8], rows
                assert second.count == 2 and busy.count == 8
            tg.cancel_scope.cancel()


async def test_a_session_holds_its_share_while_open_and_frees_it_on_the_way_out(
        tmp_path: Path, sandbox: Sandbox) -> None:
    """open_providers with the store's rate shares: the first session on a database gets the
    whole limit, a second one beside it nothing yet (its requests wait); a session that
    sent nothing leaves no row behind."""
    config = telekom_at_10_a_second(tmp_path, sandbox)
    async with Store.open(config.database) as one, Store.open(config.database) as two:
        async with telekom_limiter(config, one) as first:
            assert first.count == 10
            async with telekom_limiter(config, two) as second:
                assert second.count == 0
                assert [r.share for r in await SqliteRateShares(one).shares(P)] in (
                    [10, 0], [0, 10])
            assert [r.share for r in await SqliteRateShares(one).shares(P)] == [10]
        assert await SqliteRateShares(one).shares(P) == []


def test_two_runs_on_one_database_never_exceed_a_providers_limit_together(
        tmp_path: Path) -> None:
    """Two `dispatch run` of one campaign started together, through one provider limited to
    50/s that the sandbox enforces: no violation, both send, every message billed once (each
    with the whole limit, as before the limit was shared: ~290 violations)."""
    folder = tmp_path / "c"
    generate(500, 5, 0.0, "SK", folder, "shared")
    campaign = folder / "campaign.toml"
    with external_sandbox(tmp_path, "skytelecom:rate_limit=50/1") as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits={"skytelecom": "50/s"},
                            providers=("skytelecom",))
        runs = [start_run(campaign, config) for _ in range(2)]
        results = [r.communicate(timeout=60) for r in runs]
        violations = httpx.get(f"{sandbox.url}/_sandbox/violations").json()
        entries = sandbox.entries()
    for run, (_, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
        assert "Traceback" not in err
    assert violations["count"] == 0, violations["violations"][:5]
    shares = [accepted_by(err) for _, err in results]
    assert all(shares), f"both runs must have sent part of it: {shares}"
    assert sum(shares) == len(entries) > 300
    assert max(sent_counts(entries).values()) == 1
    assert_once_or_reported(tmp_path / "dispatch.db", entries)
    with sqlite3.connect(tmp_path / "dispatch.db") as conn:
        assert conn.execute("SELECT count(*) FROM rate_shares WHERE ended = 0").fetchone() == (0,)


async def test_a_version_6_database_gains_the_rate_shares_table(tmp_path: Path) -> None:
    """A database of schema 6 (before rate shares) is upgraded to 9 when opened to write,
    and a process can join its shares there."""
    db = tmp_path / "old.db"
    async with Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE rate_shares")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema'")
    async with Store.open(db) as store:
        assert await tick(SqliteRateShares(store), holder("a", 0.0), 0.0) == 10
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("9",)


async def test_a_version_7_databases_shares_are_kept_and_count_as_wanting(
        tmp_path: Path) -> None:
    """A database of schema 7 (shares without demand) is upgraded to 9 keeping its rows,
    each wanting as many as it can get, as every holder did then: a newcomer that wants
    gets half, not all."""
    db = tmp_path / "old.db"
    async with Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE rate_shares")
        conn.executescript(QUERIES["upgrade_from_6"])
        h = holder("old", 0.0)
        conn.execute("INSERT INTO rate_shares VALUES (?, ?, ?, ?, ?, ?, ?, 5, 5, 0, ?, 0)",
                     (P, h.id, h.host, h.boot_id, h.pid, h.pid_started, h.joined_at, 1.0))
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema'")
    async with Store.open(db) as store:
        [old] = await SqliteRateShares(store).shares(P)
        assert (old.share, old.wants, old.demand) == (5, True, None)
        assert await tick(SqliteRateShares(store), holder("new", 1.0), 1.5) == 5
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("9",)


async def test_a_limiters_demand_is_what_it_uses_and_doubles_while_a_request_waits(
        ) -> None:
    """Nothing asked: no demand; one request answered: it wants that one; 3 in its window
    and one waiting at count 3: twice the 4; once nothing waits, what it has again."""
    lim = limiter(3, 60.0)
    assert lim.demand(10.0) == 0
    await take(lim, 1)
    assert lim.demand(10.0) == 1
    await take(lim, 2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lim.acquire)
        await anyio.sleep(0.05)
        assert lim.demand(10.0) == 2 * (3 + 1)
        tg.cancel_scope.cancel()
    assert lim.demand(10.0) == 3


async def test_a_limiter_is_starved_while_it_holds_nothing_and_a_request_waits() -> None:
    """Starved (its session then rebalances sooner): count 0 with a request waiting; not at
    count 0 with none waiting, nor with a share and a request waiting for room."""
    lim = limiter(1, 60.0)
    lim.resize(0)
    assert not lim.starved()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lim.acquire)
        await anyio.sleep(0.05)
        assert lim.starved()
        lim.resize(1)
        await anyio.sleep(0.05)
        assert not lim.starved()
        tg.start_soon(lim.acquire)
        await anyio.sleep(0.05)
        assert not lim.starved()
        tg.cancel_scope.cancel()
