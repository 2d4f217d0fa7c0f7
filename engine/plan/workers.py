"""Planning in worker processes: each plans a piece of the recipients file, adds its numbers
to the shared filter and writes it, one process at a time for each of the two.

Worker processes are spawned, so this module imports only what planning a piece needs:
no asynchronous stack, no logging, no provider code. They start in a fraction of the time
the whole engine takes to import.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from engine.gc_policy import set_rare
from engine.plan.recipients import Piece, piece_text
from engine.plan.rows import PlanContext, Written, add_numbers, plan_piece
from engine.plan.seen import SeenNumbers

if TYPE_CHECKING:  # a planning process starts without the store's modules
    from engine.store.protocols import PieceWriter, PlanWriters

NOT_WRITTEN: Final = -1
PARENT_CHECK_S: Final = 0.5


class PlanAborted(Exception):
    """Another planning process failed."""


class Turns:
    """Planning processes write one piece at a time, and add its numbers to the shared filter
    one at a time, each as soon as the piece is planned.

    Pieces are written in the order they are planned, not in file order: waiting for the
    piece before one's own to be planned and written idled a core for about a tenth of a
    plan. So the campaign's resume point, written with each piece, is the last line of the
    longest run of written pieces from the first. On resume, a piece past it that was
    written already is planned again and its insert changes nothing (``ON CONFLICT DO
    NOTHING``). Duplicates are resolved by line once the plan is whole
    (:meth:`Store.finish_plan`), so which occurrence wins does not depend on the order of
    writes.
    """

    def __init__(self, mp: Any, window: int) -> None:
        self._write = mp.Lock()
        self._filter = mp.Lock()
        self._through = mp.RawArray("q", [NOT_WRITTEN] * window)
        """The last line of each piece written but not yet in the run from the first
        (0: it had no rows), at its index modulo the window."""
        self._next = mp.RawValue("q", 0)
        """The first piece not written."""
        self._aborted = mp.RawValue("b", 0)

    @contextmanager
    def adding(self) -> Iterator[None]:
        with self._holding(self._filter):
            yield

    @contextmanager
    def writing(self, index: int, through: int) -> Iterator[int | None]:
        """Hold the write turn for piece *index*, whose last row is on line *through* (0:
        none): gives the resume point to write with it, ``None`` where it does not move.
        The piece counts as written once the block ends without an exception."""
        with self._holding(self._write):
            window = len(self._through)
            first = self._next.value
            if not first <= index < first + window:
                raise AssertionError(f"piece {index} outside the window at {first}")
            resume = None
            i = first
            while (last := through if i == index else self._through[i % window]) != NOT_WRITTEN:
                resume = last or resume
                i += 1
            yield resume
            self._through[index % window] = through
            while self._through[first % window] != NOT_WRITTEN:
                self._through[first % window] = NOT_WRITTEN
                first += 1
            self._next.value = first

    @contextmanager
    def _holding(self, lock: Any) -> Iterator[None]:
        while not lock.acquire(timeout=PARENT_CHECK_S):
            if self._aborted.value:
                raise PlanAborted
        try:
            if self._aborted.value:
                raise PlanAborted
            yield
        finally:
            lock.release()

    def abort(self) -> None:
        """Stop every process waiting for a turn. One killed while holding a lock keeps it;
        then the pool is broken and ends its processes itself."""
        self._aborted.value = 1


_WORKER: tuple[PlanContext, PieceWriter, SeenNumbers, Turns, int] | None = None


def worker_init(ctx: PlanContext, writers: PlanWriters, bits: Path, turns: Turns,
                 recipients: Path) -> None:
    global _WORKER
    _WORKER = (ctx, writers.open(), SeenNumbers.mapped(bits), turns,
               os.open(recipients, os.O_RDONLY))
    set_rare()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="plan-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    """A planning process outlives a killed parent otherwise: its task queue never ends,
    since every worker holds the queue's writing end. Exiting mid-batch is safe: SQLite
    rolls the batch back, and the next plan resumes before it."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def worker_plan(index: int, piece: Piece, after: int) -> Written:
    assert _WORKER is not None
    ctx, writer, seen, turns, recipients = _WORKER
    try:
        planned, tally = plan_piece(ctx, piece_text(recipients, piece), after)
        with turns.adding():
            written = add_numbers(seen, planned, tally)
        with turns.writing(index, planned.through) as resume:
            if planned.through or resume is not None:
                writer.write(planned.valid, planned.not_sent, through=resume)
    except BaseException:
        turns.abort()
        raise
    return written
