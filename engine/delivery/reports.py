"""Delivery reports: the one vocabulary, webhook endpoints and what each provider posts.

Every provider word becomes one of ``accepted``, ``delivered``, ``undelivered`` (with the
provider's reason), ``expired`` or ``unknown`` through :func:`engine.providers.base.
delivery_state`; the provider's own word is kept beside it. The receiver lives in
:mod:`engine.delivery.webhooks`, the poller in :mod:`engine.delivery.polling`; both end in
:class:`engine.store.protocols.DeliveryLedger`.

Where reports go (one receiver for every provider that pushes them):

==========  ==========================  =====================================================
kind        path                        checked by
==========  ==========================  =====================================================
smsvoip     ``/<name>``                 ``X-Signature: t=..,v1=..``: HMAC-SHA256 of ``t.body``
                                        with ``webhook_secret``, ``t`` at most 5 min away
telekom     ``/<name>/<token>``         the path token (the ``dsn`` callback is not signed)
voipex      ``/<name>/<token>``         the path token (the webhook is not signed)
==========  ==========================  =====================================================

A token is HMAC-SHA256 of the provider's name with a random key kept in the database
(``meta.webhook_key``), so URLs stay the same across restarts on one database and cannot be
guessed from the name. Neither tokens nor secrets are ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from engine.config import ProviderConfig
from engine.providers.base import DeliveryStatus, delivery_state
from engine.providers.voipex import parse_webhook
from engine.store.delivery_records import DeliveryReport

WEBHOOK_KINDS: Final = ("smsvoip", "telekom", "voipex")
SIGNED_KINDS: Final = frozenset({"smsvoip"})
POLLED_KINDS: Final = ("skytelecom", "voipex", "telekom", "skynoo")
ONE_ID_PER_REQUEST_KINDS: Final = frozenset({"telekom"})
"""Polled kinds whose status endpoint answers about one message per request."""
SIGNATURE_TOLERANCE_S: Final = 300.0
TOKEN_CHARS: Final = 32


class BadReport(ValueError):
    """A request that is not a readable delivery report (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one provider's reports are received."""

    provider: str
    kind: str
    path: str
    secret: str = ""
    """The webhook secret (signed kinds); never logged."""

    @property
    def signed(self) -> bool:
        return self.kind in SIGNED_KINDS


def path_token(key: bytes, provider: str) -> str:
    return hmac.new(key, f"webhook:{provider}".encode(), hashlib.sha256).hexdigest()[:TOKEN_CHARS]


def endpoints(providers: Sequence[ProviderConfig], key: bytes) -> list[Endpoint]:
    """An endpoint for each provider of a kind that pushes reports."""
    found: list[Endpoint] = []
    for p in providers:
        if p.kind not in WEBHOOK_KINDS:
            continue
        path = f"/{p.name}" if p.kind in SIGNED_KINDS else f"/{p.name}/{path_token(key, p.name)}"
        found.append(Endpoint(p.name, p.kind, path, p.webhook_secret))
    return found


def callback_urls(found: Sequence[Endpoint], base_url: str) -> dict[str, str]:
    """Provider name -> the URL to configure as its callback."""
    return {e.provider: base_url.rstrip("/") + e.path for e in found}


def verify_signature(header: str | None, body: bytes, secret: str, *,
                     now: float | None = None,
                     tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """True when *header* (``t=<unix>,v1=<hex>[,v1=...]``) signs *body* with *secret* and
    ``t`` is within *tolerance_s* of *now*; every comparison is constant-time."""
    if not header or not secret or len(header) > 1024:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                return False
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(expected, candidate.encode("ascii", "replace").decode())
    return ok


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadReport("body is not JSON") from None
    if not isinstance(data, dict):
        raise BadReport("body is not a JSON object")
    return data


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise BadReport(f"{name} is missing or not text")
    return value


def parse_time(value: object) -> datetime | None:
    """ISO-8601 (``Z`` allowed, no zone read as UTC); ``None`` when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _reason(state: str, word: str) -> str:
    return word if state in ("undelivered", "expired") else ""


def parse_smsvoip(body: bytes) -> DeliveryStatus | None:
    """``{"event": "delivery_report", "message_id", "status", "delivered_at", "cost"}``;
    ``None`` for another event."""
    data = _object(body)
    event = data.get("event")
    if event is not None and event != "delivery_report":
        return None
    message_id = _text(data, "message_id")
    word = _text(data, "status")
    state = delivery_state(word)
    at = parse_time(data.get("delivered_at")) if state == "delivered" else None
    return DeliveryStatus(message_id, state, word, reason=_reason(state, word), at=at)


def parse_telekom(body: bytes) -> DeliveryStatus | None:
    """The ``dsn`` callback: ``{"delivery": {"status"}, "messageId", "messageParts",
    "type": "dsn", "timestamp"}``; ``None`` for another callback type (``postback``).

    One report covers the whole message, whatever its ``messageParts``.
    """
    data = _object(body)
    kind = data.get("type", "dsn")
    if kind != "dsn":
        return None
    delivery = data.get("delivery")
    if not isinstance(delivery, dict):
        raise BadReport("delivery is missing")
    word = _text(delivery, "status")
    raw_id = data.get("messageId")
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or raw_id == "":
        raise BadReport("messageId is missing")
    state = delivery_state(word)
    at = parse_time(data.get("timestamp")) if state != "accepted" else None
    return DeliveryStatus(str(raw_id), state, word, reason=_reason(state, word), at=at)


def parse_voipex(body: bytes) -> DeliveryStatus | None:
    """``{id, from, to, text, direction, state, createdAt}``; ``None`` for a received SMS.

    ``at`` stays ``None``: ``createdAt`` is when the SMS was created.
    """
    data = _object(body)
    _text(data, "id")
    direction = data.get("direction")
    if not isinstance(direction, str) or direction.upper() not in ("IN", "OUT"):
        raise BadReport("direction must be IN or OUT")
    if direction.upper() == "IN":
        return None
    _text(data, "state")
    status = parse_webhook(data)
    if status is None:
        raise BadReport("not a delivery report")
    return status


PARSERS: Final = {"smsvoip": parse_smsvoip, "telekom": parse_telekom, "voipex": parse_voipex}


def to_report(provider: str, status: DeliveryStatus, received_at: float) -> DeliveryReport:
    return DeliveryReport(
        provider=provider, provider_message_id=status.provider_message_id, state=status.state,
        provider_status=status.provider_status[:100], reason=status.reason[:200],
        at=status.at.timestamp() if status.at is not None else None, received_at=received_at)
