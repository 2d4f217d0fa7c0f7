"""Many workers, one campaign: every `dispatch run` is a worker; a message is held by one
worker at a time (claims), a dead worker's messages are rescued by lease, the budget holds
across workers, and nobody is billed twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

import engine.send.worker as worker_module
from bench.generate import generate
from engine.campaign import load_campaign
from engine.config import load_config
from engine.plan.planner import plan_campaign
from engine.send.worker import (
    WORKER_LEASE_S,
    Host,
    campaign_worker,
    lease_rule,
    process_started,
)
from engine.store.records import Settlement, WorkerRecord
from engine.store.sqlite.checkpoint_writer import CheckpointWriter
from engine.store.sqlite.outbox import SqliteOutbox
from engine.store.sqlite.store import Store
from tests.helpers import ROOT, children_of, dispatch, wait_gone, write_config
from tests.run_fixtures import external_sandbox, run_config
from tests.test_run import assert_once_or_reported, sent_counts
from tests.test_store_schema import before_workers

CAMPAIGN = "busy"
RATE_LIMITS = {kind: "60/s" for kind in ("skytelecom", "smsvoip", "voipex", "telekom",
                                         "skynoo")}
"""Slow enough that a run of :data:`RECIPIENTS` lasts seconds, so two runs overlap."""
RECIPIENTS = 1500
RUN_BOUND_S = 120


def holder(campaign: str, *, host: Host, pid: int, started: int | None,
           heartbeat_age_s: float = 0.0) -> WorkerRecord:
    now = time.time()
    return WorkerRecord(id=f"other-{pid}", campaign=campaign, host=host.name,
                        boot_id=host.boot_id, pid=pid, pid_started=started,
                        started_at=now - 60, heartbeat_at=now - heartbeat_age_s)


async def register(db: Path, record: WorkerRecord) -> None:
    async with Store.open(db) as store:
        await store.register_worker(record)


async def rows(db: Path) -> list[WorkerRecord]:
    async with Store.open(db) as store:
        return await store.workers(CAMPAIGN)


def dead_pid() -> int:
    """The pid of a process of this host that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of this host, not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(timeout=10)



async def planned(folder: Path, recipients: int = 300, max_cost: str | None = None
                  ) -> tuple[Path, int]:
    """A real SQLite store holding a planned campaign of *recipients*: its path and id."""
    generate(recipients, 11, 0.0, "SK", folder / "c", CAMPAIGN)
    if max_cost is not None:
        toml = folder / "c" / "campaign.toml"
        toml.write_text(f"max_cost = {max_cost}\n" + toml.read_text(encoding="utf-8"),
                        encoding="utf-8")
    config = load_config(write_config(folder))
    async with Store.open(config.database) as store:
        await plan_campaign(config, load_campaign(folder / "c" / "campaign.toml"), store)
        return config.database, (await store.campaign_named(CAMPAIGN)).id


def me(pid: int | None = None) -> WorkerRecord:
    """A worker of this host, this process unless *pid* says otherwise."""
    return holder(CAMPAIGN, host=Host.here(), pid=pid or os.getpid(),
                  started=process_started(pid or os.getpid()))


async def claim_all(db: Path, campaign_id: int, workers: list[WorkerRecord],
                    providers: list[str], budget_nanos: int | None = None
                    ) -> dict[str, list[int]]:
    """Each of *workers*, at once and each on a connection of its own, claims every line
    of *providers* it can, a small page at a time: the lines each took."""
    taken: dict[str, list[int]] = {w.id: [] for w in workers}
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(Store.open(db)) for _ in workers]
        go = anyio.Event()

        async def take(store: Store, worker: WorkerRecord) -> None:
            outbox = SqliteOutbox(store, campaign_id, worker, lease_rule())
            await go.wait()
            for provider in providers:
                while (claim := await outbox.claim(provider, limit=7,
                                                   budget_nanos=budget_nanos)).messages:
                    taken[worker.id] += [m.line for m in claim.messages]

        async with anyio.create_task_group() as tg:
            for store, worker in zip(stores, workers, strict=True):
                tg.start_soon(take, store, worker)
            await anyio.wait_all_tasks_blocked()
            go.set()
    return taken


