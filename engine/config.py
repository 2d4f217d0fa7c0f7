"""Loading and validating ``config.toml`` into frozen dataclasses.

Every problem is a :class:`~engine.errors.ConfigError` naming the file and the dotted key.
Any string value may be ``${VAR}`` or ``${VAR:-default}``: secrets come from the
environment, and a missing variable is an error naming it. The campaign file has its own
loader in :mod:`engine.campaign`; the pieces both use (``TomlTable``) live here.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar, cast

from engine.errors import ConfigError

Kind = Literal["skytelecom", "smsvoip", "voipex", "telekom", "skynoo"]
KINDS: Final[tuple[Kind, ...]] = ("skytelecom", "smsvoip", "voipex", "telekom", "skynoo")
SANDBOX: Final = "sandbox"

REQUIRED_CREDENTIALS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "skytelecom": ("api_key",),
        "smsvoip": ("api_key",),
        "voipex": ("token", "sender"),
        "telekom": ("token",),
        "skynoo": ("api_key", "api_secret"),
    }
)
SECRET_KEYS: Final = ("api_key", "api_secret", "token", "webhook_secret")

DEFAULT_CONCURRENCY: Final = 16
DEFAULT_RATE_TTL_S: Final = 24 * 3600.0

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_PERIOD_S: Final = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0,
                    "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_DURATION_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CURRENCY = re.compile(r"^[A-Z]{3}$")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` requests started in any window of ``period_s`` seconds."""

    count: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: Kind
    base_url: str
    api_key: str = ""
    api_secret: str = ""
    token: str = ""
    webhook_secret: str = ""
    sender: str = ""
    rate_limit: RateLimit | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    currency: str = "EUR"
    rates: Path | None = None
    enabled: bool = True

    @property
    def uses_sandbox(self) -> bool:
        return self.base_url == SANDBOX

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.api_secret, self.token,
                                 self.webhook_secret) if v)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    currency: str = "EUR"
    fx: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    rate_ttl_s: float = DEFAULT_RATE_TTL_S

    def to_home(self, price: Decimal, currency: str) -> Decimal:
        """*price* in *currency* expressed in the routing currency."""
        if currency == self.currency:
            return price
        return price * self.fx[currency]


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    database: Path
    providers: tuple[ProviderConfig, ...]
    routing: RoutingConfig

    @property
    def enabled_providers(self) -> tuple[ProviderConfig, ...]:
        return tuple(p for p in self.providers if p.enabled)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for p in self.providers for s in p.secrets)

    def provider(self, name: str) -> ProviderConfig:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)


class TomlTable:
    """A TOML table with its file and dotted key, so that every error names both.

    Reading a key marks it used; :meth:`reject_unknown` then names any key nobody read.
    """

    def __init__(self, data: Mapping[str, Any], *, file: Path, key: str = "",
                 error: type[ConfigError] = ConfigError) -> None:
        self.data = data
        self.file = file
        self.key = key
        self.error_type = error
        self._seen: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, problem: str) -> ConfigError:
        return self.error_type(problem, file=self.file, key=self.path(name))

    def get(self, name: str, kind: type[T], default: T | None = None, *,
            required: bool = False) -> T:
        self._seen.add(name)
        if name not in self.data:
            if required or default is None:
                raise self.error(name, "is required")
            return default
        value = self.data[name]
        if isinstance(value, str):
            value = interpolate(value, file=self.file, key=self.path(name),
                                error=self.error_type)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"must be {_type_name(kind)}, not {_type_name(type(value))}")
        return value

    def optional(self, name: str, kind: type[T]) -> T | None:
        if name not in self.data:
            self._seen.add(name)
            return None
        return self.get(name, kind)

    def table(self, name: str, *, required: bool = False) -> TomlTable:
        self._seen.add(name)
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error(name, "table is required")
            value = {}
        if not isinstance(value, dict):
            raise self.error(name, "must be a table")
        return TomlTable(value, file=self.file, key=self.path(name), error=self.error_type)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key" + _did_you_mean(unknown[0], self._seen))


