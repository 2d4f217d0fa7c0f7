"""The sandbox's own price table (``data/prices.csv``) and longest-prefix destination lookup."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Final

COUNTRY_NAMES: Final[Mapping[str, str]] = {
    "AT": "Austria",
    "AU": "Australia",
    "BR": "Brazil",
    "CZ": "Czech Republic",
    "DE": "Germany",
    "ES": "Spain",
    "FR": "France",
    "GB": "United Kingdom",
    "GR": "Greece",
    "HU": "Hungary",
    "IN": "India",
    "IT": "Italy",
    "NL": "Netherlands",
    "PL": "Poland",
    "SK": "Slovakia",
    "UA": "Ukraine",
    "US": "United States",
}


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One priced destination of one provider (``route`` is empty where there is none)."""

    provider: str
    country: str
    prefix: str
    price: Decimal
    currency: str
    route: str

    @property
    def country_name(self) -> str:
        return COUNTRY_NAMES.get(self.country, self.country)


class PriceTable:
    """Rows per provider, indexed by prefix (cheapest first) and by route id."""

    __slots__ = ("_by_prefix", "_by_route", "_longest", "rows")

    def __init__(self, rows: list[PriceRow]) -> None:
        self.rows: Final = tuple(rows)
        by_prefix: dict[tuple[str, str], list[PriceRow]] = {}
        for row in rows:
            by_prefix.setdefault((row.provider, row.prefix), []).append(row)
        self._by_prefix = {
            key: tuple(sorted(group, key=lambda r: r.price)) for key, group in by_prefix.items()
        }
        self._by_route = {(r.provider, r.route): r for r in rows if r.route}
        self._longest = max((len(r.prefix) for r in rows), default=0)

    def for_provider(self, provider: str) -> tuple[PriceRow, ...]:
        return tuple(r for r in self.rows if r.provider == provider)

    def options(self, provider: str, digits: str) -> tuple[PriceRow, ...]:
        """Every row of the longest prefix of ``digits`` priced by ``provider``, cheapest first."""
        for length in range(min(self._longest, len(digits)), 0, -1):
            found = self._by_prefix.get((provider, digits[:length]))
            if found:
                return found
        return ()

    def lookup(self, provider: str, digits: str) -> PriceRow | None:
        """The cheapest row of the longest matching prefix, or None when unpriced."""
        found = self.options(provider, digits)
        return found[0] if found else None

    def route(self, provider: str, route: str) -> PriceRow | None:
        return self._by_route.get((provider, route))


def load_prices() -> PriceTable:
    """Read ``engine/sandbox/data/prices.csv`` through importlib.resources."""
    text = resources.files("engine.sandbox").joinpath("data/prices.csv").read_text("utf-8")
    rows = [
        PriceRow(
            provider=rec["provider"].strip(),
            country=rec["country"].strip(),
            prefix=rec["prefix"].strip(),
            price=Decimal(rec["price"].strip()),
            currency=rec["currency"].strip(),
            route=(rec.get("route") or "").strip(),
        )
        for rec in csv.DictReader(io.StringIO(text))
    ]
    return PriceTable(rows)