async def states(db: Path, campaign_id: int) -> Counter[tuple[str, bool]]:
    """(state, held by a worker) counted over the campaign's messages."""
    async with Store.open(db) as store:
        return Counter((state, bool(worker)) for state, worker in await store.page(
            "state, worker", "FROM messages WHERE campaign_id = ?", (campaign_id,)))


@pytest.mark.anyio
async def test_two_workers_never_hold_the_same_message(tmp_path: Path) -> None:
    """Two workers claiming one provider's messages at once, each on its own connection,
    take every pending message between them and never the same one (that both get a share
    in a real run: the two-process test below)."""
    db, cid = await planned(tmp_path)
    async with Store.open(db) as store:
        provider = max((await store.pending_by_provider(cid)).items(), key=lambda kv: kv[1])
    a, b = me(), holder(CAMPAIGN, host=Host.here(), pid=os.getppid(), started=None)
    for w in (a, b):
        await register(db, w)
    taken = await claim_all(db, cid, [a, b], [provider[0]])
    assert not set(taken[a.id]) & set(taken[b.id])
    assert len(taken[a.id]) + len(taken[b.id]) == provider[1]


@pytest.mark.anyio
@pytest.mark.parametrize(("where", "heartbeat_age_s", "rescued"), [
    pytest.param("dead-pid-here", 0.0, True, id="dead-process-here"),
    pytest.param("live-pid-here", WORKER_LEASE_S * 4, False, id="live-process-old-heartbeat"),
    pytest.param("elsewhere", 1.0, False, id="other-host-fresh-heartbeat"),
    pytest.param("elsewhere", WORKER_LEASE_S + 1, True, id="other-host-lapsed-heartbeat"),
])
async def test_a_dead_workers_messages_are_rescued_by_lease(
        tmp_path: Path, sleeper: subprocess.Popen[bytes], where: str,
        heartbeat_age_s: float, rescued: bool) -> None:
    """Only a worker the lease rule calls dead loses what it held: its claimed messages are
    pending again (their reservation returned), its sending ones unknown (settled next),
    and its row is gone; a live one keeps everything."""
    db, cid = await planned(tmp_path)
    if where == "elsewhere":
        other = holder(CAMPAIGN, host=Host("other-machine", "0000-boot"), pid=4242,
                       started=1, heartbeat_age_s=heartbeat_age_s)
    else:
        pid = dead_pid() if where == "dead-pid-here" else sleeper.pid
        other = holder(CAMPAIGN, host=Host.here(), pid=pid, started=process_started(pid),
                       heartbeat_age_s=heartbeat_age_s)
    mine = me()
    for w in (other, mine):
        await register(db, w)
    async with Store.open(db) as store:
        provider = next(iter(await store.pending_by_provider(cid)))
        theirs = SqliteOutbox(store, cid, other, lease_rule())
        claimed = (await theirs.claim(provider, limit=10)).messages
        sending = [m.line for m in claimed[:4]]
        writer = CheckpointWriter(db, cid, other.id)
        assert writer.write([(time.time(), line) for line in sending], []) == 0
        writer.close()
        before = await states(db, cid)
        result = await SqliteOutbox(store, cid, mine, lease_rule()).rescue()
        workers = [w.id for w in await store.workers(CAMPAIGN)]
    after = await states(db, cid)
    if rescued:
        assert result == (1, 6, 4)
        assert after[("claimed", True)] == after[("sending", True)] == 0
        assert after[("unknown", False)] == before[("unknown", False)] + 4
        assert after[("pending", False)] == before[("pending", False)] + 6
        assert workers == [mine.id]
    else:
        assert result == (0, 0, 0) and after == before
        assert sorted(workers) == sorted([other.id, mine.id])


