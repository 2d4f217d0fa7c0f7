"""What each row of a piece of the recipients file becomes: a stored message, valid,
rejected or skipped.

:func:`plan_chunk` is a pure function of a :class:`PlanContext` and a piece of the file,
so that it runs alike in the planning process and in worker processes (which import this
module, and none of the asynchronous stack).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from engine.phone import normalise, why_invalid
from engine.plan.csv_rows import RawRow, TextChunk, parse_chunk
from engine.plan.seen import SeenNumbers
from engine.plan.tally import BLANK_LINE, NO_SAVING, SmartSaving, Tally
from engine.routing import RouteTable
from engine.segments import measure
from engine.smart_encoding import smarten
from engine.store.records import VARIABLE_SEPARATOR
from engine.template import BoundTemplate

BLANK_CHARS: Final = " \t\r\n\x0b\x0c\u00a0\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
"""Whitespace and the invisible characters spreadsheets carry: a message of only these is
``empty_message``, not a blank SMS billed as one segment."""


@dataclass(frozen=True, slots=True)
class PlanContext:
    delimiter: str
    width: int
    phone_index: int
    region: str
    template: BoundTemplate
    max_segments: int
    shift_tables: tuple[str, ...]
    routes: RouteTable
    opt_out: frozenset[str]
    columns: tuple[str, ...] = ()
    """The header, to name the column a malformed row's problem is in."""
    smart: bool = False
    """Smart encoding (:func:`engine.smart_encoding.smarten`) for text measured UCS-2."""
    transliterate: bool = False


Row = tuple[Any, ...]


class Planned(NamedTuple):
    """A piece of the file planned: valid rows (``plan_writer.PLANNED_COLUMNS``), rejected
    and skipped rows (``plan_writer.NOT_SENT_COLUMNS``), and its last line."""

    valid: list[Row]
    not_sent: list[Row]
    through: int
    smart: SmartSaving = NO_SAVING


def _not_sent(line: int, raw: str | None, e164: str | None, country: str | None, state: str,
              reason: str, detail: str | None, text: str | None = None,
              encoding: str | None = None, segments: int | None = None) -> Row:
    """The store tuple of a rejected or skipped row (``plan_writer.NOT_SENT_COLUMNS``)."""
    return (line, raw, e164, country, state, reason, detail, text, encoding, segments)


def plan_rows(ctx: PlanContext, rows: Sequence[RawRow]) -> Planned:
    """Every row planned, valid or not; each list in file order.

    A valid row stores neither its number as written nor its text: the text is
    ``Template.join`` of its ``variables``, rendered again when it is sent (a third less to
    write for a million rows). Only where a value holds the separator is the text stored;
    elsewhere the tuple holds ``""``, which the store writes as NULL. A text that smart
    encoding changed is stored too: the text as sent, which variables do not give.
    """
    valid: list[Row] = []
    not_sent: list[Row] = []
    append, reject = valid.append, not_sent.append
    phone_index, region = ctx.phone_index, ctx.region
    values_of, join = ctx.template.values, ctx.template.template.join
    lookup, opt_out, max_segments = ctx.routes.lookup, ctx.opt_out, ctx.max_segments
    shift = ctx.shift_tables
    smart, transliterate = ctx.smart, ctx.transliterate
    changed = saved_segments = saved_nanos = 0
    separator = VARIABLE_SEPARATOR
    store_values = separator.join
    for line, fields, problem in rows:
        if fields is None:
            reject(_not_sent(line, None, None, None, "rejected", "malformed_row", problem)
                   if problem else _not_sent(line, None, None, None, "skipped", BLANK_LINE,
                                             None))
            continue
        raw = fields[phone_index].strip()
        number = normalise(raw, region) if raw else None
        if number is None:
            reject(_not_sent(line, raw, None, None, "rejected", "invalid_number",
                             why_invalid(raw, region) if raw else "empty"))
            continue
        e164, country = number
        if e164 in opt_out:
            reject(_not_sent(line, raw, e164, country, "skipped", "opted_out", None))
            continue
        values = values_of(fields)
        if isinstance(values, str):
            reject(_not_sent(line, raw, e164, country, "rejected", "missing_variable",
                             f"column {values!r} is empty and has no default"))
            continue
        text = join(values)
        if not text.strip(BLANK_CHARS):
            reject(_not_sent(line, raw, e164, country, "rejected", "empty_message", None))
            continue
        encoding, segments, _ = measure(text, shift_tables=shift)
        before = 0
        if smart and encoding == "UCS-2":
            new = smarten(text, transliterate=transliterate, shift_tables=shift)
            if new is not None:
                text, before = new, segments
                encoding, segments, _ = measure(text, shift_tables=shift)
        if segments > max_segments:
            reject(_not_sent(line, raw, e164, country, "rejected", "too_long",
                             f"{segments} segments ({encoding}), at most {max_segments}",
                             text, encoding, segments))
            continue
        plan = lookup(e164[1:])
        if plan is None or not plan.routes:
            reject(_not_sent(line, raw, e164, country, "rejected", "no_route",
                             "no enabled provider prices this destination",
                             text, encoding, segments))
            continue
        best = plan.routes[0]
        price = best.price_nanos
        if before:
            changed += 1
            saved_segments += before - segments
            saved_nanos += price * (before - segments)
        append((line, e164, country, encoding, segments, best.provider, best.route, price,
                price * segments, plan.id, store_values(values),
                text if before or separator in text else ""))
    return Planned(valid, not_sent, rows[-1][0] if rows else 0,
                   SmartSaving(changed, saved_segments, saved_nanos) if changed else NO_SAVING)


def plan_chunk(ctx: PlanContext, chunk: TextChunk, after: int) -> Planned:
    return plan_rows(ctx, parse_chunk(chunk, ctx.delimiter, ctx.width, after=after,
                                      columns=ctx.columns))


@dataclass(frozen=True, slots=True)
class Written:
    """What one planned batch added: its tally, and its numbers that may be duplicates."""

    tally: Tally
    maybe_duplicates: list[str]


def plan_piece(ctx: PlanContext, chunk: TextChunk, after: int) -> tuple[Planned, Tally]:
    """A piece planned and tallied: everything but writing it."""
    planned = plan_chunk(ctx, chunk, after)
    tally = Tally.of_planned(planned.valid, planned.not_sent)
    tally.smart = planned.smart
    return planned, tally


def add_numbers(seen: SeenNumbers, planned: Planned, tally: Tally) -> Written:
    """A planned chunk's tally, and its numbers the filter may have seen before. Processes
    add to the shared filter one at a time: two setting bits of one byte at once could lose
    one."""
    return Written(tally, seen.add([r[1] for r in planned.valid]))
