"""A worker's claim on SQLite, as one transaction on a plain ``sqlite3`` connection.

The run's checkpoint process makes its claims (:meth:`CheckpointWriter.claim
<engine.store.sqlite.checkpoint_writer.CheckpointWriter.claim>`), on the connection that
commits its marks and settlements: a claim is then one round trip from the run, and the
write lock it takes is held for the claim's own statements only. The rule is the one of
:meth:`engine.store.protocols.Outbox.claim`; the states are :mod:`engine.store.states`.
Standard library and :mod:`engine.store` only, as the checkpoint process imports it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Final

from engine.store.records import Outgoing
from engine.store.sqlite.sql import query
from engine.store.states import CLAIMED, PENDING, SENDING, SPENDING_STATES, fit_budget

OUTGOING_COLUMNS: Final = query("outgoing_columns")
"""The columns of :class:`engine.store.records.Outgoing`, in order."""
assert [c.strip() for c in OUTGOING_COLUMNS.split(",")] == list(Outgoing._fields)
_ELIGIBLE: Final = query("eligible_from")


def _read_as(new_state: str) -> str:
    """A claim's page of pending messages, read in the state they will have once claimed."""
    columns = OUTGOING_COLUMNS.replace(", state,", f", '{new_state}',")
    assert columns != OUTGOING_COLUMNS
    return f"SELECT {columns} {_ELIGIBLE}"


_CLAIM_AS: Final = {CLAIMED: _read_as(CLAIMED), SENDING: _read_as(SENDING)}
_CLAIM: Final = f"SELECT {OUTGOING_COLUMNS} {_ELIGIBLE}"
_TAKE: Final = query("take")
_TAKE_SENDING: Final = query("take_sending")
_KEPT_COMMITTED: Final = query("kept_committed")
_COMMITTED: Final = query("spent", states=", ".join("?" * (len(SPENDING_STATES) + 1)))
"""What every worker has sent, may have sent, or holds claimed."""
_SET_COMMITTED: Final = query("set_committed")
_ADD_COMMITTED: Final = query("add_committed")
_COST: Final = Outgoing._fields.index("cost_nanos")


def claim(conn: sqlite3.Connection, campaign_id: int, worker_id: str | None, provider: str,
          state: str, after_line: int, limit: int, budget_nanos: int | None,
          sending: bool = False) -> tuple[list[tuple[Any, ...]], bool]:
    """In the transaction open on *conn*: hold up to *limit* unheld messages of *provider*
    in *state* after *after_line*, in line order (``pending`` ones become ``claimed``, or
    with *sending* ``sending``, their attempt counted; their estimated cost reserved;
    ``unknown`` ones stay ``unknown``); their rows (the columns of
    :class:`~engine.store.records.Outgoing` as read, in their new state) and whether the
    next one did not fit *budget_nanos*."""
    new_state = (SENDING if sending else CLAIMED) if state == PENDING else state
    rows: list[tuple[Any, ...]] = conn.execute(
        _CLAIM_AS.get(new_state, _CLAIM), (campaign_id, state, provider, after_line,
                                            limit)).fetchall()
    over_budget = False
    committed = None
    if state == PENDING and rows:
        committed = _committed(conn, campaign_id)
        if budget_nanos is not None:
            fitting, over_budget = fit_budget([Outgoing._make(r) for r in rows],
                                              budget_nanos - committed)
            rows = rows[:len(fitting)]
    if rows:
        lines = json.dumps([r[0] for r in rows])
        if new_state == SENDING:
            conn.execute(_TAKE_SENDING, (worker_id, time.time(), campaign_id, lines))
        else:
            conn.execute(_TAKE, (new_state, worker_id, campaign_id, lines, state))
        if committed is not None:
            conn.execute(_ADD_COMMITTED, (committed, sum(r[_COST] for r in rows), campaign_id))
    return rows, over_budget


def _committed(conn: sqlite3.Connection, campaign_id: int) -> int:
    """The campaign's committed money: computed once from its messages, then kept."""
    kept = conn.execute(_KEPT_COMMITTED, (campaign_id,)).fetchone()
    if kept is not None and kept[0] is not None:
        return int(kept[0])
    committed = int(conn.execute(_COMMITTED, (campaign_id, *SPENDING_STATES,
                                              CLAIMED)).fetchone()[0])
    conn.execute(_SET_COMMITTED, (committed, campaign_id))
    return committed
