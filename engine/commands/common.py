"""What every command shares: the config file to load, the campaign a name or a file means,
the store opened on it."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from engine import event_loop
from engine.errors import (
    ConfigError,
)

if TYPE_CHECKING:
    from engine.config import Config
    from engine.store.records import CampaignRecord
    from engine.store.sqlite.store import Store

DEFAULT_CONFIG: Final = "config.toml"
T = TypeVar("T")


def config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    path = Path(DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"no {DEFAULT_CONFIG} in {Path.cwd()}; pass --config FILE", file=path)
    return path


def campaign_name(arg: str) -> str:
    path = Path(arg)
    if path.suffix == ".toml" and path.is_file():
        from engine.campaign import load_campaign

        return load_campaign(path).name
    return arg


def on_stored_campaign(args: argparse.Namespace,
                        work: Callable[[Store, CampaignRecord], Awaitable[T]], *,
                        read_only: bool = False) -> tuple[Config, str, T]:
    """Load the config, find the campaign in its store, and run *work* on them; a
    *read_only* command opens the store so that it can neither create nor change it."""
    from engine.config import load_config
    from engine.store.sqlite.store import Store

    config = load_config(config_path(args))
    name = campaign_name(args.campaign)

    async def go() -> T:
        async with Store.open(config.database, read_only=read_only) as store:
            return await work(store, await store.campaign_named(name))

    return config, name, event_loop.run(go)


def load_config_for(args: argparse.Namespace) -> Config:
    from engine.config import load_config

    return load_config(config_path(args))
