"""HTTP/1.1 on asyncio: requests in, responses (or a dropped connection) out.

A plain asyncio ``Protocol`` with the ``httptools`` parser: keep-alive, pipelining (answers
in request order), and no task per request unless the application asks for one (injected
latency). On these machines aiohttp.web alone spent ~200 µs of server CPU per request (a
trivial handler: ~4.5k req/s); this server, provider logic and JSON-lines ledger included,
spends ~115-130 µs (``bench/sandbox_throughput.py``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final, Protocol, cast
from urllib.parse import parse_qsl, unquote

import httptools
import structlog

from engine.sandbox.choices import MAX_BODY_BYTES

log = structlog.get_logger("engine.sandbox")

MAX_QUEUED_REQUESTS: Final = 64
_JSON: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class BadJson(ValueError):
    """The request body is not a JSON document."""


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    def query(self) -> dict[str, str]:
        """Query parameters, the last value winning."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJson(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Response:
    """An answer; ``billed`` marks one that billed a message (drop-after-accept applies)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    billed: bool = field(default=False, compare=False)


def json_response(
    payload: object,
    status: int = 200,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    billed: bool = False,
) -> Response:
    return Response(status, _JSON.encode(payload).encode(), headers, billed=billed)


class Close(enum.Enum):
    """End the connection without an answer: FIN after accepting, RST before processing."""

    DROP = "drop"
    RESET = "reset"


Answer = Response | Close
Pending = Coroutine[Any, Any, Answer]


class Application(Protocol):
    def handle(self, request: Request) -> Answer | Pending: ...

    def after_commit(self, action: Callable[[], None]) -> None: ...

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None: ...


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Status"
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


_STATUS_LINES: Final = {code: _status_line(code) for code in range(100, 600)}


def encode(response: Response, *, keep_alive: bool) -> bytes:
    head = [
        _STATUS_LINES.get(response.status) or _status_line(response.status),
        b"Content-Type: ",
        response.content_type.encode(),
        b"\r\nContent-Length: ",
        str(len(response.body)).encode(),
        b"\r\n",
    ]
    for name, value in response.headers:
        head.append(f"{name}: {value}\r\n".encode("latin-1"))
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(response.body)
    return b"".join(head)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app: Application, connections: set[HttpProtocol]) -> None:
        self._app = app
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._busy = False
        self._closing = False
        self._closed = False
        self._paused = False
        self._queue: deque[tuple[Request, bool]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._queue.clear()
        self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "upgrade not supported")
        except httptools.HttpParserError:
            self._refuse(400, "malformed request")

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length", "0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            self._refuse(413, "request body too large")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            self._refuse(413, "request body too large")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closed or self._closing:
            return
        url = httptools.parse_url(self._url)
        request = Request(
            method=self._parser.get_method().decode("ascii", "replace"),
            path=unquote((url.path or b"/").decode("latin-1")),
            query_string=(url.query or b"").decode("latin-1"),
            headers=self._headers,
            body=b"".join(self._body),
        )
        keep_alive = self._parser.should_keep_alive()
        if self._busy:
            self._queue.append((request, keep_alive))
            if len(self._queue) >= MAX_QUEUED_REQUESTS and self._transport and not self._paused:
                self._paused = True
                self._transport.pause_reading()
            return
        self._run(request, keep_alive)

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.close()

    def _run(self, request: Request, keep_alive: bool) -> None:
        try:
            answer = self._app.handle(request)
        except Exception:
            log.exception("sandbox.request_failed", path=request.path)
            answer = json_response({"error": "internal sandbox error"}, 500)
        if isinstance(answer, Response | Close):
            self._finish(answer, keep_alive)
            return
        self._busy = True
        self._app.spawn(lambda: self._later(answer, keep_alive))

    async def _later(self, pending: Pending, keep_alive: bool) -> None:
        try:
            answer = await pending
        except Exception:
            log.exception("sandbox.request_failed")
            answer = json_response({"error": "internal sandbox error"}, 500)
        self._busy = False
        self._finish(answer, keep_alive)
        while self._queue and not self._busy and not self._closing:
            request, keep = self._queue.popleft()
            self._run(request, keep)
        if self._paused and not self._queue and not self._closed and self._transport:
            self._paused = False
            self._transport.resume_reading()

    def _finish(self, answer: Answer, keep_alive: bool) -> None:
        if isinstance(answer, Close) or not keep_alive:
            self._closing = True
            self._queue.clear()
        self._app.after_commit(lambda: self._emit(answer, keep_alive))

    def _emit(self, answer: Answer, keep_alive: bool) -> None:
        transport = self._transport
        if self._closed or transport is None:
            return
        if answer is Close.DROP:
            self.close()
        elif answer is Close.RESET:
            self._closed = True
            _abort_with_reset(transport)
        else:
            transport.write(encode(answer, keep_alive=keep_alive))
            if not keep_alive:
                self.close()

    def _refuse(self, status: int, message: str) -> None:
        if self._transport is not None and not self._closed:
            response = json_response({"error": message}, status)
            self._transport.write(encode(response, keep_alive=False))
        self.close()


def _abort_with_reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError, TypeError):
            pass
    transport.abort()
