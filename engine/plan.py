"""Planning: every CSV row becomes one stored message, valid, rejected or skipped.

The per-row work (CSV parsing, normalise, opt-out, render, segments, route) is
:func:`plan_chunk`, a pure function of a :class:`PlanContext` and a piece of the file, so
that it can run in this process or in worker processes. Duplicates are resolved by line
once every piece is written, so "first valid occurrence wins" whatever order the pieces are
written in. A killed plan resumes after the last piece of the run of committed pieces from
the first.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NamedTuple

import structlog

from engine.campaign import Campaign
from engine.config import Config, ProviderConfig
from engine.errors import CampaignError, ConfigError
from engine.gc_policy import rare_cyclic_gc, set_rare
from engine.phone import normalise
from engine.recipients import (
    Piece,
    RawRow,
    RecipientsFile,
    TextChunk,
    load_opt_out,
    parse_chunk,
    piece_text,
)
from engine.routing import RouteTable, nanos_to_decimal, static_rates
from engine.seen import SeenNumbers, create_bits_file
from engine.segments import measure
from engine.store import (
    VARIABLE_SEPARATOR,
    CampaignRecord,
    Group,
    PlanCounts,
    PlanWriter,
    Store,
    Tally,
)
from engine.template import BoundTemplate

log = structlog.get_logger()

CHUNKS_IN_FLIGHT_PER_WORKER: Final = 3
NOT_WRITTEN: Final = -1
PARENT_CHECK_S: Final = 0.5
PARALLEL_FROM_BYTES: Final = 8 * 1024 * 1024
"""A recipients file this large (about 80,000 rows) is planned in worker processes unless
told otherwise: below it, their start (~0.4 s) costs more than they save."""
MAX_AUTO_WORKERS: Final = 4
"""Pieces are written one at a time, and a row costs about a third as much to write as to
plan: past four processes they would mostly wait for their turn."""

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


Row = tuple[Any, ...]


class Planned(NamedTuple):
    """A piece of the file planned: valid rows (``store.PLANNED_COLUMNS``), rejected and
    skipped rows (``store.NOT_SENT_COLUMNS``), and its last line."""

    valid: list[Row]
    not_sent: list[Row]
    through: int


def _not_sent(line: int, raw: str | None, e164: str | None, country: str | None, state: str,
              reason: str, detail: str | None, text: str | None = None,
              encoding: str | None = None, segments: int | None = None) -> Row:
    """The store tuple of a rejected or skipped row (``store.NOT_SENT_COLUMNS``)."""
    return (line, raw, e164, country, state, reason, detail, text, encoding, segments)


def plan_rows(ctx: PlanContext, rows: Sequence[RawRow]) -> Planned:
    """Every row planned, valid or not; each list in file order.

    A valid row stores neither its number as written nor its text: the text is
    ``Template.join`` of its ``variables``, rendered again when it is sent (a third less to
    write for a million rows). Only where a value holds the separator is the text stored;
    elsewhere the tuple holds ``""``, which the store writes as NULL.
    """
    valid: list[Row] = []
    not_sent: list[Row] = []
    append, reject = valid.append, not_sent.append
    phone_index, region = ctx.phone_index, ctx.region
    values_of, join = ctx.template.values, ctx.template.template.join
    lookup, opt_out, max_segments = ctx.routes.lookup, ctx.opt_out, ctx.max_segments
    shift = ctx.shift_tables
    for line, fields, problem in rows:
        if fields is None:
            reject(_not_sent(line, None, None, None, "rejected", "malformed_row", problem))
            continue
        raw = fields[phone_index].strip()
        number = normalise(raw, region) if raw else None
        if number is None:
            reject(_not_sent(line, raw, None, None, "rejected", "invalid_number",
                             "empty" if not raw else f"not a valid number for region {region}"))
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
        append((line, e164, country, encoding, segments, best.provider, best.route,
                best.price_nanos, best.price_nanos * segments, plan.id,
                VARIABLE_SEPARATOR.join(values), text if VARIABLE_SEPARATOR in text else ""))
    return Planned(valid, not_sent, rows[-1][0] if rows else 0)


def plan_chunk(ctx: PlanContext, chunk: TextChunk, after: int) -> Planned:
    return plan_rows(ctx, parse_chunk(chunk, ctx.delimiter, ctx.width, after=after))


@dataclass(frozen=True, slots=True)
class Written:
    """What one planned batch added: its tally, and its numbers that may be duplicates."""

    tally: Tally
    maybe_duplicates: list[str]


class PlanAborted(Exception):
    """Another planning process failed."""


class Turns:
    """Planning processes write one piece at a time, and add its numbers to the shared filter
    one at a time, each as soon as the piece is planned.

    Pieces are written in the order they are planned, not in file order: waiting for the
    piece before one's own to be planned and written idled a core for about a tenth of a
    plan. So the campaign's resume point, written with each piece, is the last line of the
    longest run of written pieces from the first. On resume, a piece past it that was
    written already is planned again and its insert changes nothing (``ON CONFLICT DO
    NOTHING``). Duplicates are resolved by line once the plan is whole
    (:meth:`Store.finish_plan`), so which occurrence wins does not depend on the order of
    writes. Only what crosses between processes is each piece's text and a small tally.
    """

    def __init__(self, mp: Any, window: int) -> None:
        self._write = mp.Lock()
        self._filter = mp.Lock()
        self._through = mp.RawArray("q", [NOT_WRITTEN] * window)
        """The last line of each piece written but not yet in the run from the first
        (0: it had no rows), at its index modulo the window."""
        self._next = mp.RawValue("q", 0)
        """The first piece not written."""
        self._aborted = mp.RawValue("b", 0)

    @contextmanager
    def adding(self) -> Iterator[None]:
        with self._holding(self._filter):
            yield

    @contextmanager
    def writing(self, index: int, through: int) -> Iterator[int | None]:
        """Hold the write turn for piece *index*, whose last row is on line *through* (0:
        none): gives the resume point to write with it, ``None`` where it does not move.
        The piece counts as written once the block ends without an exception."""
        with self._holding(self._write):
            window = len(self._through)
            first = self._next.value
            if not first <= index < first + window:
                raise AssertionError(f"piece {index} outside the window at {first}")
            resume = None
            i = first
            while (last := through if i == index else self._through[i % window]) != NOT_WRITTEN:
                resume = last or resume
                i += 1
            yield resume
            self._through[index % window] = through
            while self._through[first % window] != NOT_WRITTEN:
                self._through[first % window] = NOT_WRITTEN
                first += 1
            self._next.value = first

    @contextmanager
    def _holding(self, lock: Any) -> Iterator[None]:
        while not lock.acquire(timeout=PARENT_CHECK_S):
            if self._aborted.value:
                raise PlanAborted
        try:
            if self._aborted.value:
                raise PlanAborted
            yield
        finally:
            lock.release()

    def abort(self) -> None:
        """Stop every process waiting for a turn. One killed while holding a lock keeps it;
        then the pool is broken and ends its processes itself."""
        self._aborted.value = 1


_WORKER: tuple[PlanContext, PlanWriter, SeenNumbers, Turns, int] | None = None


def _worker_init(ctx: PlanContext, db: Path, campaign_id: int, bits: Path, turns: Turns,
                 recipients: Path) -> None:
    global _WORKER
    _WORKER = (ctx, PlanWriter(db, campaign_id), SeenNumbers.mapped(bits), turns,
               os.open(recipients, os.O_RDONLY))
    set_rare()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="plan-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    """A planning process outlives a killed parent otherwise: its task queue never ends,
    since every worker holds the queue's writing end. Exiting mid-batch is safe: SQLite
    rolls the batch back, and the next plan resumes before it."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _worker_plan(index: int, piece: Piece, after: int) -> Written:
    assert _WORKER is not None
    ctx, writer, seen, turns, recipients = _WORKER
    try:
        planned, tally = _plan(ctx, piece_text(recipients, piece), after)
        with turns.adding():
            written = _written(seen, planned, tally)
        with turns.writing(index, planned.through) as resume:
            if planned.through or resume is not None:
                writer.write(planned.valid, planned.not_sent, through=resume)
    except BaseException:
        turns.abort()
        raise
    return written


