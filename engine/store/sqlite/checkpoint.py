"""The single writer of a run: batched, durable checkpoints of every message's state.

A message is marked ``sending`` durably before its request leaves: :meth:`mark_sending`
returns only after the transaction holding the mark has committed. Marks from every lane
that arrive while one transaction commits share the next one (group commit), so the cost of
an fsync is spread over all messages in flight. Outcomes need not wait: they are written at
least every ``CHECKPOINT_FLUSH_MS``, and a process killed before that leaves those messages
``sending``, which the next run settles. The transactions are committed by a process of
their own (:mod:`engine.store.sqlite.checkpoint_process`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import anyio

from engine.errors import LeaseLost
from engine.store.records import Settlement
from engine.store.sqlite.checkpoint_process import CheckpointProcess
from engine.store.sqlite.store import Store

CHECKPOINT_FLUSH_MS: Final = 100
MAX_UPDATES_PER_FLUSH: Final = 5000


class Checkpointer:
    def __init__(self, store: Store, campaign_id: int, worker_id: str | None = None) -> None:
        self._writer = CheckpointProcess(store.path, campaign_id, worker_id)
        self._lock = anyio.Lock()
        self._sending: list[tuple[float, int]] = []
        self._updates: list[Settlement] = []
        self._moves: list[tuple[int, int]] = []
        """(index in the flush's settlements, nanos): what a settlement moves in committed
        money, only where it moves any."""
        self._wake = anyio.Event()
        self._committed = anyio.Event()
        self._closed = False
        self.flushes = 0
        self.rows_written = 0

    async def mark_sending(self, lines: Sequence[int]) -> None:
        """Record *lines* as ``sending`` and wait until that is on disk."""
        now = time.time()
        self._sending.extend((now, line) for line in lines)
        committed = self._committed
        self._wake.set()
        await committed.wait()

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
        """A claim, committed by the writer's process between two flushes
        (:meth:`CheckpointProcess.claim`)."""
        # In the run's process, through aiosqlite, each of a claim's six statements waited
        # for the busy loop to take its answer while the write lock was held, so claims took
        # 26 ms (median; 80 ms p90) and held up the commits marks wait for: workers ran dry
        # (bench/throughput.py).
        async with self._lock:
            with anyio.CancelScope(shield=True):  # a claim half read would desync the pipe
                claimed = await self._writer.claim(provider, state, after_line, limit,
                                                   budget_nanos, sending)
        return claimed

    async def flush(self) -> None:
        """Write everything queued so far, now."""
        async with self._lock:
            sending, self._sending = self._sending, []
            updates, self._updates = self._updates, []
            moves, self._moves = self._moves, []
            committed, self._committed = self._committed, anyio.Event()
            not_held = 0
            if sending or updates:
                with anyio.CancelScope(shield=True):
                    not_held = await self._writer.write(sending, updates, moves)
                self.flushes += 1
                self.rows_written += len(sending) + len(updates)
            committed.set()
            if not_held:
                raise LeaseLost(f"{not_held} message(s) this run held were taken over by another "
                                "worker (this run's lease lapsed); it stops here, and they are "
                                "settled as interrupted", path=self._writer.path)

    async def run(self) -> None:
        """Flush when a sender waits, and at least every ``CHECKPOINT_FLUSH_MS``."""
        async with self._lock:
            with anyio.CancelScope(shield=True):
                await self._writer.start()
        while not self._closed:
            with anyio.move_on_after(CHECKPOINT_FLUSH_MS / 1000):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        await self.flush()
        await self.release()

    async def release(self) -> None:
        """Stop the writer (again is fine), whatever state the run ended in."""
        await self._writer.close()
