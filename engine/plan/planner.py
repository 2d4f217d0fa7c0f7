"""Planning: every CSV row becomes one stored message, valid, rejected or skipped.

What a row becomes is :mod:`engine.plan.rows`; this module plans a campaign's file, in this
process or in worker processes (:mod:`engine.plan.workers`), and completes the plan.
Duplicates are resolved by line once every piece is written, so "first valid occurrence
wins" whatever order the pieces are written in. A killed plan resumes after the last piece
of the run of committed pieces from the first.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import structlog

from engine.campaign import Campaign
from engine.config import Config, ProviderConfig
from engine.errors import CampaignError, ConfigError
from engine.gc_policy import rare_cyclic_gc
from engine.plan.csv_rows import BrokenQuote, TextChunk
from engine.plan.recipients import CHUNK_BYTES, Piece, RecipientsFile, load_opt_out
from engine.plan.rows import PlanContext, Written, add_numbers, plan_piece
from engine.plan.seen import SeenNumbers, create_bits_file
from engine.plan.tally import NO_SAVING, Group, PlanCounts, SmartSaving, Tally
from engine.plan.workers import PlanAborted, Turns, worker_init, worker_plan
from engine.routing import RouteTable, nanos_to_decimal, static_rates
from engine.segments import measure
from engine.store.protocols import PieceWriter, PlanSink, PlanWriters
from engine.store.records import VARIABLE_SEPARATOR, CampaignRecord
from engine.template import BoundTemplate

log = structlog.get_logger()

CHUNKS_IN_FLIGHT_PER_WORKER: Final = 3
WORKER_PIECE_BYTES: Final = 1024 * 1024
"""The pieces planned in worker processes are larger than those planned here: each is a
round trip to this process, which gets a core back only by taking it from a worker. At
256 KB a 1M-row plan spent 0.3 s a worker between pieces; at 1 MB, 0.1 s, for ~12 MB more
in each worker."""
PARALLEL_FROM_BYTES: Final = 8 * 1024 * 1024
"""A recipients file this large (about 80,000 rows) is planned in worker processes unless
told otherwise: below it, their start costs more than they save."""
MAX_AUTO_WORKERS: Final = 4
"""Pieces are written one at a time, and a row costs about a third as much to write as to
plan: past four processes they would mostly wait for their turn."""


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
            "campaign": self.campaign, "lines": c.lines, "blank": c.blank, "rows": c.rows,
            "valid": c.valid,
            "rejected": c.rejected, "skipped": c.skipped, "messages": c.valid,
            "segments": c.segments, "cost": str(self.cost), "currency": self.currency,
            "max_cost": str(self.max_cost) if self.max_cost is not None else None,
            "over_budget": self.over_budget,
            "by_provider": groups(c.by_provider), "by_country": groups(c.by_country),
            "smart_encoding": {"messages": c.smart.messages, "segments_saved": c.smart.segments,
                               "cost_saved": str(nanos_to_decimal(c.smart.cost_nanos))},
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
        columns=tuple(recipients.header),
        phone_index=recipients.phone_index, region=campaign.default_region,
        template=template, max_segments=campaign.max_segments,
        shift_tables=campaign.shift_tables, routes=routes,
        opt_out=(load_opt_out(campaign.opt_out, campaign.default_region)
                 if campaign.opt_out else frozenset()),
        smart=campaign.encoding == "smart", transliterate=campaign.transliterate)


async def plan_campaign(config: Config, campaign: Campaign, store: PlanSink, *,
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
            try:
                written = await _run(ctx, recipients, store, record, workers)
            except BrokenQuote as exc:
                await asyncio.to_thread(_discard, store.plan_writers(record.id))
                raise recipients.refuse(exc) from None
            fresh = record.planned_through == 0
            await store.finish_plan(record.id, written.maybe_duplicates,
                                    written.tally if fresh else None)
            if fresh:
                counts = written.tally.counts()
                if counts.smart.messages and counts.skipped.get("duplicate"):
                    counts = replace(counts, smart=await smart_saving(campaign, store, record.id))
    if counts is None:
        counts = await store.plan_counts(record.id)
        counts = replace(counts, smart=await smart_saving(campaign, store, record.id))
    return PlanSummary(campaign.name, counts, config.routing.currency, campaign.max_cost,
                       tuple(p.name for p in providers))


async def smart_saving(campaign: Campaign, store: PlanSink, campaign_id: int
                       ) -> SmartSaving:
    """What smart encoding saved, from the stored plan: the tally of a fresh plan counts it
    as rows are planned, but the store keeps only the text as sent, so the text as written
    is rendered again from each changed row's variables. A row whose values hold
    ``VARIABLE_SEPARATOR`` cannot be rendered again and is not counted."""
    if campaign.encoding != "smart":
        return NO_SAVING
    template, shift = campaign.message, campaign.shift_tables
    width = len(template.fields)
    total = NO_SAVING
    async for rows in store.stored_texts(campaign_id):
        changed = saved = nanos = 0
        for text, variables, segments, price in rows:
            values = variables.split(VARIABLE_SEPARATOR) if variables else []
            if len(values) != width:
                continue
            written = template.join(values)
            if written == text:
                continue
            before = measure(written, shift_tables=shift)[1]
            changed += 1
            saved += before - segments
            nanos += price * (before - segments)
        total += SmartSaving(changed, saved, nanos)
    return total


def _discard(writers: PlanWriters) -> None:
    """Forget a plan refused half-way: planned again from the first line once the file is
    fixed, none of the broken file's rows (past the bad quote, in worker processes) stay."""
    with closing(writers.open()) as writer:
        writer.discard()


