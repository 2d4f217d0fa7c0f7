"""The sandbox server: one listener on 127.0.0.1, five provider APIs under path prefixes.

Requests go ``/{kind}[base path]/{documented path}`` to the provider emulation after the
provider's faults have had their say; ``/_sandbox/...`` goes to the control endpoints.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Final

import anyio
import sniffio
import structlog
from anyio.abc import TaskGroup

from engine.errors import SandboxError
from engine.sandbox import control
from engine.sandbox.choices import BASE_PATHS
from engine.sandbox.core import Core, ProviderApi, Refusal
from engine.sandbox.faults import Action, FaultState, Violation
from engine.sandbox.ledger import Ledger, LedgerEntry
from engine.sandbox.prices import load_prices
from engine.sandbox.reports import Reporter
from engine.sandbox.settings import KINDS, Faults, SandboxSettings, validate, validate_faults
from engine.sandbox.skynoo import Skynoo
from engine.sandbox.skytelecom import SkyTelecom
from engine.sandbox.smsvoip import SmsVoip
from engine.sandbox.state import WALLET_KINDS, Loaded, SandboxState, redirected
from engine.sandbox.telekom import Telekom
from engine.sandbox.voipex import Voipex
from engine.sandbox.wire import (
    Answer,
    Close,
    HttpProtocol,
    Pending,
    Request,
    Response,
    json_response,
)

log = structlog.get_logger("engine.sandbox")

HOST: Final = "127.0.0.1"
SETTLE_CHECK_S: Final = 0.02

_FACTORIES: Final[dict[str, Callable[[Core], ProviderApi]]] = {
    "skytelecom": SkyTelecom,
    "smsvoip": SmsVoip,
    "voipex": Voipex,
    "telekom": Telekom,
    "skynoo": Skynoo,
}


class Sandbox:
    """A running sandbox: its address, what it billed, and the knobs tests turn."""

    def __init__(self, core: Core, apis: dict[str, ProviderApi]) -> None:
        self._core = core
        self._apis = apis
        self.task_group: TaskGroup | None = None
        self.url = ""

    def base_url(self, kind: str) -> str:
        if kind not in KINDS:
            raise SandboxError(f"sandbox: unknown provider kind {kind!r}")
        return f"{self.url}/{kind}"

    @property
    def ledger(self) -> list[LedgerEntry]:
        return self._core.ledger.entries

    @property
    def violations(self) -> list[Violation]:
        return self._core.violations

    def delivered(self, kind: str, message_id: str) -> bool | None:
        """The sandbox's own decision for a billed message (``None``: no such message)."""
        message = self._core.books[kind].get(message_id)
        return None if message is None else message.delivered

    async def reports_settled(self, timeout_s: float) -> bool:
        """Wait up to *timeout_s* until every delivery report due now has been posted (or
        given up); True if they all were."""
        reporter = self._core.reporter
        for _ in range(max(1, math.ceil(timeout_s / SETTLE_CHECK_S))):
            if reporter.settled():
                return True
            await anyio.sleep(SETTLE_CHECK_S)
        return reporter.settled()

    def set_faults(self, kind: str, faults: Faults) -> None:
        """Replace one provider's faults; its fault counters and window start over."""
        if kind not in self._core.faults:
            raise SandboxError(f"sandbox: provider {kind!r} is not served")
        validate_faults(kind, faults)
        self._core.faults[kind].replace(faults)

    def expire_sessions(self) -> None:
        """Telekom: every session is gone now; the next request with one is refused."""
        telekom = self._apis.get("telekom")
        if isinstance(telekom, Telekom):
            telekom.expire_sessions()

    def suspend(self, kind: str, suspended: bool = True) -> None:
        """Answer every request of ``kind`` with its "account blocked" error (or stop)."""
        if suspended:
            self._core.suspended.add(kind)
        else:
            self._core.suspended.discard(kind)

    def reset(self) -> None:
        """Forget the ledger (in memory; the file keeps its lines) and the violations."""
        self._core.ledger.clear()
        self._core.violations.clear()

    @property
    def wallet(self) -> Decimal | None:
        """Sky Telecom's wallet balance now."""
        api = self._apis.get("skytelecom")
        return api.wallet if isinstance(api, SkyTelecom) else None

    def handle(self, request: Request) -> Answer | Pending:
        path = request.path
        if path.startswith(control.PREFIX):
            return control.handle(self, request)
        kind, _, rest = path[1:].partition("/")
        api = self._apis.get(kind)
        if api is None:
            return json_response({"error": f"no provider at /{kind}"}, 404)
        rest = "/" + rest
        base = BASE_PATHS[kind]
        if base and (rest == base or rest.startswith(base + "/")):
            rest = rest[len(base) :] or "/"
        state = self._core.faults[kind]
        if state.quiet:
            return self._process(api, kind, request, rest)
        return self._faulty(api, kind, state, request, rest)

    def after_commit(self, action: Callable[[], None]) -> None:
        self._core.ledger.after_flush(action)

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self.task_group is None:
            raise SandboxError("sandbox: not running")
        self.task_group.start_soon(work)

    def _faulty(
        self, api: ProviderApi, kind: str, state: FaultState, request: Request, rest: str
    ) -> Answer | Pending:
        now = time.monotonic()
        wait = state.admit(now)
        if wait is not None:
            assert state.faults.rate_limit is not None
            count, period = state.faults.rate_limit
            self._core.violations.append(
                Violation(
                    kind,
                    request.method,
                    request.path,
                    time.time(),
                    count,
                    period,
                    state.in_window(),
                )
            )
            return api.error(
                429,
                "rate_limited",
                "rate limit exceeded",
                (("Retry-After", state.retry_after(wait)),),
            )
        action = state.before()
        if action is Action.RESET:
            return Close.RESET
        if action is Action.THROTTLE:
            return api.error(
                429, "too_many_requests", "slow down", (("Retry-After", state.retry_after()),)
            )
        if action is Action.ERROR:
            return api.error(state.faults.error_status, "service_unavailable", "try again later")
        delay = state.latency_s()
        if delay > 0:
            return self._after(delay, api, kind, state, request, rest)
        return self._accepted(api, kind, state, request, rest)

    async def _after(
        self,
        delay: float,
        api: ProviderApi,
        kind: str,
        state: FaultState,
        request: Request,
        rest: str,
    ) -> Answer:
        await anyio.sleep(delay)
        return self._accepted(api, kind, state, request, rest)

    def _accepted(
        self, api: ProviderApi, kind: str, state: FaultState, request: Request, rest: str
    ) -> Answer:
        response = self._process(api, kind, request, rest)
        if response.billed and state.drop_after_accept():
            return Close.DROP
        return response

    def _process(self, api: ProviderApi, kind: str, request: Request, rest: str) -> Response:
        if kind in self._core.suspended:
            return api.blocked()
        try:
            return api.handle(request, rest)
        except Refusal as refusal:
            return api.error(refusal.status, refusal.code, refusal.message)


