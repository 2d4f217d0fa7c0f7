"""The rate shares in memory: :mod:`engine.store.rate_shares`' rule over a dict, for tests
(one event loop: every call is atomic, as a ``BEGIN IMMEDIATE`` transaction is)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.store.rate_shares import RateHolder, RateShare, Rebalanced, ShareLimit, ended, rebalance


class MemoryRateShares:
    """:class:`~engine.store.protocols.RateShares` of one process's memory."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], RateShare] = {}

    async def rebalance(self, me: RateHolder, limits: Mapping[str, ShareLimit], now: float,
                        live: Callable[[RateShare], bool],
                        used: Mapping[str, int] | None = None,
                        wants: Mapping[str, bool] | None = None,
                        demand: Mapping[str, int] | None = None) -> dict[str, Rebalanced]:
        results: dict[str, Rebalanced] = {}
        for provider, limit in limits.items():
            result = rebalance(await self.shares(provider), me, provider, limit, now, live,
                               (used or {}).get(provider), (wants or {}).get(provider, True),
                               (demand or {}).get(provider))
            for holder_id in result.deleted:
                del self.rows[provider, holder_id]
            for row in result.upserts:
                self.rows[provider, row.holder.id] = row
            results[provider] = result
        return results

    async def leave(self, holder_id: str, limits: Mapping[str, ShareLimit], now: float,
                    used: Mapping[str, int] | None = None) -> None:
        for provider, limit in limits.items():
            row = self.rows.pop((provider, holder_id), None)
            if row is not None:
                row = ended(row, now, limit.period_s, (used or {}).get(provider))
                if row.counted:  # else nothing of it can be in a window
                    self.rows[provider, holder_id] = row

    async def shares(self, provider: str) -> list[RateShare]:
        return [row for (p, _), row in sorted(self.rows.items()) if p == provider]
