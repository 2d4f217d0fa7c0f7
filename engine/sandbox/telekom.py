"""Telekom SMS API v1, JSON variant (document 003): sessions, send, check, ``dsn`` callbacks."""

from __future__ import annotations

import json
import re
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from engine.sandbox.choices import TELEKOM_DELIVERED, TELEKOM_FAILED, TELEKOM_PENDING
from engine.sandbox.common import dispatch, json_object, text_field
from engine.sandbox.core import Billing, Core, Refusal
from engine.sandbox.ledger import iso_utc
from engine.sandbox.messages import SentMessage
from engine.sandbox.reports import Report
from engine.sandbox.wire import Request, Response, json_response
from engine.segments import measure

KIND: Final = "telekom"
UCS2_SINGLE_UNITS: Final = 70
UCS2_MULTI_UNITS: Final = 67

_SMS_NUMBER: Final = re.compile(r"[1-9]\d{7,14}")
_RCS_INTERNATIONAL: Final = re.compile(r"\+[1-9]\d{7,14}")
_RCS_NATIONAL: Final = re.compile(r"0\d{9}")
_DELIVERY_TIME: Final = "%Y-%m-%d %H:%M:%S"
_OK: Final = {"status": "success", "description": "", "code": "OK"}


def _refuse(code: str, description: str) -> Refusal:
    return Refusal(200, code, description)


def _invalid(description: str) -> Refusal:
    return _refuse("INVALID_PARAMETER", description)


def truthy(value: object) -> bool:
    """The document's rule: anything except false, 0, "0" or "" is true."""
    return value not in (False, 0, "0", "") and value is not None


