"""The SQLite store: campaigns, plans and messages. One row per CSV row is the truth. Its
SQL, by name, is in ``schema.sql`` and ``queries.sql`` (:mod:`engine.store.sqlite.sql`).

WAL, ``synchronous=FULL``, and one ``BEGIN IMMEDIATE`` transaction per batch written with
``executemany``: a batch and the campaign's resume point commit together, so a process
killed at any instant leaves either the whole batch or none of it.

Deduplication happens when a plan completes (:meth:`Store.finish_plan`): every valid row
whose number appeared on an earlier valid line becomes ``skipped`` / ``duplicate``, naming
that line. Only the numbers :mod:`engine.plan.seen` flagged while planning are looked at. A
unique index checked on every insert would be the same rule, but random-order index inserts
made a 1M-row plan four times slower; the dispatcher only starts on a completed plan, so it
never sees a duplicate.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager, closing
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import aiosqlite
import anyio

from engine.errors import CampaignError, StoreError
from engine.plan.tally import PlanCounts, Tally
from engine.routing import RatePlan, RateRow
from engine.store.records import CampaignRecord, Outgoing, RatePlanRoute, ReportRow, WorkerRecord
from engine.store.sqlite.checkpoint_writer import PRAGMAS
from engine.store.sqlite.claims import OUTGOING_COLUMNS
from engine.store.sqlite.plan_writer import PLAN_TEMP_STORE, SqlitePlanWriters
from engine.store.sqlite.sql import query, statements
from engine.store.states import SPENDING_STATES

SCHEMA_VERSION: Final = 9
READ_ONLY_SCHEMA_FROM: Final = 3
"""The oldest schema a read-only store reads without upgrading it: every column and table
that status and report read is there from version 3 (the delivery columns)."""

WAL_SWITCH_TRIES: Final = 100
WAL_SWITCH_WAIT_S: Final = 0.05
SCHEMA: Final = query("schema")
MIGRATIONS: Final = {version: statements(f"upgrade_from_{version}") for version in range(2, 9)}
"""Statements taking a database of the key's schema version to the next one; run before
:data:`SCHEMA`, whose indexes may name the columns they add."""

_OCCURRENCES: Final = query("occurrences")
DUPLICATE_SCAN_PARTS: Final = 2
""":meth:`Store.finish_plan` reads the campaign's rows in this many line ranges at once, each
on a read-only connection in a thread of its own. Testing every row's number against the
candidates takes ~0.6 s a million rows, all in SQLite, which holds no GIL meanwhile; with
two parts it ends in about half that, the last serial step of a plan."""


def _occurrences(path: Path, campaign_id: int, numbers: Collection[str], after: int,
                 through: int) -> list[tuple[Any, ...]]:
    """The pending rows in lines *after* < line <= *through* whose number is in *numbers*,
    in line order. Every row's number is looked up in *numbers*, a temporary table kept in
    memory: in a temporary file the scan took 10-20% more CPU."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        conn.execute(PLAN_TEMP_STORE)
        conn.execute(_CREATE_MAYBE_DUPLICATES)
        conn.executemany(_INSERT_MAYBE_DUPLICATE, [(p,) for p in numbers])
        return conn.execute(_OCCURRENCES, (campaign_id, after, through)).fetchall()


