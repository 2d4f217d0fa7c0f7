"""SMS & Voice Platform (document 001): Bearer key, idempotent sends, rates, signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Final

from engine.sandbox.choices import (
    SMSVOIP_ACCEPTED_STATUS,
    SMSVOIP_FAILED_STATUS,
    SMSVOIP_IDEMPOTENCY_KEY_MAX,
)
from engine.sandbox.common import E164_PLUS, bearer, dispatch, json_object, money, segments
from engine.sandbox.core import Billing, Core, Refusal
from engine.sandbox.messages import SentMessage
from engine.sandbox.reports import Headers, Report
from engine.sandbox.settings import is_loopback_url
from engine.sandbox.state import Replay
from engine.sandbox.wire import Request, Response, json_response

KIND: Final = "smsvoip"


def _invalid(message: str) -> Refusal:
    return Refusal(400, "validation_error", message)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class SmsVoip:
    kind: Final = KIND

    def __init__(self, core: Core) -> None:
        self._core = core
        self._account = core.account(KIND)
        self._idempotent: dict[tuple[str, str], tuple[str, Response]] = {
            (self._account.api_key, r.key): (r.fingerprint, Response(r.status, r.body))
            for r in core.replays.get(KIND, ())}
        self._routes = {
            ("POST", "/sms/send"): self._send,
            ("GET", "/rates"): self._rates,
            ("GET", "/ping"): self._ping,
            ("GET", "/status"): self._status,
        }

    def handle(self, request: Request, path: str) -> Response:
        handler = dispatch(self._routes, request, path)
        key = bearer(request)
        public = handler in (self._rates, self._ping, self._status)
        if key != self._account.api_key and not (public and "authorization" not in request.headers):
            raise Refusal(401, "unauthorized", "invalid or missing API key")
        return handler(request)

    def error(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        return json_response({"error": {"code": code, "message": message}}, status, headers=headers)

    def blocked(self) -> Response:
        return self.error(403, "forbidden", "API key is blocked or suspended")

    def _send(self, request: Request) -> Response:
        idem = request.headers.get("idempotency-key")
        if idem is not None and not 0 < len(idem) <= SMSVOIP_IDEMPOTENCY_KEY_MAX:
            raise _invalid(f"Idempotency-Key must be 1-{SMSVOIP_IDEMPOTENCY_KEY_MAX} characters")
        body = json_object(request, _invalid)
        fingerprint = ""
        if idem is not None:
            fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"))
            seen = self._idempotent.get((self._account.api_key, idem))
            if seen is not None:
                if seen[0] != fingerprint:
                    raise Refusal(
                        400,
                        "idempotency_key_reused",
                        "Idempotency-Key was already used with a different request body",
                    )
                return seen[1]
        response = self._accept(body, idem)
        if idem is not None:
            self._idempotent[(self._account.api_key, idem)] = (fingerprint, _replay(response))
            if self._core.state is not None:
                self._core.state.remember(KIND, Replay(idem, fingerprint, response.status,
                                                       response.body))
        return response

    def _accept(self, body: dict[str, Any], idem: str | None) -> Response:
        to = body.get("to")
        if not isinstance(to, str) or not E164_PLUS.fullmatch(to):
            raise _invalid("to must be an E.164 number with a leading +")
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise _invalid("text is required")
        sender = body.get("from")
        if sender is not None and not isinstance(sender, str):
            raise _invalid("from must be a string")
        callback = body.get("callback_url", self._account.callback_url)
        if callback is not None and (
            not isinstance(callback, str) or not is_loopback_url(callback)
        ):
            raise _invalid("callback_url must be an http URL on 127.0.0.1 or localhost")
        price = self._core.prices.lookup(KIND, to[1:])
        if price is None:
            raise Refusal(400, "unsupported_destination", f"no rate for {to}")
        item = Billing(
            message_id=self._core.ids.prefixed("msg_"),
            recipient=to,
            text=text,
            sender=sender,
            segments=segments(text),
            price=price,
            idempotency_key=idem,
            callback_url=callback,
        )
        self._core.bill(KIND, [item], self.report)
        return json_response(
            {
                "message_id": item.message_id,
                "status": SMSVOIP_ACCEPTED_STATUS,
                "cost": money(item.cost),
                "currency": price.currency,
                "segments": item.segments,
            },
            billed=True,
        )

    def _rates(self, request: Request) -> Response:
        rows = self._core.prices.for_provider(KIND)
        shape = self._core.settings.smsvoip_rates_shape
        if shape == "nested_camel":
            return json_response({"data": {"rates": [
                {
                    "country": row.country_name,
                    "isoCode": row.country,
                    "smsPrice": str(row.price),
                    "voicePrice": None,
                    "currencyCode": row.currency,
                    "routeLabel": row.route,
                }
                for row in rows
            ]}})
        if shape == "bare_list":
            return json_response([
                {"country": row.country_name, "iso": row.country, "price": money(row.price),
                 "currency": row.currency, "label": row.route}
                for row in rows
            ])
        if shape == "keyed_by_iso":
            return json_response({"rates": {
                row.country: {"country": row.country_name,
                              "sms": {"price": str(row.price), "currency": row.currency},
                              "route_label": row.route}
                for row in rows
            }})
        rates = [
            {
                "country": row.country_name,
                "iso_code": row.country,
                "prefix": row.prefix,
                "sms": money(row.price),
                "voice": None,
                "currency": row.currency,
                "route": row.route,
            }
            for row in rows
        ]
        return json_response({"rates": rates})

    def _ping(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def _status(self, request: Request) -> Response:
        return json_response(
            {
                "status": "operational",
                "notice": "",
                "components": [{"name": "sms", "status": "operational"}],
            }
        )

    def report(self, message: SentMessage) -> Report | None:
        """The delivery report of a final message, posted to its ``callback_url``."""
        if message.callback_url is None:
            return None
        delivered_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(message.final_at))
        payload = {
            "event": "delivery_report",
            "message_id": message.id,
            "status": "delivered" if message.delivered else SMSVOIP_FAILED_STATUS,
            "delivered_at": delivered_at if message.delivered else None,
            "cost": money(message.cost),
        }
        secret = self._account.webhook_secret

        def sign(body: bytes) -> Headers:
            return (("X-Signature", signature(secret, int(time.time()), body)),)

        return Report(
            provider=KIND,
            message_id=message.id,
            url=message.callback_url,
            body=json.dumps(payload, separators=(",", ":")).encode(),
            sign=sign,
        )


def _replay(response: Response) -> Response:
    return Response(response.status, response.body, response.headers, response.content_type)
