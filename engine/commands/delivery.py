"""`dispatch webhooks` and `dispatch dlr`: delivery reports received, and asked for."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from engine import event_loop
from engine.errors import (
    EXIT_OK,
    ConfigError,
)

if TYPE_CHECKING:
    from engine.store.records import CampaignRecord
    from engine.store.sqlite.store import Store
from engine.commands.common import (
    load_config_for,
    on_stored_campaign,
)


def webhooks_command(args: argparse.Namespace) -> int:
    from engine.delivery.reports import endpoints
    from engine.delivery.webhooks import describe, running_receiver
    from engine.store.sqlite.delivery_store import DeliveryStore
    from engine.store.sqlite.store import Store

    config = load_config_for(args)

    async def go() -> None:
        import signal

        async with Store.open(config.database) as store:
            deliveries = DeliveryStore(store)
            found = endpoints(config.enabled_providers, await deliveries.webhook_key())
            if not found:
                raise ConfigError("no enabled provider sends delivery reports by webhook "
                                  "(smsvoip, telekom, voipex)", file=config.path)
            async with running_receiver(deliveries, found, host=args.host,
                                        port=args.port) as receiver:
                print(f"receiving delivery reports on {receiver.url}; callback URLs:",
                      flush=True)
                for name, url in describe(receiver).items():
                    print(f"  {name}: {url}", flush=True)
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break

    event_loop.run(go)
    return EXIT_OK


def dlr_command(args: argparse.Namespace) -> int:
    from engine.campaign import load_campaign
    from engine.delivery.asking import ask_once
    from engine.plan.planner import campaign_providers
    from engine.sandbox.state import state_path_for
    from engine.store.sqlite.delivery_store import DeliveryStore
    from engine.store.sqlite.rate_shares import SqliteRateShares

    config = load_config_for(args)
    path = Path(args.campaign)
    providers = (campaign_providers(config, load_campaign(path))
                 if path.suffix == ".toml" and path.is_file() else config.enabled_providers)

    async def once(store: Store, record: CampaignRecord) -> Any:
        return await ask_once(DeliveryStore(store), record.id, providers,
                              sandbox_state=state_path_for(config.database),
                              rate_shares=SqliteRateShares(store))

    _, name, result = on_stored_campaign(args, once)
    summary = {"campaign": name, "asked": result.asked, "answered": result.answered,
               "final": result.final, "expired": result.expired,
               "awaiting": dict(result.awaiting)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{name}: asked {result.asked:,}, answered {result.answered:,}, final "
              f"{result.final:,}, expired {result.expired:,}, still awaiting {result.left:,}")
        if result.left:
            print(f"reports still due come in minutes: run dispatch dlr {args.campaign} again "
                  "later; a message without one within 72 h is given up as unknown")
    return EXIT_OK