def _plan(ctx: PlanContext, chunk: TextChunk, after: int) -> tuple[Planned, Tally]:
    """A chunk planned and tallied: everything but writing it, which goes in turns."""
    planned = plan_chunk(ctx, chunk, after)
    return planned, Tally.of_planned(planned.valid, planned.not_sent)


def _written(seen: SeenNumbers, planned: Planned, tally: Tally) -> Written:
    """A planned chunk's tally, and its numbers the filter may have seen before. Processes
    add to the shared filter one at a time: two setting bits of one byte at once could lose
    one."""
    return Written(tally, seen.add([r[1] for r in planned.valid]))


@dataclass(frozen=True, slots=True)
class PlanSummary:
    campaign: str
    counts: PlanCounts
    currency: str
    max_cost: Decimal | None
    providers: tuple[str, ...] = field(default=())

    @property
    def cost(self) -> Decimal:
        return nanos_to_decimal(self.counts.cost_nanos)

    @property
    def over_budget(self) -> bool:
        return self.max_cost is not None and self.cost > self.max_cost

    def to_json(self) -> dict[str, Any]:
        c = self.counts

        def groups(gs: dict[str, Group]) -> dict[str, dict[str, Any]]:
            return {k: {"messages": g.messages, "segments": g.segments,
                        "cost": str(nanos_to_decimal(g.cost_nanos))} for k, g in gs.items()}

        return {
            "campaign": self.campaign, "rows": c.rows, "valid": c.valid,
            "rejected": c.rejected, "skipped": c.skipped, "messages": c.valid,
            "segments": c.segments, "cost": str(self.cost), "currency": self.currency,
            "max_cost": str(self.max_cost) if self.max_cost is not None else None,
            "over_budget": self.over_budget,
            "by_provider": groups(c.by_provider), "by_country": groups(c.by_country),
        }