async def _run(ctx: PlanContext, recipients: RecipientsFile, store: PlanSink,
               record: CampaignRecord, workers: int) -> Written:
    """Plan and write every chunk past the resume point: the tally of what was written, and
    every number that may occur on more than one valid line, earlier runs included.

    The file is cut by byte position where it can be (:meth:`RecipientsFile.spans`), so
    that the pieces' text is read and decoded where they are planned, not read here and
    sent to worker processes."""
    size = WORKER_PIECE_BYTES if workers > 1 else CHUNK_BYTES
    pieces: Iterator[Piece] = recipients.spans(size) or recipients.chunks(size)
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
                            store.plan_writers(record.id).open(), seen, add)
            else:
                await _in_workers(ctx, pieces, after, store.plan_writers(record.id), bits,
                                  recipients.path, workers, add)
    return Written(tally, sorted(maybe))


def _in_process(ctx: PlanContext, chunks: Iterator[TextChunk], after: int, writer: PieceWriter,
                seen: SeenNumbers, add: Callable[[Written], None]) -> None:
    """Plan here, and write each chunk from a thread while the next is planned.

    The thread's SQLite work (about a third of a row's cost) then runs on another core: it
    holds no GIL, as each batch is a few calls (:meth:`PieceWriter.write_json`). One batch at
    most is being written, so memory stays flat, and a batch is counted only once written.
    """
    writing: tuple[Future[None], Written] | None = None

    def wait_written() -> None:
        if writing is not None:
            writing[0].result()
            add(writing[1])

    with closing(writer), ThreadPoolExecutor(1, thread_name_prefix="plan-writer") as pool:
        for chunk in chunks:
            planned, tally = plan_piece(ctx, chunk, after)
            if not planned.through:
                continue
            written = add_numbers(seen, planned, tally)
            valid, not_sent = json.dumps(planned.valid), json.dumps(planned.not_sent)
            wait_written()
            writing = (pool.submit(writer.write_json, valid, not_sent, through=planned.through),
                       written)
        wait_written()


async def _in_workers(ctx: PlanContext, pieces: Iterator[Piece], after: int,
                      writers: PlanWriters, bits: Path, recipients: Path, workers: int,
                      add: Callable[[Written], None]) -> None:
    loop = asyncio.get_running_loop()
    pending: deque[Future[Written]] = deque()
    mp = multiprocessing.get_context("spawn")
    turns = Turns(mp, 2 * workers * CHUNKS_IN_FLIGHT_PER_WORKER)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=worker_init,
                             initargs=(ctx, writers, bits, turns, recipients)) as pool:
        try:
            for index, piece in enumerate(pieces):
                pending.append(pool.submit(worker_plan, index, piece, after))
                while len(pending) >= workers * CHUNKS_IN_FLIGHT_PER_WORKER or (
                        pending and pending[0].done()):
                    add(await asyncio.wrap_future(pending.popleft(), loop=loop))
            while pending:
                add(await asyncio.wrap_future(pending.popleft(), loop=loop))
        except PlanAborted:
            # A piece waiting for its turn heard that a later one failed: raise why.
            for cause in await asyncio.gather(
                    *(asyncio.wrap_future(f, loop=loop) for f in pending), return_exceptions=True):
                if isinstance(cause, BaseException) and not isinstance(cause, PlanAborted):
                    raise cause from None
            raise
        except BaseException:
            turns.abort()
            raise
