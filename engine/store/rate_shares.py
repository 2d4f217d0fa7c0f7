"""One provider's rate limit split among the processes using one store: the records and the
rebalancing rule every backend applies (:class:`~engine.store.protocols.RateShares`).

Each process holding a provider's limit has a *share*: its own limiter lets at most that many
requests start in any window of the limit's period. Its *counted* share is what the others
must leave it: at least its share, and, for a period after it shrank or left, the share it
had before (its past requests are still in the provider's window). While the counted shares
of a provider sum to at most the limit's count at every instant, the provider never sees more
than count requests in any window, whoever sends them, with no store round trip a request.

A rebalance of one holder, in one transaction: holders that are no longer live are ended
(share 0, their counted share kept for a period from now: a process found dead now sent
nothing after now); ended holders whose counted share has lapsed are forgotten. The live
holders' fair shares follow demand: each holder says at each rebalance whether it *wants*
the provider now (its limiter had a request wait, or start lately: stored with its share).
The fair shares are ``count // wanting`` among the live holders that want (the remainder to
the earliest joined), 0 for one that does not, except that a holder also says how many
requests a window it wants (its *demand*): one that wants less than an even part gets that
much, and the rest is split evenly among the others (max-min fair; what is left once every
demand is met is split evenly on top), so that a process making one request now and then
takes a slot or two beside a busy one, not half the limit. The holder shrinks to its
fair share at once, its counted share staying at the old one for a period; below its fair
share, it grows only into what is free, ``count`` less the others' counted shares. A holder
that is new starts the same way from 0. While no live holder wants, no share shrinks: each
may only grow, into what is free, up to ``count // live`` (so a process alone takes the
whole limit when it joins).

A holder also says how many of its requests are in its window now (*used*: its limiter's
entries answered within a period, or in flight). Once a shrink has reached its limiter, no
window from now on holds more of its requests than ``max(share, used)`` (the limiter keeps
its newest ``share`` entries: a later request waits for a period after the oldest of them),
so its counted share comes down to that at once, not a period later; likewise a holder
leaving counts what it used. A joining process then waits for the requests actually in the
others' windows to age out, not for whole periods. A holder that does not want holds its
limiter at 0 from measuring *used* until the rebalance's result reaches it (no request of it
starts meanwhile), so its shrink has reached its limiter already: it counts what it used at
once, and an idle holder's share is free in one rebalance of it, not two.

The standard library only (the rule is plain arithmetic over records).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

SHRINK_SLACK_S: Final = 0.5
"""Added to the period a shrunk or ended share stays counted: the shrink reaches the
process's limiter a loop hop after its commit, and a request in flight then is stamped by the
provider after it."""


@dataclass(frozen=True, slots=True)
class RateHolder:
    """A process (one session of it) holding shares: who and where it is, as
    :class:`~engine.store.records.WorkerRecord` says it, and when it joined (epoch s)."""

    id: str
    host: str
    boot_id: str
    pid: int
    pid_started: int | None
    joined_at: float


@dataclass(frozen=True, slots=True)
class ShareLimit:
    """A provider's limit as the sharing sees it: *count* requests a *period_s* window."""

    count: int
    period_s: float


@dataclass(frozen=True, slots=True)
class RateShare:
    """One holder's share of one provider's limit, as stored.

    *counted* holds until *counted_until* (epoch s), *share* after; *seen_at* is the
    holder's last rebalance; an *ended* holder (left, or found dead) has share 0 and is
    forgotten once its counted share has lapsed."""

    provider: str
    holder: RateHolder
    share: int
    counted: int
    counted_until: float
    seen_at: float
    ended: bool = False
    wants: bool = True
    """Whether the holder wanted the provider at its last rebalance (demand)."""
    demand: int | None = None
    """How many requests a window it wanted then (``None``: as many as it can get)."""

    def counted_at(self, now: float) -> int:
        """What the others must leave this holder at *now*."""
        return max(self.counted, self.share) if now < self.counted_until else self.share


@dataclass(frozen=True, slots=True)
class Rebalanced:
    """What one rebalance of one provider writes, and what it gives the holder."""

    upserts: tuple[RateShare, ...]
    deleted: tuple[str, ...]
    """Holder ids whose row goes."""
    mine: RateShare
    live: int
    """Live holders, this one included."""
    wanting: int = 0
    """Live holders that want the provider, this one included if it does."""


