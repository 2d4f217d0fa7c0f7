"""`dispatch plan`: every row counted once, deterministic, resumable, never sends."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.generate import generate
from engine.campaign import load_campaign
from engine.config import load_config
from engine.plan.planner import (
    MAX_AUTO_WORKERS,
    PARALLEL_FROM_BYTES,
    WORKER_PIECE_BYTES,
    bind_message,
    campaign_providers,
    plan_context,
    planning_workers,
    route_table,
)
from engine.plan.recipients import RecipientsFile
from engine.plan.rows import plan_chunk
from engine.plan.workers import Turns
from engine.store.sqlite.plan_writer import PlanWriter
from engine.store.sqlite.store import Store
from tests.helpers import ROOT, children_of, dispatch, wait_gone, write_campaign, write_config

REJECTS = {"invalid_number", "missing_variable", "too_long", "no_route", "empty_message",
           "malformed_row"}


def plan_json(campaign: Path, config: Path, *extra: str) -> dict[str, object]:
    result = dispatch("plan", str(campaign), "--config", str(config), "--json", *extra)
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def states(db: Path) -> list[tuple[object, ...]]:
    """Every column of every row: one process writes through JSON, workers row by row."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT line, state, reason, * FROM messages ORDER BY line").fetchall()


def planned_states(campaign: Path, folder: Path, workers: str) -> list[tuple[object, ...]]:
    """:func:`states` of *campaign* planned with *workers* into a new database in *folder*."""
    folder.mkdir()
    plan_json(campaign, write_config(folder), "--workers", workers)
    return states(folder / "dispatch.db")


def test_example_campaign_accounts_for_every_row(tmp_path: Path) -> None:
    """The shipped example: valid + rejected + skipped = rows, with every reason present."""
    config = write_config(tmp_path)
    plan = plan_json(ROOT / "campaigns/spring-sale/campaign.toml", config)
    rejected, skipped = plan["rejected"], plan["skipped"]
    assert isinstance(rejected, dict) and isinstance(skipped, dict)
    assert plan["rows"] == 1001
    assert plan["valid"] + sum(rejected.values()) + sum(skipped.values()) == plan["rows"]
    assert set(rejected) == REJECTS
    assert set(skipped) == {"duplicate", "opted_out"}
    by_provider = plan["by_provider"]
    assert isinstance(by_provider, dict)
    assert sum(g["messages"] for g in by_provider.values()) == plan["messages"] == plan["valid"]
    assert len(plan["by_country"]) >= 8  # type: ignore[arg-type]
    assert plan["currency"] == "EUR"


def test_each_bad_row_gets_its_reason_and_line(tmp_path: Path) -> None:
    """Handcrafted rows land in the store with the right state, reason and CSV line."""
    config = write_config(tmp_path)
    long_name = "x" * 700
    csv_text = (
        "phone,name\n"
        "+421912345678,Ann\n"          # 2 valid
        "12345,Bob\n"                  # 3 invalid_number
        "+421912345679,\n"             # 4 missing_variable
        f"+421912345670,{long_name}\n"  # 5 too_long
        "+81 90 1234 5678,Cy\n"        # 6 no_route (nobody prices Japan)
        "+421912345671,\u200b\n"       # 7 empty_message
        "+421912345672\n"              # 8 malformed_row
        "0912 345 678,Ann again\n"     # 9 duplicate of line 2 in national format
        "+421912345673,Dee\n"          # 10 opted_out
    )
    (tmp_path / "optout.txt").write_text("+421 912 345 673\n")
    campaign = write_campaign(tmp_path, csv_text, message="{name}",
                              extra='max_segments = 2\nopt_out = "optout.txt"\n')
    plan = plan_json(campaign, config)
    assert plan["rows"] == 9 and plan["valid"] == 1
    got = {line: (state, reason) for line, state, reason, *_ in states(tmp_path / "dispatch.db")}
    assert got == {
        2: ("pending", None), 3: ("rejected", "invalid_number"),
        4: ("rejected", "missing_variable"), 5: ("rejected", "too_long"),
        6: ("rejected", "no_route"), 7: ("rejected", "empty_message"),
        8: ("rejected", "malformed_row"), 9: ("skipped", "duplicate"),
        10: ("skipped", "opted_out"),
    }


