"""Rate limits that hold in every window of the stated length, including the first.

"120/min" means what a provider means: never more than 120 requests started in any 60-second
window. A leaky bucket (aiolimiter) that starts full lets twice that through in the first
window, and one with capacity 1 still admits ``count + 1`` starts in a closed window of
``period``. :class:`SlidingWindowLimiter` keeps the start times of the last ``count``
requests and lets the next one start only once the oldest of them is a full period (plus a
small margin for the network's jitter between our clock and the provider's) in the past.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Final

import anyio

from engine.config import RateLimit

MARGIN_FRACTION: Final = 0.01
"""Extra spacing, as a share of the period, so that requests that the network delays
unevenly still fall into separate windows at the provider."""
MARGIN_MAX_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class LimiterStats:
    started: int
    waited_s: float


class SlidingWindowLimiter:
    """At most ``count`` acquisitions in any window of ``period_s`` seconds."""

    def __init__(self, limit: RateLimit) -> None:
        self.count = limit.count
        self.period_s = limit.period_s + min(limit.period_s * MARGIN_FRACTION, MARGIN_MAX_S)
        self._starts: deque[float] = deque(maxlen=limit.count)
        self._lock = anyio.Lock()
        self._started = 0
        self._waited_s = 0.0

    async def acquire(self) -> None:
        """Wait until one more request may start now, and count it as started."""
        async with self._lock:
            while len(self._starts) == self.count:
                ready_at = self._starts[0] + self.period_s
                now = time.monotonic()
                if now >= ready_at:
                    break
                self._waited_s += ready_at - now
                await anyio.sleep(ready_at - now)
            self._starts.append(time.monotonic())
            self._started += 1

    def statistics(self) -> LimiterStats:
        return LimiterStats(self._started, self._waited_s)


class Unlimited:
    """The limiter of a provider without a configured rate limit."""

    def __init__(self) -> None:
        self._started = 0

    async def acquire(self) -> None:
        self._started += 1

    def statistics(self) -> LimiterStats:
        return LimiterStats(self._started, 0.0)
