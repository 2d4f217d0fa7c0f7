"""The terminal progress display of `dispatch run`: overall and per provider, on stderr."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from engine.send.dispatcher import Dispatcher


class TerminalProgress:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[cost]}"),
            TimeRemainingColumn(), console=console, transient=False)
        self._progress.start()
        self._total: TaskID | None = None
        self._lanes: dict[str, TaskID] = {}
        self._started = time.monotonic()

    def update(self, dispatcher: Dispatcher) -> None:
        counts = dispatcher.counts
        done = counts["accepted"] + counts["failed"] + counts["unknown"]
        rate = done / max(time.monotonic() - self._started, 1e-3)
        cost = f"{dispatcher.spent_nanos / 1e9:.2f} {dispatcher.routing.currency}"
        if self._total is None:
            self._total = self._progress.add_task("all", total=sum(dispatcher.totals.values())
                                                  or None, rate="", cost="")
        self._progress.update(self._total, completed=done, rate=f"{rate:,.0f} msg/s", cost=cost,
                              total=sum(dispatcher.totals.values()) or None)
        for name, lane in dispatcher.lanes.items():
            if name not in self._lanes:
                self._lanes[name] = self._progress.add_task(
                    f"  {name}", total=dispatcher.totals.get(name) or None, rate="", cost="")
            state = "stopped" if lane.down else f"{len(lane.queued):,} queued"
            self._progress.update(self._lanes[name], completed=lane.accepted, rate=state, cost="",
                                  total=dispatcher.totals.get(name) or None)

    def close(self) -> None:
        self._progress.stop()
