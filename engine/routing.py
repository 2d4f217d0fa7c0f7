"""Rate tables, longest-prefix destination match, cheapest route and failover order.

A rate row is (provider, route, destination prefix, price per segment, currency). Each
provider prices a number by *its own* longest matching prefix; the candidates for a number
are those prices, converted to the routing currency, cheapest first, ties to the provider
listed first in config. :class:`RouteTable` precomputes that candidate list for every prefix
any provider lists, so a lookup is at most one dict probe per prefix length.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from engine.config import ProviderConfig, RoutingConfig
from engine.errors import ConfigError

NANOS: Final = Decimal(10) ** 9
"""Costs are kept as integer billionths of the routing currency, so that sums are exact in
SQL; a price with more than nine decimals after conversion is rounded half-even there."""

RATE_COLUMNS: Final = ("prefix", "price", "currency")


@dataclass(frozen=True, slots=True)
class RateRow:
    provider: str
    route: str
    prefix: str
    price: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    route: str
    prefix: str
    price: Decimal
    currency: str
    price_nanos: int

    @property
    def price_home(self) -> Decimal:
        return Decimal(self.price_nanos) / NANOS


@dataclass(frozen=True, slots=True)
class RatePlan:
    """Every route for one destination prefix, cheapest first: ``routes[0]`` is the choice,
    the rest the failover order."""

    id: int
    prefix: str
    routes: tuple[Route, ...]


def to_nanos(price: Decimal) -> int:
    return int((price * NANOS).to_integral_value(ROUND_HALF_EVEN))


def nanos_to_decimal(nanos: int) -> Decimal:
    return (Decimal(nanos) / NANOS).normalize() if nanos else Decimal(0)


def load_rate_csv(path: Path, provider: str) -> list[RateRow]:
    """Read ``prefix,price,currency[,route]``; errors name the file and line."""
    rows: list[RateRow] = []
    try:
        f = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read rate table: {exc.strerror}", file=path) from None
    with f:
        reader = csv.DictReader(f)
        missing = [c for c in RATE_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ConfigError(f"rate table lacks column(s) {', '.join(missing)}; expected "
                              "prefix,price,currency[,route]", file=path, key="line 1")
        for rec in reader:
            where = f"line {reader.line_num}"
            prefix = (rec["prefix"] or "").strip().lstrip("+")
            if not prefix.isdigit() or not prefix.isascii():
                raise ConfigError(f"prefix {rec['prefix']!r} is not digits", file=path, key=where)
            try:
                price = Decimal((rec["price"] or "").strip())
            except InvalidOperation:
                raise ConfigError(f"price {rec['price']!r} is not a number", file=path,
                                  key=where) from None
            if not price.is_finite() or price < 0:
                raise ConfigError(f"price {rec['price']!r} must be >= 0", file=path, key=where)
            currency = (rec["currency"] or "").strip().upper()
            if len(currency) != 3 or not currency.isalpha():
                raise ConfigError(f"currency {rec['currency']!r} is not an ISO 4217 code",
                                  file=path, key=where)
            route = (rec.get("route") or "").strip()
            rows.append(RateRow(provider, route, prefix, price, currency))
    if not rows:
        raise ConfigError("rate table has no rows", file=path)
    return rows


def static_rates(providers: Iterable[ProviderConfig]) -> list[RateRow]:
    return [row for p in providers if p.rates is not None
            for row in load_rate_csv(p.rates, p.name)]


HEADS_KEPT: Final = 50_000


class RouteTable:
    """Candidate routes per destination for a fixed set of providers."""

    def __init__(self, rows: Iterable[RateRow], provider_order: Sequence[str],
                 routing: RoutingConfig) -> None:
        order = {name: i for i, name in enumerate(provider_order)}
        by_prefix: dict[str, dict[str, list[Route]]] = {}
        for row in rows:
            if row.provider not in order:
                continue
            if row.currency != routing.currency and row.currency not in routing.fx:
                raise ConfigError(f"rate for +{row.prefix} is in {row.currency} and "
                                  f"[routing.fx] has no {row.currency} rate",
                                  key=f"providers.{row.provider}.rates")
            route = Route(row.provider, row.route, row.prefix, row.price, row.currency,
                          to_nanos(routing.to_home(row.price, row.currency)))
            by_prefix.setdefault(row.prefix, {}).setdefault(row.provider, []).append(route)

        plans: dict[str, RatePlan] = {}
        for i, prefix in enumerate(sorted(by_prefix), start=1):
            chosen: dict[str, list[Route]] = {}
            for cut in range(1, len(prefix) + 1):
                chosen.update(by_prefix.get(prefix[:cut], {}))
            routes = sorted((r for rs in chosen.values() for r in rs),
                            key=lambda r: (r.price_nanos, order[r.provider], r.route))
            plans[prefix] = RatePlan(i, prefix, tuple(routes))
        self.plans: Mapping[str, RatePlan] = plans
        self._longest = max((len(p) for p in plans), default=0)
        self._by_head: dict[str, RatePlan | None] = {}

    def lookup(self, digits: str) -> RatePlan | None:
        """The plan for the longest listed prefix of *digits* (E.164 without ``+``).

        The answer depends only on the first ``longest prefix`` digits, and a campaign's
        numbers share few of those heads, so each head's answer is kept (up to
        :data:`HEADS_KEPT` of them)."""
        head = digits[:self._longest]
        try:
            return self._by_head[head]
        except KeyError:
            pass
        found = None
        for cut in range(len(head), 0, -1):
            found = self.plans.get(head[:cut])
            if found is not None:
                break
        if len(self._by_head) < HEADS_KEPT:
            self._by_head[head] = found
        return found

    def cheapest(self, digits: str) -> Route | None:
        plan = self.lookup(digits)
        return plan.routes[0] if plan and plan.routes else None
