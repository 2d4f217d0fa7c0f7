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
"""

from __future__ import annotations

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

    async def acquire(self) -> Slot:
        """Wait until one more request may start now; the caller marks it done."""
        async with self._lock:
            while len(self._slots) == self.count:
                oldest = self._slots[0]
                if not oldest.finished:
                    await self._changed.wait()
                    continue
                wait = oldest.at + self.period_s - time.monotonic()
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            slot = Slot(self)
            self._slots.append(slot)
            return slot

    def changed(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class Unlimited:
    """The limiter of a provider without a configured rate limit."""

    async def acquire(self) -> Slot:
        return Slot(None)
