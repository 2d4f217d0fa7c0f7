"""`dispatch plan` and `dispatch run`: a campaign planned, and sent."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from engine import event_loop
from engine.commands.common import (
    config_path,
)
from engine.errors import (
    EXIT_OK,
    EXIT_STOPPED,
)


def plan_command(args: argparse.Namespace) -> int:
    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.plan.planner import campaign_providers, plan_campaign, planning_workers
    from engine.rates import rate_sources, route_table_from
    from engine.report import print_plan, print_rate_sources
    from engine.store.sqlite.rate_shares import SqliteRateShares
    from engine.store.sqlite.store import Store

    config = load_config(config_path(args))
    campaign = load_campaign(args.campaign)
    workers = planning_workers(args.workers, campaign.recipients)
    providers = campaign_providers(config, campaign)

    async def go() -> Any:
        async with Store.open(config.database) as store:
            sources = await rate_sources(config, providers, store,
                                         rate_shares=SqliteRateShares(store))
            routes = route_table_from(sources, providers, config)
            return sources, await plan_campaign(config, campaign, store, workers=workers,
                                                routes=routes)

    sources, summary = event_loop.run(go)
    if args.json:
        print(json.dumps({**summary.to_json(),
                          "rates": {s.provider: s.to_json() for s in sources}}, indent=2))
    else:
        console = Console()
        print_plan(summary, console)
        print_rate_sources(sources, console)
    return EXIT_STOPPED if summary.over_budget else EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.plan.planner import planning_workers
    from engine.progress import TerminalProgress
    from engine.report import print_rate_sources, print_run, print_run_start
    from engine.run import run_campaign

    config = load_config(config_path(args))
    campaign = load_campaign(args.campaign)
    workers = planning_workers(args.workers, campaign.recipients)
    console = Console(stderr=True)
    display = TerminalProgress(console) if console.is_terminal else None
    out = Console()

    async def go() -> Any:
        try:
            return await run_campaign(config, campaign, workers=workers,
                                      on_progress=display.update if display else None,
                                      webhooks_port=args.webhooks, delivery_wait_s=args.dlr_wait,
                                      poll_delivery=args.dlr,
                                      on_plan=lambda plan: print_run_start(plan, out))
        finally:
            if display:
                display.close()

    outcome = event_loop.run(go)
    print_run(outcome, out)
    print_rate_sources(outcome.rates, out, problems_only=True)
    if outcome.stopped:
        config_arg = f" --config {args.config}" if args.config else ""
        print(f"stopped ({outcome.stopped}); resume with: dispatch run {args.campaign}"
              f"{config_arg}", file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_OK