@pytest.mark.anyio
async def test_the_budget_holds_across_workers(tmp_path: Path) -> None:
    """Two workers claiming under one max_cost reserve at most that much between them, and
    each is told when the next message does not fit."""
    db, cid = await planned(tmp_path)
    async with Store.open(db) as store:
        pending = await store.pending_by_provider(cid)
        costs = dict(await store.page("line, cost_nanos",
                                      "FROM messages WHERE campaign_id = ? AND state = ?",
                                      (cid, "pending")))
    budget = sum(costs.values()) // 3
    a, b = me(), holder(CAMPAIGN, host=Host.here(), pid=os.getppid(), started=None)
    for w in (a, b):
        await register(db, w)
    by_worker = await claim_all(db, cid, [a, b], list(pending), budget_nanos=budget)
    taken = by_worker[a.id] + by_worker[b.id]
    assert len(set(taken)) == len(taken)
    assert 0 < sum(costs[line] for line in taken) <= budget
    async with Store.open(db) as store:
        outbox = SqliteOutbox(store, cid, a, lease_rule())
        provider = next(iter(await store.pending_by_provider(cid)))
        assert (await outbox.claim(provider, budget_nanos=budget)).over_budget
        released = await outbox.release()
        released += await SqliteOutbox(store, cid, b, lease_rule()).release()
        assert released == len(taken)
        assert (await outbox.claim(provider, budget_nanos=budget)).messages


@pytest.mark.anyio
async def test_a_write_for_a_message_another_worker_holds_is_not_applied(
        tmp_path: Path) -> None:
    """A worker whose lease lapsed cannot overwrite what the rescuer now holds: its marks
    and settlements for those rows are counted as not applied, and nothing changes."""
    db, cid = await planned(tmp_path)
    a, b = me(), holder(CAMPAIGN, host=Host.here(), pid=os.getppid(), started=None)
    async with Store.open(db) as store:
        provider = next(iter(await store.pending_by_provider(cid)))
        line = (await SqliteOutbox(store, cid, b, lease_rule()).claim(provider, limit=1)
                ).messages[0].line
    before = await states(db, cid)
    writer = CheckpointWriter(db, cid, a.id)
    settled = Settlement("accepted", None, None, provider, "r", 1, 1, "id-1", None, 1,
                         time.time(), line)
    assert writer.write([(time.time(), line)], [tuple(settled)]) == 2
    writer.close()
    assert await states(db, cid) == before
@pytest.mark.anyio
async def test_a_worker_heartbeats_and_hears_when_its_row_is_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat moves forward while the worker runs; once its row is gone (another
    host took over) the worker's watch calls for a stop."""
    monkeypatch.setattr(worker_module, "WORKER_HEARTBEAT_S", 0.02)
    db = tmp_path / "d.db"
    stops: list[str] = []
    async with Store.open(db) as store, campaign_worker(store, CAMPAIGN) as me:
        for _ in range(1500):
            if (await store.workers(CAMPAIGN))[0].heartbeat_at > me.record.heartbeat_at:
                break
            await anyio.sleep(0.02)
        else:
            pytest.fail("the heartbeat never moved")
        async with store.transaction() as conn:
            await conn.execute("DELETE FROM workers")
        with anyio.fail_after(30):
            await me.watch(stops.append)
    assert stops == ["another process took the campaign over"]



@pytest.mark.anyio
async def test_a_version_4_database_is_migrated_for_workers(tmp_path: Path) -> None:
    """A database from before workers gains the workers table, the messages' holder and the
    campaign's committed money, and a worker can register and claim in it."""
    db = tmp_path / "old.db"
    old = before_workers()
    with sqlite3.connect(db) as conn:
        conn.executescript(old)
        conn.execute("INSERT INTO meta VALUES ('schema', '4')")
    async with Store.open(db) as store, campaign_worker(store, CAMPAIGN):
        assert len(await store.workers(CAMPAIGN)) == 1
        assert await store.page("worker", "FROM messages", ()) == []
        assert await store.page("committed_nanos", "FROM campaigns", ()) == []

