"""The HTTP layer every adapter uses, and the classification of transport failures.

Each adapter talks to its provider through one :class:`Wire`: the provider's URLs and static
headers made once, then per request one body encoded, one call to the transport, the answer
read once into an ``httpx.Response``, without ``AsyncClient``'s per-request machinery (URL
parsing and merging, cookies, auth and redirect plumbing, a request and a second response
object).

Underneath, one :class:`AiohttpPool` per provider: the default httpx pool slows down sharply
with many requests in flight (encode/httpx #3215), aiohttp's does not. It is an
``httpx_aiohttp.AiohttpTransport`` which a :class:`Wire` calls through
:meth:`AiohttpPool.exchange` (no ``httpx.Request``); any other ``httpx.AsyncBaseTransport``
(``httpx.MockTransport`` in unit tests, a recording wrapper) gets an ``httpx.Request`` through
``handle_async_request``, as from a client.

httpx-aiohttp maps every ``aiohttp.ClientConnectionError`` to ``httpx.ConnectTimeout``,
including ``ServerDisconnectedError``: a connection dropped *after* the request was written,
whose outcome is unknown. Read as a connect timeout it would be retried blind and could be
billed twice, so :func:`classify_error` looks at the aiohttp exception underneath first. The
exchange raises exactly what the transport raised (the same mapping, the same cause).
"""

from __future__ import annotations

import email.utils
import functools
import json
import json.encoder
import ssl
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, Self, TypeGuard
from urllib.parse import urlencode

import aiohttp
import anyio
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict
from yarl import URL

from engine.config import ProviderConfig
from engine.errors import ProviderError, redact
from engine.limits import Slot
from engine.providers.base import Outcome, SendResult

CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 30.0
POOL_TIMEOUT_S: Final = READ_TIMEOUT_S
"""How long a request may wait for a pooled connection (httpx's pool timeout)."""
USER_AGENT: Final = "dispatch/0.1 (+https://github.com/dispatch-sms)"
ACCEPT_ENCODING: Final = "gzip, deflate"
"""What every httpx install decodes; the answer is decoded by ``httpx.Response``."""
AMOUNTS_REMEMBERED: Final = 4096

TIMEOUTS: Final = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S,
                                pool=POOL_TIMEOUT_S).as_dict()
"""The ``timeout`` extension of a request built for a transport other than our own."""
AIOHTTP_TIMEOUT: Final = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S,
                                               sock_read=READ_TIMEOUT_S,
                                               connect=POOL_TIMEOUT_S)
