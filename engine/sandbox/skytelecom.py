"""Sky Telecom (document 000): Bearer key, wallet-funded sends, GAMMA routes, SMS logs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from engine.sandbox.choices import (
    SKY_LOGS_MAX_LIMIT,
    SKY_LOGS_PATH,
    SKY_PUBLIC_ROUTES,
    SKY_WALLET_STATUS,
)
from engine.sandbox.common import DIGITS, bearer, dispatch, json_object, money, segments
from engine.sandbox.core import Billing, Core, Refusal
from engine.sandbox.messages import SentMessage
from engine.sandbox.prices import COUNTRY_NAMES, PriceRow
from engine.sandbox.wire import Request, Response, json_response

KIND: Final = "skytelecom"


def _invalid(message: str) -> Refusal:
    return Refusal(400, "validation_error", message)


class SkyTelecom:
    kind: Final = KIND

    def __init__(self, core: Core) -> None:
        self._core = core
        self._account = core.account(KIND)
        self.wallet: Decimal = self._account.wallet
        self._routes = {
            ("POST", "/sms/send"): self._send,
            ("GET", "/sms/available-routes"): self._available_routes,
            ("GET", "/sms/routes"): self._routes_for_numbers,
            ("GET", SKY_LOGS_PATH): self._logs,
        }

    def handle(self, request: Request, path: str) -> Response:
        handler = dispatch(self._routes, request, path)
        if bearer(request) != self._account.api_key:
            raise Refusal(401, "unauthorized", "missing or invalid API key")
        return handler(request)

    def error(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        payload = {"status": "error", "code": code, "message": message}
        return json_response(payload, status, headers=headers)

    def blocked(self) -> Response:
        return self.error(403, "account_suspended", "account is suspended")

    def _send(self, request: Request) -> Response:
        body = json_object(request, _invalid)
        text = body.get("message")
        if not isinstance(text, str) or not text:
            raise _invalid("message is required")
        sender = body.get("sender_id")
        if sender is not None and not isinstance(sender, str):
            raise _invalid("sender_id must be a string")
        option = body.get("route_option_id")
        if option is not None and not isinstance(option, str):
            raise _invalid("route_option_id must be a string")
        recipients = _recipients(body.get("to"))
        parts = segments(text)
        items = [
            Billing(
                message_id=str(self._core.ids.number()),
                recipient=recipient,
                text=text,
                sender=sender,
                segments=parts,
                price=self._price(recipient, option),
            )
            for recipient in recipients
        ]
        total = sum((item.cost for item in items), Decimal(0))
        if total > self.wallet:
            raise Refusal(SKY_WALLET_STATUS, "insufficient_balance", "wallet balance too low")
        self.wallet -= total
        self._core.bill(KIND, items)
        return json_response(
            {
                "status": "sent",
                "sent": len(items),
                "failed": 0,
                "segments": parts * len(items),
                "total_cost": money(total),
                "wallet_balance": money(self.wallet),
                "messages": [
                    {"id": int(item.message_id), "recipient": item.recipient, "status": "sent"}
                    for item in items
                ],
            },
            billed=True,
        )

    def _price(self, recipient: str, option: str | None) -> PriceRow:
        options = self._core.prices.options(KIND, recipient.lstrip("+"))
        if not options:
            raise Refusal(400, "no_route", f"no route to {recipient}")
        if option is None or option in SKY_PUBLIC_ROUTES:
            return options[0]
        chosen = self._core.prices.route(KIND, option)
        if chosen is None:
            raise _invalid(f"unknown route_option_id {option!r}")
        if chosen not in options:
            raise Refusal(400, "route_not_available", f"{option} does not serve {recipient}")
        return chosen

    def _available_routes(self, request: Request) -> Response:
        payload: dict[str, Any] = {
            "routes": [{"option_id": code, "name": code.upper()} for code in SKY_PUBLIC_ROUTES],
            "usage": "Send option_id as route_option_id in POST /api/sms/send.",
        }
        if request.query().get("expand") == "gamma":
            by_country: dict[str, list[dict[str, object]]] = {}
            options: list[dict[str, object]] = []
            for row in self._core.prices.for_provider(KIND):
                by_country.setdefault(row.country_name, []).append(_channel(row))
                options.append({**_channel(row), "country": row.country_name})
            payload["gamma_by_country"] = by_country
            payload["gamma_options"] = options
        return json_response(payload)

    def _routes_for_numbers(self, request: Request) -> Response:
        numbers = [n.strip() for n in request.query().get("numbers", "").split(",") if n.strip()]
        if not numbers:
            raise _invalid("numbers is required")
        data = []
        for number in numbers:
            options = self._core.prices.options(KIND, number.lstrip("+"))
            data.append(
                {
                    "number": number,
                    "country": options[0].country_name if options else None,
                    "routes": (
                        [{"option_id": c, "name": c.upper()} for c in SKY_PUBLIC_ROUTES]
                        if options
                        else []
                    ),
                    "gamma": [_channel(row) for row in options],
                }
            )
        return json_response({"data": data})

    def _logs(self, request: Request) -> Response:
        query = request.query()
        limit = _int_param(query, "limit", 10, 1, SKY_LOGS_MAX_LIMIT)
        page = _int_param(query, "page", 1, 1, 10**9)
        search = query.get("search", "")
        start = _date_param(query, "from")
        end = _date_param(query, "to")
        start_s = _epoch(start) if start else None
        end_s = _epoch(end + timedelta(days=1)) if end else None
        window = self._core.books[KIND].created_between(start_s, end_s)
        offset = (page - 1) * limit
        newest_first: Iterable[SentMessage] = reversed(window)
        if search:
            newest_first = (m for m in newest_first if search in m.recipient)
        rows = list(itertools.islice(newest_first, offset, offset + limit + 1))
        now = time.time()
        return json_response(
            {
                "data": [_log(m, now) for m in rows[:limit]],
                "page": page,
                "limit": limit,
                "has_more": len(rows) > limit,
            }
        )


def _recipients(raw: object) -> list[str]:
    if isinstance(raw, str):
        recipients = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list) and all(isinstance(r, str) for r in raw):
        recipients = [r.strip() for r in raw]
    else:
        raise _invalid("to is required: a phone number or a list of them")
    if not recipients:
        raise _invalid("to is required")
    for recipient in recipients:
        if not DIGITS.fullmatch(recipient):
            raise _invalid(f"invalid recipient {recipient!r}")
    return recipients


def _channel(row: PriceRow) -> dict[str, object]:
    return {"option_id": row.route, "name": row.route.upper(), "price": money(row.price)}


def _log(message: SentMessage, now: float) -> dict[str, object]:
    status = "sent" if not message.is_final(now) else "delivered" if message.delivered else "failed"
    return {
        "id": int(message.id),
        "date": datetime.fromtimestamp(message.created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "recipient": message.recipient,
        "sender_id": message.sender,
        "segments": message.segments,
        "cost": money(message.cost),
        "status": status,
        "message": message.text,
        "direction": f"{_country_name(message)} Mobile",
    }


def _country_name(message: SentMessage) -> str:
    return COUNTRY_NAMES.get(message.country, message.country)


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _invalid(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _date_param(query: dict[str, str], name: str) -> date | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise _invalid(f"{name} must be a date YYYY-MM-DD") from exc


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
