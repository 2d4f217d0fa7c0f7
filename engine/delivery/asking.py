"""`dispatch dlr`: one round of asking the providers, with the built-in sandbox's backlog.

A provider on the built-in sandbox (``base_url = "sandbox"``) is served by a sandbox started
in this process from the state file beside the database. What it owes by webhook (SMS &
Voice Platform has nothing to poll) it posts at once to a receiver this command opens on an
ephemeral 127.0.0.1 port, and the round starts once those are stored (at most
:data:`SANDBOX_BACKLOG_WAIT_S`); then every pollable provider is asked as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Final

import structlog

from engine.config import ProviderConfig
from engine.delivery.polling import RoundResult, poll_round
from engine.delivery.reports import endpoints
from engine.delivery.webhooks import describe, running_receiver
from engine.send.session import open_providers
from engine.store.protocols import DeliveryLedger, RateShares

log = structlog.get_logger()

SANDBOX_BACKLOG_WAIT_S: Final = 10.0


async def ask_once(deliveries: DeliveryLedger, campaign_id: int,
                   providers: Sequence[ProviderConfig], *,
                   sandbox_state: Path | None,
                   rate_shares: RateShares | None = None) -> RoundResult:
    """One poll round over *providers*, after the built-in sandbox (state in
    *sandbox_state*) has posted the reports it still owed; with *rate_shares*, within this
    process's shares of the providers' limits."""
    sandboxed = [p for p in providers if p.uses_sandbox]
    async with AsyncExitStack() as stack:
        callbacks: dict[str, str] = {}
        found = endpoints(sandboxed, await deliveries.webhook_key()) if sandboxed else []
        if found:
            receiver = await stack.enter_async_context(running_receiver(deliveries, found))
            callbacks = describe(receiver)
        session = await stack.enter_async_context(open_providers(
            providers, callbacks=callbacks, sandbox_state=sandbox_state if sandboxed else None,
            rate_shares=rate_shares))
        if session.sandbox is not None and found:
            if not await session.sandbox.reports_settled(SANDBOX_BACKLOG_WAIT_S):
                log.warning("delivery.sandbox_backlog_left", waited_s=SANDBOX_BACKLOG_WAIT_S)
        return await poll_round(deliveries, campaign_id, providers, session.adapters)