"""The same, as httpx-aiohttp turns :data:`TIMEOUTS` into aiohttp's."""
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_MAKE_ENCODER: Final[Any] = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Final[Any] = _MAKE_ENCODER and _MAKE_ENCODER(
    None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
"""What ``_ENCODER.encode`` makes anew for every object, made once (no check for circular
references: a body is built by an adapter); ``None`` where ``json`` has no C speedups."""
_DECODE: Final = json.JSONDecoder().raw_decode


def _encode_json(body: Any) -> str:
    """httpx's JSON body, as ``json.dumps`` with these options writes it (which makes its C
    encoder anew for every call)."""
    if _C_ENCODE is None or isinstance(body, str):
        return _ENCODER.encode(body)
    return "".join(_C_ENCODE(body, 0))


class Limiter(Protocol):
    async def acquire(self) -> Slot: ...


class Exchange(Protocol):
    """One request on the fast path: the answer's body already read into the response."""

    async def __call__(self, method: str, url: URL, headers: CIMultiDict[str],
                       body: bytes | None) -> httpx.Response: ...


class AiohttpPool(AiohttpTransport):
    """httpx-aiohttp's transport (kept for any ``httpx.Request``), plus :meth:`exchange`,
    which a :class:`Wire` calls without building one."""

    async def exchange(self, method: str, url: URL, headers: CIMultiDict[str],
                       body: bytes | None) -> httpx.Response:
        """Send one request and read its answer, raising what ``handle_async_request``
        and reading its stream would (``httpx`` errors caused by aiohttp's)."""
        session = self.client
        if not isinstance(session, aiohttp.ClientSession):
            session = self.client = self.get_client()
        try:
            async with session.request(method, url, headers=headers, data=body,
                                       allow_redirects=False, auto_decompress=False,
                                       timeout=AIOHTTP_TIMEOUT) as answer:
                content = await answer.read()
        except Exception:
            with map_aiohttp_exceptions():
                raise
            raise
        return read_response(answer.status, answer.raw_headers, content,
                             answer.headers.get("Content-Encoding"))


_READ: Final = httpx.ByteStream(b"")
_UNPARSED: Final[Any] = object()


class Answer(httpx.Response):
    """An ``httpx.Response`` read whole, as ``Response.read`` leaves one, made without
    httpx's constructor: its headers become ``httpx.Headers`` when first asked for (an
    accepted send never asks), and :func:`json_body` parses its body once however often it
    is asked (Telekom asks twice). ``tests/test_wire.py`` checks that it reads the same."""

    def __init__(self, status: int, headers: Sequence[tuple[bytes, bytes]],
                 content: bytes) -> None:
        # What httpx.Response.__init__ and .read() set, except headers (see below).
        self.status_code = status
        self._raw_headers = headers
        self._request = None
        self.next_request = None
        self.extensions = {}
        self.history = []
        self.is_closed = self.is_stream_consumed = True
        self.default_encoding = "utf-8"
        self.stream = _READ
        self._num_bytes_downloaded = 0
        self._content = content
        self.parsed: Any = _UNPARSED

    @property
    def headers(self) -> httpx.Headers:
        made: httpx.Headers | None = self.__dict__.get("_headers")
        if made is None:
            made = self.__dict__["_headers"] = httpx.Headers(self._raw_headers)
        return made

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        self.__dict__["_headers"] = value


def read_response(status: int, headers: Sequence[tuple[bytes, bytes]], content: bytes,
                  encoding: str | None) -> httpx.Response:
    """An :class:`Answer` of *content* as it came (no ``Content-Encoding`` to undo), without
    streaming it through httpx's decoders (a third of the cost of a response); a compressed
    body is decoded by httpx as before."""
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        return httpx.Response(status, headers=headers, content=content)
    return Answer(status, headers, content)


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """Every request to a provider waits for its rate limiter, not only sends: a provider
    counts status reads, log searches and logins against the same limit.

    A request takes its place in the limit only once a pooled connection is free for it
    (at most *concurrency* requests are past the semaphore, the pool's size), so that the
    moment the limiter counts is the moment the request goes out; otherwise part of a burst
    would queue for a connection and reach the provider bunched with the next window's.
    The place is given back when the answer has been read (or the request failed).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, limiter: Limiter,
                 concurrency: int) -> None:
        self.inner = inner
        self._limiter = limiter
        self._slots = anyio.Semaphore(concurrency, fast_acquire=True)
        # fast_acquire: where a slot is taken with acquire() (handle_async_request, or
        # exchange after waiting for one), a free one is taken without yielding to the loop
        # first (the request yields at once anyway); the extra round trip showed in
        # bench/throughput.py's bare CPU.
        self._inner_exchange = exchange_of(inner)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._slots:
            slot = await self._limiter.acquire()
            try:
                response = await self.inner.handle_async_request(request)
                await response.aread()
            finally:
                slot.done()
        return response

    async def exchange(self, method: str, url: URL, headers: CIMultiDict[str],
                       body: bytes | None) -> httpx.Response:
        """:meth:`AiohttpPool.exchange` of the inner pool, through the limit."""
        inner = self._inner_exchange
        if inner is None:
            raise TypeError("the inner transport has no exchange")
        slots = self._slots
        try:
            # A free slot without anyio's cancellation checkpoint, which walks every
            # enclosing cancel scope (timed alone under three scopes: 2.0 µs a request
            # against 0.5); the limiter's own lock checks wherever a rate limit is set.
            slots.acquire_nowait()
        except anyio.WouldBlock:
            await slots.acquire()
        try:
            slot = await self._limiter.acquire()
            try:
                return await inner(method, url, headers, body)
            finally:
                slot.done()
        finally:
            slots.release()

    async def aclose(self) -> None:
        await self.inner.aclose()


def exchange_of(transport: httpx.AsyncBaseTransport) -> Exchange | None:
    """The fast path through *transport*, where it ends in an :class:`AiohttpPool`."""
    if isinstance(transport, AiohttpPool):
        return transport.exchange
    if isinstance(transport, RateLimitedTransport) and transport._inner_exchange is not None:
        return transport.exchange
    return None


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every provider: each made on its own loads the system's
    certificate store again (~60 ms)."""
    return httpx.create_ssl_context()


def provider_transport(concurrency: int, limiter: Limiter | None) -> httpx.AsyncBaseTransport:
    """The aiohttp pool for one provider, rate-limited when *limiter* is given."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    inner = AiohttpPool(verify=_tls(), limits=limits)
    return RateLimitedTransport(inner, limiter, concurrency) if limiter is not None else inner


# AsyncClient's machinery cost more than aiohttp itself: bench/instructions.py dispatch
# (bare adapters, instructions a message) and bench/throughput.py (raw phase) measure it.
class Wire:
    """One provider's requests: its origin and static headers prepared once, each request
    one encoded body and one call to the transport (see the module docstring).

    ``post`` and ``get`` take the arguments ``httpx.AsyncClient``'s did (*path* relative to
    *base_url*), and answer an ``httpx.Response`` whose body is read; they raise
    ``httpx.HTTPError`` for a request that got no answer.
    """

    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport,
                 headers: Mapping[str, str] | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._transport = transport
        self._exchange = exchange_of(transport)
        common = {"User-Agent": USER_AGENT, "Accept": "application/json",
                  "Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        self._get_headers = CIMultiDict(common)
        self._post_headers = CIMultiDict({**common, "Content-Type": "application/json"})
        self._urls: dict[str, URL] = {}

    async def post(self, path: str, *, json: Any,
                   headers: Mapping[str, str] | None = None) -> httpx.Response:
        """POST *json* (encoded as httpx encodes it) with the static headers and *headers*."""
        body = _encode_json(json).encode()
        merged = self._post_headers
        if headers:
            merged = merged.copy()
            merged.update(headers)
        if self._exchange is not None:
            return await self._exchange("POST", self._url(path), merged, body)
        return await self._generic("POST", str(self._url(path)), merged, body)

    async def get(self, path: str, *, params: Mapping[str, str] | None = None
                  ) -> httpx.Response:
        """GET *path* with the query *params*."""
        url = self._url(path)
        if params:
            url = URL(f"{url}?{urlencode(params)}", encoded=True)
        if self._exchange is not None:
            return await self._exchange("GET", url, self._get_headers, None)
        return await self._generic("GET", str(url), self._get_headers, None)

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base + path)
        return url

    async def _generic(self, method: str, url: str, headers: CIMultiDict[str],
                       body: bytes | None) -> httpx.Response:
        request = httpx.Request(method, url, headers=list(headers.items()), content=body,
                                extensions={"timeout": TIMEOUTS})
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        response.request = request
        return response


class HttpAdapter:
    """What every adapter shares: its config, and one :class:`Wire` per ``async with``.

    Subclasses give their authentication headers in :meth:`headers` and use :attr:`client`.
    """

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = config.name
        self.config = config
        self._base_url = base_url or config.base_url
        self._transport = transport
        self._client: Wire | None = None

    def headers(self) -> dict[str, str]:
        return {}

    async def __aenter__(self) -> Self:
        transport = self._transport or provider_transport(self.config.concurrency, None)
        self._client = Wire(self._base_url, transport, self.headers())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> Wire:
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
    """The parsed body, or ``None`` when it is not JSON (truncated, HTML error page, empty);
    an :class:`Answer`'s is parsed once (the caller must not change what it gets)."""
    if type(response) is Answer:
        parsed = response.parsed
        if parsed is _UNPARSED:
            parsed = response.parsed = _parse_json(response.content)
        return parsed
    return _parse_json(response.content)


def _parse_json(content: bytes) -> Any:
    """``json.loads(content)``, or ``None`` where it raises. A body that is strict UTF-8 and
    one JSON value with nothing after it is decoded directly, skipping ``json.loads``'s
    detection of the encoding and its checks (half its cost for a send's answer); anything
    else (another encoding, a BOM, whitespace around the value, not JSON) goes through it."""
    try:
        text = content.decode()
        parsed, end = _DECODE(text)
        if end == len(text):
            return parsed
    except ValueError:  # UnicodeDecodeError is one
        pass
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
