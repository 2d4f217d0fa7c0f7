"""Deciding, request by request, which injected fault (if any) one provider suffers.

Order for each request: the sliding-window rate limit (an excess request is answered 429 and
recorded as a :class:`Violation`, and counts for nothing else), then reset-before, throttle,
error, latency; after a billing request is processed, drop-after-accept.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections import deque
from dataclasses import dataclass

from engine.sandbox.choices import RETRY_AFTER_DECIMALS
from engine.sandbox.ledger import iso_utc
from engine.sandbox.settings import Faults


class Action(enum.Enum):
    """What happens to a request before it is processed."""

    PROCESS = "process"
    RESET = "reset"
    THROTTLE = "throttle"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Violation:
    """A request that arrived while the provider's stated rate limit was already used up."""

    provider: str
    method: str
    path: str
    time: float
    limit: int
    period_s: float
    in_window: int

    def to_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "time": iso_utc(self.time),
            "limit": self.limit,
            "period_s": self.period_s,
            "in_window": self.in_window,
        }


def format_retry_after(seconds: float) -> str:
    """Whole seconds as an integer; otherwise a short decimal (``0.05``)."""
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{seconds:.{RETRY_AFTER_DECIMALS}f}".rstrip("0").rstrip(".")


class FaultState:
    """Counters, seeded randomness and the sliding window of one provider."""

    __slots__ = ("_rng", "_seed", "_window", "faults", "quiet", "requests", "sends")

    def __init__(self, kind: str, faults: Faults, seed: int) -> None:
        self._seed = f"{seed}:{kind}:faults"
        self._window: deque[float] = deque()
        self.replace(faults)

    def replace(self, faults: Faults) -> None:
        """New faults with fresh counters, randomness and window."""
        self.faults = faults
        self.quiet = _request_faults(faults) == _NO_REQUEST_FAULTS
        self.requests = 0
        self.sends = 0
        self._rng = random.Random(self._seed)
        self._window.clear()

    def admit(self, now: float) -> float | None:
        """None when the request fits the rate limit, else seconds until it would fit."""
        limit = self.faults.rate_limit
        if limit is None:
            return None
        count, period = limit
        window = self._window
        while window and window[0] <= now - period:
            window.popleft()
        if len(window) >= count:
            return max(window[0] + period - now, 0.001)
        window.append(now)
        return None

    def in_window(self) -> int:
        return len(self._window)

    def before(self) -> Action:
        """Count one admitted request and pick what happens to it."""
        self.requests += 1
        f = self.faults
        if self._fires(f.reset_before_every, f.reset_before_share, self.requests):
            return Action.RESET
        if self._fires(f.throttle_every, f.throttle_share, self.requests):
            return Action.THROTTLE
        if self._fires(f.error_every, f.error_share, self.requests):
            return Action.ERROR
        return Action.PROCESS

    def latency_s(self) -> float:
        f = self.faults
        if f.latency_ms <= 0 and f.jitter_ms <= 0:
            return 0.0
        jitter = self._rng.uniform(-f.jitter_ms, f.jitter_ms) if f.jitter_ms > 0 else 0.0
        return max(f.latency_ms + jitter, 0.0) / 1000.0

    def drop_after_accept(self) -> bool:
        """Count one billed request; True when its connection is to be dropped unanswered."""
        self.sends += 1
        f = self.faults
        return self._fires(f.drop_after_accept_every, f.drop_after_accept_share, self.sends)

    def retry_after(self, seconds: float | None = None) -> str:
        value = self.faults.retry_after_s if seconds is None else seconds
        return format_retry_after(math.ceil(value * 1000) / 1000)

    def _fires(self, every: int, share: float, n: int) -> bool:
        if every > 0 and n % every == 0:
            return True
        return share > 0.0 and self._rng.random() < share


def _request_faults(faults: Faults) -> Faults:
    return dataclasses.replace(faults, retry_after_s=1.0, error_status=503, undelivered_share=0.0)


_NO_REQUEST_FAULTS = Faults()
