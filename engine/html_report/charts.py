"""The report's charts, drawn by pygal as SVG to inline in the page.

pygal draws on the server side into plain SVG with its CSS inside: the page needs no
script, no font and no network to show them (its tooltip script, fetched from the web by
default, is switched off: values are printed on the bars instead). Each chart is drawn at
a width that reads well on a laptop and scales down by its viewBox on a phone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import accumulate
from typing import Any, Final

import pygal
from pygal.style import Style

from engine.html_report.data import Latency, Timeline
from engine.store.delivery_records import DeliveryGroup, FailureCount

CHART_WIDTH_PX: Final = 640
"""Drawing width; a chart scales to its box, and the type stays readable down to ~360 px."""
BAR_HEIGHT_PX: Final = 30
"""Height per bar of a horizontal bar chart, so that 3 or 30 countries both read well."""
COST_BAR_HEIGHT_PX: Final = 18
"""Height per bar where each category has two (estimate and actual)."""
MAX_BARS: Final = 30
"""Categories drawn at most in one chart; the rest are summed under "others"."""

COLORS: Final = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2",
                 "#db2777", "#65a30d", "#475569", "#ea580c")
STYLE_OPTIONS: Final = dict(
    background="transparent", plot_background="transparent", foreground="#1f2937",
    foreground_strong="#111827", foreground_subtle="#e5e7eb", opacity=".9",
    opacity_hover="1",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif",
    label_font_size=16, major_label_font_size=16, value_font_size=15,
    value_label_font_size=15, legend_font_size=16, stroke_width="3",
    value_colors=("#ffffff",), title_font_size=17, no_data_font_size=18, tooltip_font_size=14)
SENT_COLOR: Final = "#2563eb"
PLAN_COLOR: Final = "#94a3b8"
NOT_SENT: Final = "not sent"
DELIVERED_COLOR: Final = "#16a34a"


def _config(colors: Sequence[str] = COLORS, **options: Any) -> dict[str, Any]:
    return {"style": Style(colors=tuple(colors), **STYLE_OPTIONS), "width": CHART_WIDTH_PX,
            "explicit_size": False,
            "disable_xml_declaration": True, "js": [], "margin": 8, "spacing": 10,
            # pygal places a bottom legend as if the type were its default size: room for ours
            "margin_bottom": 40, "margin_right": 28,
            "legend_at_bottom": True, "legend_at_bottom_columns": 3, "truncate_legend": -1,
            "truncate_label": -1, "no_data_text": "no data yet", **options}


def _svg(chart: Any) -> str:
    return str(chart.render(is_unicode=True))


def _top(items: Sequence[tuple[str, DeliveryGroup]]) -> list[tuple[str, DeliveryGroup]]:
    ranked = sorted(items, key=lambda kv: -kv[1].sent)
    if len(ranked) <= MAX_BARS:
        return ranked
    rest = ranked[MAX_BARS - 1:]
    others = DeliveryGroup(*(sum(getattr(g, f) for _, g in rest) for f in (
        "sent", "delivered", "undelivered", "pending", "unknown", "estimated_nanos",
        "actual_nanos")))
    return [*ranked[:MAX_BARS - 1], (f"{len(rest)} others", others)]


def delivery_rate(groups: dict[str, DeliveryGroup], label: str) -> str:
    """Delivered among the final outcomes, per *label* (country or provider), in %."""
    items = _top([(k or "-", g) for k, g in groups.items()])[::-1]  # largest on top
    chart = pygal.HorizontalBar(**_config(
        height=90 + BAR_HEIGHT_PX * len(items), show_legend=False, range=(0, 100),
        y_labels=[0, 25, 50, 75, 100], print_values=True, margin_bottom=8,
        value_formatter=lambda v: f"{v:.0f} %", x_title=f"delivered, % by {label}"))
    chart.x_labels = [name for name, _ in items]
    chart.add("delivery rate", [
        {"value": round(100 * g.rate, 1), "color": _rate_color(g.rate)}
        if g.rate is not None else None for _, g in items], formatter=lambda v: f"{v:.1f} %")
    return _svg(chart)


def _rate_color(rate: float) -> str:
    return DELIVERED_COLOR if rate >= 0.95 else "#d97706" if rate >= 0.8 else "#dc2626"


def cost(groups: dict[str, DeliveryGroup], label: str, currency: str,
         money: Callable[[int], Decimal]) -> str:
    """Estimated against actual cost of the sent messages, per *label*."""
    items = _top([(k or "-", g) for k, g in groups.items()])[::-1]  # largest on top
    chart = pygal.HorizontalBar(**_config(
        (PLAN_COLOR, SENT_COLOR), height=120 + 2 * COST_BAR_HEIGHT_PX * len(items),
        print_values=False, value_formatter=lambda v: f"{v:,.2f}",
        x_title=f"cost in {currency} by {label}"))
    chart.x_labels = [name for name, _ in items]
    chart.add("plan's estimate", [float(money(g.estimated_nanos)) for _, g in items])
    chart.add("actual", [float(money(g.actual_nanos)) for _, g in items])
    return _svg(chart)


def timeline(data: Timeline) -> str:
    """Messages sent and delivered so far, at each step of time from the first send."""
    last = max((b for b, _, _ in data.points), default=0)
    sent = [0] * (last + 1)
    delivered = [0] * (last + 1)
    for b, s, d in data.points:
        sent[b], delivered[b] = s, d
    sent, delivered = list(accumulate(sent)), list(accumulate(delivered))
    labels = [_clock(data.start + b * data.bucket_s, data.bucket_s) for b in range(last + 1)]
    chart = pygal.Line(**_config(
        (SENT_COLOR, DELIVERED_COLOR), height=340, fill=False, show_dots=len(labels) <= 12,
        dots_size=3,
        x_label_rotation=0, show_minor_x_labels=False,
        x_labels_major_count=min(len(labels), 6), interpolate=None,
        x_title=f"messages so far, every {_seconds(data.bucket_s)} (UTC)"))
    chart.x_labels = labels
    chart.add("sent", sent)
    chart.add("delivered", delivered)
    return _svg(chart)


def latency(data: Latency) -> str:
    """Delivered messages by time from send to delivery report."""
    n = len(data.counts)
    labels = [f"{_seconds(i * data.width_s)}" for i in range(n)]
    if n:
        labels[-1] = f"≥ {_seconds((n - 1) * data.width_s)}"
    chart = pygal.Bar(**_config(
        (DELIVERED_COLOR,), height=340, show_legend=False, show_minor_x_labels=False,
        x_labels_major_count=min(n, 6), x_title="seconds from send to delivery report",
        y_title="messages"))
    chart.x_labels = labels
    chart.add("delivered", data.counts)
    return _svg(chart)


def failures(rows: Sequence[FailureCount]) -> str:
    """Messages that did not reach their recipient by reason, stacked by provider."""
    by_reason: dict[str, int] = {}
    for r in rows:
        key = f"{r.state}: {r.reason}"
        by_reason[key] = by_reason.get(key, 0) + r.messages
    # pygal draws a horizontal chart's first label at the bottom: the largest goes last
    reasons = [k for k, _ in sorted(by_reason.items(), key=lambda kv: -kv[1])][:MAX_BARS][::-1]
    providers = sorted({r.provider or NOT_SENT for r in rows}, key=lambda p: (p != NOT_SENT, p))
    colors = [PLAN_COLOR if p == NOT_SENT else COLORS[i % len(COLORS)]
              for i, p in enumerate(providers)]
    chart = pygal.HorizontalStackedBar(**_config(
        colors, height=110 + BAR_HEIGHT_PX * max(1, len(reasons)),
        x_title="messages by reason",
        print_values=False))
    chart.x_labels = reasons
    for provider in providers:
        counts = dict.fromkeys(reasons, 0)
        for r in rows:
            key = f"{r.state}: {r.reason}"
            if (r.provider or NOT_SENT) == provider and key in counts:
                counts[key] += r.messages
        chart.add(provider, [counts[k] or None for k in reasons])
    return _svg(chart)


def _clock(at: float, step: int) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    if step >= 86400:
        return moment.strftime("%d %b")
    return moment.strftime("%H:%M:%S" if step < 60 else "%d %b %H:%M")


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:g} h"
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"
