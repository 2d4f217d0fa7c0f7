"""Where rate tables come from: provider endpoints, cached in the store, or static CSV files.

Sky Telecom (``available-routes?expand=gamma``) and the SMS & Voice Platform (``/rates``)
publish prices; the others do not, and use the CSV named by ``rates`` in config. A fetched
table is cached in the store with the time it was fetched and used while younger than
``[routing] rate_ttl``. When a provider cannot be reached, its stale cache is used with a
warning, then its static CSV; a provider with none of the three is left out of routing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import anyio
import phonenumbers
import structlog

from engine.config import Config, ProviderConfig
from engine.errors import ProviderError
from engine.routing import RateRow, RouteTable, load_rate_csv
from engine.send.session import Session, open_providers
from engine.store.sqlite.store import Store

log = structlog.get_logger()

LIVE_RATE_KINDS: Final = frozenset({"skytelecom", "smsvoip"})
FETCH_TIMEOUT_S: Final = 30.0

Origin = Literal["live", "cache", "stale-cache", "static", "none"]


@dataclass(frozen=True, slots=True)
class RateSource:
    provider: str
    origin: Origin
    rows: tuple[RateRow, ...]
    fetched_at: float | None = None
    warning: str = ""


async def rate_sources(config: Config, providers: Sequence[ProviderConfig], store: Store, *,
                       refresh: bool = False, now: float | None = None,
                       session: Session | None = None) -> list[RateSource]:
    """The rate table each provider is routed by, fetching live tables that are stale
    (through *session*'s adapters when given, else through adapters opened for it)."""
    now = time.time() if now is None else now
    cached = {p.name: await store.cached_rates(p.name) for p in providers
              if p.kind in LIVE_RATE_KINDS}
    stale = [p for p in providers if p.kind in LIVE_RATE_KINDS and (
        refresh or cached[p.name] is None
        or now - cached[p.name][0] > config.routing.rate_ttl_s)]  # type: ignore[index]
    fetched: dict[str, list[RateRow] | str] = {}
    if stale:
        fetched = await _fetch(stale, session)
        for name, rows in fetched.items():
            if isinstance(rows, list) and rows:
                await store.save_rates(name, now, rows)
    sources = []
    for p in providers:
        result = fetched.get(p.name)
        if isinstance(result, list) and result:
            sources.append(RateSource(p.name, "live", tuple(result), now))
            continue
        problem = result if isinstance(result, str) else (
            "the provider listed no rates" if result is not None else "")
        sources.append(_fallback(p, cached.get(p.name), problem))
    for source in sources:
        if source.warning:
            log.warning("rates.fallback", provider=source.provider, origin=source.origin,
                        reason=source.warning)
    return sources


def _fallback(p: ProviderConfig, cached: tuple[float, list[RateRow]] | None,
              problem: str) -> RateSource:
    if cached is not None:
        return RateSource(p.name, "stale-cache" if problem else "cache", tuple(cached[1]),
                          cached[0], f"using rates fetched at {_when(cached[0])}: {problem}"
                          if problem else "")
    if p.rates is not None:
        return RateSource(p.name, "static", tuple(load_rate_csv(p.rates, p.name)),
                          warning=f"using {p.rates.name}: {problem}" if problem else "")
    return RateSource(p.name, "none", (), warning=f"no rate table, left out of routing: "
                      f"{problem or 'set rates in config'}")


async def _fetch(providers: Sequence[ProviderConfig], session: Session | None
                 ) -> dict[str, list[RateRow] | str]:
    """Each provider's live table, or why it could not be had."""
    if session is None:
        async with open_providers(providers) as opened:
            return await _fetch(providers, opened)
    results: dict[str, list[RateRow] | str] = {}

    async def one(name: str) -> None:
        try:
            with anyio.fail_after(FETCH_TIMEOUT_S):
                results[name] = await session.adapters[name].fetch_rates()
        except ProviderError as exc:
            results[name] = exc.problem
        except TimeoutError:
            results[name] = f"no answer within {FETCH_TIMEOUT_S:g} s"

    async with anyio.create_task_group() as tg:
        for p in providers:
            tg.start_soon(one, p.name)
    return results


def route_table_from(sources: Sequence[RateSource], providers: Sequence[ProviderConfig],
                     config: Config) -> RouteTable:
    return RouteTable([row for s in sources for row in s.rows], [p.name for p in providers],
                      config.routing)


def cheapest_by_destination(table: RouteTable, *, country: str | None = None
                            ) -> list[dict[str, object]]:
    """Per listed prefix: its country, the cheapest route and the runner-up (prices in the
    routing currency, per segment)."""
    out: list[dict[str, object]] = []
    for prefix, plan in sorted(table.plans.items(), key=lambda kv: (country_of(kv[0]), kv[0])):
        where = country_of(prefix)
        if country and where != country.upper():
            continue
        choices = [{"provider": r.provider, "route": r.route, "price": str(r.price_home),
                    "price_original": str(r.price), "currency_original": r.currency}
                   for r in plan.routes[:2]]
        out.append({"country": where, "prefix": prefix,
                    "cheapest": choices[0] if choices else None,
                    "runner_up": choices[1] if len(choices) > 1 else None})
    return out


def country_of(prefix: str) -> str:
    """The main country of the calling code *prefix* starts with (``4219`` -> ``SK``)."""
    for size in (1, 2, 3):
        code = int(prefix[:size]) if prefix[:size].isdigit() else 0
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return phonenumbers.region_code_for_country_code(code)
    return "??"


def _when(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch_s))
