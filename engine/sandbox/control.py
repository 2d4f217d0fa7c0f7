"""``/_sandbox/...``: drive a sandbox in another process (ledger, violations, faults, reset)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from engine.errors import SandboxError
from engine.sandbox.faults import Violation
from engine.sandbox.ledger import LedgerEntry
from engine.sandbox.settings import KINDS, Faults, faults_from_mapping
from engine.sandbox.wire import BadJson, Request, Response, json_response

PREFIX: Final = "/_sandbox/"


class Controlled(Protocol):
    """The part of :class:`engine.sandbox.server.Sandbox` the control endpoints drive."""

    @property
    def ledger(self) -> list[LedgerEntry]: ...

    @property
    def violations(self) -> list[Violation]: ...

    def set_faults(self, kind: str, faults: Faults) -> None: ...

    def expire_sessions(self) -> None: ...

    def suspend(self, kind: str, suspended: bool = True) -> None: ...

    def reset(self) -> None: ...


def handle(sandbox: Controlled, request: Request) -> Response:
    """Answer one control request; ``request.path`` starts with ``/_sandbox/``."""
    route = request.path[len(PREFIX) :].strip("/")
    method = request.method
    if method == "GET" and route == "ledger":
        entries = [e.to_json() for e in sandbox.ledger]
        return json_response({"count": len(entries), "entries": entries})
    if method == "GET" and route == "violations":
        violations = [v.to_json() for v in sandbox.violations]
        return json_response({"count": len(violations), "violations": violations})
    if method == "POST" and route == "reset":
        sandbox.reset()
        return json_response({"status": "ok"})
    if method == "POST" and route == "telekom/expire-sessions":
        sandbox.expire_sessions()
        return json_response({"status": "ok"})
    head, _, kind = route.partition("/")
    if method == "POST" and head == "faults" and kind:
        return _with_kind(kind, request, lambda body: _set_faults(sandbox, kind, body))
    if method == "POST" and head == "suspend" and kind:
        return _with_kind(kind, request, lambda body: _suspend(sandbox, kind, body))
    return json_response({"error": f"no such control endpoint: {method} {request.path}"}, 404)


def _with_kind(kind: str, request: Request, act: Callable[[dict[str, object]], None]) -> Response:
    if kind not in KINDS:
        return json_response({"error": f"unknown provider kind {kind!r}"}, 404)
    try:
        body = request.json() or {}
    except BadJson:
        return json_response({"error": "body must be a JSON object"}, 400)
    if not isinstance(body, dict):
        return json_response({"error": "body must be a JSON object"}, 400)
    try:
        act(body)
    except SandboxError as exc:
        return json_response({"error": exc.message}, 400)
    return json_response({"status": "ok"})


def _set_faults(sandbox: Controlled, kind: str, body: dict[str, object]) -> None:
    sandbox.set_faults(kind, faults_from_mapping(kind, body))


def _suspend(sandbox: Controlled, kind: str, body: dict[str, object]) -> None:
    sandbox.suspend(kind, bool(body.get("suspended", True)))