def ended(row: RateShare, now: float, period_s: float, used: int | None = None) -> RateShare:
    """*row* ended at *now*: share 0, what it counted (or *used*, if less) kept for a
    period."""
    if row.ended:
        return row
    counted = row.counted_at(now) if used is None else min(row.counted_at(now), used)
    return replace(row, share=0, counted=counted,
                   counted_until=now + period_s + SHRINK_SLACK_S, ended=True)


def rebalance(rows: Sequence[RateShare], me: RateHolder, provider: str, limit: ShareLimit,
              now: float, live: Callable[[RateShare], bool],
              used: int | None = None, wants: bool = True,
              demand: int | None = None) -> Rebalanced:
    """The module's rule for *me* on *provider*'s stored *rows* at *now*; *used*: *me*'s
    requests in its window now, its limiter at its stored share (``None``: unknown);
    *wants*: whether *me* wants the provider now (if not, its limiter is held at 0 from
    measuring *used* until the result reaches it); *demand*: how many requests a window it
    wants (``None``: as many as it can get)."""
    period = limit.period_s + SHRINK_SLACK_S
    upserts: list[RateShare] = []
    deleted: list[str] = []
    others: list[RateShare] = []
    mine: RateShare | None = None
    for row in rows:
        if row.holder.id == me.id:
            mine = row
            continue
        if not row.ended and not live(row):
            row = ended(row, now, limit.period_s)
            upserts.append(row)
        if row.ended and row.counted_at(now) == 0:
            deleted.append(row.holder.id)
            continue
        others.append(row)
    if mine is None or mine.ended:  # new, or ended while it could not rebalance
        mine = RateShare(provider, me, 0, mine.counted_at(now) if mine else 0,
                         mine.counted_until if mine else now, now)
    elif used is not None and mine.counted_at(now) > max(mine.share, used):
        mine = replace(mine, counted=max(mine.share, used))
    holders = sorted([r.holder for r in others if not r.ended] + [me], key=_by_join)
    wanting = sorted([(r.holder, r.demand) for r in others if not r.ended and r.wants]
                     + ([(me, demand)] if wants else []), key=lambda w: _by_join(w[0]))
    if wanting:
        fair = _fair(limit.count, wanting, me) if wants else 0
    else:  # nobody wants: nothing shrinks, and what is free may be taken up to an even part
        fair = _fair(limit.count, [(h, None) for h in holders], me)
    if mine.share > fair and wanting:
        counted = mine.counted_at(now)
        if not wants and used is not None:  # held at 0 since used was measured
            counted = min(counted, max(fair, used))
        mine = replace(mine, share=fair, counted=counted, counted_until=now + period)
    elif mine.share < fair:
        free = limit.count - sum(r.counted_at(now) for r in others)
        grown = max(mine.share, min(fair, free))
        mine = replace(mine, share=grown, counted=max(grown, mine.counted_at(now)))
    mine = replace(mine, seen_at=now, wants=wants, demand=demand if wants else None)
    upserts.append(mine)
    return Rebalanced(tuple(upserts), tuple(deleted), mine, len(holders), len(wanting))


def _by_join(h: RateHolder) -> tuple[float, str]:
    return h.joined_at, h.id


def _fair(count: int, holders: Sequence[tuple[RateHolder, int | None]], me: RateHolder) -> int:
    """*me*'s part of *count* among *holders* (sorted by join, each with its demand, ``None``
    for as much as it can get), max-min fair: a holder that wants less than an even part of
    what is left gets what it wants, and the others split the rest evenly (the remainder to
    the earliest); if every demand is met, what is left is split evenly on top of them."""
    given: dict[str, int] = {}
    rest = list(holders)
    left = count
    while rest:
        even = left // len(rest)
        modest = [(h, d) for h, d in rest if d is not None and d < even]
        if not modest:
            break
        for holder, wanted in modest:
            given[holder.id] = wanted
            left -= wanted
            rest.remove((holder, wanted))
    if me.id in given and rest:
        return given[me.id]
    among = [h for h, _ in (rest or holders)]
    return (given.get(me.id, 0) + left // len(among)
            + (among.index(me) < left % len(among)))
