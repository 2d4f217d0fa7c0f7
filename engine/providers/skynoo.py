"""Skynoo (document 004): Basic ``apiKey:apiSecret``, ``{code, message, data}``, batch tasks.

Every answer is HTTP 200 with a string ``code`` deciding (``"200"`` is success), so a
refusal is read from the body, not the status. ``batch/create`` sends one ``content`` to
many numbers in one request, with ``#var#`` placeholders filled per number from
``templateData``: a personalised campaign goes out in tasks of :data:`MAX_BATCH` numbers.
The answer is only a task id: message ids are read afterwards from ``batch/detail``, and a
message whose id cannot be read in time is returned as ``task:<taskId>:<number>``, which
:meth:`Skynoo.poll` resolves. There is no sender field, no idempotency and no log search.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import anyio
import httpx
import structlog

from engine.config import ProviderConfig
from engine.errors import redact
from engine.providers.base import (
    DeliveryStatus,
    OutboundMessage,
    Outcome,
    Readiness,
    SendResult,
    SentBetween,
    delivery_state,
)
from engine.providers.http import HttpAdapter, by_status, failure, json_body
from engine.routing import RateRow
from engine.template import Template

log = structlog.get_logger()

SEND_PATH: Final = "/api/sms/v1/send"
BATCH_CREATE_PATH: Final = "/api/sms/v1/batch/create"
BATCH_STATUS_PATH: Final = "/api/sms/v1/batch/status"
BATCH_DETAIL_PATH: Final = "/api/sms/v1/batch/detail"
STATUS_PATH: Final = "/api/sms/v1/getStatus"

USE_TYPE_MARKETING: Final = 3
"""``useType`` of every send: 1 verification code, 2 notification, 3 marketing. A bulk
campaign is marketing; an operator sending notifications passes ``use_type=2``."""
MAX_BATCH: Final = 500
"""Numbers per ``batch/create`` (the document gives no limit). An answer lost in transit
leaves at most this many messages unknown, and their ids are five detail pages away."""
MAX_TEXT_CHARS: Final = 460
FORBIDDEN_SYMBOLS: Final = frozenset("【】★※→●")
"""The symbols the document names as unsupported; its list ends in "etc.", so the provider
may refuse others: that refusal comes back as code ``"400"``."""
MAX_STATUS_IDS: Final = 100
DETAIL_PAGE_SIZE: Final = 100
BATCH_WAIT_S: Final = 10.0
"""How long one :meth:`Skynoo.send_batch` waits, in total, for its tasks' message ids."""
BATCH_BACKOFF_S: Final = 0.1
BATCH_BACKOFF_MAX_S: Final = 2.0
TASK_FINAL: Final = frozenset({"success", "fail"})
REFUSED_RECORDS: Final = frozenset({"FAILED", "REJECTED"})
"""Detail record states meaning the provider did not take the message for this number."""
TASK_ID_PREFIX: Final = "task:"
CHECK_PROBE_ID: Final = "0" * 32
"""An id no message has: ``getStatus`` with it authenticates and sends nothing."""
_VARIABLE_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,23}")


@dataclass(frozen=True, slots=True)
class Record:
    """One message of a batch task, as ``batch/detail`` lists it."""

    id: str
    to_number: str
    status: str
    error_code: str = ""


@dataclass(frozen=True, slots=True)
class DetailPage:
    records: tuple[Record, ...]
    total: int


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """One ``batch/create`` request: a content for distinct numbers, with their variables."""

    content: str
    indices: tuple[int, ...]
    numbers: tuple[str, ...]
    variables: tuple[dict[str, str], ...] | None = None

    def body(self, use_type: int) -> dict[str, Any]:
        body: dict[str, Any] = {"useType": use_type, "content": self.content,
                                "numbers": list(self.numbers)}
        if self.variables is not None:
            body["templateData"] = dict(zip(self.numbers, self.variables, strict=True))
        return body


