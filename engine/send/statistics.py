"""What a dispatcher tells the outside: a snapshot of its live state while it runs
(:class:`DispatcherStatistics`, from :meth:`engine.send.dispatcher.Dispatcher.statistics`,
as anyio's ``CapacityLimiter.statistics()``), and the outcome of its run (:class:`RunStats`).

The progress display, the run's progress log and the benches read these, never the
dispatcher's attributes. A snapshot is a copy: it does not change as the run goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LaneStatistics:
    """One provider's lane at the moment of the snapshot."""

    provider: str
    pending_at_start: int
    """Its messages pending when the run started."""
    accepted: int
    """Accepted through this lane in this run."""
    queued: int
    """Jobs queued on the lane or in flight on it."""
    workers: int
    down: str | None
    """Why the lane stopped (preflight, or the provider refused the account); None if it
    sends."""
    paused_s: float
    """Seconds left of a ``Retry-After`` pause; 0 when not paused."""


@dataclass(frozen=True, slots=True)
class DispatcherStatistics:
    """A dispatcher's counts, money and lanes at one moment (the counts are this run's)."""

    accepted: int
    failed: int
    unknown: int
    """Settled ``unknown``: the outcome may never be known."""
    failed_over: int
    """Moves to another route (a message may move more than once)."""
    left: int
    """Not sent this run: left for a later one."""
    spent_nanos: int
    """What the campaign has cost or may have cost so far, all runs, in billionths of
    ``currency``."""
    currency: str
    pending_at_start: int
    """Messages pending when the run started, every provider's."""
    lanes: tuple[LaneStatistics, ...]
    started_at: float
    """When the dispatcher was made (``time.monotonic``)."""
    elapsed_s: float
    over_budget: bool
    """The next message would pass ``max_cost``: once what is held is sent, the run stops."""
    stopping: str | None
    """Why the run takes no new messages, once it does not."""

    @property
    def done(self) -> int:
        """Messages settled this run: accepted, failed or unknown."""
        return self.accepted + self.failed + self.unknown

    @property
    def accepted_by_provider(self) -> Mapping[str, int]:
        return {lane.provider: lane.accepted for lane in self.lanes}

    @property
    def down(self) -> Mapping[str, str]:
        """The lanes that stopped, with why."""
        return {lane.provider: lane.down for lane in self.lanes if lane.down is not None}

    @property
    def paused(self) -> Mapping[str, float]:
        """The lanes in a ``Retry-After`` pause, with the seconds left of it."""
        return {lane.provider: lane.paused_s for lane in self.lanes if lane.paused_s > 0}


@dataclass(frozen=True, slots=True)
class RunStats:
    """What a dispatcher's run did, once it has ended."""

    accepted: int
    failed: int
    unknown: int
    failed_over: int
    left: int
    spent_nanos: int
    seconds: float
    by_provider: Mapping[str, int]
