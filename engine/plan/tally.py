"""What a plan holds, counted: messages, segments and cost by state, reason, provider and
country, as a plan's summary (``dispatch plan``) reports them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Group:
    messages: int
    segments: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class SmartSaving:
    """Valid messages whose text smart encoding changed, and the segments and cost that
    saved (:mod:`engine.smart_encoding`)."""

    messages: int = 0
    segments: int = 0
    cost_nanos: int = 0

    def __add__(self, other: SmartSaving) -> SmartSaving:
        return SmartSaving(self.messages + other.messages, self.segments + other.segments,
                           self.cost_nanos + other.cost_nanos)


NO_SAVING: Final = SmartSaving()

BLANK_LINE: Final = "blank_line"
"""The reason of a blank line of the recipients file, stored ``skipped`` so that every line
has its row; :class:`PlanCounts` counts them apart from the skipped rows."""


@dataclass(frozen=True, slots=True)
class PlanCounts:
    rows: int
    """Valid, rejected and skipped: every line read but the blank ones."""
    valid: int
    rejected: dict[str, int]
    skipped: dict[str, int]
    segments: int
    cost_nanos: int
    by_provider: dict[str, Group]
    by_country: dict[str, Group]
    smart: SmartSaving = NO_SAVING
    blank: int = 0

    @property
    def lines(self) -> int:
        """Every line read after the header (a quoted field over several lines counts one)."""
        return self.rows + self.blank


class Tally:
    """Messages, segments and cost by (state, reason, provider, country).

    Filled from the planned rows (:meth:`of_planned`) as a fresh plan is written, it gives
    the plan's summary without scanning a million rows again; :meth:`Store.plan_counts`
    fills one from SQL.
    """

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str | None, str | None, str | None], list[int]] = {}
        self.smart = NO_SAVING

    def add(self, key: tuple[str, str | None, str | None, str | None], n: int, segments: int,
            cost_nanos: int) -> None:
        total = self.groups.setdefault(key, [0, 0, 0])
        total[0] += n
        total[1] += segments
        total[2] += cost_nanos

    def merge(self, other: Tally) -> None:
        for key, (n, segments, cost_nanos) in other.groups.items():
            self.add(key, n, segments, cost_nanos)
        self.smart += other.smart

    @classmethod
    def of_planned(cls, valid: Sequence[tuple[Any, ...]],
                   not_sent: Sequence[tuple[Any, ...]]) -> Tally:
        """Rows in ``plan_writer.PLANNED_COLUMNS`` and ``NOT_SENT_COLUMNS`` order."""
        tally = cls()
        groups = tally.groups
        for r in valid:
            key = ("pending", None, r[5], r[2])
            total = groups.get(key)
            if total is None:
                total = groups[key] = [0, 0, 0]
            total[0] += 1
            total[1] += r[4]
            total[2] += r[8]
        for r in not_sent:
            tally.add((r[4], r[5], None, r[3]), 1, 0, 0)
        return tally

    def counts(self) -> PlanCounts:
        rejected: dict[str, int] = {}
        skipped: dict[str, int] = {}
        by_provider: dict[str, list[int]] = {}
        by_country: dict[str, list[int]] = {}
        rows = valid = segments = cost = blank = 0
        for (state, reason, provider, country), (n, segs, nanos) in self.groups.items():
            if n == 0:
                continue
            if reason == BLANK_LINE:
                blank += n
                continue
            rows += n
            if state == "rejected":
                rejected[reason or ""] = rejected.get(reason or "", 0) + n
            elif state == "skipped":
                skipped[reason or ""] = skipped.get(reason or "", 0) + n
            else:
                valid += n
                segments += segs
                cost += nanos
                for name, table in ((provider, by_provider), (country, by_country)):
                    total = table.setdefault(name or "", [0, 0, 0])
                    total[0] += n
                    total[1] += segs
                    total[2] += nanos
        return PlanCounts(
            rows=rows, valid=valid, rejected=dict(sorted(rejected.items())),
            skipped=dict(sorted(skipped.items())), segments=segments, cost_nanos=cost,
            by_provider=_ranked(by_provider), by_country=_ranked(by_country), smart=self.smart,
            blank=blank)


def _ranked(totals: dict[str, list[int]]) -> dict[str, Group]:
    """Groups, most expensive first, then by name."""
    order = sorted(totals.items(), key=lambda kv: (-kv[1][2], kv[0]))
    return {name: Group(n, segs, nanos) for name, (n, segs, nanos) in order}
