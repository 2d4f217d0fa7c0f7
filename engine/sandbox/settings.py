"""What the sandbox accepts and how it misbehaves: accounts, faults and settings as values.

Faults come from three places that all end here: Python (``Faults(...)``), config mappings
(:func:`faults_from_mapping`) and command-line specs such as
``smsvoip:throttle_every=10,latency_ms=50,rate_limit=120/60`` (:func:`parse_fault_spec`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from engine.errors import SandboxError
from engine.sandbox.choices import SMSVOIP_RATES_SHAPES

KINDS: Final = ("skytelecom", "smsvoip", "voipex", "telekom", "skynoo")

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class Faults:
    """How one provider misbehaves; every fault is off by default."""

    throttle_every: int = 0
    throttle_share: float = 0.0
    retry_after_s: float = 1.0
    error_every: int = 0
    error_share: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    drop_after_accept_every: int = 0
    drop_after_accept_share: float = 0.0
    reset_before_every: int = 0
    reset_before_share: float = 0.0
    rate_limit: tuple[int, float] | None = None
    undelivered_share: float = 0.0


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """What the sandbox accepts for one provider, and where its delivery reports go."""

    api_key: str = ""
    api_secret: str = ""
    token: str = ""
    webhook_secret: str = ""
    allowed_numbers: tuple[str, ...] = ()
    wallet: Decimal = Decimal("100")
    callback_url: str | None = None
    faults: Faults = Faults()


DEFAULT_CREDENTIALS: Final[Mapping[str, ProviderAccount]] = {
    "skytelecom": ProviderAccount(api_key="sky_test_key"),
    "smsvoip": ProviderAccount(api_key="sk_test_sandbox", webhook_secret="whsec_sandbox"),
    "voipex": ProviderAccount(token="voipex-sandbox-jwt", allowed_numbers=("+420777888999",)),
    "telekom": ProviderAccount(token="telekom-sandbox-token"),
    "skynoo": ProviderAccount(api_key="app_sandbox", api_secret="sec_sandbox"),
}
"""The sandbox credentials of each provider (none is a real secret)."""


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """The whole sandbox: one account per served provider kind, and shared tunables."""

    accounts: Mapping[str, ProviderAccount] = field(
        default_factory=lambda: dict(DEFAULT_CREDENTIALS)
    )
    ledger_path: Path | None = None
    state_path: Path | None = None
    """Where billed messages, ids, the wallet and unposted reports outlive the process
    (:mod:`engine.sandbox.state`); ``None``: in memory only."""
    delivery_delay_s: float = 1.0
    session_ttl_s: float = 900.0
    seed: int = 0
    smsvoip_rates_shape: str = SMSVOIP_RATES_SHAPES[0]
    """Which reading of document 001's ``/rates`` the sandbox answers (see choices.py)."""


def default_settings(**overrides: Any) -> SandboxSettings:
    """All five providers with :data:`DEFAULT_CREDENTIALS`; keyword overrides replace fields.

    ``accounts=`` is merged: the kinds it names replace the defaults, the others stay.
    """
    accounts = dict(DEFAULT_CREDENTIALS)
    accounts.update(overrides.pop("accounts", {}))
    try:
        settings = SandboxSettings(accounts=accounts, **overrides)
    except TypeError as exc:
        raise SandboxError(f"sandbox settings: {exc}") from exc
    validate(settings)
    return settings


