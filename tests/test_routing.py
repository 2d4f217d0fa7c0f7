"""Cheapest route by each provider's longest prefix; ties to the provider listed first."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

from engine.config import RoutingConfig
from engine.routing import RateRow, RouteTable
from engine.template import Template

EUR = RoutingConfig(currency="EUR", fx=MappingProxyType({"USD": Decimal("0.5")}))


def row(provider: str, prefix: str, price: str, currency: str = "EUR",
        route: str = "") -> RateRow:
    return RateRow(provider, route, prefix, Decimal(price), currency)


def test_each_provider_prices_by_its_own_longest_prefix() -> None:
    """A provider's 4219 rate beats its own 421 rate and another provider's 421 rate."""
    table = RouteTable([row("a", "421", "0.05"), row("a", "4219", "0.03"),
                        row("b", "421", "0.04")], ["a", "b"], EUR)
    plan = table.lookup("421912345678")
    assert plan is not None
    assert [(r.provider, r.prefix) for r in plan.routes] == [("a", "4219"), ("b", "421")]
    other = table.lookup("421212345678")
    assert other is not None
    assert [(r.provider, r.prefix) for r in other.routes] == [("b", "421"), ("a", "421")]


def test_currencies_are_converted_before_comparing() -> None:
    """0.08 USD at 0.5 EUR/USD (0.04 EUR) beats 0.05 EUR."""
    table = RouteTable([row("eur", "44", "0.05"), row("usd", "44", "0.08", "USD")],
                       ["eur", "usd"], EUR)
    best = table.cheapest("447400123456")
    assert best is not None and best.provider == "usd"
    assert best.price_home == Decimal("0.04")


def test_ties_go_to_the_provider_listed_first() -> None:
    """Equal prices keep config order, whatever the rows' order."""
    rows = [row("second", "33", "0.05"), row("first", "33", "0.05")]
    best = RouteTable(rows, ["first", "second"], EUR).cheapest("33612345678")
    assert best is not None and best.provider == "first"


def test_failover_order_lists_every_route_cheapest_first() -> None:
    """Several routes of one provider and others' routes all appear, cheapest first."""
    rows = [row("sky", "34", "0.065", route="ch6-1"), row("sky", "34", "0.068", route="ch6-2"),
            row("voip", "34", "0.061"), row("other", "49", "0.01")]
    plan = RouteTable(rows, ["sky", "voip", "other"], EUR).lookup("34612345678")
    assert plan is not None
    assert [(r.provider, r.route) for r in plan.routes] == [
        ("voip", ""), ("sky", "ch6-1"), ("sky", "ch6-2")]


def test_no_route_where_nobody_prices_the_destination() -> None:
    """A destination outside every table has no plan; disabled providers are left out."""
    table = RouteTable([row("a", "44", "0.05"), row("b", "81", "0.01")], ["a"], EUR)
    assert table.lookup("819012345678") is None


def test_template_renders_columns_defaults_and_literal_braces() -> None:
    """{col} takes the cell, an empty cell takes its default, {{ }} are literal braces."""
    bound = Template.compile("{{Hi}} {name}, {city}!").bind(["phone", "name", "city"],
                                                           {"city": "Bratislava"})
    assert bound.render(["+1", "Ann", ""]) == ("{Hi} Ann, Bratislava!", None)
    assert bound.render(["+1", " ", "Wien"]) == ("", "name")
    percent = Template.compile("{a}% of {b} is 100%, not %s").bind(["a", "b"], {})
    assert percent.render(["5", "%d"]) == ("5% of %d is 100%, not %s", None)
    assert Template.compile("50% off, %s").bind(["phone"], {}).render(["+1"]) == \
        ("50% off, %s", None)
