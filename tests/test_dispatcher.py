"""The dispatcher's decisions, fast: the real :class:`Dispatcher` over the memory outbox
(engine/store/memory.py, held to SQLite's rules by tests/test_outbox_contract.py) and fake
providers that answer from a script, with no HTTP and the backoff and look-up delays cut to
milliseconds. What happens over real HTTP and SQLite is tests/test_run*.py's.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Final, NamedTuple, cast

import anyio
import anyio.lowlevel
import pytest

from engine.campaign import Campaign, OnUnknown
from engine.config import ProviderConfig, RateLimit, RoutingConfig
from engine.errors import LeaseLost
from engine.limits import SlidingWindowLimiter
from engine.providers.base import OutboundMessage, Outcome, Provider, SendResult
from engine.routing import to_nanos
from engine.send.dispatcher import Dispatcher, RunStats
from engine.store.memory import MemoryCampaign, MemoryOutbox, outgoing
from engine.store.records import CampaignRecord, Outgoing, RatePlanRoute, WorkerRecord
from engine.store.states import ACCEPTED, CLAIMED, FAILED, PENDING, SENDING, UNKNOWN
from engine.template import Template

pytestmark = pytest.mark.anyio

RUN_BOUND_S: Final = 20
"""No run here may take longer (each takes milliseconds to a few tenths of a second)."""
CENT: Final = 10_000_000
FAST: Final = {"BACKOFF_BASE_S": 0.001, "BACKOFF_MAX_S": 0.005, "LOOKUP_DELAY_S": 0.0,
               "BATCH_LINGER_S": 0.002, "WATCH_OTHERS_S": 0.005}
"""The dispatcher's delays, whichever of its modules defines each, cut for these tests."""
PRICES: Final = {"alpha": 2 * CENT, "beta": 3 * CENT, "gamma": 5 * CENT}
ROUTES: Final = {"alpha": ["alpha", "beta"], "beta": ["beta", "gamma"], "gamma": ["gamma"]}
"""Each provider's rate plan (its id is the provider's place in :data:`PRICES`)."""
PLANS: Final = {i: [RatePlanRoute(p, f"r-{p}", PRICES[p]) for p in ROUTES[first]]
                for i, first in enumerate(PRICES)}


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("engine.send") and module is not None:
            for constant, value in FAST.items():
                if hasattr(module, constant):
                    monkeypatch.setattr(module, constant, value)


class Sent(NamedTuple):
    line: int
    key: str
    at: float
    """The event loop's clock when the request left."""


def line_of(message: OutboundMessage) -> int:
    return int(message.to[-7:])


def accepted(message_id: str = "m", cost: Decimal | None = None) -> SendResult:
    return SendResult(Outcome.ACCEPTED, provider_message_id=message_id, cost=cost,
                      currency="EUR" if cost is not None else None)