def is_loopback_url(url: str) -> bool:
    """True for an http(s) URL whose host is this machine's loopback address."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS


def validate(settings: SandboxSettings) -> None:
    """Raise :class:`SandboxError` naming the first setting the sandbox cannot honour."""
    for kind, account in settings.accounts.items():
        if kind not in KINDS:
            raise SandboxError(f"sandbox: unknown provider kind {kind!r}; known: {KINDS}")
        if account.callback_url is not None and not is_loopback_url(account.callback_url):
            raise SandboxError(
                f"sandbox {kind}: callback_url must be an http URL on 127.0.0.1 or localhost"
            )
        validate_faults(kind, account.faults)
    if settings.delivery_delay_s < 0 or settings.session_ttl_s <= 0:
        raise SandboxError("sandbox: delivery_delay_s must be >= 0 and session_ttl_s > 0")
    if settings.smsvoip_rates_shape not in SMSVOIP_RATES_SHAPES:
        raise SandboxError(f"sandbox: smsvoip_rates_shape must be one of "
                           f"{', '.join(SMSVOIP_RATES_SHAPES)}")


def validate_faults(kind: str, faults: Faults) -> None:
    """Raise :class:`SandboxError` when a fault value is out of its range."""
    for name in ("throttle_every", "error_every", "drop_after_accept_every", "reset_before_every"):
        if getattr(faults, name) < 0:
            raise SandboxError(f"sandbox {kind}: {name} must be >= 0")
    for name in (
        "throttle_share",
        "error_share",
        "drop_after_accept_share",
        "reset_before_share",
        "undelivered_share",
    ):
        if not 0.0 <= getattr(faults, name) <= 1.0:
            raise SandboxError(f"sandbox {kind}: {name} must be between 0 and 1")
    if not 500 <= faults.error_status <= 599:
        raise SandboxError(f"sandbox {kind}: error_status must be a 5xx status")
    if faults.retry_after_s < 0 or faults.latency_ms < 0 or faults.jitter_ms < 0:
        raise SandboxError(f"sandbox {kind}: retry_after_s, latency_ms and jitter_ms must be >= 0")
    if faults.rate_limit is not None:
        count, period = faults.rate_limit
        if count < 1 or period <= 0:
            raise SandboxError(f"sandbox {kind}: rate_limit must be (count >= 1, period_s > 0)")


_FAULT_TYPES: Final[Mapping[str, type]] = {
    f.name: (int if f.name.endswith(("_every", "_status")) else float)
    for f in dataclasses.fields(Faults)
    if f.name != "rate_limit"
}


def faults_from_mapping(kind: str, values: Mapping[str, object]) -> Faults:
    """Faults from a config or JSON mapping of field names; ``rate_limit`` is [count, period]."""
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        try:
            if name == "rate_limit":
                kwargs[name] = _rate_limit(raw)
            elif name in _FAULT_TYPES:
                kwargs[name] = _number(_FAULT_TYPES[name], raw)
            else:
                raise SandboxError(f"sandbox {kind}: unknown fault {name!r}")
        except (TypeError, ValueError) as exc:
            raise SandboxError(f"sandbox {kind}: fault {name}: {exc}") from exc
    faults = Faults(**kwargs)
    validate_faults(kind, faults)
    return faults


def parse_fault_spec(spec: str) -> tuple[tuple[str, ...], Faults]:
    """``KIND:name=value,...`` (``KIND`` may be ``all``) into the kinds it names and Faults.

    ``rate_limit`` is written ``COUNT/PERIOD_S``, e.g. ``rate_limit=120/60``.
    """
    kind, sep, body = spec.partition(":")
    kind = kind.strip()
    if not sep or (kind != "all" and kind not in KINDS):
        raise SandboxError(
            f"sandbox: fault spec {spec!r} must look like KIND:name=value,... "
            f"with KIND one of all, {', '.join(KINDS)}"
        )
    values: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        name, eq, value = item.partition("=")
        if not eq:
            raise SandboxError(f"sandbox: fault {item!r} in {spec!r} has no '=value'")
        values[name.strip()] = value.strip()
    kinds = KINDS if kind == "all" else (kind,)
    return kinds, faults_from_mapping(kind, values)


def _number(kind: type, raw: object) -> int | float:
    if isinstance(raw, bool):
        raise TypeError("expected a number")
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"expected a whole number, got {raw}")
        return int(raw) if isinstance(raw, int | float) else int(str(raw))
    return float(raw) if isinstance(raw, int | float) else float(str(raw))


def _rate_limit(raw: object) -> tuple[int, float] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        count, sep, period = raw.partition("/")
        if not sep:
            raise ValueError("expected COUNT/PERIOD_S, e.g. 120/60")
        return int(count), float(period)
    if isinstance(raw, list | tuple) and len(raw) == 2:
        count_raw, period_raw = raw
        return int(_number(int, count_raw)), float(_number(float, period_raw))
    raise ValueError("expected [count, period_s] or COUNT/PERIOD_S")
