"""The rate shares in SQLite: :mod:`engine.store.rate_shares`' rule over the ``rate_shares``
table, one ``BEGIN IMMEDIATE`` transaction a rebalance (every provider of the process at
once), so that two processes' rebalances never interleave."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from engine.store.rate_shares import RateHolder, RateShare, Rebalanced, ShareLimit, ended, rebalance
from engine.store.sqlite.sql import query
from engine.store.sqlite.store import Store

_SHARES_OF: Final = query("rate_shares_of")
_UPSERT: Final = query("upsert_rate_share")
_DELETE: Final = query("delete_rate_share")


def _share(row: Any) -> RateShare:
    (provider, holder, host, boot_id, pid, pid_started, joined_at, share, counted,
     counted_until, seen_at, was_ended, wants, demand) = row
    return RateShare(provider, RateHolder(holder, host, boot_id, pid, pid_started, joined_at),
                     share, counted, counted_until, seen_at, bool(was_ended), bool(wants),
                     demand)


def _params(row: RateShare) -> tuple[Any, ...]:
    h = row.holder
    return (row.provider, h.id, h.host, h.boot_id, h.pid, h.pid_started, h.joined_at,
            row.share, row.counted, row.counted_until, row.seen_at, int(row.ended),
            int(row.wants), row.demand)


class SqliteRateShares:
    """:class:`~engine.store.protocols.RateShares` of the store at ``store.path``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def rebalance(self, me: RateHolder, limits: Mapping[str, ShareLimit], now: float,
                        live: Callable[[RateShare], bool],
                        used: Mapping[str, int] | None = None,
                        wants: Mapping[str, bool] | None = None,
                        demand: Mapping[str, int] | None = None) -> dict[str, Rebalanced]:
        results: dict[str, Rebalanced] = {}
        async with self._store.transaction() as db:
            for provider, limit in limits.items():
                rows = [_share(r) for r in await db.execute_fetchall(_SHARES_OF, (provider,))]
                result = rebalance(rows, me, provider, limit, now, live,
                                   (used or {}).get(provider), (wants or {}).get(provider, True),
                                   (demand or {}).get(provider))
                await db.executemany(_DELETE, [(provider, h) for h in result.deleted])
                await db.executemany(_UPSERT, [_params(r) for r in result.upserts])
                results[provider] = result
        return results

    async def leave(self, holder_id: str, limits: Mapping[str, ShareLimit], now: float,
                    used: Mapping[str, int] | None = None) -> None:
        async with self._store.transaction() as db:
            for provider, limit in limits.items():
                rows = [ended(r, now, limit.period_s, (used or {}).get(provider))
                        for r in map(_share, await db.execute_fetchall(_SHARES_OF, (provider,)))
                        if r.holder.id == holder_id]
                # One that counts nothing goes at once: none of its requests is in a window.
                await db.executemany(_UPSERT, [_params(r) for r in rows if r.counted])
                await db.executemany(_DELETE, [(provider, r.holder.id) for r in rows
                                               if not r.counted])

    async def shares(self, provider: str) -> list[RateShare]:
        return [_share(r) for r in await self._store.db.execute_fetchall(
            _SHARES_OF, (provider,))]
