"""A message's states, who may move it from which to which, and the records of a claim.

::

    pending --claim--> claimed --mark--> sending --answer--> accepted --report--> delivered
       ^  ^              |  |               |        \\                   \\-> undelivered
       |  |              |  |               |         \\-> failed
       |  +---release----+  +--failover---> claimed (the same worker, the next route)
       |                                    |
       +-------- rescue (worker dead) ------+--> unknown --settle--> accepted | failed |
                                                                     unknown (reported)

- The planner writes ``pending`` (or ``rejected`` / ``skipped``, which nothing moves).
- A worker **claims** ``pending`` messages of one provider under a conditional update (only
  rows still ``pending`` and held by nobody): they are ``claimed``, held by that worker,
  and their estimated cost is reserved against the campaign's ``max_cost``. A lane whose
  provider can settle an unknown outcome exactly (an idempotency key, a log look-up)
  claims them straight into ``sending`` (marked in the claim's commit).
- Only the holder moves a held message: ``claimed`` -> ``sending`` (durably, before its
  request leaves), ``sending`` -> ``accepted`` / ``failed`` / ``unknown`` (settled; no
  longer held), ``claimed``/``sending`` -> ``claimed`` on the next route (failover, still
  held), ``claimed``/``sending`` -> ``pending`` (left for later, released; ``sending``
  only if it was never sent). A write for a message the worker no longer holds is not
  applied: its lease lapsed, and another worker rescued it.
- **Rescue** is by lease, never by start-up: a worker whose heartbeat lapsed (or, on the
  same host, whose process is gone) loses what it held: ``claimed`` -> ``pending``,
  ``sending`` -> ``unknown`` (it may have been sent), held ``unknown`` -> unheld.
- ``unknown`` messages are claimed (held, state unchanged) and settled before anything new
  is sent: the same idempotency key resent, or looked up in the provider's logs, or left
  and reported (``on_unknown``).
- Delivery reports move ``accepted`` to ``delivered`` / ``undelivered`` (a column of their
  own: :mod:`engine.store.sqlite.delivery_store`).
"""

from __future__ import annotations

from typing import Final, NamedTuple, Protocol, TypeVar

from engine.store.records import Outgoing

PENDING: Final = "pending"
CLAIMED: Final = "claimed"
SENDING: Final = "sending"
ACCEPTED: Final = "accepted"
FAILED: Final = "failed"
UNKNOWN: Final = "unknown"
REJECTED: Final = "rejected"
SKIPPED: Final = "skipped"

SPENDING_STATES: Final = (SENDING, ACCEPTED, "delivered", "undelivered", UNKNOWN)
"""States whose message has cost, or may have cost, money."""
HELD_STATES: Final = (CLAIMED, SENDING, UNKNOWN)
"""States in which a message may be held by a worker (``unknown`` only while settled)."""


class Costed(Protocol):
    """Anything with an estimated cost: a stored message, as any backend holds it."""

    @property
    def cost_nanos(self) -> int: ...


C = TypeVar("C", bound=Costed)


def fit_budget(rows: list[C], room_nanos: int) -> tuple[list[C], bool]:
    """The budget rule of a claim: the leading *rows* (in line order) whose estimated costs
    add up to at most *room_nanos*, and whether the next one did not fit."""
    fit = 0
    for row in rows:
        if row.cost_nanos > room_nanos:
            return rows[:fit], True
        room_nanos -= row.cost_nanos
        fit += 1
    return rows, False


class Claim(NamedTuple):
    """What one claim took: the messages now held, in line order; whether the next one did
    not fit the campaign's budget; the line to claim after next time."""

    messages: tuple[Outgoing, ...]
    over_budget: bool
    after_line: int


class Rescued(NamedTuple):
    """What a rescue took back from dead workers."""

    workers: int
    pending: int
    """``claimed`` messages made ``pending`` again."""
    unknown: int
    """``sending`` messages made ``unknown``."""
