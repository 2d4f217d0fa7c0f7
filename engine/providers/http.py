"""The HTTP client every adapter uses, and the classification of transport failures.

One ``httpx.AsyncClient`` per provider over the ``httpx-aiohttp`` transport: the default
httpx pool slows down sharply with many requests in flight (encode/httpx #3215), aiohttp's
does not, and the httpx API stays the same. ``bench/throughput.py`` measures both.

httpx-aiohttp maps every ``aiohttp.ClientConnectionError`` to ``httpx.ConnectTimeout``,
including ``ServerDisconnectedError``: a connection dropped *after* the request was written,
whose outcome is unknown. Read as a connect timeout it would be retried blind and could be
billed twice, so :func:`classify_error` looks at the aiohttp exception underneath first.
"""

from __future__ import annotations

import email.utils
import functools
import json
import ssl
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, Self, TypeGuard

import aiohttp
import anyio
import httpx
from httpx_aiohttp import AiohttpTransport

from engine.config import ProviderConfig
from engine.errors import ProviderError, redact
from engine.limits import Slot
from engine.providers.base import Outcome, SendResult

CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 30.0
USER_AGENT: Final = "dispatch/0.1 (+https://github.com/dispatch-sms)"
AMOUNTS_REMEMBERED: Final = 4096


class Limiter(Protocol):
    async def acquire(self) -> Slot: ...


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """Every request to a provider waits for its rate limiter, not only sends: a provider
    counts status reads, log searches and logins against the same limit.

    A request takes its place in the limit only once a pooled connection is free for it
    (at most *concurrency* requests are past the semaphore, the pool's size), so that the
    moment the limiter counts is the moment the request goes out; otherwise part of a burst
    would queue for a connection and reach the provider bunched with the next window's.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, limiter: Limiter,
                 concurrency: int) -> None:
        self._inner = inner
        self._limiter = limiter
        self._slots = anyio.Semaphore(concurrency)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._slots:
            slot = await self._limiter.acquire()
            try:
                response = await self._inner.handle_async_request(request)
                try:
                    body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
                finally:
                    await response.aclose()
            finally:
                slot.done()
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              extensions=response.extensions, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every provider: each made on its own loads the system's
    certificate store again (~60 ms)."""
    return httpx.create_ssl_context()


def provider_transport(concurrency: int, limiter: Limiter | None) -> httpx.AsyncBaseTransport:
    """The aiohttp transport for one provider, rate-limited when *limiter* is given."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    inner = AiohttpTransport(verify=_tls(), limits=limits)
    return RateLimitedTransport(inner, limiter, concurrency) if limiter is not None else inner


def make_client(base_url: str, *, concurrency: int, headers: Mapping[str, str] | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A keep-alive client for one provider, holding at most *concurrency* connections."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        transport=transport if transport is not None else provider_transport(concurrency, None),
        limits=limits,
    )


class HttpAdapter:
    """What every adapter shares: its config, and one keep-alive client per ``async with``.

    Subclasses give their authentication headers in :meth:`headers` and use :attr:`client`.
    """

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = config.name
        self.config = config
        self._base_url = base_url or config.base_url
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def headers(self) -> dict[str, str]:
        return {}

    async def __aenter__(self) -> Self:
        self._client = make_client(self._base_url, concurrency=self.config.concurrency,
                                   transport=self._transport, headers=self.headers())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise ProviderError("used outside 'async with'", provider=self.name)
        return self._client


def classify_error(exc: httpx.HTTPError) -> Outcome:
    """NOT_PROCESSED only where the request cannot have reached the provider."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError | TimeoutError):
        if isinstance(cause, aiohttp.ClientConnectorError):
            return Outcome.NOT_PROCESSED
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return Outcome.NOT_PROCESSED
        return Outcome.UNKNOWN
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Outcome.NOT_PROCESSED
    return Outcome.UNKNOWN


def failure(exc: httpx.HTTPError, *, secrets: tuple[str, ...] = ()) -> SendResult:
    """A :class:`SendResult` for a request that got no HTTP answer."""
    outcome = classify_error(exc)
    kind = type(exc.__cause__ or exc).__name__
    return SendResult(outcome, code=kind, detail=redact(f"{kind}: {exc}", secrets)[:300])


def retry_after_s(headers: Mapping[str, str], *, default: float = 1.0) -> float:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); *default* if absent."""
    value = headers.get("retry-after")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def by_status(response: httpx.Response, *, code: str = "", detail: str = "") -> SendResult:
    """The outcome an HTTP status alone implies, for answers that are not a success."""
    status = response.status_code
    code = code or str(status)
    if status == 429:
        return SendResult(Outcome.THROTTLED, code=code, detail=detail,
                          retry_after_s=retry_after_s(response.headers))
    if status == 503:
        return SendResult(Outcome.NOT_PROCESSED, code=code, detail=detail,
                          retry_after_s=retry_after_s(response.headers, default=0.0) or None)
    if status in (401, 402, 403):
        return SendResult(Outcome.REFUSED_ACCOUNT, code=code, detail=detail)
    if 400 <= status < 500:
        return SendResult(Outcome.REFUSED_MESSAGE, code=code, detail=detail)
    return SendResult(Outcome.UNKNOWN, code=code, detail=detail)


def amount(value: object) -> Decimal | None:
    """A non-negative amount from a JSON number or a numeric string, else ``None``."""
    return _parse_amount(value) if _is_number(value) else None


def charge(value: object) -> Decimal | None:
    """:func:`amount`, remembered, for what a send is charged: a provider charges the same
    few amounts over and over, and the one ``Decimal`` each stands for keeps its hash,
    which the dispatcher's currency conversion looks up per message (a new one's hash costs
    more than parsing it). Not for a balance, which is new every time."""
    return _remembered_amount(value) if _is_number(value) else None


def _is_number(value: object) -> TypeGuard[int | float | str]:
    return not isinstance(value, bool) and isinstance(value, int | float | str)


def _parse_amount(value: int | float | str) -> Decimal | None:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() and result >= 0 else None


_remembered_amount = functools.lru_cache(maxsize=AMOUNTS_REMEMBERED, typed=True)(_parse_amount)


def json_body(response: httpx.Response) -> Any:
    """The parsed body, or ``None`` when it is not JSON (truncated, HTML error page, empty)."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
