"""The report page: one self-contained HTML file from :class:`~engine.html_report.data.ReportData`.

Styles, the table's script and the charts (SVG) are inline; the page loads nothing, so that
it opens the same from a mail attachment, offline, on a laptop or a phone. Text from the
campaign (numbers, reasons, names) is escaped by Jinja2's autoescape; the table's rows
travel as JSON in a ``<script type="application/json">`` block, escaped for HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Final

import jinja2

from engine.html_report import charts
from engine.html_report.data import ReportData
from engine.routing import nanos_to_decimal
from engine.store.delivery_records import DeliveryGroup, row_values

ASSETS: Final = "assets"
TABLE_COLUMNS: Final = ("line", "phone", "country", "state", "provider", "segments", "cost",
                        "delivery s", "reason")


@dataclass(frozen=True, slots=True)
class Figure:
    """One number of the headline, with what it is of and a line under it."""

    label: str
    value: str
    note: str = ""
    tone: str = ""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("engine.html_report", ASSETS),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["n"] = lambda v: f"{v:,}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.1%}"
    return env


def _asset(name: str) -> str:
    return (resources.files("engine.html_report") / ASSETS / name).read_text(encoding="utf-8")


def money(nanos: int) -> Decimal:
    return nanos_to_decimal(nanos)


def _amount(nanos: int, currency: str) -> str:
    return f"{money(nanos):,.2f} {currency}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours or days else []
    return " ".join([*parts, f"{minutes} min", *([] if days else [f"{s} s"])])


def _stamp(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k or '-'} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))


def headline(data: ReportData) -> list[Figure]:
    """The figures at the top of the page, in reading order."""
    total, plan, states = data.delivery.total, data.plan, data.states
    rejected, skipped = sum(plan.rejected.values()), sum(plan.skipped.values())
    unknown = states.get("unknown", 0) + total.unknown
    figures = [
        Figure("recipients read", f"{plan.lines:,}", f"{plan.valid:,} valid"),
        Figure("sent", f"{total.sent:,}", f"{plan.valid:,} planned"),
        Figure("delivered", f"{total.delivered:,}",
               "rate -" if total.rate is None else f"rate {total.rate:.1%}", "good"),
        Figure("undelivered", f"{total.undelivered:,}",
               tone="bad" if total.undelivered else ""),
        Figure("unknown", f"{unknown:,}", "sent, outcome not known",
               tone="warn" if unknown else ""),
        Figure("rejected", f"{rejected:,}", _reasons(plan.rejected) or "none",
               tone="warn" if rejected else ""),
        Figure("skipped", f"{skipped:,}", _reasons(plan.skipped) or "none"),
    ]
    if total.pending:
        figures.insert(4, Figure("awaiting report", f"{total.pending:,}",
                                 f"dispatch dlr {data.campaign} asks for them"))
    for state, note in (("failed", "refused by every route"), ("pending", "not sent yet")):
        if states.get(state):
            figures.append(Figure(state, f"{states[state]:,}", note, "warn"))
    estimate = plan.cost_nanos
    change = (f"{(data.spent_nanos - estimate) / estimate:+.1%} against the plan"
              if estimate else "no estimate")
    figures.append(Figure("cost", _amount(data.spent_nanos, data.currency),
                          f"plan {_amount(estimate, data.currency)} ({change})"))
    span = data.span
    if span.first_sent is not None and span.last_sent is not None:
        until = (f"reports until {_duration(span.last_delivered - span.first_sent)} in"
                 if span.last_delivered else "no reports yet")
        figures.append(Figure("sending took", _duration(span.last_sent - span.first_sent),
                              until))
    return figures


def _group_rows(planned: dict[str, Any], sent: dict[str, DeliveryGroup],
                currency: str) -> list[list[str]]:
    """Plan beside outcome for each provider or country."""
    rows = []
    for key in sorted(set(planned) | set(sent), key=lambda k: (k is None, k or "")):
        p, g = planned.get(key), sent.get(key or "", DeliveryGroup())
        rows.append([key or "-", f"{p.messages:,}" if p else "0",
                     f"{p.segments:,}" if p else "0",
                     _amount(p.cost_nanos, currency) if p else "-", f"{g.sent:,}",
                     f"{g.delivered:,}", "-" if g.rate is None else f"{g.rate:.1%}",
                     _amount(g.actual_nanos, currency)])
    return rows


def table_note(data: ReportData) -> str:
    """What the table holds of the campaign's rows, said plainly."""
    t = data.table
    whole = f"dispatch report {data.campaign} --csv FILE lists all {t.total:,}."
    if t.states is not None:
        kind = " or ".join(t.states)
        held = (f"all {t.featured:,}" if t.featured_shown == t.featured
                else f"the first {t.featured_shown:,} of {t.featured:,}")
        return f"Recipients in state {kind}: {held}. {whole}"
    if t.complete:
        return f"Every recipient: {t.total:,} rows."
    failures = (f"all {t.featured:,} failures" if t.featured_shown == t.featured
                else f"the first {t.featured_shown:,} of {t.featured:,} failures")
    others = len(t.rows) - t.featured_shown
    return (f"This campaign has {t.total:,} rows: the table holds {failures} and a sample of "
            f"{others:,} other recipients (one CSV line in {t.sampled_every:,}). {whole}")


def render(data: ReportData) -> str:
    """The whole page as one string."""
    d = data.delivery
    rows = [[*values[:6], str(money(values[6])) if values[6] is not None else None,
             round(values[7], 1) if values[7] is not None else None, values[8]]
            for values in map(row_values, data.table.rows)]
    chart_list = [
        ("Delivery rate by country", charts.delivery_rate(d.by_country, "country")),
        ("Cost by country", charts.cost(d.by_country, "country", data.currency, money)),
        ("Delivery rate by provider", charts.delivery_rate(d.by_provider, "provider")),
        ("Cost by provider", charts.cost(d.by_provider, "provider", data.currency, money)),
    ]
    if data.timeline is not None:
        chart_list.append(("Sent and delivered over time", charts.timeline(data.timeline)))
    if data.latency is not None:
        lat = data.latency
        chart_list.append((f"Time from send to delivery (median {_duration(lat.median_s or 0)},"
                           f" p95 {_duration(lat.p95_s or 0)})", charts.latency(lat)))
    if data.failures:
        chart_list.append(("Failures by reason and provider", charts.failures(data.failures)))
    return _environment().get_template("report.html.j2").render(
        data=data, css=_asset("report.css"), js=_asset("report.js"),
        figures=headline(data), charts=chart_list, generated=_stamp(data.generated_at),
        first_sent=_stamp(data.span.first_sent), last_sent=_stamp(data.span.last_sent),
        forecast=[("provider", _group_rows(data.plan.by_provider, d.by_provider,
                                           data.currency)),
                  ("country", _group_rows(data.plan.by_country, d.by_country,
                                          data.currency))],
        plan_cost=_amount(data.plan.cost_nanos, data.currency),
        table_note=table_note(data), columns=TABLE_COLUMNS, rows=rows)