@asynccontextmanager
async def running_sandbox(settings: SandboxSettings, *, port: int = 0) -> AsyncIterator[Sandbox]:
    """Start in the current event loop on 127.0.0.1 (port 0 = ephemeral); yields a handle."""
    if sniffio.current_async_library() != "asyncio":
        raise SandboxError("sandbox: needs the asyncio event loop")
    validate(settings)
    ledger = Ledger(settings.ledger_path)
    reporter = Reporter()
    core = Core(settings, load_prices(), ledger, reporter)
    state: SandboxState | None = None
    loaded: Loaded | None = None
    if settings.state_path is not None:
        state = SandboxState(settings.state_path)
        try:
            loaded = state.load({k: a.wallet for k, a in core.accounts.items()
                                 if k in WALLET_KINDS})
        except BaseException:
            await reporter.aclose()
            raise
        core.restore(state, loaded)
        reporter.on_posted = state.reported
    sandbox = Sandbox(core, {kind: _FACTORIES[kind](core) for kind in settings.accounts})
    if loaded is not None:
        _post_unreported(sandbox, loaded)
    connections: set[HttpProtocol] = set()
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            lambda: HttpProtocol(sandbox, connections), HOST, port, start_serving=False
        )
    except OSError as exc:
        await reporter.aclose()
        if state is not None:
            state.close()
        raise SandboxError(f"sandbox: cannot listen on {HOST}:{port}: {exc}") from exc
    sandbox.url = f"http://{HOST}:{server.sockets[0].getsockname()[1]}"
    try:
        ledger.open()
        async with anyio.create_task_group() as task_group:
            sandbox.task_group = task_group
            await reporter.run(task_group)
            if state is not None:
                task_group.start_soon(state.run)
            await server.start_serving()
            log.debug("sandbox.started", url=sandbox.url, providers=sorted(settings.accounts))
            try:
                yield sandbox
            finally:
                task_group.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        server.close()
        for connection in list(connections):
            connection.close()
        await server.wait_closed()
        await reporter.aclose()
        ledger.close()
        if state is not None:
            state.close()
        log.debug("sandbox.stopped", url=sandbox.url, billed=len(ledger.entries))


def _post_unreported(sandbox: Sandbox, loaded: Loaded) -> None:
    """Schedule the reports an earlier sandbox never had acknowledged, to each account's
    callback URL now (at once for a final message); without one they wait for a later
    sandbox that has one."""
    core = sandbox._core
    for message in loaded.unreported:
        account = core.accounts.get(message.kind)
        make = getattr(sandbox._apis.get(message.kind), "report", None)
        if account is not None and account.callback_url is not None and make is not None:
            core.reporter.schedule(redirected(message, account.callback_url), make)
