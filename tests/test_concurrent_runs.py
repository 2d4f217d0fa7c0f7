"""One campaign, one sender at a time: a second live `dispatch run` of a campaign refuses
(exit 3, naming the first), and a killed run's registration never blocks a resume."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import engine.send.worker as worker_module
from bench.generate import generate
from engine.errors import EXIT_STOPPED, CampaignBusy
from engine.send.worker import (
    WORKER_LEASE_S,
    Host,
    campaign_worker,
    process_started,
)
from engine.store.sqlite.store import SCHEMA, Store, WorkerRecord
from tests.helpers import ROOT, children_of, dispatch, wait_gone
from tests.run_fixtures import external_sandbox, run_config
from tests.test_run import assert_once_or_reported, sent_counts

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
        assert await store.register_worker(record, lambda _: False) is None


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


@pytest.mark.anyio
async def test_a_live_process_on_this_host_keeps_its_campaign(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A holder on this host whose pid is the same live process refuses another worker with
    its pid, host and how to stop it, even with a heartbeat older than the lease."""
    db = tmp_path / "d.db"
    await register(db, holder(CAMPAIGN, host=Host.here(), pid=sleeper.pid,
                              started=process_started(sleeper.pid),
                              heartbeat_age_s=WORKER_LEASE_S * 4))
    async with Store.open(db) as store:
        with pytest.raises(CampaignBusy) as caught:
            async with campaign_worker(store, CAMPAIGN):
                pytest.fail("a second worker must not start")
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_STOPPED
    assert f"campaign {CAMPAIGN} is being sent by pid {sleeper.pid} on host " in message
    assert f"stop it (kill {sleeper.pid}) and run again" in message
    assert [r.pid for r in await rows(db)] == [sleeper.pid]


@pytest.mark.anyio
@pytest.mark.parametrize("case", [
    pytest.param("dead", id="pid-gone"),
    pytest.param("reused", id="pid-reused-by-another-process"),
])
async def test_a_dead_process_on_this_host_is_taken_over(
        tmp_path: Path, sleeper: subprocess.Popen[bytes], case: str) -> None:
    """A holder on this host whose process is gone (or whose pid now belongs to a process
    started later) does not block: the new worker replaces its row, and removes its own on
    the way out."""
    db = tmp_path / "d.db"
    if case == "dead":
        pid, started = dead_pid(), None
    else:
        started = process_started(sleeper.pid)
        assert started is not None, "/proc must tell a process's start time here"
        pid, started = sleeper.pid, started - 1
    await register(db, holder(CAMPAIGN, host=Host.here(), pid=pid, started=started))
    async with Store.open(db) as store, campaign_worker(store, CAMPAIGN) as me:
        assert await store.workers(CAMPAIGN) == [me.record]
    assert await rows(db) == []


@pytest.mark.anyio
@pytest.mark.parametrize(("age_s", "refused"), [
    pytest.param(1.0, True, id="fresh-heartbeat-refuses"),
    pytest.param(WORKER_LEASE_S + 1, False, id="lapsed-heartbeat-taken-over"),
])
async def test_a_holder_on_another_host_is_live_while_its_heartbeat_is(
        tmp_path: Path, age_s: float, refused: bool) -> None:
    """On another host (its pid means nothing here) a holder is live only while its
    heartbeat is younger than the lease."""
    db = tmp_path / "d.db"
    elsewhere = Host("other-machine", "0000-boot")
    await register(db, holder(CAMPAIGN, host=elsewhere, pid=4242, started=1,
                              heartbeat_age_s=age_s))
    async with Store.open(db) as store:
        if refused:
            with pytest.raises(CampaignBusy, match="kill 4242 on other-machine"):
                async with campaign_worker(store, CAMPAIGN):
                    pytest.fail("a second worker must not start")
            assert [r.host for r in await store.workers(CAMPAIGN)] == ["other-machine"]
        else:
            async with campaign_worker(store, CAMPAIGN) as me:
                assert await store.workers(CAMPAIGN) == [me.record]


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
async def test_a_version_4_database_gets_the_workers_table(tmp_path: Path) -> None:
    """A database from before workers is migrated, and a worker can register in it."""
    db = tmp_path / "old.db"
    old = SCHEMA[:SCHEMA.index("-- Every process sending a campaign")]
    with sqlite3.connect(db) as conn:
        conn.executescript(old)
        conn.execute("INSERT INTO meta VALUES ('schema', '4')")
    async with Store.open(db) as store, campaign_worker(store, CAMPAIGN):
        assert len(await store.workers(CAMPAIGN)) == 1


def start_run(campaign: Path, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "engine", "run", str(campaign),
                             "--config", str(config), "--no-dlr"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_runs_started_together_send_the_campaign_once(tmp_path: Path) -> None:
    """Two `dispatch run` of one campaign started at once: one sends, the other exits 3 at
    once naming it; stopped part way, a third run resumes; nobody is billed twice."""
    folder = tmp_path / "c"
    generate(RECIPIENTS, 7, 0.02, "SK", folder, CAMPAIGN)
    campaign = folder / "campaign.toml"
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits=RATE_LIMITS)
        runs = [start_run(campaign, config) for _ in range(2)]
        deadline = time.monotonic() + RUN_BOUND_S
        while all(r.poll() is None for r in runs) and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = next(r for r in runs if r.poll() is not None)
        sender = next(r for r in runs if r is not refused)
        _, err = refused.communicate(timeout=10)
        assert refused.returncode == EXIT_STOPPED, err
        assert err.startswith(f"dispatch: error: campaign {CAMPAIGN} is being sent by pid "
                              f"{sender.pid} on host "), err
        assert f"(kill {sender.pid}) and run again" in err
        assert "Traceback" not in err
        while sandbox.count() < RECIPIENTS // 3 and sender.poll() is None:
            time.sleep(0.02)
        assert sender.poll() is None, "the sender must still be sending when stopped"
        sender.send_signal(signal.SIGTERM)
        _, err = sender.communicate(timeout=RUN_BOUND_S)
        assert sender.returncode == EXIT_STOPPED, err
        stopped_with = sandbox.count()
        third = dispatch("run", str(campaign), "--config", str(config), "--no-dlr",
                         timeout=RUN_BOUND_S)
        assert third.returncode == 0, third.stderr
        entries = sandbox.entries()
    assert stopped_with < len(entries), "the third run must have sent the rest"
    assert max(sent_counts(entries).values()) == 1
    assert_once_or_reported(tmp_path / "dispatch.db", entries)
    with sqlite3.connect(tmp_path / "dispatch.db") as conn:
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