def test_cheapest_provider_and_cost_per_message(tmp_path: Path) -> None:
    """Slovak mobiles go to Telekom's 4219 rate; costs are segments x price in EUR."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n+14155552671,Bo\n",
                              message="{name}: " + "a" * 200)
    plan = plan_json(campaign, config)
    assert plan["by_provider"] == {
        "telekom": {"messages": 1, "segments": 2, "cost": "0.06"},
        "skynoo": {"messages": 1, "segments": 2, "cost": "0.014"},
    }
    assert plan["cost"] == "0.074"


def test_planning_twice_adds_no_rows(tmp_path: Path) -> None:
    """A second plan of the same campaign reports the same plan and writes nothing new (its
    live rates now come from the cache the first plan filled)."""
    config = write_config(tmp_path)
    first = plan_json(ROOT / "campaigns/spring-sale/campaign.toml", config)
    second = plan_json(ROOT / "campaigns/spring-sale/campaign.toml", config)
    sources = first.pop("rates"), second.pop("rates")
    assert first == second
    assert {s["origin"] for s in sources[1].values()} <= {"cache", "static"}, sources[1]
    with sqlite3.connect(tmp_path / "dispatch.db") as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1001,)


def test_changed_campaign_under_same_name_is_refused(tmp_path: Path) -> None:
    """Editing the message after planning is a campaign error, not a silent mix of plans."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n")
    plan_json(campaign, config)
    write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n", message="New {name}")
    result = dispatch("plan", str(campaign), "--config", str(config))
    assert result.returncode == 2
    assert "planned from a different message" in result.stderr


def test_unknown_placeholder_is_a_campaign_error(tmp_path: Path) -> None:
    """{column} naming a column the CSV lacks stops with the campaign file and key named."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n",
                              message="Hi {first_name}")
    result = dispatch("plan", str(campaign), "--config", str(config))
    assert result.returncode == 2
    assert f"{campaign}: message: the message uses {{first_name}}" in result.stderr
    assert "columns: phone, name" in result.stderr


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        pytest.param('default_region = "XX"\n', "default_region", id="region"),
        pytest.param('on_unknown = "maybe"\n', "on_unknown", id="on-unknown"),
        pytest.param('max_cots = 10\n', "max_cots", id="unknown-key"),
        pytest.param('providers = ["twilio"]\n', "providers", id="unknown-provider"),
    ],
)
def test_bad_campaign_file_names_the_key(tmp_path: Path, extra: str, key: str) -> None:
    """Each bad campaign setting exits 2 naming the campaign file and the key."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n")
    text = campaign.read_text().replace('default_region = "SK"\n', "")
    campaign.write_text(text + (extra if "default_region" in extra
                                else extra + 'default_region = "SK"\n'))
    result = dispatch("plan", str(campaign), "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert f"{campaign}: {key}" in result.stderr


def test_over_budget_plan_warns_and_exits_3(tmp_path: Path) -> None:
    """A plan costing more than max_cost says so and exits 3."""
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n",
                              extra="max_cost = 0.01\n")
    result = dispatch("plan", str(campaign), "--config", str(config))
    assert result.returncode == 3
    assert "more than max_cost 0.01" in result.stdout


def test_two_workers_plan_exactly_what_one_does(tmp_path: Path) -> None:
    """Planning in worker processes gives the same row-by-row result as in-process; the
    file is several of the workers' pieces, so the two processes both write."""
    generate(25000, 3, 0.05, "SK", tmp_path / "c", "workers")
    assert (tmp_path / "c/recipients.csv").stat().st_size > 2 * WORKER_PIECE_BYTES
    results = [planned_states(tmp_path / "c/campaign.toml", tmp_path / f"w{workers}", workers)
               for workers in ("1", "2")]
    assert results[0] == results[1]
    assert len(results[0]) == 25000


