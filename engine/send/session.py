"""Opening the providers a command needs: adapters inside ``async with``, sandbox first.

Each provider's adapter gets a transport that takes every request through the provider's
rate limiter, so that preflight, lookups and status reads count against the limit too.
With a store's :class:`~engine.store.protocols.RateShares`, every process on that store
holds a share of each provider's limit (:mod:`engine.store.rate_shares`: exact across them),
rebalanced every :data:`REBALANCE_S` by a task of the session; the shares follow demand (a
process whose limiter had no request wait or start within a rebalance gives its share to
those that want one, and one that wants only a few requests a window, as a delivery poll
beside a run, gets that many: :meth:`~engine.limits.SlidingWindowLimiter.demand`). A
process that wants waits for its share (up to a period and a few rebalances while the
others' earlier requests age out of the window). Without one, each limiter holds the whole
limit for this process alone.

A provider whose ``base_url`` is ``sandbox`` talks to the built-in simulator, which is started
here in the current event loop (one for all such providers) and stopped after them. It fails
:data:`~engine.sandbox.choices.BUILTIN_UNDELIVERED_SHARE` of the messages, and with a state
file (beside the campaign database) it answers about messages an earlier command sent.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

import anyio
import structlog

from engine.config import ProviderConfig
from engine.limits import SlidingWindowLimiter, Unlimited
from engine.providers import make_adapter
from engine.providers.base import Provider
from engine.providers.http import provider_transport
from engine.send.worker import Host, is_live, process_started
from engine.store.protocols import RateShares
from engine.store.rate_shares import RateHolder, RateShare, ShareLimit
from engine.store.records import WorkerRecord

if TYPE_CHECKING:
    from engine.sandbox.server import Sandbox

log = structlog.get_logger()

REBALANCE_S: Final = 1.0
"""How often a process sharing rate limits rebalances its shares (one transaction)."""
STARVED_REBALANCE_S: Final = 0.25
"""How often it rebalances while one of its limiters holds no share and a request waits
for one (it joined, or wants again)."""


@dataclass
class Session:
    adapters: dict[str, Provider] = field(default_factory=dict)
    limiters: dict[str, SlidingWindowLimiter | Unlimited] = field(default_factory=dict)
    sandbox_url: str | None = None
    sandbox: Sandbox | None = None
    """The built-in sandbox, when a provider uses it."""


@asynccontextmanager
async def open_providers(providers: Sequence[ProviderConfig], *,
                         callbacks: Mapping[str, str] | None = None,
                         sandbox_state: Path | None = None,
                         rate_shares: RateShares | None = None) -> AsyncIterator[Session]:
    """Adapters for *providers* by name, ready to use; the sandbox running if any needs it.

    *callbacks* (provider name -> delivery report URL) go to the built-in sandbox's accounts
    and, where the provider's API is on this machine, to the SMS & Voice Platform adapter
    as its per-message ``callback_url``. *sandbox_state* is the built-in sandbox's state file
    (:func:`engine.sandbox.state.state_path_for` the database); ``None``: in memory.
    With *rate_shares*, each rate-limited provider's limit is shared with the other
    processes on that store (the adapters are ready once this process holds its shares,
    maybe 0 of one: its requests then wait until a share comes).
    """
    session = Session()
    callbacks = callbacks or {}
    async with AsyncExitStack() as stack:
        if any(p.uses_sandbox for p in providers):
            from engine.sandbox import default_settings, running_sandbox

            sandbox = await stack.enter_async_context(running_sandbox(default_settings(
                accounts=_sandbox_accounts(providers, callbacks), state_path=sandbox_state)))
            session.sandbox_url = sandbox.url
            session.sandbox = sandbox
        for p in providers:
            base_url = f"{session.sandbox_url}/{p.kind}" if p.uses_sandbox else p.base_url
            limiter = session.limiters[p.name] = (
                SlidingWindowLimiter(p.rate_limit) if p.rate_limit else Unlimited())
            transport = provider_transport(p.concurrency, limiter)
            callback = callbacks.get(p.name)
            # The built-in sandbox's account holds the callback: a body naming this run's
            # receiver would differ from a crashed run's, and its same-key resend be refused.
            if (p.kind == "smsvoip" and callback and not p.uses_sandbox
                    and _on_this_machine(base_url)):
                from engine.providers.smsvoip import SmsVoip

                adapter = cast(Provider, SmsVoip(p, base_url=base_url, transport=transport,
                                                 callback_url=callback))
            else:
                adapter = make_adapter(p, base_url=base_url, transport=transport)
            session.adapters[p.name] = await stack.enter_async_context(adapter)
        limited = {name: limiter for name, limiter in session.limiters.items()
                   if isinstance(limiter, SlidingWindowLimiter)}
        if rate_shares is not None and limited:
            await stack.enter_async_context(_sharing(rate_shares, limited))
        yield session


@asynccontextmanager
async def _sharing(shares: RateShares,
                   limiters: Mapping[str, SlidingWindowLimiter]) -> AsyncIterator[None]:
    """Hold this process's shares of the limits of *limiters* (by provider, each at its
    whole limit) while the block runs, each share in its limiter, rebalanced every
    :data:`REBALANCE_S` (every :data:`STARVED_REBALANCE_S` while a limiter is starved);
    they end on the way out, however it ends (a killed process's are ended by the others'
    lease rule)."""
    limits = {name: ShareLimit(lim.count, lim.period_s) for name, lim in limiters.items()}
    pid = os.getpid()
    here = Host.here()
    me = RateHolder(uuid.uuid4().hex, here.name, here.boot_id, pid, process_started(pid),
                    time.time())

    def used() -> dict[str, int]:
        return {name: limiter.in_window() for name, limiter in limiters.items()}

    async def rebalance() -> None:
        live = share_lease_rule(here)
        demand = {name: limiter.demand(REBALANCE_S) for name, limiter in limiters.items()}
        wants = {name: amount > 0 for name, amount in demand.items()}
        counts = {name: limiter.count for name, limiter in limiters.items()}
        for name, limiter in limiters.items():
            if not wants[name]:  # held at 0 until the result: its used is then exact
                limiter.resize(0)
        try:
            results = await shares.rebalance(me, limits, time.time(), live, used(), wants,
                                             demand)
        except BaseException:
            for name, limiter in limiters.items():
                limiter.resize(counts[name])
            raise
        for name, result in results.items():
            limiter = limiters[name]
            limiter.resize(result.mine.share)
            if result.mine.share != counts[name]:
                log.debug("rates.share", provider=name, count=result.mine.share,
                          holders=result.live, wanting=result.wanting, demand=demand[name])

    async def keep_rebalancing() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(STARVED_REBALANCE_S)
            if time.monotonic() - last >= REBALANCE_S or any(
                    limiter.starved() for limiter in limiters.values()):
                await rebalance()
                last = time.monotonic()

    await rebalance()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_rebalancing)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await shares.leave(me.id, limits, time.time(), used())


def share_lease_rule(here: Host) -> Callable[[RateShare], bool]:
    """:func:`engine.send.worker.is_live` for the holder of a share, now: its last
    rebalance is its heartbeat."""
    now = time.time()

    def live(row: RateShare) -> bool:
        h = row.holder
        return is_live(WorkerRecord(h.id, "", h.host, h.boot_id, h.pid, h.pid_started,
                                    h.joined_at, row.seen_at), here=here, now=now)

    return live


def _sandbox_accounts(providers: Sequence[ProviderConfig],
                      callbacks: Mapping[str, str]) -> dict[str, Any]:
    """Sandbox accounts failing the built-in share of messages, whose delivery reports go to
    *callbacks* (by kind)."""
    from engine.sandbox import DEFAULT_CREDENTIALS, Faults
    from engine.sandbox.choices import BUILTIN_UNDELIVERED_SHARE

    return {p.kind: replace(DEFAULT_CREDENTIALS[p.kind], callback_url=callbacks.get(p.name),
                            faults=Faults(undelivered_share=BUILTIN_UNDELIVERED_SHARE))
            for p in providers if p.uses_sandbox}


def _on_this_machine(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")
