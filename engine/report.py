"""Campaign summaries for people (rich tables) and for programs (JSON)."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

from rich.console import Console
from rich.table import Table

from engine.plan.planner import PlanSummary
from engine.plan.tally import Group
from engine.providers.base import Readiness
from engine.routing import nanos_to_decimal
from engine.store.sqlite.delivery_store import DeliveryGroup, DeliverySummary
from engine.store.sqlite.store import SPENDING_STATES

if TYPE_CHECKING:
    from engine.rates import RateSource
    from engine.run import RunOutcome
    from engine.send.preflight import RatesCheck



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
    if c.smart.messages:
        console.print(f"  smart encoding changed {c.smart.messages:,} "
                      f"message{'s' if c.smart.messages != 1 else ''} to GSM-7: "
                      f"{c.smart.segments:,} segment{'s' if c.smart.segments != 1 else ''} and "
                      f"{nanos_to_decimal(c.smart.cost_nanos)} {summary.currency} saved")
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


def print_rate_sources(sources: Sequence[RateSource], console: Console, *,
                       problems_only: bool = False) -> None:
    """Which source prices each provider (live, cache and its age, static file, none); a
    failed rates preflight stands out in bold red with the provider and the reason, then
    what prices the provider instead. *problems_only*: the failures alone."""
    if not problems_only:
        console.print("Rates", style="bold", markup=False)
    for s in sources:
        if s.problem:
            console.print(f"{s.provider}: rates: {s.problem}", style="bold red", markup=False,
                          soft_wrap=True)
            console.print(f"  {s.provider} priced from: {s.describe()}", markup=False,
                          soft_wrap=True)
        elif not problems_only:
            console.print(f"  {s.provider}: {s.describe()}", markup=False, soft_wrap=True)


def print_rate_checks(checks: Sequence[RatesCheck], console: Console) -> None:
    """The rates preflight of each provider; a failed one in bold red, as loud as a login."""
    console.print("Rates", style="bold", markup=False)
    for c in checks:
        console.print(c.line if not c.ok else f"  {c.line}", style=None if c.ok else "bold red",
                      markup=False, soft_wrap=True)


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


REPORT_COLUMNS: Final = ("phone", "line", "state", "provider", "route", "segments", "cost",
                  "provider_message_id", "reason")


async def write_report(rows: AsyncIterator[tuple[Any, ...]], out: TextIO, *,
                       as_json: bool, delivery: bool = False) -> int:
    """Stream every recipient's row as CSV (or JSON lines) to *out*; the number written.
    With *delivery*, rows come from :func:`with_delivery` and carry its columns."""
    writer = None if as_json else csv.writer(out)
    columns = REPORT_COLUMNS + (DELIVERY_COLUMNS if delivery else ())
    if writer is not None:
        writer.writerow(columns)
    count = 0
    async for phone, line, state, provider, route, segments, nanos, pmid, reason, *more in rows:
        cost = str(nanos_to_decimal(nanos)) if nanos is not None else ""
        values = (phone, line, state, provider or "", route or "", segments or "", cost,
                  pmid or "", reason or "", *more)
        if writer is None:
            out.write(json.dumps(dict(zip(columns, values, strict=True))) + "\n")
        else:
            writer.writerow(values)
        count += 1
    return count


def status_json(name: str, counts: Sequence[tuple[str, str | None, int, int, int]],
                currency: str) -> dict[str, Any]:
    by_state: dict[str, int] = {}
    by_provider: dict[str, dict[str, int]] = {}
    spent = 0
    for state, provider, n, _, nanos in counts:
        by_state[state] = by_state.get(state, 0) + n
        if provider:
            by_provider.setdefault(provider, {})[state] = n
        if state in SPENDING_STATES:
            spent += nanos
    return {"campaign": name, "states": by_state, "by_provider": by_provider,
            "cost_so_far": str(nanos_to_decimal(spent)), "currency": currency}


def print_status(name: str, counts: Sequence[tuple[str, str | None, int, int, int]],
                 currency: str, console: Console) -> None:
    data = status_json(name, counts, currency)
    console.print(f"[bold]Campaign {name}[/bold]: " + ", ".join(
        f"{state} {n:,}" for state, n in sorted(data["states"].items())))
    console.print(f"cost so far {data['cost_so_far']} {currency}")
    states = sorted({s for per in data["by_provider"].values() for s in per})
    table = Table(title="By provider", title_justify="left")
    table.add_column("provider")
    for state in states:
        table.add_column(state, justify="right")
    for provider, per in sorted(data["by_provider"].items()):
        table.add_row(provider, *(f"{per.get(s, 0):,}" for s in states))
    console.print(table)


def print_run(outcome: RunOutcome, console: Console) -> None:
    s = outcome.stats
    console.print(f"[bold]Run of {outcome.plan.campaign}[/bold] in {s.seconds:.1f} s: "
                  f"accepted {s.accepted:,}, failed {s.failed:,}, unknown {s.unknown:,}, "
                  f"failed over {s.failed_over:,}, still pending {outcome.pending_left:,}")
    console.print(f"spent {nanos_to_decimal(s.spent_nanos)} {outcome.plan.currency} "
                  f"(plan: {outcome.plan.cost})")
    for name, why in outcome.skipped_providers.items():
        console.print(f"[yellow]left out[/yellow] {name}: {why}")
    if outcome.delivery is not None and outcome.delivery.sent:
        print_delivery_so_far(outcome.plan.campaign, outcome.delivery, console)


def print_delivery_so_far(campaign: str, total: DeliveryGroup, console: Console) -> None:
    """The delivery outcomes known now and, while reports are awaited, how to get them."""
    unknown = f", unknown {total.unknown:,}" if total.unknown else ""
    console.print(f"delivery so far: delivered {total.delivered:,}, "
                  f"undelivered {total.undelivered:,}, awaiting {total.pending:,}{unknown}",
                  markup=False)
    if total.pending:
        console.print(f"{total.pending:,} messages await a delivery report: "
                      f"dispatch dlr {campaign} asks the providers for them now; reports "
                      "still due come in minutes (ask again), and none within 72 h means "
                      "unknown.", markup=False)


def delivery_json(summary: DeliverySummary) -> dict[str, Any]:
    """Delivery rate per provider and country, actual cost beside the estimate, and the
    time from send to delivery (median, p95) of delivered messages."""

    def group(g: DeliveryGroup) -> dict[str, Any]:
        return {"sent": g.sent, "delivered": g.delivered, "undelivered": g.undelivered,
                "awaiting": g.pending, "unknown": g.unknown,
                "delivery_rate": round(g.rate, 4) if g.rate is not None else None,
                "estimated_cost": str(nanos_to_decimal(g.estimated_nanos)),
                "actual_cost": str(nanos_to_decimal(g.actual_nanos))}

    def seconds(value: float | None) -> float | None:
        return round(value, 3) if value is not None else None

    return {"total": group(summary.total),
            "by_provider": {k: group(v) for k, v in summary.by_provider.items()},
            "by_country": {k: group(v) for k, v in summary.by_country.items()},
            "send_to_delivery_s": {"count": summary.latency_count,
                                   "median": seconds(summary.latency_median_s),
                                   "p95": seconds(summary.latency_p95_s)}}


def print_delivery(summary: DeliverySummary, currency: str, console: Console) -> None:
    data = delivery_json(summary)
    latency = data["send_to_delivery_s"]
    if latency["count"]:
        console.print(f"send to delivery: median {latency['median']} s, p95 {latency['p95']} s "
                      f"({latency['count']:,} delivered)")
    for title, label, groups in (("Delivery by provider", "provider", data["by_provider"]),
                                 ("Delivery by country", "country", data["by_country"])):
        if not groups:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column(label)
        for col in ("sent", "delivered", "undelivered", "awaiting", "unknown", "rate",
                    f"estimated ({currency})", f"actual ({currency})"):
            table.add_column(col, justify="right")
        for name, g in groups.items():
            rate = f"{g['delivery_rate']:.1%}" if g["delivery_rate"] is not None else "-"
            table.add_row(name or "-", f"{g['sent']:,}", f"{g['delivered']:,}",
                          f"{g['undelivered']:,}", f"{g['awaiting']:,}", f"{g['unknown']:,}",
                          rate, g["estimated_cost"], g["actual_cost"])
        console.print(table)


DELIVERY_COLUMNS: Final = ("estimated_cost", "delivery_state", "delivery_status",
                           "delivery_reason", "delivered_at", "delivery_seconds")


async def with_delivery(rows: AsyncIterator[tuple[Any, ...]],
                        delivery: AsyncIterator[tuple[Any, ...]]
                        ) -> AsyncIterator[tuple[Any, ...]]:
    """Each report row followed by its delivery columns (both streams are in line order)."""
    async for row in rows:
        line, est, state, word, reason, at, seconds = await anext(delivery)
        assert line == row[1], "report and delivery rows out of step"
        yield (*row, str(nanos_to_decimal(est)) if est is not None else "", state or "",
               word or "", reason or "",
               datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds") if at else "",
               round(seconds, 3) if seconds is not None else "")
