"""Live rate tables, `dispatch rates show`, `dispatch check`, and secrets kept out of logs."""

from __future__ import annotations

import csv
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from engine.config import load_config
from engine.rates import rate_sources
from engine.routing import RateRow
from engine.sandbox import default_settings, running_sandbox
from engine.store.sqlite.store import Store
from tests.helpers import ROOT, dispatch, write_campaign, write_config
from tests.run_fixtures import run_config

PRICES = ROOT / "engine/sandbox/data/prices.csv"
ORDER = ["skytelecom", "smsvoip", "voipex", "telekom", "skynoo"]
FX = {"EUR": Decimal(1), "USD": Decimal("0.92")}
WIDE = {"COLUMNS": "400"}


def expected_cheapest() -> dict[str, str]:
    """From the sandbox's own price table: the cheapest provider per prefix, in EUR, ties to
    the provider listed first in config, each provider priced by its longest prefix."""
    rows = list(csv.DictReader(PRICES.read_text().splitlines()))
    prefixes = {r["prefix"] for r in rows}
    best: dict[str, str] = {}
    for prefix in prefixes:
        offers = []
        for provider in ORDER:
            mine = [r for r in rows if r["provider"] == provider and prefix.startswith(r["prefix"])]
            if not mine:
                continue
            longest = max(len(r["prefix"]) for r in mine)
            price = min(Decimal(r["price"]) * FX[r["currency"]] for r in mine
                        if len(r["prefix"]) == longest)
            offers.append((price, ORDER.index(provider), provider))
        best[prefix] = min(offers)[2]
    return best


