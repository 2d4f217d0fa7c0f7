"""Campaign summaries for people (rich tables) and for programs (JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.plan import PlanSummary
from engine.providers.base import Readiness
from engine.routing import nanos_to_decimal
from engine.store import Group


def _group_table(title: str, label: str, groups: dict[str, Group], currency: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(label)
    for col in ("messages", "segments", f"cost ({currency})"):
        table.add_column(col, justify="right")
    for name, g in groups.items():
        table.add_row(name, f"{g.messages:,}", f"{g.segments:,}",
                      str(nanos_to_decimal(g.cost_nanos)))
    return table


def print_plan(summary: PlanSummary, console: Console) -> None:
    c = summary.counts
    console.print(f"[bold]Plan for campaign {summary.campaign}[/bold]")
    console.print(f"rows read {c.rows:,}: valid {c.valid:,}, "
                  f"rejected {sum(c.rejected.values()):,}, skipped {sum(c.skipped.values()):,}")
    for title, reasons in (("rejected", c.rejected), ("skipped", c.skipped)):
        if reasons:
            console.print(f"  {title}: " + ", ".join(f"{k} {v:,}" for k, v in
                                                    sorted(reasons.items())))
    console.print(f"messages {c.valid:,}, segments {c.segments:,}, "
                  f"cost [bold]{summary.cost} {summary.currency}[/bold]")
    if c.by_provider:
        console.print(_group_table("By provider", "provider", c.by_provider, summary.currency))
    if c.by_country:
        console.print(_group_table("By country", "country", c.by_country, summary.currency))
    if summary.over_budget:
        console.print(f"[bold red]warning:[/bold red] the plan costs {summary.cost} "
                      f"{summary.currency}, more than max_cost {summary.max_cost}")


def print_readiness(results: Sequence[Readiness], console: Console) -> None:
    table = Table(title="Preflight", title_justify="left")
    for col in ("provider", "ready", "balance", "problems"):
        table.add_column(col)
    for r in results:
        table.add_row(r.provider, "[green]yes[/green]" if r.ok else "[red]no[/red]",
                      f"{r.balance} {r.currency or ''}".strip() if r.balance is not None else "",
                      "; ".join(r.problems))
    console.print(table)


def print_rates(rows: Sequence[dict[str, Any]], currency: str, console: Console) -> None:
    table = Table(title=f"Cheapest route per destination (per segment, {currency})",
                  title_justify="left")
    for col in ("country", "prefix", "cheapest", "price", "runner-up", "price "):
        table.add_column(col, justify="right" if col.startswith("price") else "left")
    for row in rows:
        best, second = row["cheapest"], row["runner_up"]
        table.add_row(row["country"], "+" + row["prefix"], _route(best),
                      best["price"] if best else "", _route(second),
                      second["price"] if second else "")
    console.print(table)


def _route(choice: dict[str, Any] | None) -> str:
    if not choice:
        return "-"
    return f"{choice['provider']} ({choice['route']})" if choice["route"] else choice["provider"]