class Skynoo(HttpAdapter):
    kind: Final = "skynoo"
    supports_idempotency: Final = False
    max_batch: Final = MAX_BATCH
    can_lookup: Final = False

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 use_type: int = USE_TYPE_MARKETING, batch_wait_s: float = BATCH_WAIT_S) -> None:
        super().__init__(config, base_url=base_url, transport=transport)
        self._use_type = use_type
        self._batch_wait_s = batch_wait_s
        pair = f"{config.api_key}:{config.api_secret}".encode()
        self._authorization = base64.b64encode(pair).decode()
        self._secrets = (*config.secrets, self._authorization)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self._authorization}"}

    async def send(self, message: OutboundMessage) -> SendResult:
        refused = refuse_text(message.text)
        if refused is not None:
            return refused
        body = {"mobile": message.to, "useType": self._use_type, "text": message.text}
        response = await self._post(SEND_PATH, body)
        if isinstance(response, SendResult):
            return response
        return parse_send(response, secrets=self._secrets)

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """One ``batch/create`` per :class:`TaskPlan`, then the ids from ``batch/detail``.

        A throttle, an account refusal or a failure of unknown outcome stops the tasks not
        yet created: their messages get the throttle or refusal, or NOT_PROCESSED.
        """
        results: list[SendResult | None] = [refuse_text(m.text) for m in messages]
        plans = plan_tasks((i, m) for i, m in enumerate(messages) if results[i] is None)
        created: list[tuple[TaskPlan, int]] = []
        halt: SendResult | None = None
        for plan in plans:
            if halt is not None:
                outcome = halt
            elif len(plan.indices) == 1:
                outcome = await self.send(messages[plan.indices[0]])
            else:
                outcome = await self._create(plan)
                if outcome.accepted and outcome.provider_message_id is not None:
                    created.append((plan, int(outcome.provider_message_id)))
                    continue
            for i in plan.indices:
                results[i] = outcome
            if halt is None:
                halt = _halting(outcome)
        deadline = anyio.current_time() + self._batch_wait_s
        for plan, task_id in created:
            records, status = await self._read_task(task_id, plan.numbers, deadline)
            for i, number in zip(plan.indices, plan.numbers, strict=True):
                results[i] = task_result(task_id, number, records.get(number), status)
        return [r for r in results if r is not None]

    async def fetch_rates(self) -> list[RateRow]:
        return []

    async def check(self) -> Readiness:
        response = await self._post(STATUS_PATH, {"ids": [CHECK_PROBE_ID]})
        if isinstance(response, SendResult):
            return Readiness(self.name, False, (f"unreachable: {response.detail}",))
        _, refused = parse_envelope(response, secrets=self._secrets)
        if refused is None:
            return Readiness(self.name, True)
        if refused.outcome is Outcome.REFUSED_ACCOUNT:
            what = "API key or secret" if refused.code == "401" else "account"
            return Readiness(self.name, False,
                             (f"{what} refused (code {refused.code}): {refused.detail}",))
        return Readiness(self.name, False,
                         (f"getStatus answered code {refused.code}: {refused.detail}",))

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        return None

    async def poll(self, provider_message_ids: Sequence[str],
                   sent_between: SentBetween | None = None) -> list[DeliveryStatus]:
        """States of the ids the provider could tell; the others are left for a later poll."""
        plain: list[str] = []
        by_task: dict[int, list[tuple[str, str]]] = {}
        for message_id in provider_message_ids:
            task = parse_task_message_id(message_id)
            if task is None:
                plain.append(message_id)
            else:
                by_task.setdefault(task[0], []).append((message_id, task[1]))
        statuses: list[DeliveryStatus] = []
        for start in range(0, len(plain), MAX_STATUS_IDS):
            response = await self._post(STATUS_PATH, {"ids": plain[start:start + MAX_STATUS_IDS]})
            found, failed = (([], response) if isinstance(response, SendResult)
                             else parse_statuses(response, secrets=self._secrets))
            if failed is not None:
                log.warning("skynoo.poll_failed", provider=self.name, code=failed.code,
                            detail=failed.detail)
            statuses.extend(found)
        for task_id, wanted in by_task.items():
            records: dict[str, Record] = {}
            failed = await self._read_detail(task_id, records)
            if failed is not None:
                log.warning("skynoo.poll_failed", provider=self.name, task_id=task_id,
                            code=failed.code, detail=failed.detail)
            for message_id, number in wanted:
                record = records.get(number)
                if record is not None:
                    statuses.append(DeliveryStatus(message_id, delivery_state(record.status),
                                                   record.status, reason=record.error_code))
        return statuses

    async def _post(self, path: str, body: Mapping[str, Any]) -> httpx.Response | SendResult:
        try:
            return await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            return failure(exc, secrets=self._secrets)

    async def _create(self, plan: TaskPlan) -> SendResult:
        response = await self._post(BATCH_CREATE_PATH, plan.body(self._use_type))
        if isinstance(response, SendResult):
            return response
        return parse_create(response, secrets=self._secrets)

    async def _read_task(self, task_id: int, numbers: Sequence[str], deadline: float
                         ) -> tuple[dict[str, Record], str]:
        """The task's records by number and its status, read until complete or *deadline*."""
        records: dict[str, Record] = {}
        status = "pending"
        delay = BATCH_BACKOFF_S
        while True:
            pause = delay
            response = await self._post(BATCH_STATUS_PATH, {"taskId": task_id})
            now, failed = (("", response) if isinstance(response, SendResult)
                           else parse_task_status(response, secrets=self._secrets))
            if failed is None and now != "pending":
                status = now
                failed = await self._read_detail(task_id, records)
                if failed is None and (status in TASK_FINAL
                                       or all(n in records for n in numbers)):
                    return records, status
            if failed is not None:
                if failed.outcome is Outcome.REFUSED_ACCOUNT:
                    break
                if failed.outcome is Outcome.THROTTLED and failed.retry_after_s:
                    pause = failed.retry_after_s
            if pause > deadline - anyio.current_time():
                break
            await anyio.sleep(pause)
            delay = min(delay * 2, BATCH_BACKOFF_MAX_S)
        log.warning("skynoo.batch_ids_unread", provider=self.name, task_id=task_id,
                    unread=sum(1 for n in numbers if n not in records))
        return records, status

    async def _read_detail(self, task_id: int, records: dict[str, Record]) -> SendResult | None:
        """Add every record of the task to *records*; the failure that stopped it, if any."""
        page_no = 1
        while True:
            response = await self._post(BATCH_DETAIL_PATH, {
                "taskId": task_id, "pageNo": page_no, "pageSize": DETAIL_PAGE_SIZE})
            if isinstance(response, SendResult):
                return response
            page, failed = parse_detail(response, secrets=self._secrets)
            if page is None:
                return failed
            records.update((r.to_number, r) for r in page.records)
            if not page.records or page_no * DETAIL_PAGE_SIZE >= page.total:
                return None
            page_no += 1


