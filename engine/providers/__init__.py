"""Provider adapters, one module per provider, and the one place that maps a kind to its class."""

from __future__ import annotations

import importlib
from typing import Final

import httpx

from engine.config import ProviderConfig
from engine.providers.base import Provider

ADAPTERS: Final = {
    "skytelecom": ("engine.providers.skytelecom", "SkyTelecom"),
    "smsvoip": ("engine.providers.smsvoip", "SmsVoip"),
    "voipex": ("engine.providers.voipex", "Voipex"),
    "telekom": ("engine.providers.telekom", "Telekom"),
    "skynoo": ("engine.providers.skynoo", "Skynoo"),
}


def make_adapter(config: ProviderConfig, *, base_url: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> Provider:
    """The adapter for *config*'s kind, talking to *base_url* (the sandbox's or the real one)."""
    module_name, class_name = ADAPTERS[config.kind]
    cls = getattr(importlib.import_module(module_name), class_name)
    adapter: Provider = cls(config, base_url=base_url, transport=transport)
    return adapter
