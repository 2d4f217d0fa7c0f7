"""Where rate tables come from: provider endpoints, cached in the store, or static CSV files.

Sky Telecom (``available-routes?expand=gamma``) and the SMS & Voice Platform (``/rates``)
publish prices; the others do not, and use the CSV named by ``rates`` in config. A fetched
table is cached in the store with the time it was fetched and used while younger than
``[routing] rate_ttl``. When a provider cannot be reached, its stale cache is used with a
warning, then its static CSV; a provider with none of the three is left out of routing.

A live list is read with every entry accounted for (:class:`~engine.providers.readings.
RateReading`): one that yields nothing usable, or has an unusable entry, is a failed rates
preflight (:attr:`RateSource.problem`), which ``dispatch check``, ``plan`` and ``run`` print
beside the provider's name, not only in a log line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import anyio
import phonenumbers
import structlog

from engine.config import Config, ProviderConfig
from engine.errors import ProviderError
from engine.providers.readings import PublishesRates, RateReading
from engine.routing import RateRow, RouteTable, load_rate_csv
from engine.send.session import Session, open_providers
from engine.store.protocols import RateCache, RateShares

log = structlog.get_logger()

LIVE_RATE_KINDS: Final = frozenset({"skytelecom", "smsvoip"})
FETCH_TIMEOUT_S: Final = 30.0

Origin = Literal["live", "cache", "stale-cache", "static", "none"]


@dataclass(frozen=True, slots=True)
class RateSource:
    """The table a provider is routed by, where it came from, and what went wrong.

    *problem* is a failed rates preflight (the live list could not be had, yielded nothing
    usable, or had unusable entries), said as loudly as a failed login; *warning* says which
    fallback is used instead, if any.
    """

    provider: str
    origin: Origin
    rows: tuple[RateRow, ...]
    fetched_at: float | None = None
    warning: str = ""
    problem: str = ""
    file: str = ""
    """The static CSV's path, where the origin is ``static``."""

    def to_json(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        return {"origin": self.origin, "rates": len(self.rows),
                "fetched_at": _iso(self.fetched_at) if self.fetched_at is not None else None,
                "age_s": round(now - self.fetched_at) if self.fetched_at is not None else None,
                "file": self.file or None, "problem": self.problem or None,
                "warning": self.warning or None}

    def describe(self, now: float | None = None) -> str:
        """``live, 17 rates``; ``cache (age 2h 5m), 17 rates``; ``static file x.csv, 17 rates``;
        ``none``."""
        now = time.time() if now is None else now
        where = {"live": "live", "none": "none", "static": f"static file {self.file}"}.get(
            self.origin, f"{self.origin} (age {_age(now - (self.fetched_at or now))})")
        return where if self.origin == "none" else f"{where}, {len(self.rows)} rates"


async def rate_sources(config: Config, providers: Sequence[ProviderConfig], store: RateCache, *,
                       refresh: bool = False, now: float | None = None,
                       session: Session | None = None,
                       rate_shares: RateShares | None = None) -> list[RateSource]:
    """The rate table each provider is routed by, fetching live tables that are stale
    (through *session*'s adapters when given, else through adapters opened for it, within
    this process's shares of the limits with *rate_shares*)."""
    now = time.time() if now is None else now
    cached = {p.name: await store.cached_rates(p.name) for p in providers
              if p.kind in LIVE_RATE_KINDS}
    stale = [p for p in providers if p.kind in LIVE_RATE_KINDS and (
        refresh or cached[p.name] is None
        or now - cached[p.name][0] > config.routing.rate_ttl_s)]  # type: ignore[index]
    fetched: dict[str, RateReading | str] = {}
    if stale:
        live = await fetch_live(stale, session, rate_shares)
        fetched = {name: convertible(reading, config) if isinstance(reading, RateReading)
                   else reading for name, reading in live.items()}
        for name, reading in fetched.items():
            if isinstance(reading, RateReading) and reading.rows:
                await store.save_rates(name, now, reading.rows)
    sources = []
    for p in providers:
        result = fetched.get(p.name)
        problem = result if isinstance(result, str) else (
            result.problem if result is not None else "")
        if isinstance(result, RateReading) and result.rows:
            sources.append(RateSource(p.name, "live", result.rows, now, problem=problem))
            continue
        sources.append(_fallback(p, cached.get(p.name), problem))
    for source in sources:
        if source.problem:
            log.warning("rates.preflight_failed", provider=source.provider,
                        problem=source.problem, origin=source.origin)
        if source.warning:
            log.warning("rates.fallback", provider=source.provider, origin=source.origin,
                        reason=source.warning)
    return sources


def convertible(reading: RateReading, config: Config) -> RateReading:
    """*reading* less the rows whose currency cannot be priced in the routing currency
    (no ``[routing.fx]`` rate), each named as an unusable entry."""
    routing = config.routing
    bad = [r for r in reading.rows if r.currency != routing.currency
           and r.currency not in routing.fx]
    if not bad:
        return reading
    return replace(reading, rows=tuple(r for r in reading.rows if r not in bad),
                   unusable=reading.unusable + tuple(
                       f"+{r.prefix} in {r.currency}, which [routing.fx] has no rate for"
                       for r in bad))


def _fallback(p: ProviderConfig, cached: tuple[float, list[RateRow]] | None,
              problem: str) -> RateSource:
    if cached is not None:
        return RateSource(p.name, "stale-cache" if problem else "cache", tuple(cached[1]),
                          cached[0], f"using rates fetched at {_when(cached[0])}: {problem}"
                          if problem else "", problem=problem)
    if p.rates is not None:
        return RateSource(p.name, "static", tuple(load_rate_csv(p.rates, p.name)),
                          warning=f"using {p.rates.name}: {problem}" if problem else "",
                          problem=problem, file=str(p.rates))
    return RateSource(p.name, "none", (), warning=f"no rate table, left out of routing: "
                      f"{problem or 'set rates in config'}", problem=problem)


async def fetch_live(providers: Sequence[ProviderConfig], session: Session | None = None,
                     rate_shares: RateShares | None = None) -> dict[str, RateReading | str]:
    """Each provider's live price list as read, or why it could not be had; providers
    that publish none are left out."""
    if session is None:
        async with open_providers(providers, rate_shares=rate_shares) as opened:
            return await fetch_live(providers, opened)
    results: dict[str, RateReading | str] = {}

    async def one(name: str, adapter: PublishesRates) -> None:
        try:
            with anyio.fail_after(FETCH_TIMEOUT_S):
                results[name] = await adapter.read_rates()
        except ProviderError as exc:
            results[name] = exc.problem
        except TimeoutError:
            results[name] = f"no answer within {FETCH_TIMEOUT_S:g} s"

    async with anyio.create_task_group() as tg:
        for p in providers:
            adapter = session.adapters[p.name]
            if isinstance(adapter, PublishesRates):
                tg.start_soon(one, p.name, adapter)
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


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def _age(seconds: float) -> str:
    """``45s``, ``12m``, ``2h 5m``, ``3d 4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