def refuse_text(text: str) -> SendResult | None:
    """The refusal Skynoo would answer for *text*, decided without asking it."""
    if len(text) > MAX_TEXT_CHARS:
        return SendResult(Outcome.REFUSED_MESSAGE, code="text_too_long", try_other_route=True,
                          detail=f"{len(text)} characters; Skynoo takes at most {MAX_TEXT_CHARS}")
    symbols = FORBIDDEN_SYMBOLS.intersection(text)
    if symbols:
        return SendResult(Outcome.REFUSED_MESSAGE, code="forbidden_symbol", try_other_route=True,
                          detail=f"Skynoo refuses the symbols {''.join(sorted(symbols))}")
    return None


def plan_tasks(items: Iterable[tuple[int, OutboundMessage]]) -> list[TaskPlan]:
    """Group messages into tasks: one per template (as ``#var#`` content), else per text.

    A number appears at most once per task (``templateData`` is keyed by number): its
    second message goes to a second task of the same content.
    """
    groups: dict[tuple[bool, str], list[tuple[int, OutboundMessage, dict[str, str] | None]]] = {}
    for i, message in items:
        shape = template_content(message.template) if message.template else None
        variables = _variables(shape, message) if shape is not None else None
        by_template = shape is not None and variables is not None
        key = (True, shape[0]) if shape is not None and by_template else (False, message.text)
        groups.setdefault(key, []).append((i, message, variables))
    plans: list[TaskPlan] = []
    for (templated, content), members in groups.items():
        levels: list[list[tuple[int, OutboundMessage, dict[str, str] | None]]] = []
        seen: dict[str, int] = {}
        for member in members:
            level = seen.get(member[1].to, 0)
            seen[member[1].to] = level + 1
            if level == len(levels):
                levels.append([])
            levels[level].append(member)
        for level_members in levels:
            for start in range(0, len(level_members), MAX_BATCH):
                chunk = level_members[start:start + MAX_BATCH]
                plans.append(TaskPlan(
                    content, tuple(i for i, _, _ in chunk), tuple(m.to for _, m, _ in chunk),
                    tuple(v or {} for _, _, v in chunk) if templated else None))
    return plans


