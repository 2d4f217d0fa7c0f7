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

PRAGMAS: Final = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                  "PRAGMA busy_timeout=10000", "PRAGMA cache_size=-8192")

_UPDATE: Final = (f"UPDATE messages SET {', '.join(c + ' = ?' for c in SETTLEMENT_COLUMNS)} "
                  "WHERE campaign_id = ? AND line = ?")
_SENDING: Final = ("UPDATE messages SET state = 'sending', attempts = attempts + 1, "
                   "updated_at = ? WHERE campaign_id = ? AND line = ?")

OK: Final = b"\x00"
FAILED: Final = b"\x01"


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` on an autocommit connection; ``COMMIT``, or ``ROLLBACK`` on any
    exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class CheckpointWriter:
    """The run's checkpoints, one transaction each, on a connection of their own.

    In the run, it lives in the checkpoint process (:func:`serve`): a connection in the
    run's own process, through aiosqlite or a thread, waits for the GIL against a busy event
    loop on every call.
    """

    def __init__(self, path: Path, campaign_id: int) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            self._conn.execute(pragma)
        self._campaign_id = campaign_id

    def write(self, sending: Sequence[tuple[float, int]],
              updates: Sequence[tuple[Any, ...]]) -> None:
        """Settlements (:class:`~engine.store.records.Settlement` as plain tuples), then messages
        about to be sent.

        In that order because a line can have both in one transaction only when it was
        failed over (written ``pending`` on its new route) and its new lane then marked it:
        the mark is the later, and must be what stays. An outcome never shares a transaction
        with its own attempt's mark, which committed before the request left.
        """
        c = self._campaign_id
        with immediate_transaction(self._conn) as conn:
            if updates:
                conn.executemany(_UPDATE, [(*u[:-1], c, u[-1]) for u in updates])
            if sending:
                conn.executemany(_SENDING, [(t, c, line) for t, line in sending])

    def close(self) -> None:
        self._conn.close()


def serve(path: Path, campaign_id: int, requests: BinaryIO, replies: BinaryIO) -> None:
    """The child's loop: commit each frame read from *requests* until it closes."""
    def answer(problem: Exception | None) -> None:
        if problem is None:
            replies.write(OK)
        else:
            text = f"{type(problem).__name__}: {problem}".encode()
            replies.write(FAILED + len(text).to_bytes(4, "big") + text)
        replies.flush()

    try:
        writer = CheckpointWriter(path, campaign_id)
    except Exception as exc:
        answer(exc)
        return
    try:
        answer(None)
        while len(header := requests.read(4)) == 4:
            sending, updates = marshal.loads(requests.read(int.from_bytes(header, "big")))
            try:
                writer.write(sending, updates)
            except Exception as exc:
                answer(exc)
            else:
                answer(None)
    except BrokenPipeError:
        pass  # the run is gone; what it was told is committed is
    finally:
        writer.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), sys.stdin.buffer, sys.stdout.buffer)
