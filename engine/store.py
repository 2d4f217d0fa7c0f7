"""The SQLite store: schema and every query. One row per CSV row is the truth.

WAL, ``synchronous=FULL``, and one ``BEGIN IMMEDIATE`` transaction per batch written with
``executemany``: a batch and the campaign's resume point commit together, so a process
killed at any instant leaves either the whole batch or none of it.

Deduplication is one set-based statement when a plan completes (:meth:`Store.finish_plan`):
every valid row whose number appeared on an earlier valid line becomes ``skipped`` /
``duplicate``, naming that line. Checking each row against a unique index as it is inserted
would be the same rule, but random-order index inserts made a 1M-row plan four times slower;
the dispatcher only starts on a completed plan, so it never sees a duplicate.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import aiosqlite

from engine.errors import CampaignError, StoreError
from engine.routing import RatePlan, RateRow

SCHEMA_VERSION: Final = 1

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    path TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at REAL NOT NULL,
    planned_through INTEGER NOT NULL DEFAULT 0,
    plan_complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rate_plans (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    id INTEGER NOT NULL,
    prefix TEXT NOT NULL,
    routes TEXT NOT NULL,
    PRIMARY KEY (campaign_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    line INTEGER NOT NULL,
    phone_raw TEXT,
    phone TEXT,
    country TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    text TEXT,
    encoding TEXT,
    segments INTEGER,
    provider TEXT,
    route TEXT,
    price_nanos INTEGER,
    cost_nanos INTEGER,
    plan_id INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    actual_cost_nanos INTEGER,
    updated_at REAL,
    PRIMARY KEY (campaign_id, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_cache (
    provider TEXT PRIMARY KEY,
    fetched_at REAL NOT NULL,
    rows TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_state ON messages (campaign_id, state);
"""

MESSAGE_COLUMNS: Final = (
    "line", "phone_raw", "phone", "country", "state", "reason", "detail",
    "text", "encoding", "segments", "provider", "route", "price_nanos", "cost_nanos", "plan_id",
)
"""The order of the tuples the planner hands to :meth:`Store.insert_planned`."""

_INSERT: Final = (
    f"INSERT INTO messages (campaign_id, {', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' * len(MESSAGE_COLUMNS))}) "
    "ON CONFLICT (campaign_id, line) DO NOTHING")
_MARK_DUPLICATES: Final = """
UPDATE messages SET state = 'skipped', reason = 'duplicate',
       detail = 'the same number as line ' || d.first, provider = NULL, route = NULL,
       price_nanos = NULL, cost_nanos = NULL, plan_id = NULL
FROM (SELECT line, first_value(line) OVER (PARTITION BY phone ORDER BY line) AS first
      FROM messages WHERE campaign_id = :c AND state = 'pending') AS d
WHERE messages.campaign_id = :c AND messages.line = d.line AND d.first <> d.line
"""

VALID_STATES: Final = ("pending", "sending", "accepted", "delivered", "undelivered",
                       "failed", "unknown")


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    id: int
    name: str
    fingerprint: str
    currency: str
    planned_through: int
    plan_complete: bool


