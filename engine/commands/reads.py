"""`dispatch status` and `dispatch report` (CSV, JSON lines, HTML): what the store says of a
campaign, read-only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from engine.errors import (
    EXIT_OK,
    OutputError,
)

if TYPE_CHECKING:
    from engine.store.records import CampaignRecord
    from engine.store.sqlite.store import Store
from engine.commands.common import (
    on_stored_campaign,
)


def status_command(args: argparse.Namespace) -> int:
    from engine.report import (
        delivery_json,
        print_delivery,
        print_delivery_so_far,
        print_status,
        status_json,
    )
    from engine.store.sqlite.campaign_reads import SqliteCampaignReads

    async def counts_of(store: Store, record: CampaignRecord) -> Any:
        reads = SqliteCampaignReads(store)
        return (await reads.state_counts(record.id), await reads.delivery_summary(record.id))

    config, name, (counts, delivery) = on_stored_campaign(args, counts_of, read_only=True)
    if args.json:
        data = status_json(name, counts, config.routing.currency)
        data["delivery"] = delivery_json(delivery)
        print(json.dumps(data, indent=2))
    else:
        console = Console()
        print_status(name, counts, config.routing.currency, console)
        print_delivery(delivery, config.routing.currency, console)
        if delivery.total.sent:
            print_delivery_so_far(name, delivery.total, console)
    return EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    from engine.report import write_report
    from engine.store.sqlite.campaign_reads import SqliteCampaignReads

    if args.html:
        return html_report_command(args)

    async def export(store: Store, record: CampaignRecord) -> int:
        rows = SqliteCampaignReads(store).report_rows(record.id, states=tuple(args.state or ()))
        if not args.csv:
            try:
                return await write_report(rows, sys.stdout, as_json=args.json)
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise OutputError(exc.strerror or str(exc), path="standard output",
                                  opened=True) from None
        try:
            out = args.csv.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the report here: {exc.strerror or exc}",
                              path=args.csv, opened=False) from None
        try:
            with out:
                return await write_report(rows, out, as_json=False)
        except OSError as exc:
            removed = args.csv.is_file()  # a part of a report, not a device (/dev/full)
            if removed:
                args.csv.unlink(missing_ok=True)
            raise OutputError(f"writing the report failed{' (file removed)' if removed else ''}"
                              f": {exc.strerror or exc}", path=args.csv, opened=True) from None

    _, _, rows = on_stored_campaign(args, export, read_only=True)
    if args.csv:
        print(f"wrote {rows} rows to {args.csv}", file=sys.stderr)
    return EXIT_OK


def html_report_command(args: argparse.Namespace) -> int:
    """``report --html FILE``: the page, with the same errors as ``--csv FILE``."""
    from engine.html_report import ReportData, gather, render
    from engine.store.sqlite.campaign_reads import SqliteCampaignReads

    path: Path = args.html

    async def read(store: Store, record: CampaignRecord) -> ReportData:
        return await gather(SqliteCampaignReads(store), record, record.currency,
                            states=args.state)

    _, _, data = on_stored_campaign(args, read, read_only=True)
    try:
        out = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the report here: {exc.strerror or exc}",
                          path=path, opened=False) from None
    try:
        with out:
            out.write(render(data))
    except OSError as exc:
        removed = path.is_file()  # a part of a page, not a device (/dev/full)
        if removed:
            path.unlink(missing_ok=True)
        raise OutputError(f"writing the report failed{' (file removed)' if removed else ''}"
                          f": {exc.strerror or exc}", path=path, opened=True) from None
    print(f"wrote the report to {path} ({len(data.table.rows):,} recipients in its table)",
          file=sys.stderr)
    return EXIT_OK
