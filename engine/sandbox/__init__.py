"""A local simulator of the five provider APIs, with fault injection and a ledger.

``running_sandbox(settings)`` serves it inside the caller's event loop; ``serve`` and
``python -m engine.sandbox`` serve it standalone. Decisions made where a provider document
is silent are all in :mod:`engine.sandbox.choices`.

The server side (``running_sandbox``, ``Sandbox``, ...) is imported on first use, so that
``dispatch`` can build its ``sandbox`` sub-command from :func:`add_arguments` cheaply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from engine.sandbox.command import add_arguments, serve, settings_from_args
from engine.sandbox.settings import (
    DEFAULT_CREDENTIALS,
    KINDS,
    Faults,
    ProviderAccount,
    SandboxSettings,
    default_settings,
    faults_from_mapping,
    parse_fault_spec,
)

if TYPE_CHECKING:
    from engine.sandbox.faults import Violation
    from engine.sandbox.ledger import LedgerEntry
    from engine.sandbox.server import Sandbox, running_sandbox
    from engine.sandbox.smsvoip import signature

_LAZY: Final = {
    "LedgerEntry": "engine.sandbox.ledger",
    "Sandbox": "engine.sandbox.server",
    "Violation": "engine.sandbox.faults",
    "running_sandbox": "engine.sandbox.server",
    "signature": "engine.sandbox.smsvoip",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_CREDENTIALS",
    "KINDS",
    "Faults",
    "LedgerEntry",
    "ProviderAccount",
    "Sandbox",
    "SandboxSettings",
    "Violation",
    "add_arguments",
    "default_settings",
    "faults_from_mapping",
    "parse_fault_spec",
    "running_sandbox",
    "serve",
    "settings_from_args",
    "signature",
]
