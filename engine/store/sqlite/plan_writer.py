"""How planned rows are stored: their tuples' column order, and the writer of a planning
process, a synchronous connection of its own.

It imports no more than ``sqlite3`` and its statements (:mod:`engine.store.sqlite.sql`):
worker processes import it, and each starts faster without the store's asynchronous stack.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Final

from engine.store.sqlite.checkpoint_writer import PRAGMAS, immediate_transaction
from engine.store.sqlite.sql import query

PLANNED_COLUMNS: Final = (
    "line", "phone", "country", "encoding", "segments", "provider", "route", "price_nanos",
    "cost_nanos", "plan_id", "variables", "text",
)
"""The order of a valid row's tuple for :meth:`PlanWriter.write`; its state is ``pending``.
Its ``text`` is ``""`` where it is not stored: binding ``None`` costs a failed adapter
look-up per row in ``sqlite3``, and the insert turns ``""`` into NULL."""
NOT_SENT_COLUMNS: Final = (
    "line", "phone_raw", "phone", "country", "state", "reason", "detail", "text", "encoding",
    "segments",
)
"""The order of a rejected or skipped row's tuple for :meth:`PlanWriter.write`."""

ROWS_PER_INSERT: Final = 64
"""Rows per ``INSERT ... VALUES (...), (...)`` of a planned batch. One statement run keeps
its B-tree cursors between rows, so a row in line order is appended without a seek from
the root, and the statement is stepped once, not once per row: 31k -> 22k instructions a
row against ``executemany``. Each remainder size is a statement of its own, kept by the
writer's statement cache."""


_PLANNED_COLUMN_LIST: Final = ", ".join(PLANNED_COLUMNS)
_NOT_SENT_COLUMN_LIST: Final = ", ".join(NOT_SENT_COLUMNS)


@lru_cache(maxsize=2 * ROWS_PER_INSERT)
def _insert_values(planned: bool, campaign_id: int, rows: int) -> str:
    """The insert of *rows* tuples of :data:`PLANNED_COLUMNS` or :data:`NOT_SENT_COLUMNS`
    (``insert_planned`` / ``insert_not_sent``; the VALUES list is built here, its length
    varying, and kept per size)."""
    if planned:
        one = (f"({campaign_id}, 'pending', {', '.join('?' * (len(PLANNED_COLUMNS) - 1))}, "
               "NULLIF(?, ''))")
        return query("insert_planned", columns=_PLANNED_COLUMN_LIST,
                     rows=", ".join([one] * rows))
    one = f"({campaign_id}, {', '.join('?' * len(NOT_SENT_COLUMNS))})"
    return query("insert_not_sent", columns=_NOT_SENT_COLUMN_LIST, rows=", ".join([one] * rows))


_PLANNED_THROUGH: Final = query("set_planned_through")
_DELETE_MESSAGES: Final = query("delete_campaign_messages")
_JSON_FIELDS: Final = "json_extract(value, '$[{}]')"
_INSERT_PLANNED_JSON: Final = query(
    "insert_planned_json", columns=_PLANNED_COLUMN_LIST,
    fields=", ".join(map(_JSON_FIELDS.format, range(len(PLANNED_COLUMNS) - 1))),
    text_field=_JSON_FIELDS.format(len(PLANNED_COLUMNS) - 1))
_INSERT_NOT_SENT_JSON: Final = query(
    "insert_not_sent_json", columns=_NOT_SENT_COLUMN_LIST,
    fields=", ".join(map(_JSON_FIELDS.format, range(len(NOT_SENT_COLUMNS)))))
PLAN_SYNCHRONOUS: Final = query("plan_synchronous")
"""For planned batches only. In WAL mode a commit then survives the process being killed,
not the machine losing power, which could take the last batches back; the resume point
is in the same transaction, so a resumed plan would plan them again. Nothing is sent
while planning, so nothing is lost, and a fsync per batch is saved."""

PLAN_FOREIGN_KEYS: Final = query("plan_foreign_keys")
"""For planned batches only: every row is of the campaign the plan has just opened, so the
check of its ``campaign_id`` would be a look-up per row that cannot fail."""

PLAN_TEMP_STORE: Final = query("plan_temp_store")
"""A many-row insert keeps a statement journal (the pages it changes, as they were, to undo
it alone if a row breaks a constraint), and SQLite keeps that in a temporary file: a file
created, written and deleted for every batch, ~1.3 KB of writes a row. In memory it is the
same copies without the system calls: 1.6 -> 0.6 µs of kernel time a row written."""


@dataclass(frozen=True, slots=True)
class SqlitePlanWriters:
    """:class:`engine.store.protocols.PlanWriters` on SQLite: a :class:`PlanWriter` on one
    campaign of one database file, opened in whichever process asks."""

    path: Path
    campaign_id: int

    def open(self) -> PlanWriter:
        return PlanWriter(self.path, self.campaign_id)


class PlanWriter:
    """Writes planned batches in a synchronous connection of the planning process's own.

    Planning is CPU-bound Python; through aiosqlite every bound row of a batch would wait
    for the GIL between that thread and this one, which made writes several times slower
    than SQLite itself. A batch here is one transaction with the campaign's resume point.
    Planning worker processes each have one and write one at a time
    (:mod:`engine.plan.workers`).
    """

    def __init__(self, path: Path, campaign_id: int) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                     cached_statements=4 * ROWS_PER_INSERT)
        for pragma in (*PRAGMAS, PLAN_SYNCHRONOUS, PLAN_FOREIGN_KEYS, PLAN_TEMP_STORE):
            self._conn.execute(pragma)
        self._campaign_id = campaign_id

    def write(self, valid: Sequence[tuple[Any, ...]], not_sent: Sequence[tuple[Any, ...]], *,
              through: int | None) -> None:
        """One batch and the resume point (``None``: it stays where it is)."""
        with immediate_transaction(self._conn) as conn:
            self._insert(conn, True, valid)
            self._insert(conn, False, not_sent)
            if through is not None:
                conn.execute(_PLANNED_THROUGH, (through, self._campaign_id))

    def _insert(self, conn: sqlite3.Connection, planned: bool,
                rows: Sequence[tuple[Any, ...]]) -> None:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            part = rows[start:start + ROWS_PER_INSERT]
            conn.execute(_insert_values(planned, self._campaign_id, len(part)),
                         list(chain.from_iterable(part)))

    def write_json(self, valid: str, not_sent: str, *, through: int) -> None:
        """One batch and the resume point, the rows as JSON arrays of :meth:`write`'s tuples.

        Each insert is one SQLite call that holds no GIL while it runs, where
        ``executemany`` takes the GIL back for every row: from a thread beside a busy
        planning loop, that is a wait of up to a switch interval per row.
        """
        c = self._campaign_id
        with immediate_transaction(self._conn) as conn:
            conn.execute(_INSERT_PLANNED_JSON, (c, valid))
            conn.execute(_INSERT_NOT_SENT_JSON, (c, not_sent))
            conn.execute(_PLANNED_THROUGH, (through, c))

    def discard(self) -> None:
        """Every row planned so far, and the resume point: for a plan that is not complete
        (nothing of it was sent), refused for a broken recipients file."""
        with immediate_transaction(self._conn) as conn:
            conn.execute(_DELETE_MESSAGES, (self._campaign_id,))
            conn.execute(_PLANNED_THROUGH, (0, self._campaign_id))

    def close(self) -> None:
        self._conn.close()
