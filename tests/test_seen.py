"""The planner's duplicate candidates: never a missed duplicate, and exact in the end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine.plan.seen
from bench.generate import generate
from engine.campaign import load_campaign
from engine.config import load_config
from engine.plan.planner import plan_campaign
from engine.plan.seen import SeenNumbers, filter_bytes
from engine.store.sqlite.store import Store
from tests.helpers import write_config

numbers = st.lists(st.integers(10**6, 10**15 - 1).map(lambda n: f"+{n}"), max_size=300)


@given(numbers, st.integers(1, 64), st.randoms())
def test_every_repeated_number_is_flagged_in_any_order(
        values: list[str], size: int, rnd: object) -> None:
    repeated = {n for n in values if values.count(n) > 1}
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for order in (values, shuffled):
        maybe = SeenNumbers(bytearray(size)).add(order)
        assert repeated <= set(maybe)


def test_a_roomy_filter_flags_few_new_numbers() -> None:
    distinct = [f"+4219{n:08d}" for n in range(0, 50_000_000, 997)]
    maybe = SeenNumbers(bytearray(filter_bytes(100 * len(distinct)))).add(distinct)
    assert len(maybe) < 0.03 * len(distinct)


def states(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT line, state, reason, detail, phone, cost_nanos "
                            "FROM messages ORDER BY line").fetchall()


@pytest.mark.anyio
async def test_dedupe_is_exact_when_nearly_every_number_is_a_false_candidate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-byte filter flags almost every number: the plan must still skip exactly the
    later copies of repeated numbers, naming the first line, as a roomy filter does."""
    generate(3000, 11, 0.05, "SK", tmp_path / "c", "seen")
    campaign = load_campaign(tmp_path / "c/campaign.toml")
    results = []
    for folder in ("roomy", "tiny"):
        (tmp_path / folder).mkdir()
        config = load_config(write_config(tmp_path / folder))
        if folder == "tiny":
            monkeypatch.setattr(engine.plan.seen, "filter_bytes", lambda _: 1)
        async with Store.open(config.database) as store:
            summary = await plan_campaign(config, campaign, store)
        results.append((states(config.database), summary.counts))
    assert results[0] == results[1]
    skipped = results[0][1].skipped
    assert skipped.get("duplicate", 0) > 0
    first: dict[object, object] = {}
    for line, state, reason, detail, phone, _ in results[0][0]:
        if state == "pending" or reason == "duplicate":
            first_line = first.setdefault(phone, line)
            assert (reason == "duplicate") == (first_line != line)
            if first_line != line:
                assert detail == f"the same number as line {first_line}"


@pytest.mark.anyio
async def test_a_resumed_plan_reads_the_stored_numbers_in_pages(tmp_path: Path) -> None:
    """What a resumed plan feeds back into the filter: every valid row's number, once."""
    generate(500, 13, 0.05, "SK", tmp_path / "c", "pages")
    campaign = load_campaign(tmp_path / "c/campaign.toml")
    config = load_config(write_config(tmp_path))
    async with Store.open(config.database) as store:
        await plan_campaign(config, campaign, store)
        record = await store.campaign_named(campaign.name)
        pages = [page async for page in store.planned_numbers(record.id, page=7)]
    with sqlite3.connect(config.database) as conn:
        expected = [r[0] for r in conn.execute(
            "SELECT phone FROM messages WHERE state = 'pending' ORDER BY line")]
    assert len(pages) > 1 and all(len(p) <= 7 for p in pages)
    assert [n for p in pages for n in p] == expected