def planning_workers(requested: int | None, recipients: Path) -> int:
    """Planning processes: *requested* (0 for every core), or by default every core up to
    :data:`MAX_AUTO_WORKERS` for a file of :data:`PARALLEL_FROM_BYTES` or more, else 1."""
    cores = os.cpu_count() or 1
    if requested is not None:
        return requested if requested > 0 else cores
    try:
        size = recipients.stat().st_size
    except OSError:
        return 1
    return min(cores, MAX_AUTO_WORKERS) if size >= PARALLEL_FROM_BYTES else 1


def campaign_providers(config: Config, campaign: Campaign) -> tuple[ProviderConfig, ...]:
    """The enabled providers this campaign may use, in config order."""
    names = {p.name for p in config.providers}
    if campaign.providers is not None:
        for name in campaign.providers:
            if name not in names:
                raise CampaignError(f"{name!r} is not a provider in {config.path} "
                                    f"(providers: {', '.join(sorted(names))})",
                                    file=campaign.path, key="providers")
    chosen = tuple(p for p in config.enabled_providers
                   if campaign.providers is None or p.name in campaign.providers)
    if not chosen:
        raise CampaignError("none of the listed providers is enabled", file=campaign.path,
                            key="providers")
    return chosen


def route_table(config: Config, providers: Sequence[ProviderConfig]) -> RouteTable:
    without = [p.name for p in providers if p.rates is None]
    if without:
        raise ConfigError("has no rate table: set rates = \"path/to/rates.csv\"",
                          file=config.path, key=f"providers.{without[0]}.rates")
    return RouteTable(static_rates(providers), [p.name for p in providers], config.routing)


def bind_message(campaign: Campaign, recipients: RecipientsFile) -> BoundTemplate:
    try:
        return campaign.message.bind(recipients.header, campaign.defaults)
    except KeyError as exc:
        raise CampaignError(
            f"the message uses {{{exc.args[0]}}} but {campaign.recipients.name} has no "
            f"such column (columns: {', '.join(recipients.header)})",
            file=campaign.path, key="message") from None


def plan_context(campaign: Campaign, recipients: RecipientsFile, template: BoundTemplate,
                 routes: RouteTable) -> PlanContext:
    return PlanContext(
        delimiter=recipients.delimiter, width=len(recipients.header),
        phone_index=recipients.phone_index, region=campaign.default_region,
        template=template, max_segments=campaign.max_segments,
        shift_tables=campaign.shift_tables, routes=routes,
        opt_out=(load_opt_out(campaign.opt_out, campaign.default_region)
                 if campaign.opt_out else frozenset()))


