"""Rate limits that hold in every window of the stated length, including the first.

"120/min" means what a provider means: never more than 120 requests started in any 60-second
window, as the provider counts them. A leaky bucket (aiolimiter) that starts full lets twice
that through in the first window, and one with capacity 1 still admits ``count + 1`` starts
in a closed window of ``period``. :class:`SlidingWindowLimiter` keeps the last ``count``
requests and lets the next one start only a full period after the oldest of them.

The provider stamps a request when it receives it, somewhere between our sending it and our
reading its answer; network and connection set-up delay the early ones of a burst more than
later ones. So a request's place in the window is the moment its answer arrived (the latest
the provider can have seen it), not the moment it left: then at least a period separates the
provider's receipt of a request and of the one ``count`` later, whatever the latency, at the
price of about latency/period of the rate. A small margin covers the provider's own clock.

:meth:`SlidingWindowLimiter.resize` changes ``count`` while requests run (the share of a limit
that several processes split, :mod:`engine.send.session`): shrinking keeps the newest
entries, so the rule above holds with the new count at once; a window that began before the
shrink may still hold more (up to the old count: :meth:`~SlidingWindowLimiter.in_window`
says how many, the dropped entries included). Growing takes back the dropped entries still
in the window, then lets the next ones start up to the new count (an entry the window rule
pushed out is a period older than a later one, so out of every window from now on). Count
0 blocks every start until it grows.

:meth:`SlidingWindowLimiter.wanted` says whether its process has demand for the limit now
(a request waited, waits, or started lately), and :meth:`~SlidingWindowLimiter.demand` how
much, so that the shares follow demand.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Final

import anyio

from engine.config import RateLimit

MARGIN_FRACTION: Final = 0.01
MARGIN_MAX_S: Final = 0.05


class Slot:
    """One request's place in the window; :meth:`done` when its answer (or error) arrived."""

    __slots__ = ("_limiter", "at", "finished")

    def __init__(self, limiter: SlidingWindowLimiter | None) -> None:
        self.at = time.monotonic()
        self.finished = False
        self._limiter = limiter

    def done(self) -> None:
        if not self.finished:
            self.at = time.monotonic()
            self.finished = True
            if self._limiter is not None:
                self._limiter.changed()


class SlidingWindowLimiter:
    """At most ``count`` requests in any window of ``period_s`` seconds at the provider."""

    def __init__(self, limit: RateLimit) -> None:
        self.count = limit.count
        self.period_s = limit.period_s + min(limit.period_s * MARGIN_FRACTION, MARGIN_MAX_S)
        self._slots: deque[Slot] = deque(maxlen=limit.count)
        self._lock = anyio.Lock()
        self._changed = anyio.Event()
        self._resized = anyio.Event()
        self._dropped: list[Slot] = []
        """Entries a shrink dropped: they may still be in the window (:meth:`in_window`)."""
        self._started_at = -math.inf
        """When the last request started (monotonic s), for :meth:`wanted`."""
        self._waited = False
        self._waiting = False
        self._asking = 0
        """Requests in :meth:`acquire` now (waiting for its lock or for room)."""

    async def acquire(self) -> Slot:
        """Wait until one more request may start now; the caller marks it done."""
        self._asking += 1
        try:
            async with self._lock:
                if self.ready_in() != 0:
                    await self._wait_ready()
                slot = Slot(self)
                self._slots.append(slot)
                self._started_at = slot.at
                return slot
        finally:
            self._asking -= 1

    async def _wait_ready(self) -> None:
        """:meth:`acquire`'s wait, under its lock (so one waiter at a time is in here): it
        marks the demand :meth:`wanted` reports."""
        self._waited = self._waiting = True
        try:
            while (wait := self.ready_in()) != 0:
                if wait is None:  # until an answer comes, or the count grows
                    await (self._resized if self.count == 0 else self._changed).wait()
                    continue
                with anyio.move_on_after(wait):
                    await self._resized.wait()
        finally:
            self._waiting = False

    def wanted(self, within_s: float) -> bool:
        """Whether this process wants the limit now: a request waited in :meth:`acquire`
        since the last call, or one waits now (behind the lock too: its holder waits), or
        one started within *within_s*. The acquire path sets what this reads without an
        await: a flag when it waits, the time a slot started (which it reads anyway)."""
        waited, self._waited = self._waited, False
        return waited or self._waiting or time.monotonic() - self._started_at < within_s

    def demand(self, within_s: float) -> int:
        """How many requests a window this process wants now, for the shares: 0 if it does
        not want the limit (:meth:`wanted`, which this asks); while a request waited or
        waits, twice what it has in the window and asks for now (it would use more than it
        has: a share that starts small doubles each rebalance until nothing waits); else
        what it has in the window, at least 1."""
        pressed = self._waited or self._waiting
        if not self.wanted(within_s):
            return 0
        if pressed:
            return 2 * (self.in_window() + self._asking)
        return max(self.in_window(), 1)

    def starved(self) -> bool:
        """Whether it holds no share (count 0) while a request waits for one."""
        return self.count == 0 and self._asking > 0

    def ready_in(self) -> float | None:
        """Seconds until one more request may start (0: now); ``None`` while that waits for
        something else (count 0, or the oldest of the last ``count`` still unanswered)."""
        if len(self._slots) < self.count:
            return 0.0
        if self.count == 0 or not self._slots[0].finished:
            return None
        return max(self._slots[0].at + self.period_s - time.monotonic(), 0.0)

    def in_window(self) -> int:
        """Requests that may still be in the provider's window: answered within a period,
        or not yet answered."""
        since = time.monotonic() - self.period_s
        self._dropped = [s for s in self._dropped if not s.finished or s.at > since]
        return len(self._dropped) + sum(1 for s in self._slots
                                        if not s.finished or s.at > since)

    def resize(self, count: int) -> None:
        """At most *count* requests in any window from now on (0: none until it grows);
        the newest entries are kept."""
        if count < 0:
            raise ValueError(f"a limiter's count must be >= 0, not {count}")
        if count == self.count:
            return
        self.count = count
        self.in_window()  # forgets the dropped entries that are out of it
        entries = [*self._dropped, *self._slots]
        self._dropped = entries[:max(len(entries) - count, 0)]
        self._slots = deque(entries, maxlen=count)
        self._resized.set()
        self._resized = anyio.Event()
        self.changed()

    def changed(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class Unlimited:
    """The limiter of a provider without a configured rate limit."""

    async def acquire(self) -> Slot:
        return Slot(None)
