"""Campaign summaries for people (rich tables) and for programs (JSON)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from engine.plan import PlanSummary
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
