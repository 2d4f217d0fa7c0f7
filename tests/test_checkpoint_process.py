"""The checkpoint writer process: what it says is committed is on disk, a failed commit is a
clear error that leaves it working, and closing it ends the process."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from engine.campaign import load_campaign
from engine.config import load_config
from engine.errors import StoreError
from engine.plan.planner import plan_campaign
from engine.store.sqlite.checkpoint_process import CheckpointProcess
from engine.store.sqlite.store import Store
from tests.helpers import alive, write_campaign, write_config

pytestmark = pytest.mark.anyio


async def planned(tmp_path: Path) -> tuple[Path, int]:
    rows = "".join(f"+4219123{i:05d},N{i}\n" for i in range(20))
    campaign = load_campaign(write_campaign(tmp_path, "phone,name\n" + rows))
    config = load_config(write_config(tmp_path))
    async with Store.open(config.database) as store:
        await plan_campaign(config, campaign, store)
        record = await store.campaign_named(campaign.name)
    return config.database, record.id


def row(db: Path, line: int) -> tuple[object, ...]:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT state, attempts, provider_message_id FROM messages "
                             "WHERE line = ?", (line,)).fetchone()
    assert found is not None
    return tuple(found)


async def test_commits_are_on_disk_when_write_returns_and_errors_name_the_problem(
        tmp_path: Path) -> None:
    db, campaign_id = await planned(tmp_path)
    writer = CheckpointProcess(db, campaign_id)
    await writer.start()
    pid = writer.pid
    assert pid is not None
    try:
        await writer.write([(time.time(), 2), (time.time(), 3)], [])
        assert row(db, 2) == ("sending", 1, None)
        assert row(db, 3) == ("sending", 1, None)

        with pytest.raises(StoreError, match="checkpoint failed: ProgrammingError"):
            await writer.write([], [("accepted", 3)])
        assert row(db, 3) == ("sending", 1, None), "a failed transaction changes nothing"

        accepted = ("accepted", None, None, "smsvoip", "r1", 1, 1, "pm-3", None, 1,
                    time.time(), 3)
        await writer.write([], [accepted])
        assert row(db, 3) == ("accepted", 1, "pm-3")
    finally:
        await writer.close()
    assert writer.returncode == 0
    assert not alive(pid)
    await writer.close()


async def test_a_database_it_cannot_open_is_an_error_at_start(tmp_path: Path) -> None:
    writer = CheckpointProcess(tmp_path / "missing-folder" / "dispatch.db", 1)
    with pytest.raises(StoreError, match="checkpoint failed: OperationalError"):
        await writer.start()
    await writer.close()


async def test_a_failed_over_line_marked_by_its_new_lane_in_the_same_commit_stays_sending(
        tmp_path: Path) -> None:
    """Outcomes first, then marks: the failover's ``pending`` must not undo the new mark."""
    db, campaign_id = await planned(tmp_path)
    writer = CheckpointProcess(db, campaign_id)
    try:
        failed_over = ("pending", None, "failed over: x", "voipex", "r2", 1, 1, None, None, 1,
                       time.time(), 4)
        await writer.write([(time.time(), 4)], [failed_over])
        assert row(db, 4) == ("sending", 2, None)
    finally:
        await writer.close()
