"""Delivery polling's pace: how many messages a round asks about, and when the first round
comes. Against the sandbox over real HTTP and a real store."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from engine.campaign import load_campaign
from engine.config import load_config
from engine.delivery.polling import PollSettings, poll_loop, poll_round, sent_between
from engine.delivery.reports import ONE_ID_PER_REQUEST_KINDS, POLLED_KINDS
from engine.run import run_campaign
from engine.sandbox import default_settings, running_sandbox
from engine.send.session import open_providers
from engine.store.delivery_records import AwaitingDelivery
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.store import Store
from tests.helpers import ROOT, write_campaign
from tests.run_fixtures import run_config

pytestmark = pytest.mark.anyio

EXAMPLE = ROOT / "campaigns/spring-sale/campaign.toml"


async def test_a_round_asks_at_most_ids_per_round_oldest_first_and_a_late_loop_waits(
        tmp_path: Path) -> None:
    async with running_sandbox(default_settings(delivery_delay_s=0.0, seed=3)) as sandbox:
        config = load_config(run_config(tmp_path, sandbox.url))
        campaign = load_campaign(EXAMPLE)
        outcome = await run_campaign(config, campaign, poll_delivery=False)
        assert outcome.stats.accepted == 981
        async with Store.open(config.database) as store, \
                open_providers(config.providers) as session:
            deliveries = DeliveryStore(store)
            record = await store.campaign(campaign.name)
            assert record is not None
            before = await deliveries.awaiting_count(record.id)
            polled = [p for p in config.providers if p.kind in POLLED_KINDS]
            assert all(before[p.name] > 5 for p in polled), before

            oldest = {p.name: [a.line for a in await deliveries.awaiting(
                record.id, p.name, limit=5)] for p in polled}
            small = PollSettings(ids_per_call=2, ids_per_round=5)
            result = await poll_round(deliveries, record.id, config.providers,
                                      session.adapters, small)
            assert result.asked == 5 * len(polled)
            for p in polled:
                assert result.awaiting[p.name] == before[p.name] - 5
                left = {a.line for a in await deliveries.awaiting(record.id, p.name,
                                                                  limit=10_000)}
                assert not left & set(oldest[p.name]), p.name

            sampled = PollSettings(ids_per_round=4, one_by_one_ids_per_round=2)
            result = await poll_round(deliveries, record.id, config.providers,
                                      session.adapters, sampled)
            asked = {p.name: 2 if p.kind in ONE_ID_PER_REQUEST_KINDS else 4 for p in polled}
            assert result.asked == sum(asked.values()) and 2 in asked.values()
            for p in polled:
                assert result.awaiting[p.name] == before[p.name] - 5 - asked[p.name], p.name

            late = PollSettings(first_interval_s=60.0, first_round_at_once=False)
            with anyio.fail_after(30):
                assert await poll_loop(deliveries, record.id, config.providers,
                                       session.adapters, late, timeout_s=0.3) is None
            assert await deliveries.awaiting_count(record.id) == result.awaiting



def test_a_poll_is_told_when_its_messages_were_accepted() -> None:
    """The earliest and latest acceptance of the rows asked about; nothing when one is not
    known (a row without a time), so that the provider reads its whole window."""
    rows = [AwaitingDelivery(3, "c", 1_700_000_020.0), AwaitingDelivery(1, "a", 1_700_000_000.5),
            AwaitingDelivery(2, "b", 1_700_000_010.0)]
    assert sent_between(rows) == (datetime.fromtimestamp(1_700_000_000.5, UTC),
                                  datetime.fromtimestamp(1_700_000_020.0, UTC))
    assert sent_between([*rows, AwaitingDelivery(4, "d", 0.0)]) is None
    assert sent_between([]) is None


async def test_expiry_gives_up_old_messages_and_finding_none_waits_for_no_writer(
        tmp_path: Path) -> None:
    """Messages accepted before the cut with no final report become delivery ``unknown``
    (``unknown_delivery``), once; a search that finds none returns at once even while
    another connection (the run's checkpoint writer) holds the write lock."""
    db = tmp_path / "d.db"
    async with Store.open(db) as store:
        record = await store.open_campaign(name="c", fingerprint="f", path=Path("c.toml"),
                                           currency="EUR", plans=[])
        now = time.time()
        async with store.transaction() as tx:
            await tx.executemany(
                "INSERT INTO messages (campaign_id, line, phone, state, provider, "
                "provider_message_id, cost_nanos, segments, updated_at) "
                "VALUES (?, ?, '+421900000000', 'accepted', 'telekom', ?, 1000, 1, ?)",
                [(record.id, 1, "old", now - 7200), (record.id, 2, "new", now - 5)])
        deliveries = DeliveryStore(store)
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        try:
            with anyio.fail_after(5):
                assert await deliveries.expire(record.id, sent_before=now - 8000) == 0
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert await deliveries.expire(record.id, sent_before=now - 3600) == 1
        assert await deliveries.expire(record.id, sent_before=now - 3600) == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT provider_message_id, state, delivery_state, delivery_reason "
                            "FROM messages ORDER BY line").fetchall()
    assert rows == [("old", "accepted", "unknown", "unknown_delivery"),
                    ("new", "accepted", None, None)]