def _later_occurrences(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each of *rows* (:data:`_OCCURRENCES`, in line order) whose number is on an earlier
    one, as ``(line, first line, provider, country, segments, cost_nanos)``."""
    first: dict[str, int] = {}
    later: list[tuple[Any, ...]] = []
    for line, phone, *rest in rows:
        first_line = first.setdefault(phone, line)
        if first_line != line:
            later.append((line, first_line, *rest))
    return later


_CREATE_MAYBE_DUPLICATES: Final = query("create_maybe_duplicates")
_INSERT_MAYBE_DUPLICATE: Final = query("insert_maybe_duplicate")
_MARK_DUPLICATE: Final = query("mark_duplicate")


def paged(columns: str, rest: str) -> str:
    """The statement :meth:`Store.page` runs for ``SELECT columns rest`` (``page``)."""
    return query("page", columns=columns, rest=rest)


_OUTGOING: Final = paged(OUTGOING_COLUMNS, query("outgoing_from"))
_OUTGOING_OF_PROVIDER: Final = paged(OUTGOING_COLUMNS, query("outgoing_of_provider_from"))
_SPENT: Final = query("spent", states=", ".join("?" * len(SPENDING_STATES)))
_PROBE: Final = query("probe_schema_version")
_SCHEMA_VERSION: Final = query("schema_version")
_BEGIN: Final = query("begin_immediate")
_COMMIT: Final = query("commit")
_ROLLBACK: Final = query("rollback")


_PROBLEMS: Final = {
    sqlite3.SQLITE_READONLY: "the database cannot be written (the file, its folder or the "
                             "disk is read-only) and this command writes to it",
    sqlite3.SQLITE_BUSY: "the database is locked by another process (a dispatch run, plan, "
                         "dlr or webhooks?) past the wait; try again when it has finished",
    sqlite3.SQLITE_LOCKED: "the database is locked by another connection; try again when it "
                           "has finished",
    sqlite3.SQLITE_FULL: "the disk is full; free some space and run the command again (the "
                         "unfinished transaction was rolled back)",
    sqlite3.SQLITE_CORRUPT: "the database file is corrupt; restore it from a backup, or "
                            "recover what it holds with `sqlite3 {path} '.recover' | sqlite3 "
                            "NEW.db` and point [engine] database at NEW.db",
    sqlite3.SQLITE_NOTADB: "not a SQLite database (is [engine] database the right file?)",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database file (its folder is missing or cannot "
                             "be read or written)",
    sqlite3.SQLITE_IOERR: "input/output error on the database file (a failing or full disk?)",
    sqlite3.SQLITE_PERM: "permission denied on the database file",
    sqlite3.SQLITE_AUTH: "permission denied on the database file",
}
"""What a user is told for each primary SQLite result code (extended codes are folded)."""


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """*exc* as the one-line error a user reads: the file, the cause, what to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    problem = _PROBLEMS.get(code & 0xFF) if code is not None else None
    if problem is None:
        return StoreError(f"database error: {exc}", path=path)
    return StoreError(f"{problem.format(path=path)} (SQLite: {exc})", path=path)


def translate_errors(exc: BaseException, path: Path) -> BaseException:
    """*exc* with every SQLite error in it, in exception groups too, a :class:`StoreError`:
    a task group's failure then carries the engine's errors, which the CLI reports."""
    if isinstance(exc, sqlite3.Error):
        return store_error(exc, path)
    if isinstance(exc, BaseExceptionGroup):
        parts = [translate_errors(e, path) for e in exc.exceptions]
        if any(p is not e for p, e in zip(parts, exc.exceptions, strict=True)):
            return exc.derive(parts)
    return exc


async def _connect(path: Path) -> aiosqlite.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the database's folder: {exc.strerror or exc}",
                         path=path) from None
    return await aiosqlite.connect(path, isolation_level=None)


async def _connect_read_only(path: Path) -> aiosqlite.Connection:
    """A connection that cannot write, to an existing database.

    SQLite reads a WAL database read-only only where it can make the ``-shm`` and ``-wal``
    files beside it, or they exist; on a read-only folder without them the database is
    opened ``immutable``: nothing can be writing it there."""
    if not await anyio.Path(path).is_file():
        raise StoreError("no database here: nothing has been planned with this config "
                         "(dispatch plan CAMPAIGN creates it)", path=path)
    uri = Path(await anyio.Path(path).resolve()).as_uri()
    db = await aiosqlite.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
    try:
        await db.execute_fetchall(_PROBE)
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_READONLY,
                                                               sqlite3.SQLITE_CANTOPEN):
            await db.close()
            raise
        await db.close()
        db = await aiosqlite.connect(f"{uri}?mode=ro&immutable=1", uri=True,
                                     isolation_level=None)
    return db


_HEARTBEAT: Final = query("worker_heartbeat")