def interpolate(value: str, *, file: Path, key: str,
                error: type[ConfigError] = ConfigError) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` from the environment."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise error(f"environment variable {name} is not set", file=file, key=key)

    return _ENV_REF.sub(sub, value) if "${" in value else value


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error("file not found", file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}", file=path) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=path) from None


def parse_rate_limit(text: str, *, table: TomlTable, name: str) -> RateLimit:
    m = _RATE.match(text)
    if not m or int(m.group(1)) <= 0:
        raise table.error(name, f"{text!r} is not a rate such as \"120/min\" or \"20/s\"")
    multiple = float(m.group(2)) if m.group(2) else 1.0
    if multiple <= 0:
        raise table.error(name, f"{text!r} has a zero period")
    return RateLimit(int(m.group(1)), multiple * _PERIOD_S[m.group(3)])


def parse_duration(value: str | int | float, *, table: TomlTable, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise table.error(name, f"{value!r} is not a duration such as \"30s\", \"15m\", \"24h\"")
    return float(m.group(1)) * _DURATION_S[m.group(2) or "s"]


def parse_decimal(value: object, *, table: TomlTable, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise table.error(name, "must be a decimal number")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise table.error(name, f"{value!r} is not a decimal number") from None
    if not result.is_finite() or result < 0:
        raise table.error(name, f"{value!r} must be a non-negative number")
    return result


def parse_currency(text: str, *, table: TomlTable, name: str) -> str:
    if not _CURRENCY.match(text):
        raise table.error(name, f"{text!r} is not an ISO 4217 code such as \"EUR\"")
    return text


def load_config(path: Path | str) -> Config:
    """Read and validate *path*; raise :class:`ConfigError` on the first problem."""
    path = Path(path)
    root = TomlTable(read_toml(path), file=path)
    base = path.resolve().parent

    engine = root.table("engine")
    database = base / engine.get("database", str, "dispatch.db")
    engine.reject_unknown()

    routing_t = root.table("routing")
    currency = parse_currency(routing_t.get("currency", str, "EUR"), table=routing_t,
                              name="currency")
    fx_t = routing_t.table("fx")
    fx = {parse_currency(code, table=fx_t, name=code):
          parse_decimal(fx_t.get(code, object), table=fx_t, name=code) for code in fx_t.data}
    ttl_raw = routing_t.get("rate_ttl", object, "24h")
    routing = RoutingConfig(
        currency=currency,
        fx=MappingProxyType(fx),
        rate_ttl_s=parse_duration(cast(Any, ttl_raw), table=routing_t, name="rate_ttl"),
    )
    routing_t.reject_unknown()

    providers_t = root.table("providers", required=True)
    providers = tuple(
        _load_provider(name, providers_t.table(name), base=base, routing=routing)
        for name in providers_t.data
    )
    if not providers:
        raise providers_t.error("", "at least one provider is required")
    if not any(p.enabled for p in providers):
        raise providers_t.error("", "every provider is disabled")
    root.reject_unknown()
    return Config(path=path, database=database, providers=providers, routing=routing)


def _load_provider(name: str, t: TomlTable, *, base: Path, routing: RoutingConfig
                   ) -> ProviderConfig:
    kind = t.get("kind", str, name if name in KINDS else None, required=name not in KINDS)
    if kind not in KINDS:
        raise t.error("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    base_url = t.get("base_url", str, SANDBOX)
    if base_url != SANDBOX and not re.match(r"^https?://[^/\s]+(/\S*)?$", base_url):
        raise t.error("base_url", f"{base_url!r} is neither \"sandbox\" nor an http(s) URL")
    enabled = t.get("enabled", bool, True)
    values = {key: t.get(key, str, "") for key in (*SECRET_KEYS, "sender")}
    if enabled:
        for key in REQUIRED_CREDENTIALS[kind]:
            if not values[key]:
                raise t.error(key, f"is required for an enabled {kind} provider")
    rate_limit = t.optional("rate_limit", str)
    concurrency = t.get("concurrency", int, DEFAULT_CONCURRENCY)
    if concurrency < 1:
        raise t.error("concurrency", "must be at least 1")
    currency = parse_currency(t.get("currency", str, routing.currency), table=t, name="currency")
    if enabled and currency != routing.currency and currency not in routing.fx:
        raise t.error("currency", f"{currency} differs from [routing] currency "
                      f"{routing.currency} and [routing.fx] has no {currency} rate")
    rates = t.optional("rates", str)
    rates_path = base / rates if rates else None
    if enabled and rates_path is not None and not rates_path.is_file():
        raise t.error("rates", f"rate table {rates_path} does not exist")
    t.reject_unknown()
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=base_url.rstrip("/"),
        rate_limit=parse_rate_limit(rate_limit, table=t, name="rate_limit") if rate_limit else None,
        concurrency=concurrency,
        currency=currency,
        rates=rates_path,
        enabled=enabled,
        **values,
    )


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "a table", list: "an array"}.get(kind, kind.__name__)


def _did_you_mean(name: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
