"""A campaign against the sandbox with webhooks and polling both in play: every accepted
message ends in the final state the sandbox decided for it."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
from pathlib import Path

import pytest

from engine.campaign import load_campaign
from engine.config import load_config
from engine.delivery.polling import PollSettings
from engine.delivery.reports import callback_urls, endpoints
from engine.run import run_campaign
from engine.sandbox import Faults, default_settings, running_sandbox
from engine.sandbox.settings import DEFAULT_CREDENTIALS
from engine.store.sqlite.delivery_store import DeliveryStore
from engine.store.sqlite.store import Store
from tests.helpers import ROOT
from tests.run_fixtures import KINDS, run_config

pytestmark = pytest.mark.anyio

EXAMPLE = ROOT / "campaigns/spring-sale/campaign.toml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_with_webhooks_and_polling_ends_as_the_sandbox_decided(
        tmp_path: Path) -> None:
    port = free_port()
    config_path = run_config(tmp_path, "http://127.0.0.1:1")  # rewritten below
    config = load_config(config_path)
    async with Store.open(config.database) as store:
        key = await DeliveryStore(store).webhook_key()
    urls = callback_urls(endpoints(config.providers, key), f"http://127.0.0.1:{port}")
    accounts = {kind: dataclasses.replace(
        DEFAULT_CREDENTIALS[kind], callback_url=urls.get(kind),
        faults=Faults(undelivered_share=0.3)) for kind in KINDS}
    settings = default_settings(accounts=accounts, delivery_delay_s=0.2, seed=7)
    async with running_sandbox(settings) as sandbox:
        config = load_config(run_config(tmp_path, sandbox.url))
        campaign = load_campaign(EXAMPLE)
        outcome = await run_campaign(
            config, campaign, webhooks_port=port, delivery_wait_s=20,
            polling=PollSettings(first_interval_s=0.2, max_interval_s=1.0))
        assert outcome.stats.accepted == 981
        with sqlite3.connect(config.database) as conn:
            final = conn.execute(
                "SELECT provider, provider_message_id, state, delivery_state, delivery_status "
                "FROM messages WHERE provider_message_id IS NOT NULL").fetchall()
        decisions = {(p, m): sandbox.delivered(p, m) for p, m, *_ in final}
    assert len(final) == 981
    by_state = {"delivered": 0, "undelivered": 0}
    for provider, pmid, state, delivery, word in final:
        decided = decisions[(provider, pmid)]
        assert decided is not None, (provider, pmid)
        expected = "delivered" if decided else "undelivered"
        assert (state, delivery) == (expected, expected), (provider, pmid, word)
        by_state[state] += 1
    assert by_state["undelivered"] > 0 and by_state["delivered"] > by_state["undelivered"]
    providers = {p for p, *_ in final}
    assert providers == set(KINDS), providers