class Heartbeat:
    """A worker's heartbeat, on a synchronous connection of its own: a thread writes it,
    so that it keeps beating while the event loop is busy (planning holds it for seconds)."""

    def __init__(self, path: Path, worker_id: str) -> None:
        self._path = path
        self._worker_id = worker_id
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for pragma in PRAGMAS:
                self._conn.execute(pragma)
        except sqlite3.Error as exc:
            raise store_error(exc, path) from None

    def beat(self, now: float) -> bool:
        """Record that the worker is alive at *now*; False if its row is gone (another
        worker found it dead and rescued what it held)."""
        try:
            return self._conn.execute(_HEARTBEAT, (now, self._worker_id)).rowcount == 1
        except sqlite3.Error as exc:
            raise store_error(exc, self._path) from None

    def close(self) -> None:
        self._conn.close()


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path
        self._tx_lock = anyio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, *, read_only: bool = False) -> AsyncIterator[Store]:
        """The store at *path*, created (with its folder) unless *read_only*.

        Read-only, a missing database is an error and nothing is created or changed; a
        database whose folder cannot be written (a read-only mount) is read as immutable.
        Every SQLite error raised while the store is open, in the caller's block too (task
        groups included), comes out as a :class:`StoreError` naming the file and the cause.
        """
        try:
            db = await (_connect_read_only(path) if read_only else _connect(path))
        except sqlite3.Error as exc:
            raise store_error(exc, path) from None
        try:
            store = cls(db, path)
            if read_only:
                await store._check_schema()
            else:
                await store._prepare()
            yield store
        except (sqlite3.Error, BaseExceptionGroup) as exc:
            translated = translate_errors(exc, path)
            if translated is exc:
                raise
            raise translated from None
        finally:
            await db.close()

    async def _check_schema(self) -> None:
        """A read-only store must already be a dispatch database of this engine's schema."""
        try:
            version = await self._scalar(_SCHEMA_VERSION)
        except aiosqlite.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            version = None
        if version is None:
            raise StoreError("not a dispatch database (no schema version in it)", path=self.path)
        if not READ_ONLY_SCHEMA_FROM <= int(version) <= SCHEMA_VERSION:
            raise StoreError(f"schema version {version}, this engine reads "
                             f"{READ_ONLY_SCHEMA_FROM} to {SCHEMA_VERSION}; a command that "
                             "writes (dispatch run or dlr) upgrades an older one",
                             path=self.path)

    async def _prepare(self) -> None:
        try:
            # The wait first: on a new file, switching to WAL waits for another process
            # creating it too (two runs started together) instead of failing at once.
            for pragma in sorted(PRAGMAS, key=lambda p: "busy_timeout" not in p):
                await self._pragma(pragma)
            await self._in_write_transaction(SCHEMA.split(";", 1)[0] + ";")
            version = await self._scalar(_SCHEMA_VERSION)
            if version is not None and int(version) in MIGRATIONS:
                await self._migrate(int(version))
                version = str(SCHEMA_VERSION)
            await self._in_write_transaction(SCHEMA)
            if version is None:  # OR IGNORE: another process may be creating it too
                async with self.transaction() as db:
                    await db.execute(query("insert_schema_version"), (str(SCHEMA_VERSION),))
            elif int(version) != SCHEMA_VERSION:
                raise StoreError(f"schema version {version}, this engine needs "
                                 f"{SCHEMA_VERSION}", path=self.path)
        except aiosqlite.DatabaseError as exc:
            raise store_error(exc, self.path) from None

    async def _pragma(self, pragma: str) -> None:
        """Run *pragma*. Switching a new file to WAL needs the file to itself, and a second
        process opening it at that moment (two runs started together) is told "database is
        locked" at once, not after the busy timeout: it is asked again, a bounded number of
        times."""
        for attempt in range(1, WAL_SWITCH_TRIES + 1):
            try:
                await self.db.execute(pragma)
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
                if "journal_mode" not in pragma or not busy or attempt == WAL_SWITCH_TRIES:
                    raise
            await anyio.sleep(WAL_SWITCH_WAIT_S)

    async def _in_write_transaction(self, script: str) -> None:
        """Run *script* in one ``BEGIN IMMEDIATE`` transaction, waited for. A write begun
        outside one reads a snapshot first, and when another process commits before it
        writes (two runs started together on a new file), it fails at once with "database
        is locked" whatever the busy timeout says (SQLITE_BUSY_SNAPSHOT)."""
        try:
            await self.db.executescript(f"BEGIN IMMEDIATE;\n{script}\n;\nCOMMIT;")
        except BaseException:
            if self.db.in_transaction:
                with anyio.CancelScope(shield=True):
                    await self.db.execute("ROLLBACK")
            raise

    async def _migrate(self, version: int) -> None:
        """Bring a database of an older schema *version* up to :data:`SCHEMA_VERSION`; a
        process that opened it at the same time may have done it first."""
        async with self.transaction() as db:
            version = int(await self._scalar(_SCHEMA_VERSION))
            while version in MIGRATIONS:
                for statement in MIGRATIONS[version]:
                    await db.execute(statement)
                version += 1
            await db.execute(query("update_schema_version"), (str(version),))

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._rows(sql, params)
        return rows[0][0] if rows else None

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """In one hop to the connection's thread. A cursor left open between two hops holds
        a read snapshot, and another task's ``BEGIN IMMEDIATE`` on this connection then
        fails at once with "database is locked": SQLite cannot upgrade a snapshot that
        another connection's commit made stale, so it does not wait."""
        return list(await self.db.execute_fetchall(sql, params))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time on this connection, whichever task asks.

        ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` are shielded from cancellation: aiosqlite runs
        them in its thread whatever happens to the awaiting task, and an abandoned ``BEGIN``
        would leave the connection inside a transaction nobody ends."""
        async with self._tx_lock:
            with anyio.CancelScope(shield=True):
                await self.db.execute(_BEGIN)
            try:
                yield self.db
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if self.db.in_transaction:  # a full disk or I/O error ends it already
                        await self.db.execute(_ROLLBACK)
                raise
            with anyio.CancelScope(shield=True):
                await self.db.execute(_COMMIT)

    async def campaign(self, name: str) -> CampaignRecord | None:
        rows = await self._rows(query("campaign_by_name"), (name,))
        if not rows:
            return None
        r = rows[0]
        return CampaignRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]))

    async def open_campaign(self, *, name: str, fingerprint: str, path: Path, currency: str,
                            plans: Sequence[RatePlan]) -> CampaignRecord:
        """The stored campaign *name*, created with its rate plans if it is new.

        A stored campaign planned from another message, recipients file or currency is an
        error: mixing two plans under one name would resume the wrong messages.
        """
        existing = await self.campaign(name)
        if existing is not None:
            if existing.fingerprint != fingerprint or existing.currency != currency:
                raise CampaignError(
                    f"campaign {name!r} in {self.path} was planned from a different message, "
                    "recipients file or settings; give the campaign a new name (or use a new "
                    "database) to plan it afresh", file=path, key="name")
            return existing
        async with self.transaction() as db:
            cur = await db.execute(
                query("insert_campaign"), (name, fingerprint, str(path), currency, time.time()))
            created = cur.rowcount == 1
            campaign_id = cur.lastrowid
            assert campaign_id is not None
            await db.executemany(
                query("insert_rate_plan"),
                [(campaign_id, p.id, p.prefix, json.dumps(
                    [[r.provider, r.route, r.prefix, str(r.price), r.currency, r.price_nanos]
                     for r in p.routes])) for p in plans] if created else [])
        if not created:  # another process (a `dispatch plan` beside a run) was first
            return await self.open_campaign(name=name, fingerprint=fingerprint, path=path,
                                            currency=currency, plans=plans)
        record = await self.campaign(name)
        assert record is not None
        return record

    async def register_worker(self, me: WorkerRecord) -> None:
        """Register *me* among the workers of its campaign."""
        async with self.transaction() as db:
            await db.execute(
                query("insert_worker"),
                (me.id, me.campaign, me.host, me.boot_id, me.pid, me.pid_started,
                 me.started_at, me.heartbeat_at))

    def heartbeat(self, worker_id: str) -> Heartbeat:
        """A heartbeat writer for worker *worker_id*, for a thread of its own."""
        return Heartbeat(self.path, worker_id)

    async def release_worker(self, worker_id: str) -> None:
        """Remove worker *worker_id*'s row: its campaign is free."""
        async with self.transaction() as db:
            await db.execute(query("delete_worker"), (worker_id,))

    async def workers(self, campaign: str) -> list[WorkerRecord]:
        """The workers registered for *campaign*, live or not."""
        return [WorkerRecord(*row) for row in await self._rows(
            query("workers_of_campaign"), (campaign,))]

    def plan_writers(self, campaign_id: int) -> SqlitePlanWriters:
        """What writes the campaign's planned pieces, in this process or a planning one."""
        return SqlitePlanWriters(self.path, campaign_id)

    async def planned_numbers(self, campaign_id: int,
                              page: int = 50_000) -> AsyncIterator[list[str]]:
        """The numbers of the valid rows a plan has stored so far, a page at a time."""
        after = 0
        while rows := await self._rows(
                query("planned_numbers_page"), (campaign_id, after, page)):
            yield [r[1] for r in rows]
            after = rows[-1][0]

    async def finish_plan(self, campaign_id: int, maybe_duplicates: Collection[str],
                          tally: Tally | None = None) -> None:
        """Mark later occurrences of a number as duplicates and the plan complete, at once;
        move the duplicates in *tally*, if given, from valid to skipped.

        *maybe_duplicates* must hold every number that occurs on more than one valid line
        (:class:`engine.plan.seen.SeenNumbers` gives a few more); only their rows are read.
        """
        duplicates: list[tuple[Any, ...]] = []
        async with self.transaction() as db:
            if maybe_duplicates:
                last = await self._scalar(query("last_line"), (campaign_id,))
                duplicates = _later_occurrences(
                    await self._scan_parts(campaign_id, maybe_duplicates, int(last or 0)))
            await db.executemany(_MARK_DUPLICATE, [(first_line, campaign_id, line)
                                                   for line, first_line, *_ in duplicates])
            await db.execute(query("mark_plan_complete"), (campaign_id,))
        if tally is not None:
            for _, _, provider, country, segments, cost in duplicates:
                tally.add(("pending", None, provider, country), -1, -segments, -cost)
                tally.add(("skipped", "duplicate", None, country), 1, 0, 0)

    async def _scan_parts(self, campaign_id: int, numbers: Collection[str],
                          last_line: int) -> list[tuple[Any, ...]]:
        """:func:`_occurrences` over every line up to *last_line*, the parts read at once."""
        bounds = [last_line * i // DUPLICATE_SCAN_PARTS
                  for i in range(DUPLICATE_SCAN_PARTS + 1)]
        parts: list[list[tuple[Any, ...]]] = [[] for _ in range(DUPLICATE_SCAN_PARTS)]

        async def read(i: int) -> None:
            parts[i] = await anyio.to_thread.run_sync(
                _occurrences, self.path, campaign_id, numbers, bounds[i], bounds[i + 1])

        async with anyio.create_task_group() as tg:
            for i in range(DUPLICATE_SCAN_PARTS):
                tg.start_soon(read, i)
        return [row for part in parts for row in part]

    async def plan_counts(self, campaign_id: int) -> PlanCounts:
        """Counts by state and reason, and messages/segments/cost by provider and country,
        from one scan of the campaign's rows."""
        tally = Tally()
        for state, reason, provider, country, n, segs, nanos in await self._rows(
                query("plan_counts"), (campaign_id,)):
            tally.add((state, reason, provider, country), n, segs, nanos)
        return tally.counts()

    async def stored_texts(self, campaign_id: int, page: int = 50_000
                           ) -> AsyncIterator[list[tuple[str, str | None, int, int]]]:
        """``(text, variables, segments, price_nanos)`` of the valid rows whose text the
        plan stored (:func:`engine.plan.rows.plan_rows`), a page at a time."""
        after = 0
        while rows := await self._rows(
                query("stored_texts_page"), (campaign_id, after, page)):
            yield [tuple(r[1:]) for r in rows]
            after = rows[-1][0]

    async def campaign_named(self, name: str) -> CampaignRecord:
        """The campaign stored under *name*; the error lists the ones there are."""
        record = await self.campaign(name)
        if record is None:
            known = [r[0] for r in await self._rows(query("campaign_names"))]
            raise StoreError(f"no campaign {name!r} has been planned here (known: "
                             f"{', '.join(known) or 'none'})", path=self.path)
        return record

    async def outgoing(self, campaign_id: int, *, state: str, provider: str | None = None,
                       after_line: int = 0, limit: int = 1000) -> list[Outgoing]:
        """Messages in *state* (of *provider*), in line order, after *after_line*."""
        if provider is None:
            rows = await self.page_of(_OUTGOING, (campaign_id, state, after_line, limit))
        else:
            rows = await self.page_of(_OUTGOING_OF_PROVIDER,
                                      (campaign_id, state, after_line, provider, limit))
        return list(map(Outgoing._make, rows))

    async def page(self, columns: str, rest: str, params: Sequence[Any]) -> list[list[Any]]:
        """The rows of ``SELECT columns rest``, as :meth:`page_of` gives them (the statement
        built per call: for reads off the hot paths, and tests)."""
        return await self.page_of(paged(columns, rest), params)

    async def page_of(self, sql: str, params: Sequence[Any]) -> list[list[Any]]:
        """The rows of *sql*, a :func:`paged` ``SELECT columns rest`` built once, as one JSON
        value, sorted by the first column.

        A run reads pages while its event loop is busy sending. Row by row, ``sqlite3``
        gives up the GIL for every row it steps to and must win it back from the loop, so a
        500-row page took up to 260 ms (against 3 ms idle) and each row forced the loop to
        hand the GIL over. As one value, SQLite reads the whole page in one step, and the
        loop decodes it in one C call. A REAL comes back to 15 significant digits: a
        timestamp to ~10 µs."""
        value = await self._scalar(sql, params)
        rows: list[list[Any]] = json.loads(value)
        rows.sort()
        return rows

    async def pending_by_provider(self, campaign_id: int) -> dict[str, int]:
        rows = await self._rows(query("pending_by_provider"), (campaign_id,))
        return dict(rows)

    async def rate_plans(self, campaign_id: int) -> dict[int, list[RatePlanRoute]]:
        rows = await self._rows(query("rate_plans"), (campaign_id,))
        return {plan_id: [RatePlanRoute(provider, route, int(nanos))
                          for provider, route, _, _, _, nanos in json.loads(routes)]
                for plan_id, routes in rows}

    async def spent_nanos(self, campaign_id: int) -> int:
        """What the campaign has cost or may have cost so far, in billionths."""
        return int(await self._scalar(_SPENT, (campaign_id, *SPENDING_STATES)))

    async def state_counts(self, campaign_id: int) -> list[tuple[str, str | None, int, int, int]]:
        """(state, provider, messages, segments, cost nanos) for every state and provider."""
        rows = await self._rows(query("state_counts"), (campaign_id,))
        return [tuple(r) for r in rows]

    async def report_rows(self, campaign_id: int, states: Collection[str] = ()
                          ) -> AsyncIterator[ReportRow]:
        """Every CSV row of the campaign in line order (only those in *states*, if given)."""
        sql = query("report_rows",  # the states asked for: built per call, once for all pages
                    only=f" AND state IN ({', '.join('?' * len(states))})" if states else "")
        after = 0
        while True:
            rows = await self._rows(sql, (campaign_id, after, *states))
            if not rows:
                return
            for row in rows:
                yield ReportRow._make(row)
            after = rows[-1][1]

    async def cached_rates(self, provider: str) -> tuple[float, list[RateRow]] | None:
        """The provider's last fetched rate table and when it was fetched (epoch seconds)."""
        rows = await self._rows(query("cached_rates"), (provider,))
        if not rows:
            return None
        fetched_at, data = rows[0]
        return fetched_at, [RateRow(provider, route, prefix, Decimal(price), currency)
                            for route, prefix, price, currency in json.loads(data)]

    async def save_rates(self, provider: str, fetched_at: float, rows: Sequence[RateRow]) -> None:
        data = json.dumps([[r.route, r.prefix, str(r.price), r.currency] for r in rows])
        async with self.transaction() as db:
            await db.execute(query("save_rates"), (provider, fetched_at, data))


# --- delivery reports --------------------------------------------------------------------
