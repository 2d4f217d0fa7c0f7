"""The checkpoint writer process: what it says is committed is on disk, a failed commit is a
clear error that leaves it working, frames are answered in the order sent, a writer that
dies fails what waits for it, and closing it ends the process."""

from __future__ import annotations

import marshal
import os
import signal
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from engine.campaign import load_campaign
from engine.config import load_config
from engine.errors import StoreError
from engine.plan.planner import plan_campaign
from engine.store.sqlite.checkpoint import Checkpointer
from engine.store.sqlite.checkpoint_process import CheckpointProcess, write_arguments
from engine.store.sqlite.checkpoint_writer import CLAIM, WRITE
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


async def test_frames_sent_without_waiting_are_answered_in_order(tmp_path: Path) -> None:
    """Writes and a claim sent back to back, none waited for before the next is sent, are
    committed in the order sent and each gets its own answer."""
    db, campaign_id = await planned(tmp_path)
    with sqlite3.connect(db) as conn:
        provider = conn.execute("SELECT provider FROM messages WHERE line = 5").fetchone()[0]
        lines = [line for (line,) in conn.execute(
            "SELECT line FROM messages WHERE provider = ? AND line != 5 ORDER BY line LIMIT 3",
            (provider,))]
    writer = CheckpointProcess(db, campaign_id)
    await writer.start()
    try:
        mark = writer.send(WRITE, write_arguments([(time.time(), 5)], [], []))
        claim = writer.send(CLAIM, (provider, "pending", 0, 3, None, False))
        bad = writer.send(WRITE, write_arguments([], [("accepted", 6)], []))
        settle = writer.send(WRITE, write_arguments([], [(
            "accepted", None, None, "smsvoip", "r1", 1, 1, "pm-5", None, 1, time.time(), 5)],
            []))
        assert (await mark.wait(db)).not_held == 0
        rows, over_budget = marshal.loads((await claim.wait(db)).claimed)
        assert [r[0] for r in rows] == lines and not over_budget, "line 5 is sending"
        with pytest.raises(StoreError, match="checkpoint failed: ProgrammingError"):
            await bad.wait(db)
        await settle.wait(db)
        assert row(db, 5) == ("accepted", 1, "pm-5")
        assert row(db, lines[0])[0] == "claimed"
    finally:
        await writer.close()


async def test_frames_waiting_when_the_writer_dies_fail_instead_of_hanging(
        tmp_path: Path) -> None:
    """A writer killed with answers owed: every frame waiting is told it has exited, and so is
    any frame sent after."""
    db, campaign_id = await planned(tmp_path)
    writer = CheckpointProcess(db, campaign_id)
    await writer.start()
    try:
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGSTOP)  # nothing is answered until it is killed
        waiting = [writer.send(WRITE, write_arguments([(time.time(), line)], [], []))
                   for line in (7, 8)]
        os.kill(writer.pid, signal.SIGKILL)
        with anyio.fail_after(10):
            for answer in waiting:
                with pytest.raises(StoreError, match="the checkpoint writer has exited"):
                    await answer.wait(db)
            with pytest.raises(StoreError, match="the checkpoint writer has exited"):
                await writer.write([(time.time(), 9)], [])
        assert row(db, 7) == ("pending", 0, None)
    finally:
        await writer.close()


async def test_nothing_is_written_after_a_failed_write(tmp_path: Path) -> None:
    """Once a write has failed the run stops: a mark queued after it is never written (its
    waiter never told it was), and every flush raises the first failure."""
    db, campaign_id = await planned(tmp_path)
    async with Store.open(db) as store:
        checkpointer = Checkpointer(store, campaign_id)
        try:
            checkpointer.update(("accepted", 3))  # type: ignore[arg-type]  # malformed
            with pytest.raises(StoreError, match="checkpoint failed: ProgrammingError"):
                await checkpointer.flush()
            marked = False

            async def mark() -> None:
                nonlocal marked
                await checkpointer.mark_sending([4])
                marked = True

            async with anyio.create_task_group() as tg:
                tg.start_soon(mark)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(StoreError, match="ProgrammingError"):
                    await checkpointer.flush()
                tg.cancel_scope.cancel()
            assert not marked
            assert row(db, 4) == ("pending", 0, None)
        finally:
            await checkpointer.release()


async def test_the_writer_bench_settles_every_message_once(tmp_path: Path) -> None:
    """bench/checkpoint_writer.py's workload is a whole run's: every planned message claimed,
    marked where its lane marks, and accepted once, nothing left held."""
    from bench.checkpoint_writer import measure
    from bench.checkpoint_writer import planned as bench_planned

    db, campaign_id, providers = await bench_planned(tmp_path, 600)
    result = await anyio.to_thread.run_sync(measure, db, campaign_id, providers, 50)
    with sqlite3.connect(db) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
        held = conn.execute("SELECT count(*) FROM messages WHERE worker IS NOT NULL").fetchone()
        attempts = conn.execute("SELECT max(attempts) FROM messages").fetchone()
    assert result["messages"] == states["accepted"] > 500
    assert set(states) <= {"accepted", "rejected", "skipped"}
    assert held == (0,) and attempts == (1,)
