"""The terminal progress display of `dispatch run` (TTY only, on stderr).

One line for the run: done of total, rate, cost so far and time left; one line per provider
lane: its done of its total and its queue, or why it stopped. The display starts at the
first update (after the plan is printed) and is transient: :meth:`TerminalProgress.close`
erases it, so no frame is left on screen above the run's summary. While it is shown, lines
written to stdout or stderr (log lines) are printed above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from engine.send.dispatcher import Dispatcher, DispatcherStatistics

BAR_WIDTH_CHARS: Final = 16
REFRESH_PER_S: Final = 4


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the display shows of a run at one moment."""

    done: int
    total: int
    per_s: float
    spent: str
    eta_s: float | None

    @classmethod
    def of(cls, stats: DispatcherStatistics) -> Snapshot:
        done = stats.done
        total = max(stats.pending_at_start, done)
        per_s = done / max(stats.elapsed_s, 1e-3)
        eta = (total - done) / per_s if per_s > 0 and done else None
        spent = f"{stats.spent_nanos / 1e9:,.2f} {stats.currency}"
        return cls(done, total, per_s, spent, eta)


def clock(seconds: float | None) -> str:
    """``h:mm:ss``, or ``-:--:--`` when not known yet."""
    if seconds is None:
        return "-:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TerminalProgress:
    """Call :meth:`update` with the dispatcher (or :meth:`show` with its statistics) as often
    as the display should move, and :meth:`close` once (it may be called before any
    update)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=BAR_WIDTH_CHARS),
            TextColumn("{task.fields[done]}"), TextColumn("{task.fields[detail]}"),
            console=console, transient=True, refresh_per_second=REFRESH_PER_S)
        self._started = False
        self._total: TaskID | None = None
        self._lanes: dict[str, TaskID] = {}

    def update(self, dispatcher: Dispatcher) -> None:
        """Show *dispatcher*'s state now (:meth:`~Dispatcher.statistics`)."""
        self.show(dispatcher.statistics())

    def show(self, stats: DispatcherStatistics) -> None:
        """Show *stats*; the display starts at the first call."""
        if not self._started:
            self._progress.start()
            self._started = True
        s = Snapshot.of(stats)
        width = max((len(lane.provider) for lane in stats.lanes), default=3)
        detail = f"{s.per_s:,.0f} msg/s  {s.spent}  ETA {clock(s.eta_s)}"
        if self._total is None:
            self._total = self._progress.add_task("all".ljust(width), done="", detail="")
        self._progress.update(self._total, completed=s.done, total=s.total or None,
                              done=f"{s.done:,} of {s.total:,}", detail=detail)
        for lane in stats.lanes:
            name, total = lane.provider, lane.pending_at_start
            if not total and not lane.accepted and not lane.down:
                continue
            if name not in self._lanes:
                self._lanes[name] = self._progress.add_task(name.ljust(width), done="",
                                                            detail="")
            total = max(total, lane.accepted)
            state = "stopped" if lane.down else f"{lane.queued:,} queued"
            self._progress.update(self._lanes[name], completed=lane.accepted,
                                  total=total or None, done=f"{lane.accepted:,} of {total:,}",
                                  detail=state)

    def close(self) -> None:
        """Erase the display (transient) and give the terminal back."""
        if self._started:
            self._progress.stop()
            self._started = False
