"""The store's schema: older databases are brought up to date, and the hot reads use it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.send.worker import lease_rule
from engine.store.records import WorkerRecord
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.outbox import SqliteOutbox
from engine.store.sqlite.store import SCHEMA, SCHEMA_VERSION, Store

OLD_INDEX = "CREATE INDEX IF NOT EXISTS messages_state ON messages (campaign_id, state);"


def indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' "
            "AND name NOT LIKE 'sqlite_autoindex%'")}


def before_workers() -> str:
    """:data:`SCHEMA` as it was before schema 5 (no workers, no holder, no committed money)."""
    return (SCHEMA[:SCHEMA.index("-- Every process sending a campaign")]
            .replace("    worker TEXT,\n", "").replace(",\n    committed_nanos INTEGER", ""))


@pytest.mark.anyio
async def test_a_version_3_database_gets_the_state_and_provider_index(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old_schema = "\n".join(line for line in before_workers().splitlines()
                           if "messages_by_state" not in line and not line.startswith("--"))
    with sqlite3.connect(db) as conn:
        conn.executescript(old_schema + OLD_INDEX)
        conn.execute("INSERT INTO meta VALUES ('schema', '3')")
    assert "messages_state" in indexes(db)
    async with Store.open(db):
        pass
    assert indexes(db) == {"messages_by_state", "messages_provider_id",
                           "messages_unknown_delivery"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
            str(SCHEMA_VERSION),)


@pytest.mark.anyio
async def test_lanes_and_polling_read_only_their_own_provider_rows(tmp_path: Path) -> None:
    """A feeder's claim and delivery polling's page are ranges of the index in line order:
    no step through other providers' rows, and no sort."""
    statements: list[str] = []
    async with Store.open(tmp_path / "s.db") as store:
        await store.db.set_trace_callback(statements.append)
        outbox = SqliteOutbox(store, 1, WorkerRecord("w", "c", "h", "b", 1, None, 0, 0),
                              lease_rule())
        await outbox.claim("telekom", after_line=7, limit=500)
        await outbox.claim("voipex", state="unknown")
        await DeliveryStore(store).awaiting(1, "skytelecom", after_line=3)
        await store.db.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().startswith("SELECT")]
    assert len(reads) == 3
    with sqlite3.connect(tmp_path / "s.db") as conn:
        for sql in reads:
            plan = " ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "INDEX messages_by_state (campaign_id=? AND state=? AND provider=? AND " \
                   "line>?)" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)