@dataclass(frozen=True, slots=True)
class Group:
    messages: int
    segments: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class PlanCounts:
    rows: int
    valid: int
    rejected: dict[str, int]
    skipped: dict[str, int]
    segments: int
    cost_nanos: int
    by_provider: dict[str, Group]
    by_country: dict[str, Group]


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[Store]:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except Exception as exc:
            raise StoreError(f"cannot open database: {exc}", path=path) from None
        try:
            store = cls(db, path)
            await store._prepare()
            yield store
        finally:
            await db.close()

    async def _prepare(self) -> None:
        try:
            await self.db.execute("PRAGMA journal_mode=WAL")
            await self.db.execute("PRAGMA synchronous=FULL")
            await self.db.execute("PRAGMA foreign_keys=ON")
            await self.db.execute("PRAGMA busy_timeout=10000")
            await self.db.execute("PRAGMA cache_size=-8192")
            await self.db.executescript(SCHEMA)
            version = await self._scalar("SELECT value FROM meta WHERE key='schema'")
            if version is None:
                await self.db.execute("INSERT INTO meta VALUES ('schema', ?)",
                                      (str(SCHEMA_VERSION),))
            elif int(version) != SCHEMA_VERSION:
                raise StoreError(f"schema version {version}, this engine needs "
                                 f"{SCHEMA_VERSION}", path=self.path)
        except aiosqlite.DatabaseError as exc:
            raise StoreError(f"not a usable dispatch database: {exc}", path=self.path) from None

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self.db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")

    async def campaign(self, name: str) -> CampaignRecord | None:
        rows = await self._rows(
            "SELECT id, name, fingerprint, currency, planned_through, plan_complete "
            "FROM campaigns WHERE name = ?", (name,))
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
                "INSERT INTO campaigns (name, fingerprint, path, currency, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (name, fingerprint, str(path), currency, time.time()))
            campaign_id = cur.lastrowid
            assert campaign_id is not None
            await db.executemany(
                "INSERT INTO rate_plans (campaign_id, id, prefix, routes) VALUES (?, ?, ?, ?)",
                [(campaign_id, p.id, p.prefix, json.dumps(
                    [[r.provider, r.route, r.prefix, str(r.price), r.currency, r.price_nanos]
                     for r in p.routes])) for p in plans])
        record = await self.campaign(name)
        assert record is not None
        return record

    async def insert_planned(self, campaign_id: int, rows: Sequence[tuple[Any, ...]],
                             *, through: int) -> None:
        """Write one planned batch and move the resume point to line *through*."""
        async with self.transaction() as db:
            await db.executemany(_INSERT, [(campaign_id, *r) for r in rows])
            await db.execute("UPDATE campaigns SET planned_through = ? WHERE id = ?",
                             (through, campaign_id))

    async def finish_plan(self, campaign_id: int) -> None:
        """Mark later occurrences of a number as duplicates and the plan complete, at once."""
        async with self.transaction() as db:
            await db.execute(_MARK_DUPLICATES, {"c": campaign_id})
            await db.execute("UPDATE campaigns SET plan_complete = 1 WHERE id = ?",
                             (campaign_id,))

    async def plan_counts(self, campaign_id: int) -> PlanCounts:
        states = await self._rows(
            "SELECT state, reason, count(*), coalesce(sum(segments), 0), "
            "coalesce(sum(cost_nanos), 0) FROM messages WHERE campaign_id = ? "
            "GROUP BY state, reason", (campaign_id,))
        rejected: dict[str, int] = {}
        skipped: dict[str, int] = {}
        rows = valid = segments = cost = 0
        for state, reason, n, segs, nanos in states:
            rows += n
            if state == "rejected":
                rejected[reason] = rejected.get(reason, 0) + n
            elif state == "skipped":
                skipped[reason] = skipped.get(reason, 0) + n
            else:
                valid += n
                segments += segs
                cost += nanos
        return PlanCounts(
            rows=rows, valid=valid, rejected=rejected, skipped=skipped, segments=segments,
            cost_nanos=cost,
            by_provider=await self._groups("provider", campaign_id),
            by_country=await self._groups("country", campaign_id),
        )

    async def cached_rates(self, provider: str) -> tuple[float, list[RateRow]] | None:
        """The provider's last fetched rate table and when it was fetched (epoch seconds)."""
        rows = await self._rows("SELECT fetched_at, rows FROM rate_cache WHERE provider = ?",
                                (provider,))
        if not rows:
            return None
        fetched_at, data = rows[0]
        return fetched_at, [RateRow(provider, route, prefix, Decimal(price), currency)
                            for route, prefix, price, currency in json.loads(data)]

    async def save_rates(self, provider: str, fetched_at: float, rows: Sequence[RateRow]) -> None:
        data = json.dumps([[r.route, r.prefix, str(r.price), r.currency] for r in rows])
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO rate_cache (provider, fetched_at, rows) VALUES (?, ?, ?) "
                "ON CONFLICT (provider) DO UPDATE SET fetched_at = excluded.fetched_at, "
                "rows = excluded.rows", (provider, fetched_at, data))

    async def _groups(self, column: str, campaign_id: int) -> dict[str, Group]:
        assert column in ("provider", "country")
        rows = await self._rows(
            f"SELECT {column}, count(*), sum(segments), sum(cost_nanos) FROM messages "
            "WHERE campaign_id = ? AND state NOT IN ('rejected', 'skipped') "
            f"GROUP BY {column} ORDER BY sum(cost_nanos) DESC, {column}", (campaign_id,))
        return {name: Group(n, segs or 0, nanos or 0) for name, n, segs, nanos in rows}