def start_run(campaign: Path, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "engine", "run", str(campaign),
                             "--config", str(config), "--no-dlr"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def holds(db: Path, pid: int) -> int:
    """How many messages the worker of process *pid* holds now."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM messages JOIN workers ON messages.worker = workers.id "
            "WHERE workers.pid = ?", (pid,)).fetchone()[0])


def accepted_by(stderr: str) -> int:
    """What one run says it had accepted, from its ``run.finished`` log line (JSON)."""
    for line in stderr.splitlines():
        if line.startswith("{") and '"run.finished"' in line:
            return int(json.loads(line)["accepted"])
    raise AssertionError(f"no run.finished line in: {stderr[-2000:]}")


def test_two_runs_started_together_share_the_campaign(tmp_path: Path) -> None:
    """Two `dispatch run` of one campaign started at once are two workers: both send part
    of it, both finish, and every message is billed once."""
    folder = tmp_path / "c"
    generate(RECIPIENTS, 7, 0.02, "SK", folder, CAMPAIGN)
    campaign = folder / "campaign.toml"
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits=RATE_LIMITS)
        runs = [start_run(campaign, config) for _ in range(2)]
        results = [r.communicate(timeout=RUN_BOUND_S) for r in runs]
        entries = sandbox.entries()
    for run, (_, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
        assert "Traceback" not in err
    shares = [accepted_by(err) for _, err in results]
    assert all(shares), f"both workers must have sent part of it: {shares}"
    assert sum(shares) == len(entries)
    assert max(sent_counts(entries).values()) == 1
    assert_once_or_reported(tmp_path / "dispatch.db", entries)
    with sqlite3.connect(tmp_path / "dispatch.db") as conn:
        assert conn.execute("SELECT count(*) FROM workers").fetchone() == (0,)


def test_a_sigkilled_worker_is_rescued_by_the_other(tmp_path: Path) -> None:
    """Of two workers sending one campaign, one is killed with SIGKILL mid-send: the other
    rescues what it held (its process is gone on this host) and finishes the campaign;
    every message once where the provider has keys or logs, none lost."""
    folder = tmp_path / "c"
    generate(RECIPIENTS, 9, 0.02, "SK", folder, CAMPAIGN)
    campaign = folder / "campaign.toml"
    db = tmp_path / "dispatch.db"
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits=RATE_LIMITS)
        victim, survivor = (start_run(campaign, config) for _ in range(2))
        deadline = time.monotonic() + RUN_BOUND_S
        while ((sandbox.count() < RECIPIENTS // 3 or not holds(db, victim.pid))
               and victim.poll() is None and time.monotonic() < deadline):
            time.sleep(0.02)
        assert victim.poll() is None, "the victim must still be sending when killed"
        assert holds(db, victim.pid), "the victim must hold messages when killed"
        children = children_of(victim.pid)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        assert not wait_gone(children), "a child process outlived the killed run"
        _, err = survivor.communicate(timeout=RUN_BOUND_S)
        assert survivor.returncode == 0, err
        entries = sandbox.entries()
    assert accepted_by(err) > 0
    assert_once_or_reported(db, entries)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM workers").fetchone() == (0,)


def test_a_sigkilled_run_does_not_block_its_resume(tmp_path: Path) -> None:
    """A run killed with SIGKILL mid-send leaves its worker row; run again at once, on this
    host, it is not refused, and completes with nobody billed twice."""
    folder = tmp_path / "c"
    generate(RECIPIENTS, 8, 0.02, "SK", folder, CAMPAIGN)
    campaign = folder / "campaign.toml"
    db = tmp_path / "dispatch.db"
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits=RATE_LIMITS)
        proc = start_run(campaign, config)
        deadline = time.monotonic() + RUN_BOUND_S
        while (sandbox.count() < RECIPIENTS // 3 and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.02)
        assert proc.poll() is None, "the run must still be sending when killed"
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert not wait_gone(children), "a child process outlived the killed run"
        with sqlite3.connect(db) as conn:
            left = conn.execute("SELECT pid FROM workers").fetchall()
        assert left == [(proc.pid,)]
        killed_with = sandbox.count()
        again = dispatch("run", str(campaign), "--config", str(config), "--no-dlr",
                         timeout=RUN_BOUND_S)
        assert again.returncode == 0, again.stderr
        entries = sandbox.entries()
    assert killed_with < len(entries), "the resume must have sent the rest"
    assert_once_or_reported(db, entries)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM workers").fetchone() == (0,)
