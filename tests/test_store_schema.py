"""The store's schema: older databases are brought up to date, and the hot reads use it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.store.sqlite import claims
from engine.store.sqlite.delivery_store import DeliveryStore
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
        await DeliveryStore(store).awaiting(1, "skytelecom", after_line=3)
        await store.db.set_trace_callback(None)
    polls = [s for s in statements if s.lstrip().startswith("SELECT")]
    assert len(polls) == 1
    # Claims run in the checkpoint writer's process (engine/store/sqlite/claims.py).
    reads = [(claims._CLAIM_AS["claimed"], (1, "pending", "telekom", 7, 500)),
             (claims._CLAIM_AS["sending"], (1, "pending", "voipex", 7, 500)),
             (claims._CLAIM, (1, "unknown", "voipex", 0, 500)), (polls[0], ())]
    with sqlite3.connect(tmp_path / "s.db") as conn:
        for sql, params in reads:
            plan = " ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "INDEX messages_by_state (campaign_id=? AND state=? AND provider=? AND " \
                   "line>?)" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)
