"""Telekom SMS API v1, JSON variant (document 003): sessions, ``421…`` numbers, HTTP-200 errors.

What matters for a bulk campaign:

- ``/auth`` trades the API token for a ``session_id`` that dies after 15 minutes idle. One
  session serves every concurrent send; a send refused with ``SESSION_NOT_FOUND`` was not
  processed, so it is re-authenticated (once, for all the sends that hit it) and retried once.
- ``to`` is written ``421…`` without ``+``: ``+421…`` asks for RCS instead of SMS.
- ``unicode`` is always sent from the engine's own encoding decision: ``false`` strips
  diacritics, and leaving it out lets the provider guess (and bill) differently.
- Errors come as HTTP 200 with ``result.status = "error"``; nothing is accepted without a
  success envelope and a message id. No price list and no search by recipient: a send whose
  answer was lost cannot be found again (:attr:`Telekom.can_lookup` is false).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

import anyio
import httpx
import structlog

from engine.config import ProviderConfig
from engine.errors import redact
from engine.providers import readings
from engine.providers.base import (
    DeliveryStatus,
    OutboundMessage,
    Outcome,
    Readiness,
    SendResult,
    SentBetween,
    delivery_state,
)
from engine.providers.http import (
    HttpAdapter,
    by_status,
    failure,
    json_body,
    retry_after_s,
)
from engine.routing import RateRow

log = structlog.get_logger()

AUTH_PATH: Final = "/json/auth"
SEND_PATH: Final = "/json/send_message"
CHECK_PATH: Final = "/json/check_message"
SESSION_REFRESH_IDLE_S: Final = 13 * 60.0
"""Re-authenticate before a session idle this long is used: the provider drops it at 15 min."""
DETAIL_MAX_CHARS: Final = 300

SESSION_NOT_FOUND: Final = "SESSION_NOT_FOUND"
ACCOUNT_CODES: Final = frozenset({"IP_NOT_ALLOWED", "INVALID_TOKEN", "METHOD_NOT_ALLOWED",
                                  "NOT_FOUND"})
"""Refusals that every message of this account would get: wrong token, IP, key settings."""
ACCOUNT_CODE_WORDS: Final = ("TOKEN", "AUTH", "API_KEY")
DESTINATION_CODES: Final = frozenset({"INVALID_NUMBER", "NO_ROUTE"})
"""Refusals about where a message goes, which another provider may still take."""
DESTINATION_CODE_WORDS: Final = ("NUMBER", "ROUTE", "DESTINATION", "RECIPIENT")
THROTTLE_CODES: Final = frozenset({"TOO_MANY_REQUESTS"})
UNKNOWN_CODES: Final = frozenset({"INTERNAL_ERROR"})
"""A provider-side fault reported after the request was read: it may have been processed."""


class Telekom(HttpAdapter):
    kind: Final = "telekom"
    supports_idempotency: Final = False
    max_batch: Final = 1
    can_lookup: Final = False

    def __init__(self, config: ProviderConfig, *, base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 session_idle_s: float = SESSION_REFRESH_IDLE_S,
                 delivery_tz: tzinfo = UTC) -> None:
        """``base_url`` is the origin (a trailing ``/json`` is tolerated); ``delivery_tz`` is the
        zone of ``deliveryDateTime``, which the document leaves out."""
        super().__init__(config, base_url=(base_url or config.base_url).rstrip("/")
                         .removesuffix("/json"), transport=transport)
        self._session_idle_s = session_idle_s
        self._delivery_tz = delivery_tz
        self._lock = anyio.Lock()
        self._session: str | None = None
        self._used_at = 0.0
        self._auth_attempts = 0
        self._auth_failure: SendResult | None = None

    async def __aexit__(self, *exc: object) -> None:
        self._session = None
        await super().__aexit__(*exc)

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (*self.config.secrets, *((self._session,) if self._session else ()))

    async def send(self, message: OutboundMessage) -> SendResult:
        body: dict[str, Any] = {"to": wire_number(message.to), "text": message.text,
                                "unicode": message.encoding == "UCS-2"}
        if message.sender:
            body["from"] = message.sender
        answer = await self._post(SEND_PATH, body)
        if isinstance(answer, SendResult):
            return answer
        return parse_send(answer, secrets=self._secrets)

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        return [await self.send(m) for m in messages]

    async def fetch_rates(self) -> list[RateRow]:
        return []

    async def check(self) -> Readiness:
        if not self.config.token:
            return Readiness(self.name, False, ("no API token configured",))
        session = await self._session_id(stale=self._session)
        if isinstance(session, str):
            return Readiness(self.name, True)
        if session.code == "IP_NOT_ALLOWED":
            problem = f"this machine's IP address is not allowed for the API key: {session.detail}"
        elif any(word in session.code for word in ACCOUNT_CODE_WORDS):
            problem = f"API token refused ({session.code}): {session.detail}"
        else:
            problem = f"authentication failed ({session.code}): {session.detail}"
        return Readiness(self.name, False, (problem,))

    async def lookup(self, message: OutboundMessage, sent_after: datetime) -> SendResult | None:
        return None

    async def poll(self, provider_message_ids: Sequence[str],
                   sent_between: SentBetween | None = None) -> list[DeliveryStatus]:
        """``check_message`` per id, at most ``concurrency`` at once; ids it cannot read are left
        out (the next poll asks again)."""
        limiter = anyio.CapacityLimiter(max(1, self.config.concurrency))
        found: dict[int, DeliveryStatus] = {}
        failed: dict[str, int] = {}

        async def check_one(index: int, message_id: str) -> None:
            async with limiter:
                answer = await self._post(CHECK_PATH, {"message_id": message_id})
            status = (answer if isinstance(answer, SendResult) else
                      parse_check(message_id, answer, tz=self._delivery_tz,
                                  secrets=self._secrets))
            if isinstance(status, DeliveryStatus):
                found[index] = status
            else:
                failed[status.code] = failed.get(status.code, 0) + 1

        async with anyio.create_task_group() as tasks:
            for index, message_id in enumerate(provider_message_ids):
                tasks.start_soon(check_one, index, message_id)
        if failed:
            log.warning("telekom.poll_failed", provider=self.name, codes=failed)
        return [found[i] for i in sorted(found)]

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | SendResult:
        """POST *body* with the session; a lost session is renewed and the request sent again,
        once: the provider refused the first one unprocessed."""
        stale: str | None = None
        for _ in range(2):
            session = await self._session_id(stale=stale)
            if isinstance(session, SendResult):
                return session
            self._used_at = time.monotonic()
            try:
                response = await self.client.post(path, json={**body, "session_id": session})
            except httpx.HTTPError as exc:
                return failure(exc, secrets=(*self.config.secrets, session))
            if not session_lost(response):
                return response
            log.debug("telekom.session_lost", provider=self.name, path=path)
            stale = session
        return response

    async def _session_id(self, *, stale: str | None = None) -> str | SendResult:
        """The live session, authenticating when there is none, it idled too long, or it is
        *stale* (refused by the provider). Callers queued behind a renewal use its result:
        N sends that hit one expired session cause one ``/auth``, and a refused token one."""
        # The live session as below but without the lock, whose checkpoint cost every send
        # ~2 µs (bench/throughput.py bare CPU): a renewal under way has cleared it first.
        session = self._session
        if (session is not None and session != stale
                and time.monotonic() - self._used_at < self._session_idle_s):
            return session
        attempts = self._auth_attempts
        async with self._lock:
            idle_s = time.monotonic() - self._used_at
            if self._session is None:
                reason = "none"
            elif self._session == stale:
                reason = "lost"
            elif idle_s < self._session_idle_s:
                return self._session
            else:
                reason = "idle"
            if self._auth_attempts != attempts and self._auth_failure is not None:
                return self._auth_failure
            self._auth_attempts += 1
            self._session = None
            answer = await self._authenticate()
            if isinstance(answer, SendResult):
                self._auth_failure = answer
                log.warning("telekom.auth_failed", provider=self.name, reason=reason,
                            code=answer.code, outcome=answer.outcome.value)
                return answer
            self._auth_failure = None
            self._session = answer
            self._used_at = time.monotonic()
            if reason == "none":
                log.debug("telekom.auth", provider=self.name)
            else:
                log.info("telekom.reauth", provider=self.name, reason=reason,
                         idle_s=round(idle_s, 1))
            return answer

    async def _authenticate(self) -> str | SendResult:
        try:
            response = await self.client.post(AUTH_PATH, json={"token": self.config.token})
        except httpx.HTTPError as exc:
            return _unsent(failure(exc, secrets=self.config.secrets))
        return parse_auth(response, secrets=self.config.secrets)


def wire_number(e164: str) -> str:
    """``+421900123456`` as ``421900123456``: with a ``+`` the provider would try RCS first."""
    return e164.strip().removeprefix("+")


def session_lost(response: httpx.Response) -> bool:
    """True for a ``SESSION_NOT_FOUND`` refusal (any status below 500)."""
    envelope = _envelope(json_body(response))
    return (response.status_code < 500 and envelope is not None
            and envelope[:2] == ("error", SESSION_NOT_FOUND))


def parse_auth(response: httpx.Response, *, secrets: tuple[str, ...] = ()) -> str | SendResult:
    """The ``session_id`` of an answer to ``/auth``, or what the failure means for the message
    waiting on it, which was never sent: NOT_PROCESSED, THROTTLED or REFUSED_ACCOUNT."""
    answer = _answer(response, secrets)
    if isinstance(answer, SendResult):
        return _unsent(answer)
    session_id = answer.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        return SendResult(Outcome.NOT_PROCESSED, code=str(response.status_code),
                          detail="auth: success answer without a session_id")
    return session_id


def parse_send(response: httpx.Response, *, secrets: tuple[str, ...] = ()) -> SendResult:
    """Classify one answer to ``/send_message`` (one recipient)."""
    answer = _answer(response, secrets)
    if isinstance(answer, SendResult):
        return answer
    messages = answer.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    if not isinstance(first, dict):
        return SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                          detail="success answer without a readable messages list")
    status = str(first.get("status") or "")
    code = str(first.get("code") or "")
    description = str(first.get("description") or "")
    if status == "error":
        return _refusal(response, code, description, secrets)
    message_id = first.get("message_id")
    if isinstance(message_id, bool) or not isinstance(message_id, int | str) or message_id == "":
        return SendResult(Outcome.UNKNOWN, code=code or str(response.status_code),
                          detail="success answer without a readable message_id")
    if status not in ("success", ""):
        return SendResult(Outcome.UNKNOWN, code=code, detail=f"message status {status!r}")
    parts = first.get("parts")
    return SendResult(Outcome.ACCEPTED, provider_message_id=str(message_id),
                      segments=parts if isinstance(parts, int) and not isinstance(parts, bool)
                      else None, code=code)


def parse_check(message_id: str, response: httpx.Response, *, tz: tzinfo = UTC,
                secrets: tuple[str, ...] = ()) -> DeliveryStatus | SendResult:
    """The delivery state in an answer to ``/check_message``, or why there is none.

    ``ERROR`` (the provider retries for an hour) is ``unknown``, not final.
    """
    answer = _answer(response, secrets)
    if isinstance(answer, SendResult):
        return answer
    nested = answer.get(readings.TELEKOM_CHECK_NESTED)
    if not isinstance(answer.get("code"), str) and isinstance(nested, dict):
        answer = nested  # the XML example's <message> nesting, written as JSON
    word = answer.get("status")
    code = answer.get("code")
    if not isinstance(code, str) or not code:
        code = word.upper() if isinstance(word, str) and word else None
    if code is None:
        return SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                          detail="status answer without a code")
    state = delivery_state(code)
    reason = word if isinstance(word, str) and state in ("undelivered", "expired") else ""
    return DeliveryStatus(message_id, state, code, reason=reason,
                          at=_timestamp(answer.get("deliveryDateTime"), tz))


def _answer(response: httpx.Response, secrets: tuple[str, ...]) -> dict[str, Any] | SendResult:
    """The body of a success envelope, or the outcome any other answer means."""
    data = json_body(response)
    envelope = _envelope(data)
    if not 200 <= response.status_code < 300:
        if envelope is None:
            return by_status(response)
        _, code, description = envelope
        result = by_status(response, code=code, detail=_detail(description, secrets))
        if result.outcome is Outcome.REFUSED_MESSAGE and code:
            return _refusal(response, code, description, secrets)
        return result
    if envelope is None or not isinstance(data, dict):
        return SendResult(Outcome.UNKNOWN, code=str(response.status_code),
                          detail="answer without a readable result")
    status, code, description = envelope
    if status == "error":
        return _refusal(response, code, description, secrets)
    if status != "success":
        return SendResult(Outcome.UNKNOWN, code=code, detail=f"result status {status!r}")
    return data


def _envelope(data: object) -> tuple[str, str, str] | None:
    """``result`` as (status, code, description), or None when there is none."""
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("status"), str):
        return None
    return (result["status"], str(result.get("code") or "").upper(),
            str(result.get("description") or ""))


def _refusal(response: httpx.Response, code: str, description: str,
             secrets: tuple[str, ...]) -> SendResult:
    """A ``status: "error"`` answer by its code; codes the document does not name are the
    message's fault, unless their words say token or number."""
    detail = _detail(description, secrets)
    if code == SESSION_NOT_FOUND:
        return SendResult(Outcome.NOT_PROCESSED, code=code, detail=detail)
    if code in ACCOUNT_CODES or any(word in code for word in ACCOUNT_CODE_WORDS):
        return SendResult(Outcome.REFUSED_ACCOUNT, code=code, detail=detail)
    if code in THROTTLE_CODES:
        return SendResult(Outcome.THROTTLED, code=code, detail=detail,
                          retry_after_s=retry_after_s(response.headers))
    if code in UNKNOWN_CODES:
        return SendResult(Outcome.UNKNOWN, code=code, detail=detail)
    destination = code in DESTINATION_CODES or any(w in code for w in DESTINATION_CODE_WORDS)
    return SendResult(Outcome.REFUSED_MESSAGE, code=code, detail=detail,
                      try_other_route=destination)


def _unsent(result: SendResult) -> SendResult:
    """A failed ``/auth`` as the outcome of the message waiting for it: never sent, so never
    UNKNOWN; any refusal of the token is the account's."""
    outcome = {Outcome.UNKNOWN: Outcome.NOT_PROCESSED,
               Outcome.REFUSED_MESSAGE: Outcome.REFUSED_ACCOUNT}.get(result.outcome,
                                                                     result.outcome)
    return dataclasses.replace(result, outcome=outcome, try_other_route=False,
                               detail=f"auth: {result.detail}"[:DETAIL_MAX_CHARS])


def _detail(description: str, secrets: tuple[str, ...]) -> str:
    return redact(description, secrets)[:DETAIL_MAX_CHARS]


def _timestamp(value: object, tz: tzinfo) -> datetime | None:
    """``deliveryDateTime`` (``YYYY-MM-DD HH:MM:SS`` or ISO-8601, empty until delivered; the
    document says "timestamp format", so epoch seconds too) as an aware time."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=tz)
