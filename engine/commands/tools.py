"""`dispatch check`, `rates`, `segments` and `sandbox`: what needs no campaign."""

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
    EXIT_ERROR,
    EXIT_OK,
    ConfigError,
)


def check_command(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.report import print_rate_checks, print_readiness
    from engine.send.preflight import preflight_all

    config = load_config(config_path(args))
    results, rates = event_loop.run(preflight_all, config, config.enabled_providers)
    if args.json:
        checked = {c.provider: c.to_json() for c in rates}
        print(json.dumps({r.provider: {"ok": r.ok, "problems": list(r.problems),
                                       "balance": str(r.balance) if r.balance is not None
                                       else None, "rates": checked[r.provider]}
                          for r in results}, indent=2))
    else:
        console = Console()
        print_readiness(results, console)
        print_rate_checks(rates, console)
    return EXIT_OK if all(r.ok for r in results) and all(c.ok for c in rates) else EXIT_ERROR


def rates_refresh_command(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.rates import rate_sources
    from engine.store.sqlite.rate_shares import SqliteRateShares
    from engine.store.sqlite.store import Store

    config = load_config(config_path(args))

    async def go() -> Any:
        async with Store.open(config.database) as store:
            return await rate_sources(config, config.enabled_providers, store, refresh=True,
                                      rate_shares=SqliteRateShares(store))

    sources = event_loop.run(go)
    for s in sources:
        line = f"{s.provider}: {len(s.rows)} rates ({s.origin})"
        print(line + (f": {s.warning or s.problem}" if s.warning or s.problem else ""))
    return EXIT_OK if all(s.origin in ("live", "static") and not s.problem
                          for s in sources) else EXIT_ERROR


def rates_show_command(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.rates import cheapest_by_destination, rate_sources, route_table_from
    from engine.report import print_rates
    from engine.store.sqlite.rate_shares import SqliteRateShares
    from engine.store.sqlite.store import Store

    config = load_config(config_path(args))
    providers = config.enabled_providers

    async def go() -> Any:
        async with Store.open(config.database) as store:
            return await rate_sources(config, providers, store,
                                      rate_shares=SqliteRateShares(store))

    table = route_table_from(event_loop.run(go), providers, config)
    rows = cheapest_by_destination(table, country=args.country)
    if args.json:
        print(json.dumps({"currency": config.routing.currency, "destinations": rows}, indent=2))
    else:
        print_rates(rows, config.routing.currency, Console())
    return EXIT_OK


def segments_command(args: argparse.Namespace) -> int:
    from engine.segments import segment, to_json

    text = sys.stdin.read() if args.text == "-" else args.text
    if args.text == "-" and text.endswith("\n"):
        text = text[:-1]
    shift = tuple(t for t in args.shift_tables.split(",") if t)
    try:
        result = segment(text, shift_tables=shift)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--shift-tables") from None
    if args.smart:
        return segments_smart(text, result, shift, transliterate=args.transliterate,
                               as_json=args.json)
    if args.json:
        print(json.dumps(to_json(result), ensure_ascii=False))
    else:
        print(f"{result.encoding}: {result.segments} segment(s), {result.units} "
              f"{'septets' if result.encoding == 'GSM-7' else 'UTF-16 code units'}, "
              f"{result.characters} characters")
        for i, part in enumerate(result.parts, start=1):
            print(f"  part {i}: {part!r}")
    return EXIT_OK


def segments_smart(text: str, before: Any, shift: tuple[str, ...], *, transliterate: bool,
                    as_json: bool) -> int:
    from engine.segments import segment, to_json
    from engine.smart_encoding import TRANSLITERATE_CHARS, describe, explain

    smart = explain(text, transliterate=transliterate, shift_tables=shift)
    after = segment(smart.text, shift_tables=shift) if smart.changed else before
    if as_json:
        print(json.dumps({
            "before": {"text": text, **to_json(before)},
            "after": {"text": smart.text, **to_json(after)},
            "replacements": [{"char": r.char, "name": describe(r.char),
                              "replacement": r.replacement, "count": r.count}
                             for r in smart.replacements],
            "kept": [{"char": c, "name": describe(c)} for c in smart.kept]},
            ensure_ascii=False))
        return EXIT_OK
    for label, shown, seg in (("before", text, before), ("after", smart.text, after)):
        unit = "septets" if seg.encoding == "GSM-7" else "UTF-16 code units"
        print(f"{label}: {seg.encoding}, {seg.segments} segment(s), {seg.units} {unit}, "
              f"{seg.characters} characters")
        print(f"  {shown!r}")
    if smart.changed:
        print(f"smart encoding saves {before.segments - after.segments} segment(s):")
        for r in smart.replacements:
            print(f"  {describe(r.char)} -> {r.replacement!r} (x{r.count})")
    elif smart.kept:
        print("unchanged: no GSM-7 look-alike for "
              + ", ".join(describe(c) for c in smart.kept[:5])
              + (f" and {len(smart.kept) - 5} more" if len(smart.kept) > 5 else ""))
        if not transliterate and any(c in TRANSLITERATE_CHARS for c in smart.kept):
            print("  --transliterate (campaign key transliterate = true) replaces such letters")
    else:
        print("unchanged: the text is GSM-7 already")
    return EXIT_OK


def sandbox_command(args: argparse.Namespace) -> int:
    from engine.sandbox import serve, settings_from_args

    return serve(settings_from_args(args), port=args.port, loop=args.loop)