def test_rates_show_names_the_cheapest_provider_of_the_sandbox_price_table(
        tmp_path: Path) -> None:
    """Per destination, `dispatch rates show` agrees with the sandbox's own prices."""
    config = write_config(tmp_path)
    result = dispatch("rates", "show", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    shown = {d["prefix"]: d["cheapest"]["provider"]
             for d in json.loads(result.stdout)["destinations"]}
    assert shown == expected_cheapest()


def test_rates_show_filters_by_country_with_a_runner_up(tmp_path: Path) -> None:
    """--country keeps one country's prefixes; each names a runner-up where there is one."""
    config = write_config(tmp_path)
    result = dispatch("rates", "show", "--country", "sk", "--json", "--config", str(config))
    rows = json.loads(result.stdout)["destinations"]
    assert [(r["country"], r["prefix"], r["cheapest"]["provider"], r["cheapest"]["price"],
             r["runner_up"]["provider"]) for r in rows] == [
        ("SK", "421", "telekom", "0.035", "voipex"), ("SK", "4219", "telekom", "0.03", "voipex")]


def test_preflight_leaves_out_a_voipex_sender_it_does_not_own(tmp_path: Path) -> None:
    """A sender outside Voipex's allowed numbers fails preflight with a line naming it."""
    config = write_config(tmp_path)
    text = config.read_text().replace('sender = "+420777888999"', 'sender = "+420111222333"')
    config.write_text(text)
    result = dispatch("check", "--json", "--config", str(config))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["voipex"]["ok"]
    assert "+420111222333" in report["voipex"]["problems"][0]
    assert all(report[name]["ok"] for name in ORDER if name != "voipex")


@pytest.mark.anyio
async def test_stale_cache_is_used_with_a_warning_when_the_provider_is_down(
        tmp_path: Path) -> None:
    """A provider that cannot be reached is routed by its last fetched table."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = load_config(write_config(tmp_path))
    smsvoip = replace(config.provider("smsvoip"), base_url=dead)
    async with Store.open(tmp_path / "rates.db") as store:
        old = time.time() - 10 * config.routing.rate_ttl_s
        await store.save_rates("smsvoip", old, [RateRow("smsvoip", "x", "44", Decimal("0.01"),
                                                        "EUR")])
        [source] = await rate_sources(config, [smsvoip], store)
    assert source.origin == "stale-cache"
    assert source.rows[0].price == Decimal("0.01")
    assert "using rates fetched at" in source.warning


@pytest.mark.anyio
async def test_fresh_cache_is_used_without_fetching(tmp_path: Path) -> None:
    """Within rate_ttl the cached table is used as it is, even if the provider is down."""
    config = load_config(write_config(tmp_path))
    smsvoip = replace(config.provider("smsvoip"), base_url="http://127.0.0.1:9")
    async with Store.open(tmp_path / "rates.db") as store:
        await store.save_rates("smsvoip", time.time(), [RateRow("smsvoip", "", "44",
                                                                Decimal("0.02"), "EUR")])
        [source] = await rate_sources(config, [smsvoip], store)
    assert (source.origin, source.warning) == ("cache", "")


def test_no_secret_appears_in_any_log_line_or_error(tmp_path: Path) -> None:
    """Wrong credentials make every provider fail loudly; none of them is ever printed."""
    secrets = {"SKYTELECOM_API_KEY": "sky_SECRET_aaaaaaaa", "SMSVOIP_API_KEY": "sk_SECRET_bbbbbb",
               "VOIPEX_TOKEN": "jwt_SECRET_cccccccc", "TELEKOM_TOKEN": "tk_SECRET_dddddddd",
               "SKYNOO_API_KEY": "app_SECRET_eeeeeee", "SKYNOO_API_SECRET": "sec_SECRET_ffff",
               "SMSVOIP_WEBHOOK_SECRET": "whsec_SECRET_gggg"}
    config = write_config(tmp_path)
    campaign = write_campaign(tmp_path, "phone,name\n+421912345678,Ann\n")
    output = ""
    for args in (("check",), ("rates", "refresh"), ("rates", "show"), ("plan", str(campaign))):
        result = dispatch("--log-format", "json", *args, "--config", str(config), env=secrets)
        output += result.stdout + result.stderr
    assert "refused" in output
    for value in secrets.values():
        assert value not in output


@pytest.mark.anyio
async def test_plan_prices_smsvoip_live_when_the_sandbox_answers_another_reading(
        tmp_path: Path) -> None:
    """/rates as {"data": {"rates": [camelCase, string prices]}}: plan still uses it live."""
    settings = default_settings(smsvoip_rates_shape="nested_camel")
    campaign = write_campaign(tmp_path, "phone,name\n+447400123456,Ann\n")
    async with running_sandbox(settings) as sandbox:
        config = run_config(tmp_path, sandbox.url, providers=("smsvoip", "telekom"))
        result = await anyio.to_thread.run_sync(
            lambda: dispatch("plan", str(campaign), "--json", "--config", str(config)))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["rates"]["smsvoip"]["origin"] == "live"
    assert plan["rates"]["smsvoip"]["problem"] is None
    assert plan["rates"]["telekom"]["origin"] == "static"
    assert plan["by_provider"]["smsvoip"]["cost"] == "0.03"


@asynccontextmanager
async def rates_server(body: object) -> AsyncIterator[str]:
    """An SMS & Voice Platform on 127.0.0.1 whose ping works and whose /rates answers *body*."""
    async def rates(request: web.Request) -> web.Response:
        return web.json_response(body)

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/smsvoip/api/v1/rates", rates)
    app.router.add_get("/smsvoip/api/v1/ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_unusable_live_rates_fail_check_and_show_in_plan(tmp_path: Path) -> None:
    """Rates with nothing usable: check fails naming provider and reason; plan shows it too
    and says what prices the provider instead."""
    junk = {"rates": [{"iso": "GB", "foo": 1}, {"iso": "DE", "foo": 2}]}
    campaign = write_campaign(tmp_path, "phone,name\n+447400123456,Ann\n")
    why = "smsvoip: rates: 0 usable of 2 entries (no price in entry 1: keys iso, foo; "
    async with rates_server(junk) as url:
        config = run_config(tmp_path, url, providers=("smsvoip",))
        check = await anyio.to_thread.run_sync(
            lambda: dispatch("check", "--config", str(config)))
        checked = await anyio.to_thread.run_sync(
            lambda: dispatch("check", "--json", "--config", str(config)))
        plan = await anyio.to_thread.run_sync(
            lambda: dispatch("plan", str(campaign), "--config", str(config), env=WIDE))
    assert check.returncode == 1
    assert why in check.stdout
    report = json.loads(checked.stdout)["smsvoip"]
    assert (report["ok"], report["rates"]["ok"]) == (True, False)
    assert plan.returncode == 0, plan.stderr
    assert why in plan.stdout
    assert "smsvoip priced from: static file" in plan.stdout