async def plan_campaign(config: Config, campaign: Campaign, store: Store, *,
                        workers: int = 1, routes: RouteTable | None = None) -> PlanSummary:
    """Plan *campaign* into *store* (or finish a plan a killed process left half done).

    *routes* defaults to the providers' static rate CSVs; ``dispatch plan`` passes the table
    built from live rates (:mod:`engine.rates`).
    """
    providers = campaign_providers(config, campaign)
    if routes is None:
        routes = route_table(config, providers)
    with RecipientsFile(campaign.recipients, campaign.phone_column) as recipients:
        template = bind_message(campaign, recipients)
        counts: PlanCounts | None = None
        record = await store.open_campaign(
            name=campaign.name, fingerprint=campaign.fingerprint, path=campaign.path,
            currency=config.routing.currency, plans=list(routes.plans.values()))
        if not record.plan_complete:
            ctx = plan_context(campaign, recipients, template, routes)
            if record.planned_through:
                log.info("plan.resume", campaign=campaign.name, after_line=record.planned_through)
            written = await _run(ctx, recipients, store, record, workers)
            fresh = record.planned_through == 0
            await store.finish_plan(record.id, written.maybe_duplicates,
                                    written.tally if fresh else None)
            if fresh:
                counts = written.tally.counts()
    if counts is None:
        counts = await store.plan_counts(record.id)
    return PlanSummary(campaign.name, counts, config.routing.currency, campaign.max_cost,
                       tuple(p.name for p in providers))


async def _run(ctx: PlanContext, recipients: RecipientsFile, store: Store,
               record: CampaignRecord, workers: int) -> Written:
    """Plan and write every chunk past the resume point: the tally of what was written, and
    every number that may occur on more than one valid line, earlier runs included.

    The file is cut by byte position where it can be (:meth:`RecipientsFile.spans`), so
    that the pieces' text is read and decoded where they are planned, not read here and
    sent to worker processes."""
    pieces: Iterator[Piece] = recipients.spans() or recipients.chunks()
    after = record.planned_through
    tally, maybe = Tally(), set[str]()

    def add(written: Written) -> None:
        tally.merge(written.tally)
        maybe.update(written.maybe_duplicates)

    with tempfile.TemporaryDirectory(prefix="dispatch-plan-") as folder:
        bits = Path(folder) / "seen"
        create_bits_file(bits, recipients.path.stat().st_size)
        seen = SeenNumbers.mapped(bits)
        with closing(seen), rare_cyclic_gc():
            if after:
                async for numbers in store.planned_numbers(record.id):
                    maybe.update(seen.add(numbers))
            if workers <= 1:
                _in_process(ctx, map(recipients.text, pieces), after,
                            PlanWriter(store.path, record.id), seen, add)
            else:
                await _in_workers(ctx, pieces, after, store.path, record.id, bits,
                                  recipients.path, workers, add)
    return Written(tally, sorted(maybe))


def _in_process(ctx: PlanContext, chunks: Iterator[TextChunk], after: int, writer: PlanWriter,
                seen: SeenNumbers, add: Callable[[Written], None]) -> None:
    """Plan here, and write each chunk from a thread while the next is planned.

    The thread's SQLite work (about a third of a row's cost) then runs on another core: it
    holds no GIL, as each batch is a few calls (:meth:`PlanWriter.write_json`). One batch at
    most is being written, so memory stays flat, and a batch is counted only once written.
    """
    writing: tuple[Future[None], Written] | None = None

    def wait_written() -> None:
        if writing is not None:
            writing[0].result()
            add(writing[1])

    with closing(writer), ThreadPoolExecutor(1, thread_name_prefix="plan-writer") as pool:
        for chunk in chunks:
            planned, tally = _plan(ctx, chunk, after)
            if not planned.through:
                continue
            written = _written(seen, planned, tally)
            valid, not_sent = json.dumps(planned.valid), json.dumps(planned.not_sent)
            wait_written()
            writing = (pool.submit(writer.write_json, valid, not_sent, through=planned.through),
                       written)
        wait_written()


async def _in_workers(ctx: PlanContext, pieces: Iterator[Piece], after: int, db: Path,
                      campaign_id: int, bits: Path, recipients: Path, workers: int,
                      add: Callable[[Written], None]) -> None:
    loop = asyncio.get_running_loop()
    pending: deque[Future[Written]] = deque()
    mp = multiprocessing.get_context("spawn")
    turns = Turns(mp, 2 * workers * CHUNKS_IN_FLIGHT_PER_WORKER)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_worker_init,
                             initargs=(ctx, db, campaign_id, bits, turns, recipients)) as pool:
        try:
            for index, piece in enumerate(pieces):
                pending.append(pool.submit(_worker_plan, index, piece, after))
                while len(pending) >= workers * CHUNKS_IN_FLIGHT_PER_WORKER or (
                        pending and pending[0].done()):
                    add(await asyncio.wrap_future(pending.popleft(), loop=loop))
            while pending:
                add(await asyncio.wrap_future(pending.popleft(), loop=loop))
        except BaseException:
            turns.abort()
            raise
