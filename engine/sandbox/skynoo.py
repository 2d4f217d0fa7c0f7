"""Skynoo (document 004): Basic credentials, ``{code, message, data}``, batches, status."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.sandbox.choices import (
    SKYNOO_FAILED_ERROR_CODE,
    SKYNOO_FORBIDDEN_SYMBOLS,
    SKYNOO_MAX_BATCH,
    SKYNOO_MAX_STATUS_IDS,
    SKYNOO_MAX_TEXT_CHARS,
    SKYNOO_PENDING,
)
from engine.sandbox.common import E164_PLUS, dispatch, json_object, segments
from engine.sandbox.core import Billing, Core, Refusal
from engine.sandbox.messages import SentMessage
from engine.sandbox.wire import Request, Response, json_response

KIND: Final = "skynoo"
API: Final = "/api/sms/v1"
_VARIABLE: Final = re.compile(r"#([A-Za-z0-9_]{1,23})#")
_OK_MESSAGE: Final = "Request successful"


def _invalid(message: str) -> Refusal:
    return Refusal(200, "400", message)


@dataclass(frozen=True, slots=True)
class Task:
    """One batch: its id and its messages in request order."""

    task_id: int
    message_ids: tuple[str, ...]


class Skynoo:
    kind: Final = KIND

    def __init__(self, core: Core) -> None:
        self._core = core
        self._account = core.account(KIND)
        self._tasks = _tasks_of(core.books[KIND]) if KIND in core.books else {}
        self._next_task = max(self._tasks, default=1000) + 1
        self._routes = {
            ("POST", f"{API}/send"): self._send,
            ("POST", f"{API}/batch/create"): self._batch_create,
            ("POST", f"{API}/batch/status"): self._batch_status,
            ("POST", f"{API}/batch/detail"): self._batch_detail,
            ("POST", f"{API}/getStatus"): self._get_status,
        }

    def handle(self, request: Request, path: str) -> Response:
        try:
            handler = dispatch(self._routes, request, path)
        except Refusal as refusal:
            raise Refusal(200, str(refusal.status), refusal.message) from None
        if not self._authorized(request.headers.get("authorization", "")):
            raise Refusal(200, "401", "Invalid or missing credentials")
        return handler(request)

    def error(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        body_code = code if code.isdigit() else str(status)
        return json_response({"code": body_code, "message": message}, status, headers=headers)

    def blocked(self) -> Response:
        return self.error(200, "403", "Account is disabled")

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        key, _, secret = decoded.partition(":")
        return key == self._account.api_key and secret == self._account.api_secret

    def _send(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        mobile = _mobile(body.get("mobile"))
        _use_type(body)
        if body.get("templateId") is not None:
            raise _invalid("Template not found")
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise _invalid("text or templateId is required")
        _check_text(text)
        item = self._billing(mobile, text, None)
        (message,) = self._core.bill(KIND, [item])
        return _ok({"id": message.id, "toNumber": mobile, "status": "pending"}, billed=True)

    def _batch_create(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        _use_type(body)
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise _invalid("content is required")
        numbers = body.get("numbers")
        if not isinstance(numbers, list) or not numbers:
            raise _invalid("numbers must be a non-empty array")
        if len(numbers) > SKYNOO_MAX_BATCH:
            raise _invalid(f"at most {SKYNOO_MAX_BATCH} numbers per batch")
        data = body.get("templateData") or {}
        if not isinstance(data, dict):
            raise _invalid("templateData must be an object")
        task_id = self._next_task
        items = []
        for raw in numbers:
            mobile = _mobile(raw)
            text = render(content, data.get(mobile) or {}, mobile)
            _check_text(text)
            items.append(self._billing(mobile, text, task_id))
        self._next_task += 1
        sent = self._core.bill(KIND, items)
        self._tasks[task_id] = Task(task_id, tuple(m.id for m in sent))
        return _ok({"taskId": task_id, "status": "pending"}, billed=True)

    def _batch_status(self, request: Request) -> Response:
        task = self._task(json_object(request, _invalid))
        now = time.time()
        book = self._core.books[KIND]
        done = all(book.by_id[i].is_final(now) for i in task.message_ids)
        return _ok({"taskId": task.task_id, "status": "success" if done else "executing"})

    def _batch_detail(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        task = self._task(body)
        page_no = _whole(body, "pageNo", 1, 1, 10**9)
        page_size = _whole(body, "pageSize", 20, 1, 100)
        start = (page_no - 1) * page_size
        now = time.time()
        book = self._core.books[KIND]
        records = []
        for message_id in task.message_ids[start : start + page_size]:
            message = book.by_id[message_id]
            status, error = _status(message, now)
            records.append(
                {
                    "id": message.id,
                    "toNumber": message.recipient,
                    "status": status,
                    "errorCode": error,
                    "sendTime": int(message.created * 1000),
                }
            )
        return _ok(
            {
                "records": records,
                "total": len(task.message_ids),
                "pageNo": page_no,
                "pageSize": page_size,
            }
        )

    def _get_status(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _invalid("ids must be a non-empty array of message ids")
        if len(ids) > SKYNOO_MAX_STATUS_IDS:
            raise _invalid(f"at most {SKYNOO_MAX_STATUS_IDS} ids per request")
        now = time.time()
        book = self._core.books[KIND]
        data = []
        for message_id in ids:
            message = book.get(message_id)
            if message is not None:
                status, error = _status(message, now)
                data.append({"sid": message.id, "status": status, "errorCode": error})
        return _ok(data)

    def _task(self, body: Mapping[str, Any]) -> Task:
        task_id = body.get("taskId")
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            raise _invalid("taskId is required")
        task = self._tasks.get(task_id)
        if task is None:
            raise Refusal(200, "404", f"Task {task_id} not found")
        return task

    def _billing(self, mobile: str, text: str, task_id: int | None) -> Billing:
        price = self._core.prices.lookup(KIND, mobile[1:])
        if price is None:
            raise _invalid(f"Destination not supported: {mobile}")
        return Billing(
            message_id=self._core.ids.hex32(),
            recipient=mobile,
            text=text,
            sender=None,
            segments=segments(text),
            price=price,
            task_id=task_id,
        )


def render(content: str, variables: Mapping[str, object], mobile: str) -> str:
    """Replace each ``#name#`` with this number's value; a missing one refuses the batch."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise _invalid(f"templateData has no {name!r} for {mobile}")
        return str(variables[name])

    return _VARIABLE.sub(value, content)


