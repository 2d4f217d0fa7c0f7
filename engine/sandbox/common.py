"""Small helpers the provider emulations share: routing, credentials, fields, segments."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from engine.sandbox.core import Refusal
from engine.sandbox.wire import BadJson, Request, Response
from engine.segments import measure

Handler = Callable[[Request], Response]

E164_PLUS: Final = re.compile(r"\+[1-9]\d{7,14}")
DIGITS: Final = re.compile(r"\+?[1-9]\d{7,14}")


def dispatch(routes: Mapping[tuple[str, str], Handler], request: Request, path: str) -> Handler:
    """The handler for ``(method, path)``; a 404 or 405 :class:`Refusal` otherwise."""
    handler = routes.get((request.method, path))
    if handler is not None:
        return handler
    if any(p == path for _, p in routes):
        raise Refusal(405, "method_not_allowed", f"{request.method} is not allowed on {path}")
    raise Refusal(404, "not_found", f"no such endpoint: {path}")


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def json_object(request: Request, refusal: Callable[[str], Refusal]) -> dict[str, Any]:
    """The body as a JSON object, or ``refusal(reason)`` raised."""
    try:
        body = request.json()
    except BadJson as exc:
        raise refusal("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise refusal("body must be a JSON object")
    return body


def text_field(
    body: Mapping[str, Any],
    name: str,
    refusal: Callable[[str], Refusal],
    *,
    required: bool = True,
) -> str | None:
    """A string field; missing or empty is refused when required, wrong types always."""
    value = body.get(name)
    if value is None:
        if required:
            raise refusal(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise refusal(f"{name} must be a string")
    if required and not value:
        raise refusal(f"{name} must not be empty")
    return value


def segments(text: str) -> int:
    """Billed parts of ``text`` as the engine counts them (:mod:`engine.segments`)."""
    return measure(text)[1]


def money(value: Decimal) -> float:
    """A Decimal amount as the JSON number the documents show."""
    return float(value)