@functools.lru_cache(maxsize=64)
def template_content(template: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """``(content, literals, fields)`` with ``{name}`` written ``#name#``; None when the
    template breaks the document's rules (name of 1-23 letters, digits or ``_``, each once)
    or has a ``#`` of its own, which the provider could read as a placeholder."""
    try:
        compiled = Template.compile(template)
    except ValueError:
        return None
    fields, literals = compiled.fields, compiled.literals
    if (not fields or len(set(fields)) != len(fields)
            or not all(_VARIABLE_NAME.fullmatch(f) for f in fields)
            or any("#" in literal for literal in literals)):
        return None
    content = literals[0] + "".join(f"#{f}#{lit}" for f, lit in zip(fields, literals[1:],
                                                                      strict=True))
    return content, literals, fields


def _variables(shape: tuple[str, tuple[str, ...], tuple[str, ...]],
               message: OutboundMessage) -> dict[str, str] | None:
    """The message's variables, if filling the template with them gives exactly its text."""
    _, literals, fields = shape
    values: list[str] = []
    for name in fields:
        value = message.variables.get(name)
        if value is None or "#" in value:
            return None
        values.append(value)
    rendered = literals[0] + "".join(v + lit for v, lit in zip(values, literals[1:], strict=True))
    return dict(zip(fields, values, strict=True)) if rendered == message.text else None


def _halting(outcome: SendResult) -> SendResult | None:
    """What the messages of the tasks not yet created get after *outcome*, if they stop."""
    if outcome.outcome in (Outcome.THROTTLED, Outcome.REFUSED_ACCOUNT, Outcome.NOT_PROCESSED):
        return outcome
    if outcome.outcome is Outcome.UNKNOWN:
        return SendResult(Outcome.NOT_PROCESSED, code="not_sent",
                          detail="not sent: an earlier request of this batch failed")
    return None


def task_result(task_id: int, number: str, record: Record | None, status: str) -> SendResult:
    """A batch message's outcome from its detail record (None: not read in time)."""
    if record is None:
        if status == "fail":
            return SendResult(Outcome.REFUSED_MESSAGE, code="fail", try_other_route=True,
                              detail=f"task {task_id} failed without a record for this number")
        return SendResult(Outcome.ACCEPTED, provider_message_id=task_message_id(task_id, number))
    if record.status.upper() in REFUSED_RECORDS:
        return SendResult(Outcome.REFUSED_MESSAGE, provider_message_id=record.id,
                          code=record.error_code or record.status, try_other_route=True,
                          detail=f"batch task {task_id}: {record.status}")
    return SendResult(Outcome.ACCEPTED, provider_message_id=record.id)


def task_message_id(task_id: int, number: str) -> str:
    return f"{TASK_ID_PREFIX}{task_id}:{number}"


def parse_task_message_id(value: str) -> tuple[int, str] | None:
    """``task:<taskId>:<number>`` as ``(taskId, number)``; None for a plain message id."""
    if not value.startswith(TASK_ID_PREFIX):
        return None
    task, _, number = value[len(TASK_ID_PREFIX):].partition(":")
    return (int(task), number) if task.isdigit() and number else None


def parse_envelope(response: httpx.Response, *, secrets: tuple[str, ...] = ()
                   ) -> tuple[Any, SendResult | None]:
    """``(data, None)`` for ``code "200"``, else ``(None, failure)``.

    A ``code`` other than ``"200"`` is classified as the HTTP status it names (through
    :func:`by_status`), ``"400"`` as a refusal another route may take: the adapter checks
    everything else itself, so the provider's one validation code is about the number or
    the text. A code written as a JSON integer reads as its digits; a missing code, or a
    body that is not JSON, is UNKNOWN on a 2xx.
    """
    body = json_body(response)
    code: str | None = None
    message = ""
    if isinstance(body, dict):
        raw = body.get("code")
        if isinstance(raw, str):
            code = raw.strip()
        elif isinstance(raw, int) and not isinstance(raw, bool):
            code = str(raw)
        if isinstance(body.get("message"), str):
            message = redact(body["message"], secrets)[:300]
    if not 200 <= response.status_code < 300:
        result = by_status(response, code=code or "", detail=message)
    elif code is None:
        return None, SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                                detail="answer without a readable code")
    elif code == "200":
        return body.get("data"), None
    elif code.isdigit():
        named = httpx.Response(int(code), headers=response.headers)
        result = by_status(named, code=code, detail=message)
    else:
        result = SendResult(Outcome.UNKNOWN, code=code, detail=message)
    if result.outcome is Outcome.REFUSED_MESSAGE and result.code == "400":
        result = replace(result, try_other_route=True)
    return None, result


