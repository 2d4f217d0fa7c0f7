"""Campaign summaries for people (rich tables) and for programs (JSON)."""

from __future__ import annotations

import csv
import json
import textwrap
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

from rich.console import Console
from rich.table import Table

from engine.plan.planner import PlanSummary
from engine.plan.tally import Group
from engine.providers.base import Readiness
from engine.routing import nanos_to_decimal
from engine.store.delivery_records import DeliveryGroup, DeliverySummary
from engine.store.records import ReportRow
from engine.store.states import SPENDING_STATES

if TYPE_CHECKING:
    from engine.rates import RateSource
    from engine.run import RunOutcome
    from engine.send.preflight import RatesCheck



@dataclass(frozen=True, slots=True)
class Column:
    """A table column: numbers and names are never wrapped, *text* wraps between words."""

    header: str
    right: bool = True
    text: bool = False


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> Table:
    table = Table()
    for col in columns:
        table.add_column(col.header, justify="right" if col.right else "left",
                         no_wrap=not col.text)
    for row in rows:
        table.add_row(*row)
    return table


def _min_width(console: Console, table: Table) -> int:
    """The narrowest *table* can be drawn without cutting a number or a name."""
    return table.__rich_measure__(console, console.options.update_width(10_000)).minimum


def print_tables(console: Console, title: str, columns: Sequence[Column],
                 rows: Sequence[Sequence[str]]) -> None:
    """*rows* under *title*, every cell in full within the console's width: one table where
    it fits (text columns wrapped between words), else the first column beside as many of
    the others as fit, then again beside the rest, under "*title*, continued"."""
    keep = [0]
    groups: list[list[int]] = []
    for i in range(1, len(columns)):
        trial = [*keep, i]
        table = _table([columns[j] for j in trial], [[r[j] for j in trial] for r in rows])
        if len(keep) > 1 and _min_width(console, table) > console.width:
            groups.append(keep)
            keep = [0, i]
        else:
            keep = trial
    groups.append(keep)
    for n, group in enumerate(groups):
        say(console, title if n == 0 else f"{title}, continued", style="bold")
        console.print(_table([columns[j] for j in group], [[r[j] for j in group] for r in rows]))


def say(console: Console, text: str, *, indent: str = "", style: str = "") -> None:
    """*text* wrapped at the console's width between words, never inside one: a pair written
    with a no-break space (``name\xa0count``) stays on one line."""
    lines = textwrap.wrap(text, width=max(console.width, 20), subsequent_indent=indent + "  ",
                          initial_indent=indent, break_long_words=False,
                          break_on_hyphens=False) or [""]
    for line in lines:
        console.print(line.replace("\xa0", " "), style=style or None, markup=False,
                      soft_wrap=True)


def _counted(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k}\xa0{v:,}" for k, v in sorted(reasons.items()))


def _group_rows(groups: dict[str, Group]) -> list[list[str]]:
    return [[name or "-", f"{g.messages:,}", f"{g.segments:,}",
             str(nanos_to_decimal(g.cost_nanos))] for name, g in groups.items()]


def print_plan_counts(summary: PlanSummary, console: Console, *, listing: str = "") -> None:
    """What the plan holds: rows valid, rejected and skipped, with their reasons counted;
    *listing* is the command that lists them (without its ``--state`` option)."""
    c = summary.counts
    rejected, skipped = sum(c.rejected.values()), sum(c.skipped.values())
    say(console, f"lines read {c.lines:,}: valid {c.valid:,}, rejected {rejected:,}, "
                 f"skipped {skipped:,}, blank {c.blank:,}")
    for title, reasons in (("rejected", c.rejected), ("skipped", c.skipped)):
        if reasons:
            say(console, f"{title}: {_counted(reasons)}", indent="  ")
    states = [state for state, n in (("rejected", rejected), ("skipped", skipped)) if n]
    if listing and states:
        say(console, f"list them: {listing} --state {states[0]}"
                     + "".join(f" (or --state {s})" for s in states[1:]), indent="  ")


def print_plan(summary: PlanSummary, console: Console) -> None:
    c = summary.counts
    say(console, f"Plan for campaign {summary.campaign}", style="bold")
    print_plan_counts(summary, console)
    say(console, f"messages {c.valid:,}, segments {c.segments:,}, "
                 f"cost {summary.cost} {summary.currency}")
    if c.smart.messages:
        say(console, f"smart encoding changed {c.smart.messages:,} "
                     f"message{'s' if c.smart.messages != 1 else ''} to GSM-7: "
                     f"{c.smart.segments:,} segment{'s' if c.smart.segments != 1 else ''} and "
                     f"{nanos_to_decimal(c.smart.cost_nanos)} {summary.currency} saved",
            indent="  ")
    for title, label, groups in (("By provider", "provider", c.by_provider),
                                 ("By country", "country", c.by_country)):
        if groups:
            print_tables(console, f"{title} (cost in {summary.currency})",
                         [Column(label, right=False), Column("messages"), Column("segments"),
                          Column("cost")], _group_rows(groups))
    if summary.over_budget:
        console.print(f"[bold red]warning:[/bold red] the plan costs {summary.cost} "
                      f"{summary.currency}, more than max_cost {summary.max_cost}")


