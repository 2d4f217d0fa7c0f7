"""Voipex SMS API (document 002): Bearer token, allowed senders, history, webhooks."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Final

from engine.sandbox.choices import VOIPEX_PENDING_STATE
from engine.sandbox.common import E164_PLUS, bearer, dispatch, json_object, segments, text_field
from engine.sandbox.core import Billing, Core, Refusal
from engine.sandbox.ledger import iso_utc
from engine.sandbox.messages import SentMessage
from engine.sandbox.reports import Report
from engine.sandbox.wire import Request, Response, json_response

KIND: Final = "voipex"


def _invalid(message: str) -> Refusal:
    return Refusal(400, "validation_error", message)


class Voipex:
    kind: Final = KIND

    def __init__(self, core: Core) -> None:
        self._core = core
        self._account = core.account(KIND)
        self._routes = {
            ("GET", "/SMS/allowed-numbers"): self._allowed_numbers,
            ("POST", "/SMS"): self._send,
            ("GET", "/SMS"): self._history,
        }

    def handle(self, request: Request, path: str) -> Response:
        handler = dispatch(self._routes, request, path)
        if bearer(request) != self._account.token:
            raise Refusal(401, "unauthorized", "missing or invalid bearer token")
        return handler(request)

    def error(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        payload = {"title": _title(status), "status": status, "detail": message, "code": code}
        return json_response(payload, status, headers=headers)

    def blocked(self) -> Response:
        return self.error(403, "forbidden", "account is blocked")

    def _allowed_numbers(self, request: Request) -> Response:
        return json_response(list(self._account.allowed_numbers))

    def _send(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        sender = text_field(body, "from", _invalid)
        to = text_field(body, "to", _invalid)
        text = text_field(body, "text", _invalid)
        assert sender is not None and to is not None and text is not None
        if sender not in self._account.allowed_numbers:
            raise Refusal(400, "from_not_allowed", f"{sender} is not one of your allowed numbers")
        if not E164_PLUS.fullmatch(to):
            raise _invalid("to must be an E.164 number with a leading +")
        price = self._core.prices.lookup(KIND, to[1:])
        if price is None:
            raise Refusal(400, "destination_not_supported", f"no rate for {to}")
        item = Billing(
            message_id=self._core.ids.uuid(),
            recipient=to,
            text=text,
            sender=sender,
            segments=segments(text),
            price=price,
            callback_url=self._account.callback_url,
        )
        (message,) = self._core.bill(KIND, [item], self.report)
        return json_response(_sms(message, VOIPEX_PENDING_STATE), billed=True)

    def _history(self, request: Request) -> Response:
        query = request.query()
        start = _instant(query, "startTime")
        end = _instant(query, "endTime")
        now = time.time()
        return json_response(
            [
                _sms(m, _state(m, now))
                for m in self._core.books[KIND].created_between(start, end)
            ]
        )

    def report(self, message: SentMessage) -> Report | None:
        """The delivery report of a final message, posted to its ``callback_url``."""
        if message.callback_url is None:
            return None
        body = json.dumps(_sms(message, _state(message, message.final_at)), ensure_ascii=False)
        return Report(KIND, message.id, message.callback_url, body.encode())


def _sms(message: SentMessage, state: str) -> dict[str, object]:
    return {
        "id": message.id,
        "from": message.sender,
        "to": message.recipient,
        "text": message.text,
        "direction": "OUT",
        "state": state,
        "createdAt": iso_utc(message.created),
    }


def _state(message: SentMessage, now: float) -> str:
    if not message.is_final(now):
        return VOIPEX_PENDING_STATE
    return "DELIVERED" if message.delivered else "FAILED"


def _instant(query: dict[str, str], name: str) -> float:
    raw = query.get(name)
    if not raw:
        raise _invalid(f"{name} is required (ISO-8601 with a time zone)")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise _invalid(f"{name} must be ISO-8601 with a time zone") from exc
    if moment.tzinfo is None:
        raise _invalid(f"{name} must include a time zone")
    return moment.timestamp()


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
