"""Opening the providers a command needs: adapters inside ``async with``, sandbox first.

Each provider's adapter gets a transport that takes every request through the provider's
rate limiter, so that preflight, lookups and status reads count against the limit too.

A provider whose ``base_url`` is ``sandbox`` talks to the built-in simulator, which is started
here in the current event loop (one for all such providers) and stopped after them. It fails
:data:`~engine.sandbox.choices.BUILTIN_UNDELIVERED_SHARE` of the messages, and with a state
file (beside the campaign database) it answers about messages an earlier command sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from engine.config import ProviderConfig
from engine.limits import SlidingWindowLimiter, Unlimited
from engine.providers import make_adapter
from engine.providers.base import Provider
from engine.providers.http import provider_transport

if TYPE_CHECKING:
    from engine.sandbox.server import Sandbox


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
                         sandbox_state: Path | None = None) -> AsyncIterator[Session]:
    """Adapters for *providers* by name, ready to use; the sandbox running if any needs it.

    *callbacks* (provider name -> delivery report URL) go to the built-in sandbox's accounts
    and, where the provider's API is on this machine, to the SMS & Voice Platform adapter
    as its per-message ``callback_url``. *sandbox_state* is the built-in sandbox's state file
    (:func:`engine.sandbox.state.state_path_for` the database); ``None``: in memory.
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
        yield session


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