@pytest.mark.parametrize("message", ["Hi {first_name}, sale today!", "Sale today!"])
def test_workers_plan_a_message_with_one_placeholder_or_none(tmp_path: Path,
                                                           message: str) -> None:
    """A template bound to one column (or none) reaches the worker processes too."""
    generate(3000, 4, 0.05, "SK", tmp_path / "c", "one")
    campaign = tmp_path / "c/campaign.toml"
    text = campaign.read_text()
    campaign.write_text(text.replace(text.split("message = ")[1].split("\n")[0],
                                     json.dumps(message)))
    results = [planned_states(campaign, tmp_path / f"w{workers}", workers)
               for workers in ("1", "2")]
    assert results[0] == results[1]
    assert len(results[0]) == 3000


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killed_plan_resumes_to_the_same_result(tmp_path: Path, workers: str) -> None:
    """SIGKILL during planning, then plan again: the same rows as an uninterrupted plan.
    With worker processes, the killed plan's workers stop writing on their own."""
    generate(60000, 5, 0.05, "SK", tmp_path / "c", "resume")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    plan_json(tmp_path / "c/campaign.toml", write_config(clean))

    config = write_config(killed)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "plan",
                             str(tmp_path / "c/campaign.toml"), "--config", str(config),
                             "--workers", workers],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "dispatch.db"
    deadline = time.monotonic() + 60
    planned = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    row = conn.execute("SELECT planned_through FROM campaigns").fetchone()
                planned = row[0] if row else 0
            except sqlite3.OperationalError:
                planned = 0
            if planned > 2000:
                break
        time.sleep(0.02)
    children = children_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert 0 < planned < 60000, "the plan must be killed part-way"
    if workers != "1":
        assert children, "the plan must have started its worker processes"
    assert not wait_gone(children), "worker processes outlived the killed plan"

    plan_json(tmp_path / "c/campaign.toml", config, "--workers", workers)
    assert states(db) == states(clean / "dispatch.db")


@pytest.mark.anyio
async def test_pieces_written_out_of_order_then_killed_resume_to_the_same_result(
        tmp_path: Path) -> None:
    """Worker processes write each piece as soon as it is planned: the resume point is the
    end of the run of written pieces from the first. A plan killed with pieces written past
    a gap plans the gap and those pieces again, and ends with each row once, as a plan that
    was never stopped (duplicates across the gap included)."""
    generate(6000, 7, 0.05, "SK", tmp_path / "c", "gaps")
    clean = planned_states(tmp_path / "c/campaign.toml", tmp_path / "clean", "1")
    killed = tmp_path / "killed"
    killed.mkdir()
    config = load_config(write_config(killed))
    campaign = load_campaign(tmp_path / "c/campaign.toml")
    routes = route_table(config, campaign_providers(config, campaign))
    turns = Turns(multiprocessing.get_context("spawn"), 4)
    resumes: list[int | None] = []
    async with Store.open(config.database) as store:
        record = await store.open_campaign(
            name=campaign.name, fingerprint=campaign.fingerprint, path=campaign.path,
            currency=config.routing.currency, plans=list(routes.plans.values()))
        with RecipientsFile(campaign.recipients, campaign.phone_column) as recipients:
            ctx = plan_context(campaign, recipients, bind_message(campaign, recipients), routes)
            spans = recipients.spans(target_bytes=64 * 1024)
            assert spans is not None
            pieces = [plan_chunk(ctx, recipients.text(span), 0) for span in spans]
        assert len(pieces) >= 6
        writer = PlanWriter(config.database, record.id)
        for index in (1, 0, 3, 5):
            with turns.writing(index, pieces[index].through) as resume:
                writer.write(pieces[index].valid, pieces[index].not_sent, through=resume)
            resumes.append(resume)
        writer.close()
        assert (await store.campaign_named(campaign.name)).planned_through == pieces[1].through
    assert resumes == [None, pieces[1].through, None, None]

    plan_json(tmp_path / "c/campaign.toml", config.path, "--workers", "2")
    assert states(killed / "dispatch.db") == clean


def test_large_files_are_planned_on_every_core_by_default(tmp_path: Path) -> None:
    """Without ``--workers``, a file of 8 MB or more gets a process per core (up to 4); a
    smaller one is planned in the run's own process; ``--workers`` decides when given."""
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_text("phone\n+421912345678\n")
    with large.open("wb") as f:
        f.truncate(PARALLEL_FROM_BYTES)
    cores = os.cpu_count() or 1
    assert planning_workers(None, small) == 1
    assert planning_workers(None, large) == min(cores, MAX_AUTO_WORKERS)
    assert planning_workers(3, small) == 3
    assert planning_workers(0, small) == cores
