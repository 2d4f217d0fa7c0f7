"""The run's checkpoint transactions, and the process that commits them.

This module is what the checkpoint process imports (``python -m
engine.store.sqlite.checkpoint_writer DB CAMPAIGN_ID``): the standard library only, so that
it starts in tens of milliseconds. The run's end of the pipe, and the frames on it, are
:mod:`engine.store.sqlite.checkpoint_process`.
"""

from __future__ import annotations

import marshal
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Final

from engine.store.records import SETTLEMENT_COLUMNS
from engine.store.sqlite import claims
from engine.store.sqlite.sql import query, statements

PRAGMAS: Final = statements("connection_pragmas")

_UPDATE: Final = query("settle", assignments=", ".join(c + " = ?" for c in SETTLEMENT_COLUMNS))
_SENDING: Final = query("mark_sending")
_COMMITTED: Final = query("move_committed")
_BEGIN: Final = query("begin_immediate")
_COMMIT: Final = query("commit")
_ROLLBACK: Final = query("rollback")

OK: Final = b"\x00"
FAILED: Final = b"\x01"
NOT_HELD: Final = b"\x02"
"""Committed, but some rows were not written because the worker no longer holds them; a
4-byte count follows."""
CLAIMED: Final = b"\x03"
"""A claim committed; a 4-byte length and its ``marshal``-ed ``(rows, over_budget)`` follow."""
WRITE: Final = 0
CLAIM: Final = 1
"""The kinds of request: a frame is ``(kind, arguments)``."""


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` on an autocommit connection; ``COMMIT``, or ``ROLLBACK`` on any
    exception."""
    conn.execute(_BEGIN)
    try:
        yield conn
    except BaseException:
        conn.execute(_ROLLBACK)
        raise
    conn.execute(_COMMIT)


class CheckpointWriter:
    """The run's checkpoints, one transaction each, on a connection of their own.

    In the run, it lives in the checkpoint process (:func:`serve`): a connection in the
    run's own process, through aiosqlite or a thread, waits for the GIL against a busy event
    loop on every call.
    """

    def __init__(self, path: Path, campaign_id: int, worker_id: str | None = None) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            self._conn.execute(pragma)
        self._campaign_id = campaign_id
        self._worker_id = worker_id

    def write(self, sending: Sequence[tuple[float, int]],
              updates: Sequence[tuple[Any, ...]],
              committed: Sequence[tuple[int, int]] = ()) -> int:
        """Settlements (:class:`~engine.store.records.Settlement` as plain tuples), then messages
        about to be sent.

        In that order because a line can have both in one transaction only when it was
        failed over (written ``claimed`` on its new route) and its new lane then marked it:
        the mark is the later, and must be what stays. An outcome never shares a transaction
        with its own attempt's mark, which committed before the request left.

        *committed* pairs the index of a settlement in *updates* with what it moves in the
        campaign's committed money (settled for more or less than was reserved, given back):
        moved only if that settlement is written. Returns how many rows were not written
        because this worker no longer holds them.
        """
        c, w = self._campaign_id, self._worker_id
        rows = [(*u[:-1], u[0], c, u[-1], w) for u in updates]
        written = money = start = 0
        with immediate_transaction(self._conn) as conn:
            for index, nanos in committed:  # in order: a line may be settled twice
                if index > start:
                    written += conn.executemany(_UPDATE, rows[start:index]).rowcount
                if conn.execute(_UPDATE, rows[index]).rowcount:
                    written += 1
                    money += nanos
                start = index + 1
            if start < len(rows):
                written += conn.executemany(_UPDATE, rows[start:]).rowcount
            if sending:
                written += conn.executemany(
                    _SENDING, [(t, c, line, w) for t, line in sending]).rowcount
            if money:
                conn.execute(_COMMITTED, (money, c))
        return len(updates) + len(sending) - written

    def claim(self, provider: str, state: str, after_line: int, limit: int,
              budget_nanos: int | None, sending: bool = False
              ) -> tuple[list[tuple[Any, ...]], bool]:
        """This worker's claim, in a transaction of its own (:func:`claims.claim`)."""
        with immediate_transaction(self._conn) as conn:
            return claims.claim(conn, self._campaign_id, self._worker_id, provider, state,
                                after_line, limit, budget_nanos, sending)

    def close(self) -> None:
        self._conn.close()


def serve(path: Path, campaign_id: int, worker_id: str | None, requests: BinaryIO,
          replies: BinaryIO) -> None:
    """The child's loop: commit each frame read from *requests* until it closes."""
    def answer(problem: Exception | None, not_held: int = 0, claimed: bytes = b"") -> None:
        if claimed:
            replies.write(CLAIMED + len(claimed).to_bytes(4, "big") + claimed)
        elif problem is None:
            replies.write(NOT_HELD + not_held.to_bytes(4, "big") if not_held else OK)
        else:
            text = f"{type(problem).__name__}: {problem}".encode()
            replies.write(FAILED + len(text).to_bytes(4, "big") + text)
        replies.flush()

    try:
        writer = CheckpointWriter(path, campaign_id, worker_id)
    except Exception as exc:
        answer(exc)
        return
    try:
        answer(None)
        while len(header := requests.read(4)) == 4:
            kind, arguments = marshal.loads(requests.read(int.from_bytes(header, "big")))
            claimed, not_held = b"", 0
            try:
                if kind == CLAIM:
                    claimed = marshal.dumps(writer.claim(*arguments))
                else:
                    not_held = writer.write(*arguments)
            except Exception as exc:
                answer(exc)
            else:
                answer(None, not_held, claimed)
    except BrokenPipeError:
        pass  # the run is gone; what it was told is committed is
    finally:
        writer.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None,
          sys.stdin.buffer, sys.stdout.buffer)
