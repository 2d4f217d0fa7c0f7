"""Preflight: ask every provider, before anything is sent, whether it will take a campaign.

A provider that fails is left out of routing with a line saying why, rather than failing
the campaign on its first message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import anyio
import structlog

from engine.config import ProviderConfig
from engine.providers.base import Readiness
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