async def test_expiry_searches_again_only_once_the_oldest_awaiting_message_may_be_due(
        tmp_path: Path) -> None:
    """A search that finds nothing due remembers when the oldest message awaiting a report
    was accepted, and reads nothing until the cut passes it; with none awaiting it remembers
    the search's time, so a message accepted later is still given up when due. What awaits
    a report, by provider, leaves the given-up out."""
    async with Store.open(tmp_path / "d.db") as store:
        record = await store.open_campaign(name="c", fingerprint="f", path=Path("c.toml"),
                                           currency="EUR", plans=[])
        deliveries = DeliveryStore(store)

        async def accept(line: int, at: float) -> None:
            async with store.transaction() as tx:
                await tx.execute(
                    "INSERT INTO messages (campaign_id, line, phone, state, provider, "
                    "provider_message_id, cost_nanos, segments, updated_at) "
                    "VALUES (?, ?, '+421900000000', 'accepted', 'telekom', ?, 1000, 1, ?)",
                    (record.id, line, f"m{line}", at))

        now = time.time()
        await accept(1, now - 7200)
        statements: list[str] = []
        await store.db.set_trace_callback(statements.append)
        assert await deliveries.expire(record.id, sent_before=now - 8000) == 0
        assert len(statements) == 1
        assert await deliveries.expire(record.id, sent_before=now - 7300) == 0
        assert len(statements) == 1
        await store.db.set_trace_callback(None)
        assert await deliveries.awaiting_count(record.id) == {"telekom": 1}
        assert await deliveries.expire(record.id, sent_before=now - 3600) == 1
        assert await deliveries.awaiting_count(record.id) == {}

        assert await deliveries.expire(record.id, sent_before=time.time()) == 0
        await accept(2, time.time())
        assert await deliveries.awaiting_count(record.id) == {"telekom": 1}
        assert await deliveries.expire(record.id, sent_before=time.time() + 60) == 1
        assert await deliveries.awaiting_count(record.id) == {}


async def test_every_report_of_a_sky_telecom_campaign_longer_than_its_newest_log_pages(
        tmp_path: Path) -> None:
    """1,500 messages through Sky Telecom alone, polled after the run (``dispatch dlr``):
    every report is found, the oldest 500 too, which lie under 1,000 newer rows of the logs
    (polling read only the newest 1,000 rows, and left those to be given up after 72 h)."""
    csv = "phone,name\n" + "".join(f"+447400{n:06d},Ann\n" for n in range(1500))
    campaign = load_campaign(write_campaign(tmp_path, csv, region="GB"))
    async with running_sandbox(default_settings(delivery_delay_s=0.0, seed=5)) as sandbox:
        config = load_config(run_config(tmp_path, sandbox.url, providers=("skytelecom",),
                                        concurrency=16))
        outcome = await run_campaign(config, campaign, poll_delivery=False)
        assert outcome.stats.accepted == 1500
        async with Store.open(config.database) as store, \
                open_providers(config.providers) as session:
            record = await store.campaign(campaign.name)
            assert record is not None
            with anyio.fail_after(60):
                last = await poll_loop(DeliveryStore(store), record.id, config.providers,
                                       session.adapters, PollSettings(first_interval_s=0.2),
                                       until_final=True, timeout_s=20)
    assert last is not None and last.left == 0
    with sqlite3.connect(config.database) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
    assert states == {"delivered": 1500}
