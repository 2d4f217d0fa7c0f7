"""Dispatcher.statistics(): the snapshot progress, logs and benches read, against a real run
(engine.run.run_campaign, a real SQLite file, the sandbox in a process of its own)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.campaign import load_campaign
from engine.config import load_config
from engine.run import RunOutcome, run_campaign
from engine.send.dispatcher import Dispatcher, DispatcherStatistics
from tests.helpers import write_campaign
from tests.run_fixtures import external_sandbox, run_config

pytestmark = pytest.mark.anyio


def sk_numbers(count: int) -> str:
    return "phone,name\n" + "".join(f"+42190555{i:04d},N{i}\n" for i in range(count))


async def run_watched(folder: Path, campaign: Path, providers: tuple[str, ...], *,
                      rate_limits: dict[str, str] | None = None,
                      break_key: tuple[str, str] | None = None,
                      ) -> tuple[RunOutcome, list[DispatcherStatistics], list[tuple[object, ...]]]:
    """Run *campaign* against a fresh sandbox, taking a snapshot at every progress call
    (twice a second, and once when the run has ended), and a copy of its values then.
    *break_key* replaces one credential in the config (old, new), so that provider fails
    preflight."""
    snapshots: list[DispatcherStatistics] = []
    values: list[tuple[object, ...]] = []

    def watch(dispatcher: Dispatcher) -> None:
        snapshots.append(dispatcher.statistics())
        values.append(dataclasses.astuple(snapshots[-1]))

    with external_sandbox(folder) as sandbox:
        path = run_config(folder, sandbox.url, providers=providers, rate_limits=rate_limits)
        if break_key is not None:
            path.write_text(path.read_text().replace(*break_key), encoding="utf-8")
        outcome = await run_campaign(load_config(path), load_campaign(campaign),
                                     on_progress=watch, poll_delivery=False)
    return outcome, snapshots, values


async def test_statistics_are_frozen_snapshots_that_end_as_the_run_did(tmp_path: Path) -> None:
    """Each snapshot is frozen and keeps its values as the run goes on; counts only grow;
    the last one (after the run) says what RunStats says, per provider too, with nothing
    queued, nothing stopping and the plan's messages as the total."""
    campaign = write_campaign(tmp_path, sk_numbers(30))
    outcome, snapshots, values = await run_watched(tmp_path, campaign, ("telekom", "voipex"),
                                                   rate_limits={"telekom": "15/s"})
    stats, last = outcome.stats, snapshots[-1]

    assert outcome.stopped is None and stats.accepted == 30
    assert (last.accepted, last.failed, last.unknown, last.failed_over, last.left) == (
        stats.accepted, stats.failed, stats.unknown, stats.failed_over, stats.left)
    assert last.done == 30 and last.spent_nanos == stats.spent_nanos > 0
    assert last.currency == "EUR"
    assert dict(last.accepted_by_provider) == dict(stats.by_provider)
    assert last.pending_at_start == 30 == sum(lane.pending_at_start for lane in last.lanes)
    assert all(lane.queued == 0 for lane in last.lanes)
    assert not last.down and not last.paused
    assert last.stopping is None and not last.over_budget
    assert [s.elapsed_s for s in snapshots] == sorted(s.elapsed_s for s in snapshots)
    assert [s.done for s in snapshots] == sorted(s.done for s in snapshots)
    assert [dataclasses.astuple(s) for s in snapshots] == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        last.accepted = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        last.lanes[0].queued = 1  # type: ignore[misc]


async def test_statistics_name_a_lane_down_with_its_reason(tmp_path: Path) -> None:
    """A provider that fails preflight is a lane down with preflight's reason, and its
    messages, moved to the next route, are counted as failed over."""
    campaign = write_campaign(tmp_path, sk_numbers(12))
    outcome, snapshots, _ = await run_watched(
        tmp_path, campaign, ("telekom", "voipex"),
        break_key=('token = "telekom-sandbox-token"', 'token = "wrong-token"'))
    last = snapshots[-1]
    assert set(last.down) == {"telekom"}
    assert last.down["telekom"] == outcome.skipped_providers["telekom"]
    assert last.failed_over == 12 and last.accepted_by_provider == {"telekom": 0, "voipex": 12}


async def test_statistics_say_the_run_stopped_at_its_budget(tmp_path: Path) -> None:
    """A run that reaches max_cost reads over_budget and stopping 'budget', having sent
    only what fits."""
    campaign = write_campaign(tmp_path, sk_numbers(20), extra="max_cost = 0.2\n")
    outcome, snapshots, _ = await run_watched(tmp_path, campaign, ("telekom",))
    last = snapshots[-1]
    assert last.over_budget and last.stopping == "budget" == outcome.stopped
    assert 0 < last.accepted == outcome.stats.accepted < 20
    assert outcome.pending_left == 20 - last.accepted
    assert last.spent_nanos == outcome.stats.spent_nanos <= 200_000_000
