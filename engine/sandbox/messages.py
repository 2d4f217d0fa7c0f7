"""Billed messages and their fate: ids, final state, and the per-provider message book."""

from __future__ import annotations

import bisect
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A billed message; it becomes final (delivered or not) at ``final_at``."""

    kind: str
    id: str
    recipient: str
    text: str
    sender: str | None
    segments: int
    cost: Decimal
    currency: str
    created: float
    final_at: float
    delivered: bool
    callback_url: str | None = None
    channel: str = "sms"
    task_id: int | None = None
    country: str = ""

    def is_final(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.final_at


class MessageBook:
    """Every billed message of one provider, by id and in billing order, which is the order
    of ``created`` (the clock read when a batch is billed, :meth:`Core.bill`)."""

    __slots__ = ("by_id", "ordered")

    def __init__(self) -> None:
        self.by_id: dict[str, SentMessage] = {}
        self.ordered: list[SentMessage] = []

    def add(self, message: SentMessage) -> None:
        self.by_id[message.id] = message
        self.ordered.append(message)

    def get(self, message_id: str) -> SentMessage | None:
        return self.by_id.get(message_id)

    def created_between(self, start: float | None, end: float | None) -> list[SentMessage]:
        """Those created at or after *start* and before *end* (``None``: no bound), oldest
        first: two binary searches, where a scan made every history or log request cost
        time in proportion to everything ever billed, while the sandbox answered nothing
        else."""
        ordered = self.ordered
        low = 0 if start is None else bisect.bisect_left(ordered, start, key=_created)
        high = len(ordered) if end is None else bisect.bisect_left(ordered, end, key=_created)
        return ordered[low:high]

    def __iter__(self) -> Iterator[SentMessage]:
        return iter(self.ordered)

    def __len__(self) -> int:
        return len(self.ordered)


def _created(message: SentMessage) -> float:
    return message.created


def id_start() -> int:
    """Where a sandbox started now counts its numeric ids from (a restart starts elsewhere)."""
    return (int(time.time()) % 100_000) * 10_000 + 1


class IdSource:
    """Message ids in each provider's documented form, numbers counting up from *start*
    (default :func:`id_start`; a state file gives a start past every id handed out)."""

    __slots__ = ("_counter", "_run")

    def __init__(self, start: int | None = None) -> None:
        self._counter = itertools.count(id_start() if start is None else start)
        self._run = uuid.uuid4().hex[:8]

    def number(self) -> int:
        return next(self._counter)

    def prefixed(self, prefix: str) -> str:
        return f"{prefix}{self._run}{next(self._counter):x}"

    @staticmethod
    def hex32() -> str:
        return uuid.uuid4().hex

    @staticmethod
    def uuid() -> str:
        return str(uuid.uuid4())