class FakeProvider:
    """A provider that answers each line from its script (:attr:`answers`, given in turn;
    accepted once they are used up) and remembers every request."""

    kind = "fake"

    def __init__(self, name: str, *, idempotent: bool = False, lookup: bool = False,
                 max_batch: int = 1, answers: Mapping[int, Sequence[SendResult]] | None = None,
                 found: Mapping[int, Sequence[SendResult | None]] | None = None,
                 cost: Decimal | None = None,
                 on_send: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.name = name
        self.supports_idempotency = idempotent
        self._can_lookup = lookup
        self.max_batch = max_batch
        self.answers = {line: list(a) for line, a in (answers or {}).items()}
        self.found = {line: list(f) for line, f in (found or {}).items()}
        """What each look-up of a line finds in turn (then: nothing, ``None``)."""
        self.cost = cost
        self.on_send = on_send
        self.sent: list[Sent] = []
        self.looked_up: list[int] = []

    @property
    def can_lookup(self) -> bool:
        return self._can_lookup

    async def send(self, message: OutboundMessage) -> SendResult:
        await anyio.lowlevel.checkpoint()
        line = line_of(message)
        self.sent.append(Sent(line, message.key, anyio.current_time()))
        if self.on_send is not None:
            await self.on_send(line)
        if script := self.answers.get(line):
            return script.pop(0)
        return accepted(f"{self.name}-{len(self.sent)}", self.cost)

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        assert len(messages) <= self.max_batch
        return [await self.send(m) for m in messages]

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        await anyio.lowlevel.checkpoint()
        line = line_of(message)
        self.looked_up.append(line)
        return script.pop(0) if (script := self.found.get(line)) else None

    def lines(self) -> Counter[int]:
        """How many requests each line had."""
        return Counter(s.line for s in self.sent)


def planned(count: int, providers: Sequence[str] = tuple(PRICES), *, segments: int = 1,
            state: str = PENDING, first_line: int = 2) -> list[Outgoing]:
    """*count* messages from *first_line*, the providers in turn, each on its rate plan."""
    names = list(PRICES)
    return [outgoing(line, p, price_nanos=PRICES[p], segments=segments, route=f"r-{p}",
                     plan_id=names.index(p), state=state)
            for line, p in zip(range(first_line, first_line + count),
                               (providers[i % len(providers)] for i in range(count)),
                               strict=True)]


def campaign_of(on_unknown: OnUnknown = "settle", max_cost: Decimal | None = None) -> Campaign:
    return Campaign(path=Path("campaign.toml"), name="unit", recipients=Path("r.csv"),
                    phone_column="phone", default_region="SK", sender="ACME",
                    message=Template.compile("hello"), defaults={}, providers=None,
                    max_cost=max_cost, max_segments=10, opt_out=None, on_unknown=on_unknown)


def me() -> WorkerRecord:
    now = time.time()
    return WorkerRecord("me", "unit", "here", "boot", os.getpid(), None, now, now)


def dispatcher(store: MemoryCampaign, fakes: Sequence[FakeProvider], *,
               on_unknown: OnUnknown = "settle", max_cost: Decimal | None = None,
               concurrency: int = 4, down: Mapping[str, str] | None = None,
               rate_limit: RateLimit | None = None,
               limiters: Mapping[str, SlidingWindowLimiter] | None = None) -> Dispatcher:
    """*rate_limit* and *limiters* only size each lane's claims (a fake provider applies
    no limit)."""
    configs = [ProviderConfig(name=f.name, kind="smsvoip", base_url="sandbox",
                              concurrency=concurrency, rate_limit=rate_limit) for f in fakes]
    return Dispatcher(
        outbox=MemoryOutbox(store, me(), lambda worker: True),
        record=CampaignRecord(1, "unit", "f00d", "EUR", 0, True),
        campaign=campaign_of(on_unknown, max_cost), providers=configs,
        adapters={f.name: cast(Provider, f) for f in fakes}, down=down or {}, plans=PLANS,
        routing=RoutingConfig(), limiters=limiters)


async def run(store: MemoryCampaign, fakes: Sequence[FakeProvider], **options: object
              ) -> RunStats:
    with anyio.fail_after(RUN_BOUND_S):
        return await dispatcher(store, fakes, **options).run()  # type: ignore[arg-type]


def fakes(**options: FakeProvider) -> Iterator[FakeProvider]:
    """alpha, beta and gamma, plain unless given."""
    for name in PRICES:
        yield options.get(name) or FakeProvider(name)


def held(store: MemoryCampaign) -> int:
    return sum(1 for m in store.messages.values() if m.worker is not None)


async def test_every_message_is_accepted_once() -> None:
    """Every pending message is sent once through its provider (one-by-one, in batches, keyed
    or looked up) and settled accepted at the provider's price where it gave one, and the
    campaign's committed money is what was spent."""
    store = MemoryCampaign.from_rows(planned(90))
    alpha = FakeProvider("alpha", idempotent=True, cost=Decimal("0.015"))
    beta = FakeProvider("beta", max_batch=7)
    gamma = FakeProvider("gamma", lookup=True)
    stats = await run(store, [alpha, beta, gamma])
    assert store.states() == {ACCEPTED: 90}
    assert (stats.accepted, stats.failed, stats.unknown, stats.left) == (90, 0, 0, 0)
    for fake in (alpha, beta, gamma):
        assert set(fake.lines().values()) == {1} and len(fake.sent) == 30
    assert stats.spent_nanos == 30 * to_nanos(Decimal("0.015")) + 30 * (3 + 5) * CENT
    assert store.committed_nanos == stats.spent_nanos
    assert store.message(2).actual_cost_nanos == to_nanos(Decimal("0.015"))
    assert held(store) == 0


async def test_a_throttled_lane_pauses_for_retry_after_then_sends() -> None:
    """A 429 with Retry-After stops every request of that lane until the pause is over;
    the throttled message is sent again then, and nothing is lost or failed."""
    retry_after_s = 0.2
    store = MemoryCampaign.from_rows(planned(12, ["alpha"]))
    alpha = FakeProvider("alpha", answers={4: [SendResult(Outcome.THROTTLED, code="429",
                                                          retry_after_s=retry_after_s)]})
    stats = await run(store, [alpha], concurrency=1)
    assert store.states() == {ACCEPTED: 12} and stats.accepted == 12
    throttled = next(i for i, s in enumerate(alpha.sent) if s.line == 4)
    assert alpha.lines()[4] == 2
    assert all(s.at >= alpha.sent[throttled].at + retry_after_s
               for s in alpha.sent[throttled + 1:])


async def test_not_processed_is_retried_then_failed_over() -> None:
    """A message the provider did not process is retried on the same provider, accepted
    there if it comes through, and after MAX_NOT_PROCESSED_ATTEMPTS moved to its plan's next
    route, priced at that route."""
    not_processed = SendResult(Outcome.NOT_PROCESSED, code="503")
    store = MemoryCampaign.from_rows(planned(6, ["alpha"], segments=2))
    alpha = FakeProvider("alpha", answers={2: [not_processed] * 2, 3: [not_processed] * 50})
    beta = FakeProvider("beta")
    stats = await run(store, [alpha, beta])
    assert alpha.lines()[2] == 3 and store.message(2).provider == "alpha"
    assert alpha.lines()[3] == 6 and beta.lines() == {3: 1}
    moved = store.message(3)
    assert (moved.state, moved.provider, moved.route) == (ACCEPTED, "beta", "r-beta")
    assert moved.cost_nanos == 2 * PRICES["beta"]
    assert (stats.accepted, stats.failed_over) == (6, 1)
    assert store.committed_nanos == await MemoryOutbox(store, me(), bool).spent_nanos()


@pytest.mark.parametrize(("other_route", "state", "via"), [
    pytest.param(True, ACCEPTED, "beta", id="try-other-route"),
    pytest.param(False, FAILED, "alpha", id="refused-for-good"),
])
async def test_a_refused_message_fails_over_only_where_another_route_may_take_it(
        other_route: bool, state: str, via: str) -> None:
    """A message the provider refuses for this route or destination goes to its next
    route; one refused for itself (its text, its number) is failed with the provider's code,
    and nothing else on the lane is affected."""
    store = MemoryCampaign.from_rows(planned(5, ["alpha"]))
    alpha = FakeProvider("alpha", answers={3: [SendResult(
        Outcome.REFUSED_MESSAGE, code="E21", detail="no route", try_other_route=other_route)]})
    beta = FakeProvider("beta")
    stats = await run(store, [alpha, beta])
    assert (store.message(3).state, store.message(3).provider) == (state, via)
    assert store.states()[ACCEPTED] == 4 + (state == ACCEPTED)
    assert alpha.lines()[3] == 1 and beta.lines()[3] == (state == ACCEPTED)
    if state == FAILED:
        assert store.message(3).reason == "E21" and stats.failed == 1
        assert store.committed_nanos == 4 * PRICES["alpha"]


async def test_a_refused_account_stops_the_lane_and_its_queue_fails_over() -> None:
    """A provider refusing the account (401, empty wallet) gets no further request; its
    messages go to their next route, and those with none left wait pending for a later run,
    their reservation returned."""
    rows = planned(20, ["alpha"]) + planned(4, ["gamma"], first_line=30)
    store = MemoryCampaign.from_rows(rows)
    alpha = FakeProvider("alpha", answers={2: [SendResult(Outcome.REFUSED_ACCOUNT, code="401",
                                                          detail="bad key")]})
    gamma = FakeProvider("gamma", answers={line: [SendResult(
        Outcome.REFUSED_ACCOUNT, code="402", detail="wallet empty")] for line in range(30, 34)})
    beta = FakeProvider("beta")
    stats = await run(store, [alpha, beta, gamma], concurrency=1)
    assert [s.line for s in alpha.sent] == [2] and [s.line for s in gamma.sent] == [30]
    assert {store.message(line).provider for line in range(2, 22)} == {"beta"}
    assert store.states() == {ACCEPTED: 20, PENDING: 4}
    assert {store.message(line).worker for line in range(30, 34)} == {None}
    assert stats.accepted == 20 and stats.left == 4
    assert store.committed_nanos == 20 * PRICES["beta"]


@pytest.mark.parametrize("kind", [
    pytest.param({}, id="marked-before-each-send"),
    pytest.param({"idempotent": True}, id="marked-ahead"),
])
async def test_a_lane_refused_mid_claim_moves_every_message_it_held(
        kind: dict[str, object]) -> None:
    """A refusal for the account in the middle of a lane's claims (each larger than its
    backlog, more of them claimed ahead) moves every message the lane held or queued, fed
    or not, marked or not, to its next route: each sent once in all, none left held."""
    store = MemoryCampaign.from_rows(planned(100, ["alpha"]))
    alpha = FakeProvider("alpha", answers={45: [SendResult(
        Outcome.REFUSED_ACCOUNT, code="401", detail="key revoked")]},
                         **kind)  # type: ignore[arg-type]
    beta = FakeProvider("beta")
    d = dispatcher(store, [alpha, beta], concurrency=2, rate_limit=RateLimit(20, 1.0))
    assert d.lanes["alpha"].claim_rows == 40 > d.lanes["alpha"].backlog.limit
    with anyio.fail_after(RUN_BOUND_S):
        stats = await d.run()
    by_alpha, by_beta = alpha.lines(), beta.lines()
    assert 45 in by_alpha and 45 in by_beta
    assert set(by_alpha) | set(by_beta) == set(range(2, 102))
    assert set(by_alpha.values()) == {1} and set(by_beta.values()) == {1}
    assert set(by_alpha) & set(by_beta) == {45}
    assert store.states() == {ACCEPTED: 100} and held(store) == 0
    assert stats.accepted == 100 and stats.failed_over == len(by_beta)
    assert {store.message(line).provider for line in by_beta} == {"beta"}
    assert store.committed_nanos == stats.spent_nanos


@pytest.mark.parametrize(("on_unknown", "ahead"), [
    pytest.param("settle", {"alpha": True, "beta": True, "gamma": False}, id="settle"),
    pytest.param("report", {"alpha": False, "beta": False, "gamma": False}, id="report"),
])
def test_only_lanes_that_settle_unknown_outcomes_exactly_claim_straight_into_sending(
        on_unknown: OnUnknown, ahead: dict[str, bool]) -> None:
    """A lane claims straight into ``sending`` (a crash may leave a page marked, unsent)
    only where such a message is settled exactly later: its provider honours keys or keeps
    logs, and the campaign settles unknown outcomes rather than only reporting them."""
    d = dispatcher(MemoryCampaign.from_rows([]), [
        FakeProvider("alpha", idempotent=True), FakeProvider("beta", lookup=True),
        FakeProvider("gamma")], on_unknown=on_unknown)
    assert {name: lane.mark_ahead for name, lane in d.lanes.items()} == ahead
    for lane in d.lanes.values():
        lane.send.close()
        lane.receive.close()


def test_a_lane_claims_about_two_seconds_of_its_share_of_the_rate() -> None:
    """A lane's claim is about two seconds of its provider's rate, of this process's share
    where processes share the limit (none yet: its backlog), so a worker holds no more than
    it sends soon and the others find work."""
    limiter = SlidingWindowLimiter(RateLimit(100, 1.0))
    d = dispatcher(MemoryCampaign.from_rows([]), [FakeProvider("alpha")], concurrency=2,
                   rate_limit=RateLimit(100, 1.0), limiters={"alpha": limiter})
    lane = d.lanes["alpha"]
    assert lane.claim_rows == 200
    limiter.resize(25)
    assert lane.claim_rows == 50
    limiter.resize(0)
    assert lane.claim_rows == lane.backlog.limit
    lane.send.close()
    lane.receive.close()


@pytest.mark.parametrize(("kind", "sends", "state"), [
    pytest.param({"idempotent": True}, 2, ACCEPTED, id="same-key-resend"),
    pytest.param({"lookup": True, "found": {3: [accepted("found-3")]}}, 1, ACCEPTED,
                 id="looked-up-found"),
    pytest.param({"lookup": True}, 2, ACCEPTED, id="looked-up-absent-resent"),
    pytest.param({}, 1, UNKNOWN, id="neither-reported"),
])
async def test_an_unknown_outcome_is_settled_as_the_provider_allows(
        kind: dict[str, object], sends: int, state: str) -> None:
    """A lost answer is resent with the same key where the provider honours keys, looked
    up in its logs where it keeps them (found: accepted with its id; absent: sent again),
    and otherwise left ``unknown`` with its reason, counted as possibly spent."""
    store = MemoryCampaign.from_rows(planned(4, ["alpha"]))
    alpha = FakeProvider("alpha", answers={3: [SendResult(Outcome.UNKNOWN, code="timeout")]},
                         **kind)  # type: ignore[arg-type]
    stats = await run(store, [alpha])
    assert alpha.lines()[3] == sends
    assert len({s.key for s in alpha.sent if s.line == 3}) == 1
    assert store.message(3).state == state
    assert store.states()[ACCEPTED] == 3 + (state == ACCEPTED)
    if "found" in kind:
        assert store.message(3).provider_message_id == "found-3"
    if state == UNKNOWN:
        assert store.message(3).reason == "outcome_unknown" and stats.unknown == 1
        assert stats.spent_nanos == 4 * PRICES["alpha"]


@pytest.mark.parametrize(("on_unknown", "after"), [
    pytest.param("settle", {"alpha": ACCEPTED, "beta": ACCEPTED, "gamma": UNKNOWN},
                 id="settle"),
    pytest.param("resend", {"alpha": ACCEPTED, "beta": ACCEPTED, "gamma": ACCEPTED},
                 id="resend"),
    pytest.param("report", {"alpha": UNKNOWN, "beta": UNKNOWN, "gamma": UNKNOWN},
                 id="report"),
])
async def test_messages_unknown_at_the_start_are_settled_first_by_on_unknown(
        on_unknown: OnUnknown, after: dict[str, str]) -> None:
    """``unknown`` messages from an earlier run are dealt with as the campaign says before
    anything new: ``settle`` resends keyed ones, looks up logged ones and leaves the rest;
    ``resend`` sends them all again; ``report`` leaves them all; none stays held."""
    store = MemoryCampaign.from_rows(planned(3, state=UNKNOWN) + planned(3, first_line=10))
    alpha = FakeProvider("alpha", idempotent=True)
    beta = FakeProvider("beta", lookup=True, found={3: [accepted("logged")]})
    gamma = FakeProvider("gamma")
    await run(store, [alpha, beta, gamma], on_unknown=on_unknown)
    assert {p: store.message(line).state for line, p in ((2, "alpha"), (3, "beta"),
                                                         (4, "gamma"))} == after
    assert [m.line for m in store.messages.values() if m.state == UNKNOWN] == [
        line for line, p in ((2, "alpha"), (3, "beta"), (4, "gamma")) if after[p] == UNKNOWN]
    assert alpha.lines()[2] == (on_unknown != "report")
    assert beta.lines()[3] == (on_unknown == "resend")
    assert beta.looked_up == ([3] if on_unknown == "settle" else [])
    assert store.states()[ACCEPTED] >= 3 and held(store) == 0
    if on_unknown != "report":
        first_new = min(s.at for f in (alpha, beta, gamma) for s in f.sent if s.line >= 10)
        assert all(s.at <= first_new for s in alpha.sent if s.line == 2)


async def test_the_budget_stops_the_run_before_max_cost() -> None:
    """With ``max_cost``, messages are claimed only while their estimate fits in line order;
    the run stops with reason ``budget``, having sent nothing past it, and the rest waits
    pending and unheld."""
    store = MemoryCampaign.from_rows(planned(30, ["alpha", "beta"]))
    alpha, beta = FakeProvider("alpha"), FakeProvider("beta")
    max_cost = Decimal("0.26")  # of 75 cents planned
    d = dispatcher(store, [alpha, beta], max_cost=max_cost)
    with anyio.fail_after(RUN_BOUND_S):
        stats = await d.run()
    assert d.stopping == "budget"
    assert 0 < stats.accepted == len(alpha.sent) + len(beta.sent) < 30
    assert stats.spent_nanos <= to_nanos(max_cost)
    assert store.states() == {ACCEPTED: stats.accepted, PENDING: 30 - stats.accepted}
    assert held(store) == 0
    assert store.committed_nanos == stats.spent_nanos


async def test_stop_mid_run_leaves_the_rest_pending() -> None:
    """stop() takes no new message: what is in flight is settled, everything else is
    ``pending`` and unheld for the next run, marked or not."""
    store = MemoryCampaign.from_rows(planned(60, ["alpha", "beta"]))
    stopper: list[Dispatcher] = []

    async def stop_at_ten(line: int) -> None:
        if len(alpha.sent) == 10:
            stopper[0].stop("test")

    alpha = FakeProvider("alpha", idempotent=True, on_send=stop_at_ten)
    beta = FakeProvider("beta")
    d = dispatcher(store, [alpha, beta])
    stopper.append(d)
    with anyio.fail_after(RUN_BOUND_S):
        stats = await d.run()
    sent = {s.line for s in alpha.sent + beta.sent}
    assert d.stopping == "test"
    assert store.states() == {ACCEPTED: len(sent), PENDING: 60 - len(sent)}
    assert stats.accepted == len(sent) < 60 and stats.left > 0
    assert not [m for m in store.messages.values() if m.state in (CLAIMED, SENDING)]
    assert held(store) == 0
    assert store.committed_nanos == stats.spent_nanos


async def test_a_run_whose_lease_lapsed_stops_without_overwriting_the_rescuer() -> None:
    """Another worker rescuing this run's messages mid-send (its lease lapsed) makes the
    run stop with LeaseLost; what it no longer holds keeps the rescue's state (the message
    in flight ``unknown``, interrupted; the rest ``pending``), never its late answers."""
    store = MemoryCampaign.from_rows(planned(20, ["alpha"]))
    now = time.time()
    rescuer = MemoryOutbox(store, WorkerRecord("rescuer", "unit", "there", "boot", 1, None,
                                               now, now), lambda worker: worker.id != "me")

    async def lapse_at_five(line: int) -> None:
        if len(alpha.sent) == 5:
            assert (await rescuer.rescue()).workers == 1

    alpha = FakeProvider("alpha", on_send=lapse_at_five)
    lost = False
    try:
        await run(store, [alpha], concurrency=1)
    except* LeaseLost:
        lost = True
    assert lost
    fifth = alpha.sent[4].line
    assert store.message(fifth).state == UNKNOWN
    assert store.message(fifth).reason == "interrupted"
    assert store.states() == {ACCEPTED: 4, UNKNOWN: 1, PENDING: 15}
    assert held(store) == 0 and "me" not in store.workers
