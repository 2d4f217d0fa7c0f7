"""The records that cross the store's boundary, whatever the backend.

A record made once per message is a ``NamedTuple`` (a frozen dataclass of this size costs
about three times as much to make, see ``bench/dispatcher_overhead.py``); the others are
frozen dataclasses. This module imports nothing but the standard library: the checkpoint
writer's process imports it and starts in tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

VARIABLE_SEPARATOR: Final = "\x1f"
"""Between a valid row's placeholder values in a stored message's ``variables`` (bulk APIs
with per-number template data need them); the ASCII unit separator, which no accepted CSV
cell holds (a control character rejects its row)."""


class Outgoing(NamedTuple):
    """A stored message as the dispatcher needs it to send it."""

    line: int
    phone: str
    text: str | None
    """``None`` where the text is rendered again from *variables* (the planner stores it
    only where a value holds the separator)."""
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


class Settlement(NamedTuple):
    """What a worker writes for a message it holds once an attempt is over, or once it moves
    it: its new state and route, what the provider said, and what it cost.

    ``state`` is ``accepted``, ``failed`` or ``unknown`` (settled), ``pending`` (left for a
    later run, or failed over to a new route) or ``unknown`` with reason ``interrupted``.
    """

    state: str
    reason: str | None
    detail: str | None
    provider: str
    route: str
    price_nanos: int
    cost_nanos: int
    provider_message_id: str | None
    actual_cost_nanos: int | None
    attempts: int
    updated_at: float
    line: int


SETTLEMENT_COLUMNS: tuple[str, ...] = Settlement._fields[:-1]
"""The columns a :class:`Settlement` writes, in its order; its last field, the line, says
which row."""


class ReportRow(NamedTuple):
    """One CSV row of a campaign as the report shows it: what was sent, where, what it cost,
    and what became of it."""

    phone: str | None
    """As normalised, or as written where it could not be."""
    line: int
    state: str
    provider: str | None
    route: str | None
    segments: int | None
    cost_nanos: int | None
    """What the provider charged where it said, else the plan's estimate."""
    provider_message_id: str | None
    reason: str | None
    """The reason and its detail (``invalid_number: ...``)."""
    estimated_nanos: int | None
    delivery_state: str | None
    delivery_status: str | None
    """The provider's own word."""
    delivery_reason: str | None
    delivered_at: float | None
    delivery_seconds: float | None
    """From the send to the delivery report's time."""


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """A campaign as the store knows it."""

    id: int
    name: str
    fingerprint: str
    currency: str
    planned_through: int
    plan_complete: bool


@dataclass(frozen=True, slots=True)
class RatePlanRoute:
    """One route of a rate plan, cheapest first in its plan: where a message fails over to."""

    provider: str
    route: str
    price_nanos: int


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A process sending a campaign: who and where it is (its host's name and boot id, its
    pid and that process's start time in clock ticks after boot, ``None`` where unknown),
    and when it started and last said it was alive (epoch seconds)."""

    id: str
    campaign: str
    host: str
    boot_id: str
    pid: int
    pid_started: int | None
    started_at: float
    heartbeat_at: float
