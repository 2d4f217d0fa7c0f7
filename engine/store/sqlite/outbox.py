"""The outbox on SQLite: one worker's claims, marks and settlements on one campaign.

Every write here is one ``BEGIN IMMEDIATE`` transaction, which SQLite gives to one
connection of one process at a time: a claim's read of the eligible rows and its update of
them cannot interleave with another worker's, so a message is only ever held by one worker.
Claims (:mod:`engine.store.sqlite.claims`), marks and settlements go through the checkpoint
writer's process (:mod:`engine.store.sqlite.checkpoint`), which writes only rows the worker
still holds; rescues and releases, rare, run on the run's store connection. The
states and who may move a message between them are in :mod:`engine.store.states`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

from engine.store.records import Outgoing, Settlement, WorkerRecord
from engine.store.sqlite.checkpoint import Checkpointer
from engine.store.sqlite.sql import query
from engine.store.sqlite.store import Store, paged
from engine.store.states import (
    CLAIMED,
    HELD_STATES,
    PENDING,
    SENDING,
    UNKNOWN,
    Claim,
    Rescued,
)

_RETURN_COMMITTED: Final = query("return_committed")
_UNSEND: Final = query("unsend")
_HELD_BY_OTHERS: Final = paged("line", query("held_by_others_from",
                                             states=", ".join("?" * len(HELD_STATES))))

_DEAD: Final = query("held_by_condition")
"""Rescue: held by the dead workers of a JSON array of ids, or by nobody."""
_GIVE_BACK_DEAD: Final = (query("held_count", held_by=_DEAD, lines=""),
                          query("unclaim", held_by=_DEAD, lines=""),
                          query("unhold", held_by=query("held_by_workers_condition"),
                                lines=""))
"""Rescue's statements (count, make pending, let go of unknown), as :data:`_RELEASE`'s."""
_INTERRUPT_DEAD: Final = query("interrupt_sending", held_by=_DEAD)

_MINE: Final = query("held_by_worker_condition")
_OF_LINES: Final = f" AND {query('lines_condition')}"
_RELEASE: Final = {
    False: (query("held_count", held_by=_MINE, lines=""),
            query("unclaim", held_by=_MINE, lines=""),
            query("unhold", held_by=_MINE, lines="")),
    True: (query("held_count", held_by=_MINE, lines=_OF_LINES),
           query("unclaim", held_by=_MINE, lines=_OF_LINES),
           query("unhold", held_by=_MINE, lines=_OF_LINES)),
}
"""Release's statements (count, make pending, let go of unknown), of every line the worker
holds (False) or only of a JSON array of lines (True)."""


class SqliteOutbox:
    """:class:`engine.store.protocols.Outbox` on SQLite: claims commit at once in the
    checkpoint writer's process, marks and settlements there in batches; rescues and
    releases on the run's store connection."""

    def __init__(self, store: Store, campaign_id: int, worker: WorkerRecord,
                 live: Callable[[WorkerRecord], bool]) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.worker = worker
        self.worker_id = worker.id
        self._live = live
        """The lease rule: may a worker still be sending (:func:`engine.send.worker.is_live`)."""
        self._writes = Checkpointer(store, campaign_id, worker.id)

    # --- marks and settlements, through the checkpoint writer --------------------------

    async def run(self) -> None:
        await self._writes.run()

    def mark_sending(self, lines: Sequence[int]) -> Coroutine[Any, Any, None]:
        return self._writes.mark_sending(lines)  # the writer's own coroutine: no frame more

    def settle(self, settlement: Settlement, committed_nanos: int = 0) -> None:
        self._writes.update(settlement, committed_nanos)

    async def flush(self) -> None:
        await self._writes.flush()

    async def close(self) -> None:
        await self._writes.close()

    async def stop(self) -> None:
        await self._writes.release()

    @property
    def flushes(self) -> int:
        """Transactions the checkpoint writer has committed for this worker."""
        return self._writes.flushes

    @property
    def rows_written(self) -> int:
        """Marks and settlements in them."""
        return self._writes.rows_written

    # --- reads -----------------------------------------------------------------------------

    async def spent_nanos(self) -> int:
        return await self.store.spent_nanos(self.campaign_id)

    async def pending_by_provider(self) -> dict[str, int]:
        return await self.store.pending_by_provider(self.campaign_id)

    # --- claims ----------------------------------------------------------------------------

    async def claim(self, provider: str, *, after_line: int = 0, limit: int = 500,
                    state: str = PENDING, budget_nanos: int | None = None,
                    sending: bool = False) -> Claim:
        """Hold up to *limit* unheld messages of *provider* in *state*, in line order after
        *after_line*: ``pending`` ones become ``claimed`` (with *sending*: ``sending``, their
        attempt counted), ``unknown`` ones stay ``unknown``, held.

        Claimed ``pending`` messages reserve their estimated cost: with *budget_nanos* (the
        campaign's ``max_cost``), only as many as fit beside everything held, sent or
        reserved so far by every worker, in line order, and :attr:`Claim.over_budget` says
        the next one did not fit.
        """
        rows, over_budget = await self._writes.claim(provider, state, after_line, limit,
                                                     budget_nanos, sending)
        if not rows:
            return Claim((), over_budget, after_line)
        messages = tuple(map(Outgoing._make, rows))
        return Claim(messages, over_budget, messages[-1].line)

    async def rescue(self) -> Rescued:
        """Take back what dead workers of the campaign held (those the lease rule says are
        not live, and messages held by nobody in a held state, left by a version without
        workers):
        ``claimed`` ones become ``pending`` again, ``sending`` ones ``unknown`` (they may
        have been sent; settled before anything else), held ``unknown`` ones unheld. The
        dead workers' rows are removed."""
        cid = self.campaign_id
        async with self.store.transaction() as db:
            dead = [w.id for w in (WorkerRecord(*r) for r in await db.execute_fetchall(
                        query("other_workers"), (self.worker.campaign, self.worker_id)))
                    if not self._live(w)]
            ids = json.dumps(dead)
            released = await self._give_back(db, _GIVE_BACK_DEAD, (ids,))
            unknown = await db.execute(_INTERRUPT_DEAD, (UNKNOWN, cid, SENDING, ids))
            await db.execute(query("delete_workers"), (ids,))
        return Rescued(len(dead), released, unknown.rowcount)

    async def held_by_others(self) -> int:
        """Messages another worker holds: they may yet come back ``pending``."""
        rows = await self.store.page_of(_HELD_BY_OTHERS,
                                        (self.campaign_id, *HELD_STATES, self.worker_id))
        return len(rows)

    async def release(self, lines: Sequence[int] | None = None) -> int:
        """Give back the ``claimed`` messages of *lines* this worker holds (every one when
        None: ``pending`` again, their reservation returned) and let go of held ``unknown``
        ones; of *lines*, the ``sending`` ones too (never sent: claimed ``sending``), their
        attempt uncounted. The count made ``pending``."""
        if lines is None:
            async with self.store.transaction() as db:
                return await self._give_back(db, _RELEASE[False], (self.worker_id,))
        which = json.dumps(list(lines))
        async with self.store.transaction() as db:
            count = await self._give_back(db, _RELEASE[True], (self.worker_id, which))
            unsent, nanos = await _one(db, _RELEASE[True][0],
                                       (self.campaign_id, SENDING, self.worker_id, which))
            if unsent:
                await db.execute(_UNSEND, (self.campaign_id, self.worker_id, which))
                await db.execute(_RETURN_COMMITTED, (nanos, self.campaign_id))
        return count + int(unsent)

    async def _give_back(self, db: Any, statements: tuple[str, str, str],
                         held: tuple[Any, ...]) -> int:
        """In *db*'s transaction: the ``claimed`` messages *statements* select by *held*
        become ``pending``, their reservation returned, and held ``unknown`` ones are let
        go; the count made ``pending``."""
        cid = self.campaign_id
        count_held, unclaim, unhold = statements
        count, nanos = await _one(db, count_held, (cid, CLAIMED, *held))
        await db.execute(unclaim, (PENDING, cid, CLAIMED, *held))
        await db.execute(unhold, (cid, UNKNOWN, *held))
        if count:
            await db.execute(_RETURN_COMMITTED, (nanos, cid))
        return int(count)


async def _one(db: Any, sql: str, params: tuple[Any, ...]) -> Any:
    """The first row of a query that gives one (an aggregate)."""
    return next(iter(await db.execute_fetchall(sql, params)))
