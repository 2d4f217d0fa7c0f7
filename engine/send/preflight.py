"""Preflight: ask every provider, before anything is sent, whether it will take a campaign.

A provider that fails is left out of routing with a line saying why, rather than failing
the campaign on its first message. A provider's rates are checked too (:func:`check_rates`):
a live price list that cannot be had, yields nothing usable or has an unusable entry fails
its rates check, named with the reason; routing then falls back to the cache or the static
table (see :mod:`engine.rates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import anyio
import structlog

from engine.config import Config, ProviderConfig
from engine.providers.base import Readiness
from engine.providers.readings import RateReading
from engine.rates import convertible, fetch_live
from engine.send.session import Session, open_providers

log = structlog.get_logger()

CHECK_TIMEOUT_S: Final = 20.0


async def preflight(providers: Sequence[ProviderConfig], session: Session | None = None
                    ) -> list[Readiness]:
    """Each provider's readiness, in config order; checks run concurrently."""
    if session is None:
        async with open_providers(providers) as opened:
            return await preflight(providers, opened)
    results: dict[str, Readiness] = {}

    async def one(name: str) -> None:
        try:
            with anyio.fail_after(CHECK_TIMEOUT_S):
                results[name] = await session.adapters[name].check()
        except TimeoutError:
            results[name] = Readiness(name, False, (
                f"no answer within {CHECK_TIMEOUT_S:g} s",))

    async with anyio.create_task_group() as tg:
        for p in providers:
            tg.start_soon(one, p.name)
    ordered = [results[p.name] for p in providers]
    for r in ordered:
        if not r.ok:
            log.warning("preflight.failed", provider=r.provider, problems=list(r.problems))
    return ordered


@dataclass(frozen=True, slots=True)
class RatesCheck:
    """Where a provider's prices come from now, and whether that source is sound."""

    provider: str
    origin: Literal["live", "static", "none"]
    ok: bool
    detail: str
    """``live, 17 rates``, ``static file rates/x.csv``, or why the check failed."""

    @property
    def line(self) -> str:
        """``smsvoip: rates: 0 usable of 41 entries (...)``, ``smsvoip: rates: live, 17
        rates``."""
        return f"{self.provider}: rates: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "origin": self.origin, "detail": self.detail}


async def check_rates(config: Config, providers: Sequence[ProviderConfig],
                      session: Session | None = None) -> list[RatesCheck]:
    """Each provider's rates, in config order: a live price list read now, else the static
    table named in config, else none (which leaves the provider out of routing: failed)."""
    live = await fetch_live(providers, session)
    checks = []
    for p in providers:
        found = live.get(p.name)
        if isinstance(found, str):
            checks.append(RatesCheck(p.name, "live", False, found))
        elif isinstance(found, RateReading):
            reading = convertible(found, config)
            checks.append(RatesCheck(p.name, "live", not reading.problem,
                                     reading.problem or f"live, {len(reading.rows)} rates"))
        elif p.rates is not None:
            checks.append(RatesCheck(p.name, "static", True, f"static file {p.rates}"))
        else:
            checks.append(RatesCheck(p.name, "none", False,
                                     "no rate table: set rates in config"))
    for check in checks:
        if not check.ok:
            log.warning("rates.preflight_failed", provider=check.provider, problem=check.detail)
    return checks


async def preflight_all(config: Config, providers: Sequence[ProviderConfig]
                        ) -> tuple[list[Readiness], list[RatesCheck]]:
    """:func:`preflight` and :func:`check_rates` on one session."""
    async with open_providers(providers) as session:
        return (await preflight(providers, session),
                await check_rates(config, providers, session))