def print_readiness(results: Sequence[Readiness], console: Console) -> None:
    print_tables(console, "Preflight", [
        Column("provider", right=False), Column("ready", right=False), Column("balance"),
        Column("problems", right=False, text=True)], [
        [r.provider, "yes" if r.ok else "no",
         f"{r.balance} {r.currency or ''}".strip() if r.balance is not None else "",
         "; ".join(r.problems)] for r in results])


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
    table = []
    for row in rows:
        best, second = row["cheapest"], row["runner_up"]
        table.append([row["country"], "+" + row["prefix"], _route(best),
                      best["price"] if best else "", _route(second),
                      second["price"] if second else ""])
    # "provider (route)" wraps between the two words: the route stacks under its provider.
    print_tables(console, f"Cheapest route per destination (per segment, {currency})", [
        Column("country", right=False), Column("prefix", right=False),
        Column("cheapest", right=False, text=True), Column("price"),
        Column("runner-up", right=False, text=True), Column("price")], table)


def _route(choice: dict[str, Any] | None) -> str:
    if not choice:
        return "-"
    return f"{choice['provider']} ({choice['route']})" if choice["route"] else choice["provider"]


REPORT_COLUMNS: Final = ("phone", "line", "state", "provider", "route", "segments", "cost",
                  "provider_message_id", "reason")


async def write_report(rows: AsyncIterator[ReportRow], out: TextIO, *, as_json: bool) -> int:
    """Stream every recipient's row as CSV (or JSON lines) to *out*; the number written."""
    writer = None if as_json else csv.writer(out)
    columns = REPORT_COLUMNS + DELIVERY_COLUMNS
    if writer is not None:
        writer.writerow(columns)
    count = 0
    async for r in rows:
        at = r.delivered_at
        values = (r.phone, r.line, r.state, r.provider or "", r.route or "", r.segments or "",
                  _money(r.cost_nanos), r.provider_message_id or "", r.reason or "",
                  _money(r.estimated_nanos), r.delivery_state or "", r.delivery_status or "",
                  r.delivery_reason or "",
                  datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
                  if at else "",
                  round(r.delivery_seconds, 3) if r.delivery_seconds is not None else "")
        if writer is None:
            out.write(json.dumps(dict(zip(columns, values, strict=True))) + "\n")
        else:
            writer.writerow(values)
        count += 1
    return count


def _money(nanos: int | None) -> str:
    return str(nanos_to_decimal(nanos)) if nanos is not None else ""


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
    say(console, f"Campaign {name}: " + ", ".join(
        f"{state}\xa0{n:,}" for state, n in sorted(data["states"].items())), style="bold")
    say(console, f"cost so far {data['cost_so_far']} {currency}")
    states = sorted({s for per in data["by_provider"].values() for s in per})
    if states:
        print_tables(console, "By provider", [Column("provider", right=False),
                                              *(Column(s) for s in states)],
                     [[provider, *(f"{per.get(s, 0):,}" for s in states)]
                      for provider, per in sorted(data["by_provider"].items())])


def print_run(outcome: RunOutcome, console: Console) -> None:
    s = outcome.stats
    say(console, f"Run of {outcome.plan.campaign} in {s.seconds:.1f} s: "
                 f"accepted\xa0{s.accepted:,}, failed\xa0{s.failed:,}, "
                 f"unknown\xa0{s.unknown:,}, failed\xa0over\xa0{s.failed_over:,}, "
                 f"still\xa0pending\xa0{outcome.pending_left:,}", style="bold")
    say(console, f"spent {nanos_to_decimal(s.spent_nanos)} {outcome.plan.currency} "
                 f"(plan: {outcome.plan.cost})")
    for name, why in outcome.skipped_providers.items():
        say(console, f"left out {name}: {why}", style="yellow")
    if outcome.delivery is not None and outcome.delivery.sent:
        print_delivery_so_far(outcome.plan.campaign, outcome.delivery, console)


def print_delivery_so_far(campaign: str, total: DeliveryGroup, console: Console) -> None:
    """The delivery outcomes known now and, while reports are awaited, how to get them."""
    unknown = f", unknown\xa0{total.unknown:,}" if total.unknown else ""
    say(console, f"delivery so far: delivered\xa0{total.delivered:,}, "
                 f"undelivered\xa0{total.undelivered:,}, awaiting\xa0{total.pending:,}"
                 f"{unknown}")
    if total.pending:
        say(console, f"{total.pending:,} messages await a delivery report: "
                     f"dispatch dlr {campaign} asks the providers for them now; reports "
                     "still due come in minutes (ask again), and none within 72 h means "
                     "unknown.")


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
        rows = []
        for name, g in groups.items():
            rate = f"{g['delivery_rate']:.1%}" if g["delivery_rate"] is not None else "-"
            rows.append([name or "-", f"{g['sent']:,}", f"{g['delivered']:,}",
                         f"{g['undelivered']:,}", f"{g['awaiting']:,}", f"{g['unknown']:,}",
                         rate, g["estimated_cost"], g["actual_cost"]])
        print_tables(console, f"{title} (cost in {currency})", [
            Column(label, right=False), *(Column(c) for c in (
                "sent", "delivered", "undelivered", "awaiting", "unknown", "rate",
                "estimated cost", "actual cost"))], rows)


DELIVERY_COLUMNS: Final = ("estimated_cost", "delivery_state", "delivery_status",
                           "delivery_reason", "delivered_at", "delivery_seconds")


def print_run_start(summary: PlanSummary, console: Console) -> None:
    """What `dispatch run` is about to work through, before anything is sent."""
    say(console, f"Campaign {summary.campaign}", style="bold")
    print_plan_counts(summary, console, listing=f"dispatch report {summary.campaign}")
