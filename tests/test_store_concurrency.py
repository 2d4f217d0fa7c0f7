"""One run's store connection is shared by the feeders' reads and the delivery writers'
transactions, while the checkpoint writer commits on a connection of its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from engine.campaign import load_campaign
from engine.config import load_config
from engine.plan.planner import plan_campaign
from engine.store.sqlite.checkpoint_writer import CheckpointWriter
from engine.store.sqlite.store import OUTGOING_COLUMNS, Store
from tests.helpers import write_campaign, write_config

pytestmark = pytest.mark.anyio


async def test_reads_and_transactions_interleave_while_another_connection_commits(
        tmp_path: Path) -> None:
    rows = "".join(f"+4219123{i:05d},N{i}\n" for i in range(3000))
    campaign = load_campaign(write_campaign(tmp_path, "phone,name\n" + rows))
    config = load_config(write_config(tmp_path))
    stop = threading.Event()
    async with Store.open(config.database) as store:
        await plan_campaign(config, campaign, store)
        record = await store.campaign_named(campaign.name)
        writer = CheckpointWriter(store.path, record.id)

        def commit_forever() -> None:
            """Group commits as a run makes them: one after another, with a breath between
            (back to back, they could starve the other connection past its busy timeout)."""
            line = 0
            while not stop.wait(0.001):
                line = line % 3000 + 1
                writer.write([(time.time(), line)], [])
        thread = threading.Thread(target=commit_forever)
        thread.start()
        try:
            async def read() -> None:
                for _ in range(300):
                    await store.outgoing(record.id, state="pending", limit=200)

            async def write() -> None:
                for _ in range(300):
                    async with store.transaction() as db:
                        await db.execute("UPDATE campaigns SET path = path WHERE id = ?",
                                         (record.id,))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                tg.start_soon(write)
        finally:
            stop.set()
            thread.join()
            writer.close()


async def test_a_page_of_outgoing_rows_is_every_column_as_stored(tmp_path: Path) -> None:
    """The page read as one JSON value gives what a plain SELECT gives, in line order:
    NULLs, large integers, stored texts with the separator and any Unicode, and states."""
    rows = "".join(f"+4219123{i:05d},N{i} ünï 😀\n" for i in range(1, 41))
    campaign = load_campaign(write_campaign(tmp_path, "phone,name\n" + rows))
    config = load_config(write_config(tmp_path))
    async with Store.open(config.database) as store:
        await plan_campaign(config, campaign, store)
        record = await store.campaign_named(campaign.name)
        writer = CheckpointWriter(store.path, record.id)
        writer.write([(1795392015.25, 7)], [])
        await store.db.execute(
            "UPDATE messages SET text = ?, cost_nanos = ?, attempts = 3 WHERE line = 5",
            ("a\x1fb \"quoted\" \\ é 😀\n", 2**62))
        writer.close()
        for state, after in (("pending", 0), ("pending", 20), ("sending", 0)):
            expected = [tuple(r) for r in await store.db.execute_fetchall(
                f"SELECT {OUTGOING_COLUMNS} FROM messages WHERE campaign_id = ? AND state = ? AND "
                "line > ? ORDER BY line LIMIT 15", (record.id, state, after))]
            page = await store.outgoing(record.id, state=state, after_line=after, limit=15)
            assert [tuple(r) for r in page] == expected
            assert expected
