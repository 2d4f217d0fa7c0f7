"""The single writer of a run: batched, durable checkpoints of every message's state.

A message is marked ``sending`` durably before its request leaves: :meth:`mark_sending`
returns only after the transaction holding the mark has committed. Marks from every lane
that arrive while one transaction commits share the next one (group commit), so the cost of
an fsync is spread over all messages in flight. Outcomes need not wait: they are written at
least every ``CHECKPOINT_FLUSH_MS``, and a process killed before that leaves those messages
``sending``, which the next run settles. The transactions are committed by a process of
their own (:mod:`engine.store.sqlite.checkpoint_process`), one write in flight at a time: the
next is sent from the callback that reads the answer to the one before, when marks wait,
and the marks it committed wake in the same callback; a claim is sent at once, between two
writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import anyio

from engine.errors import LeaseLost, StoreError
from engine.store.records import Settlement
from engine.store.sqlite.checkpoint_process import Answer, CheckpointProcess, write_arguments
from engine.store.sqlite.checkpoint_writer import WRITE
from engine.store.sqlite.store import Store

CHECKPOINT_FLUSH_MS: Final = 100
MAX_UPDATES_PER_FLUSH: Final = 5000


class _Commit:
    """The waiters of one write: :attr:`done` is set once it has committed, or failed
    (:attr:`failed`: nothing of it was written)."""

    __slots__ = ("done", "failed")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.failed = False


class Checkpointer:
    def __init__(self, store: Store, campaign_id: int, worker_id: str | None = None) -> None:
        self._writer = CheckpointProcess(store.path, campaign_id, worker_id)
        self._sending: list[tuple[float, int]] = []
        self._updates: list[Settlement] = []
        self._moves: list[tuple[int, int]] = []
        """(index in the flush's settlements, nanos): what a settlement moves in committed
        money, only where it moves any."""
        self._next = _Commit()
        """The write that will carry what is queued now."""
        self._writing: _Commit | None = None
        """The write in flight, if one is."""
        self._wanted = False
        """Write what is queued as soon as the write in flight has committed."""
        self._failure: StoreError | None = None
        """The first write that failed: every later flush raises it."""
        self._lost = 0
        """Rows of committed writes that this worker no longer held, not reported yet."""
        self._wake = anyio.Event()
        self._closed = False
        self.flushes = 0
        self.rows_written = 0

    async def mark_sending(self, lines: Sequence[int]) -> None:
        """Record *lines* as ``sending`` and wait until that is on disk (never returns if
        that write failed: the run stops on the failure)."""
        now = time.time()
        self._sending.extend((now, line) for line in lines)
        commit = self._next
        await self._writer.start()
        self._write()
        await commit.done.wait()
        if commit.failed:
            await anyio.sleep_forever()

    def update(self, row: Settlement, committed_nanos: int = 0) -> None:
        """Queue one settlement, and what it moves in committed money, for the next flush."""
        if committed_nanos:
            self._moves.append((len(self._updates), committed_nanos))
        self._updates.append(row)
        if len(self._updates) >= MAX_UPDATES_PER_FLUSH:
            self._wake.set()

    async def claim(self, provider: str, state: str, after_line: int, limit: int,
                    budget_nanos: int | None, sending: bool = False
                    ) -> tuple[list[tuple[Any, ...]], bool]:
        """A claim, committed by the writer's process between two writes
        (:meth:`CheckpointWriter.claim
        <engine.store.sqlite.checkpoint_writer.CheckpointWriter.claim>`)."""
        # In the run's process, through aiosqlite, each of a claim's six statements waited
        # for the busy loop to take its answer while the write lock was held, so claims took
        # 26 ms (median; 80 ms p90) and held up the commits marks wait for: workers ran dry
        # (bench/throughput.py).
        self._raise_failure()
        with anyio.CancelScope(shield=True):  # what it holds must reach the feeder to release
            claimed = await self._writer.claim(provider, state, after_line, limit,
                                               budget_nanos, sending)
        return claimed

    async def flush(self) -> None:
        """Write everything queued so far, now, and wait until it is on disk; raises
        :class:`LeaseLost` if a write since the last report held rows this worker no longer
        holds (they were not written)."""
        if self._sending or self._updates:
            commit: _Commit | None = self._next
            await self._writer.start()
            self._write()
        else:
            commit = self._writing
        if commit is not None:
            await commit.done.wait()
        self._raise_failure()

    def _write(self) -> None:
        """Send what is queued as one write, unless one is in flight (then it goes as soon as
        that one has committed)."""
        if self._writing is not None:
            self._wanted = True
            return
        self._wanted = False
        sending, self._sending = self._sending, []
        updates, self._updates = self._updates, []
        moves, self._moves = self._moves, []
        commit, self._next = self._next, _Commit()
        if self._failure is not None:  # nothing is written after a write that failed
            commit.failed = True
            commit.done.set()
            return
        if not (sending or updates):
            commit.done.set()
            return
        self._writing = commit
        rows = len(sending) + len(updates)
        try:
            self._writer.send(WRITE, write_arguments(sending, updates, moves),
                              lambda answer: self._written(answer, commit, rows))
        except StoreError as exc:
            self._writing = None
            self._fail(exc, commit)

    def _written(self, answer: Answer, commit: _Commit, rows: int) -> None:
        """The answer to a write, in the pipe's callback: wake its marks, and send the next
        write at once if marks wait for one."""
        self._writing = None
        if answer.problem is not None:
            self._fail(StoreError(answer.problem, path=self._writer.path), commit)
            return
        self.flushes += 1
        self.rows_written += rows
        commit.done.set()
        if answer.not_held:
            self._lost += answer.not_held
            self._wake.set()
        if self._wanted:  # marks (or a flush) came while it was in flight
            self._write()

    def _fail(self, failure: StoreError, commit: _Commit) -> None:
        """Keep the first failure, for :meth:`run` and every later flush to raise."""
        commit.failed = True
        commit.done.set()
        if self._failure is None:
            self._failure = failure
        self._wake.set()

    def _raise_failure(self) -> None:
        """Raise the failure of a write, or (once) the rows written that were not held."""
        if self._failure is not None:
            raise self._failure
        if self._lost:
            lost, self._lost = self._lost, 0
            raise LeaseLost(f"{lost} message(s) this run held were taken over by another "
                            "worker (this run's lease lapsed); it stops here, and they are "
                            "settled as interrupted", path=self._writer.path)

    async def run(self) -> None:
        """Write what is queued at least every ``CHECKPOINT_FLUSH_MS`` (marks are written at
        once); raise the first failure of a write."""
        with anyio.CancelScope(shield=True):
            await self._writer.start()
        while not self._closed:
            if self._updates or self._sending:
                self._write()
            with anyio.move_on_after(CHECKPOINT_FLUSH_MS / 1000):
                await self._wake.wait()
            self._wake = anyio.Event()
            self._raise_failure()

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        await self.flush()
        await self.release()

    async def release(self) -> None:
        """Stop the writer (again is fine), whatever state the run ended in."""
        await self._writer.close()