class Telekom:
    kind: Final = KIND

    def __init__(self, core: Core) -> None:
        self._core = core
        self._account = core.account(KIND)
        self._sessions: dict[str, float] = {}
        self._routes = {
            ("POST", "/auth"): self._auth,
            ("POST", "/ping"): self._ping,
            ("POST", "/send_message"): self._send_message,
            ("POST", "/check_message"): self._check_message,
        }

    def handle(self, request: Request, path: str) -> Response:
        try:
            handler = dispatch(self._routes, request, path)
        except Refusal as refusal:
            if refusal.status == 405:
                raise _refuse("METHOD_NOT_ALLOWED", "GET is not enabled for this API key") from None
            raise _refuse("NOT_FOUND", f"no such function: {path}") from None
        return handler(request)

    def error(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        result = {"status": "error", "description": message, "code": code.upper()}
        return json_response({"result": result}, status, headers=headers)

    def blocked(self) -> Response:
        return self.error(200, "IP_NOT_ALLOWED", "Access from IP address 127.0.0.1 is not allowed")

    def expire_sessions(self) -> None:
        self._sessions.clear()

    def _auth(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        token = text_field(body, "token", lambda m: _refuse("MISSING_PARAMETER", m))
        if token != self._account.token:
            raise _refuse("INVALID_TOKEN", "Invalid API token")
        session_id = str(uuid.uuid4())
        self._sessions[session_id] = time.monotonic()
        return json_response({"result": _OK, "session_id": session_id})

    def _ping(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        if "session_id" not in body:
            raise _refuse("MISSING_PARAMETER", "session_id is required")
        self._authorize(body)
        return json_response({"result": _OK})

    def _authorize(self, body: dict[str, Any]) -> None:
        """Accept a live session (refreshing it) or the API token itself."""
        session_id = body.get("session_id")
        if session_id is not None:
            now = time.monotonic()
            last = self._sessions.get(str(session_id))
            if last is None or now - last >= self._core.settings.session_ttl_s:
                self._sessions.pop(str(session_id), None)
                raise _refuse("SESSION_NOT_FOUND", "Session was not found or has expired")
            self._sessions[str(session_id)] = now
            return
        token = body.get("token")
        if token is None:
            raise _refuse("MISSING_PARAMETER", "token or session_id is required")
        if token != self._account.token:
            raise _refuse("INVALID_TOKEN", "Invalid API token")

    def _send_message(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        self._authorize(body)
        to = body.get("to")
        if to is None or to == "":
            raise _refuse("MISSING_PARAMETER", "to is required")
        if not isinstance(to, str):
            raise _invalid("to must be a string")
        digits, channel = _destination(to)
        text = text_field(body, "text", lambda m: _refuse("MISSING_PARAMETER", m))
        assert text is not None
        sender = body.get("from")
        if sender is not None and not isinstance(sender, str):
            raise _invalid("from must be a string")
        _check_options(body)
        unicode = body.get("unicode")
        parts = segments_as_sent(text, None if unicode is None else truthy(unicode))
        price = self._core.prices.lookup(KIND, digits)
        if price is None:
            raise _refuse("NO_ROUTE", f"No route to {to}")
        callback = truthy(body.get("callback", True))
        item = Billing(
            message_id=str(self._core.ids.number()),
            recipient=to,
            text=text,
            sender=sender,
            segments=parts,
            price=price,
            callback_url=self._account.callback_url if callback else None,
            channel=channel,
        )
        self._core.bill(KIND, [item], self.report)
        return json_response(
            {
                "result": _OK,
                "message_count": 1,
                "messages": [
                    {
                        "status": "success",
                        "code": "OK",
                        "description": "",
                        "message_id": int(item.message_id),
                        "parts": parts,
                    }
                ],
            },
            billed=True,
        )

    def _check_message(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        self._authorize(body)
        raw = body.get("message_id")
        if raw is None or isinstance(raw, bool):
            raise _refuse("MISSING_PARAMETER", "message_id is required")
        message = self._core.books[KIND].get(str(raw))
        if message is None:
            raise _refuse("MESSAGE_NOT_FOUND", f"Message {raw} was not found")
        code, status = _status(message, time.time())
        delivered = message.is_final() and message.delivered
        return json_response(
            {
                "result": _OK,
                "message_id": message.id,
                "status": status,
                "code": code,
                "deliveryDateTime": (
                    datetime.fromtimestamp(message.final_at, UTC).strftime(_DELIVERY_TIME)
                    if delivered
                    else ""
                ),
            }
        )

    def report(self, message: SentMessage) -> Report | None:
        """The delivery report of a final message, posted to its ``callback_url``."""
        if message.callback_url is None:
            return None
        code, _ = _status(message, message.final_at)
        payload = {
            "delivery": {"status": code},
            "messageId": int(message.id),
            "channel": message.channel,
            "messageParts": message.segments,
            "type": "dsn",
            "timestamp": iso_utc(message.final_at),
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        return Report(KIND, message.id, message.callback_url, body)


def _status(message: SentMessage, now: float) -> tuple[str, str]:
    if not message.is_final(now):
        return TELEKOM_PENDING
    return TELEKOM_DELIVERED if message.delivered else TELEKOM_FAILED


def _destination(to: str) -> tuple[str, str]:
    """Digits to price, and the channel: ``421…`` is SMS, ``+421…``/``09…`` ask for RCS."""
    if _SMS_NUMBER.fullmatch(to):
        return to, "sms"
    if _RCS_INTERNATIONAL.fullmatch(to):
        return to[1:], "rcs"
    if _RCS_NATIONAL.fullmatch(to):
        return "421" + to[1:], "rcs"
    raise _refuse("INVALID_NUMBER", f"Invalid recipient number {to}")


def _check_options(body: dict[str, Any]) -> None:
    checks = (
        ("validity", 1, 1440),
        ("priority", 1, 3),
    )
    for name, low, high in checks:
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
        ):
            raise _invalid(f"{name} must be a whole number from {low} to {high}")
    kind = body.get("type")
    if kind is not None and kind not in ("standard", "flash"):
        raise _invalid("type must be standard or flash")
    group = body.get("groupId")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int)):
        raise _invalid("groupId must be a whole number")
    when = body.get("delivery_time")
    if when is not None:
        try:
            datetime.strptime(str(when), _DELIVERY_TIME)
        except ValueError as exc:
            raise _invalid("delivery_time must be YYYY-MM-DD HH:MM:SS") from exc


def segments_as_sent(text: str, unicode: bool | None) -> int:
    """Parts billed: auto-detected (None), UCS-2 forced (True), or GSM with diacritics gone."""
    if unicode is None:
        return measure(text)[1]
    if unicode:
        return ucs2_segments(text)
    return measure(gsm_only(text))[1]


def gsm_only(text: str) -> str:
    """Diacritics removed, any other character outside GSM-7 replaced with ``?``."""
    stripped = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    return "".join(ch if _is_gsm(ch) else "?" for ch in stripped)


@lru_cache(maxsize=4096)
def _is_gsm(ch: str) -> bool:
    return measure(ch)[0] == "GSM-7"


def ucs2_segments(text: str) -> int:
    """UCS-2 parts (70 units alone, 67 concatenated); a surrogate pair never splits."""
    units = [2 if ch > "\uffff" else 1 for ch in text]
    if sum(units) <= UCS2_SINGLE_UNITS:
        return 1
    parts, used = 1, 0
    for width in units:
        if used + width > UCS2_MULTI_UNITS:
            parts, used = parts + 1, 0
        used += width
    return parts