def parse_send(response: httpx.Response, *, secrets: tuple[str, ...] = ()) -> SendResult:
    """Classify one answer to ``POST /send``."""
    data, failed = parse_envelope(response, secrets=secrets)
    if failed is not None:
        return failed
    message_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(message_id, str) or not message_id:
        return SendResult(Outcome.UNKNOWN, code="200",
                          detail="success answer without a readable message id")
    return SendResult(Outcome.ACCEPTED, provider_message_id=message_id, code="200")


def parse_create(response: httpx.Response, *, secrets: tuple[str, ...] = ()) -> SendResult:
    """``batch/create``: ACCEPTED with the task id as ``provider_message_id``, or a failure."""
    data, failed = parse_envelope(response, secrets=secrets)
    if failed is not None:
        return failed
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if isinstance(task_id, str) and task_id.isdigit():
        task_id = int(task_id)
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 0:
        return SendResult(Outcome.UNKNOWN, code="200",
                          detail="batch created without a readable taskId")
    return SendResult(Outcome.ACCEPTED, provider_message_id=str(task_id), code="200")


def parse_task_status(response: httpx.Response, *, secrets: tuple[str, ...] = ()
                      ) -> tuple[str, SendResult | None]:
    """``batch/status`` as the lower-case task status."""
    data, failed = parse_envelope(response, secrets=secrets)
    if failed is not None:
        return "", failed
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str) or not status:
        return "", SendResult(Outcome.UNKNOWN, code="200", detail="task without a status")
    return status.strip().lower(), None


def parse_detail(response: httpx.Response, *, secrets: tuple[str, ...] = ()
                 ) -> tuple[DetailPage | None, SendResult | None]:
    """One ``batch/detail`` page; records without a string id and number are left out."""
    data, failed = parse_envelope(response, secrets=secrets)
    if failed is not None:
        return None, failed
    rows = data.get("records") if isinstance(data, dict) else None
    total = data.get("total") if isinstance(data, dict) else None
    if not isinstance(rows, list) or isinstance(total, bool) or not isinstance(total, int):
        return None, SendResult(Outcome.UNKNOWN, code="200", detail="unreadable task detail")
    records = tuple(
        Record(row["id"], row["toNumber"], _text(row.get("status")), _text(row.get("errorCode")))
        for row in rows
        if isinstance(row, dict) and _text(row.get("id")) and _text(row.get("toNumber")))
    return DetailPage(records, total), None


def parse_statuses(response: httpx.Response, *, secrets: tuple[str, ...] = ()
                   ) -> tuple[list[DeliveryStatus], SendResult | None]:
    """``getStatus``: one :class:`DeliveryStatus` per ``{sid, status, errorCode}`` entry."""
    data, failed = parse_envelope(response, secrets=secrets)
    if failed is not None:
        return [], failed
    if not isinstance(data, list):
        return [], SendResult(Outcome.UNKNOWN, code="200", detail="status data is not a list")
    return [DeliveryStatus(row["sid"], delivery_state(_text(row.get("status"))),
                           _text(row.get("status")), reason=_text(row.get("errorCode")))
            for row in data if isinstance(row, dict) and _text(row.get("sid"))], None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