def _ok(data: object, *, billed: bool = False) -> Response:
    return json_response({"code": "200", "message": _OK_MESSAGE, "data": data}, billed=billed)


def _mobile(raw: object) -> str:
    if not isinstance(raw, str) or not E164_PLUS.fullmatch(raw):
        raise _invalid(f"Invalid mobile number {raw!r}: E.164 with a leading + is required")
    return raw


def _use_type(body: Mapping[str, Any]) -> None:
    if body.get("useType") not in (1, 2, 3) or isinstance(body.get("useType"), bool):
        raise _invalid("useType must be 1, 2 or 3")


def _check_text(text: str) -> None:
    if len(text) > SKYNOO_MAX_TEXT_CHARS:
        raise _invalid(f"SMS body exceeds {SKYNOO_MAX_TEXT_CHARS} characters")
    if not SKYNOO_FORBIDDEN_SYMBOLS.isdisjoint(text):
        raise _invalid("SMS body contains unsupported symbols")


def _whole(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{name} must be a whole number from {low} to {high}")
    return value


def _status(message: SentMessage, now: float) -> tuple[str, str]:
    if not message.is_final(now):
        return SKYNOO_PENDING, ""
    return ("DELIVERED", "") if message.delivered else ("UNDELIVERED", SKYNOO_FAILED_ERROR_CODE)


def _tasks_of(book: Iterable[SentMessage]) -> dict[int, Task]:
    """The batches of messages a state file brought back, in billing order."""
    ids: dict[int, list[str]] = {}
    for message in book:
        if message.task_id is not None:
            ids.setdefault(message.task_id, []).append(message.id)
    return {task_id: Task(task_id, tuple(found)) for task_id, found in ids.items()}
