"""The ``dispatch`` command. ``main`` is a shim over :func:`run`, which returns an exit code.

One handler turns an :class:`~engine.errors.DispatchError` (or a task group's failure made
of them) into a one-paragraph message on stderr and its documented exit code: 0 done, 2 bad
config, campaign or option (nothing sent; argparse's usage errors exit 2 too), 3 stopped
with messages left or over budget, 1 anything else. Standard output closed by its reader
(``| head``) ends the command quietly with 141, the status of a program killed by SIGPIPE,
as ``cat`` would give. No traceback reaches a user: an unexpected exception is one line
too, saying it is a bug (``DISPATCH_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from asyncio import CancelledError
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
from rich.console import Console

from engine import __version__, event_loop
from engine.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigError,
    DispatchError,
    OutputError,
    redact,
)
from engine.logs import configure_logging

if TYPE_CHECKING:
    from engine.config import Config
    from engine.store.records import CampaignRecord
    from engine.store.sqlite.store import Store

DEFAULT_CONFIG = "config.toml"
REPORT_STATES: Final = ("pending", "sending", "accepted", "delivered", "undelivered", "unknown",
                        "failed", "rejected", "skipped")
T = TypeVar("T")

MAX_WORKERS: Final = 64
"""``--workers``: more planning processes than this is a typo, not a machine."""
MAX_DLR_WAIT_S: Final = 72 * 3600
"""``--dlr-wait``: a report not in after 72 h never comes (``unknown_delivery``)."""
DEBUG_ENV: Final = "DISPATCH_DEBUG"
_FULL: Final = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
"""An unnamed write failing so is standard output's: files and the store name theirs."""


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else list(argv))


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)  # argparse ignores a closed pipe itself
    configure_logging(args.log_format)
    try:
        code: int = args.handler(args)
        _flush_stdout()
    except BaseException as exc:
        return _failure(exc, args)
    return code


def _failure(exc: BaseException, args: argparse.Namespace) -> int:
    """Report *exc* (a task group's failure: each distinct error in it) in one line each."""
    leaves = _leaves(exc)
    if any(isinstance(e, BrokenPipeError) for e in leaves):
        return _stdout_closed()
    if all(isinstance(e, KeyboardInterrupt | CancelledError) for e in leaves):
        print("dispatch: interrupted", file=sys.stderr)
        return EXIT_STOPPED
    if isinstance(exc, SystemExit) and _rich_broken_pipe(exc):
        return _stdout_closed()
    if isinstance(exc, SystemExit) or os.environ.get(DEBUG_ENV):
        raise exc
    secrets = _known_secrets(args)
    errors = [e for e in leaves if not isinstance(e, CancelledError)]
    if all(isinstance(e, DispatchError) for e in errors):
        for message in dict.fromkeys(str(e) for e in errors):
            print(f"dispatch: error: {redact(message, secrets)}", file=sys.stderr)
        first = errors[0]
        return first.exit_code if isinstance(first, DispatchError) else EXIT_ERROR
    bug = next(e for e in errors if not isinstance(e, DispatchError))
    if isinstance(bug, OSError) and bug.filename is None and bug.errno in _FULL:
        _detach_stdout()
        print(f"dispatch: error: standard output: {bug.strerror or bug}", file=sys.stderr)
        return EXIT_ERROR
    print(f"dispatch: internal error: {type(bug).__name__}: "
          f"{redact(str(bug), secrets).splitlines()[0] if str(bug) else ''} "
          f"(a bug; {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
    return EXIT_ERROR


def _rich_broken_pipe(exc: SystemExit) -> bool:
    """Whether rich raised *exc*: its consoles exit 1 on a closed pipe, where we exit 141."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "on_broken_pipe"


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in *exc*, exception groups opened all the way down."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _flush_stdout() -> None:
    """Flush standard output now, so that a full disk is reported, not ignored at exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        _detach_stdout()
        raise OutputError(exc.strerror or str(exc), path="standard output",
                          opened=True) from None


def _detach_stdout() -> None:
    """Point standard output at /dev/null: what is still buffered is dropped at exit
    instead of failing again there (Python's own recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _stdout_closed() -> int:
    _detach_stdout()
    return EXIT_BROKEN_PIPE


def _port(allow_any: bool) -> Callable[[str], int]:
    """An argparse type: a TCP port, 1-65535 (0 too where *allow_any*: the OS picks)."""
    low = 0 if allow_any else 1

    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(
                f"{value} is not a TCP port: use {low}-65535"
                + (" (0: any free port)" if allow_any else ""))
        return value

    return port


def _workers(text: str) -> int:
    """An argparse type: planning processes, 0 (every core) to :data:`MAX_WORKERS`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"{value} processes: use 0 (every core) to {MAX_WORKERS}")
    return value


def _wait_seconds(text: str) -> float:
    """An argparse type: seconds, 0 to :data:`MAX_DLR_WAIT_S`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= MAX_DLR_WAIT_S:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(
            f"{text} s: use 0 to {MAX_DLR_WAIT_S} (72 h, after which no report comes)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatch", description="Bulk SMS campaigns through the cheapest provider.")
    parser.add_argument("--version", action="version", version=f"dispatch {__version__}")
    parser.add_argument("--log-format", choices=("auto", "console", "json"), default="auto",
                        help="log lines on stderr: console on a TTY, JSON otherwise (auto)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="what a run would send and cost; sends nothing")
    p.add_argument("campaign", type=Path, help="campaign file (TOML)")
    _config_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--workers", type=_workers, default=None,
                   help="processes for number parsing and rendering (0 = every core, at most "
                        f"{MAX_WORKERS}; default: 1, or every core up to 4 for a recipients "
                        "file of 8 MB or more)")
    p.set_defaults(handler=_plan)

    r = sub.add_parser("run", help="send a campaign (plans it first); run again to resume")
    r.add_argument("campaign", type=Path, help="campaign file (TOML)")
    _config_option(r)
    r.add_argument("--workers", type=_workers, default=None,
                   help="planning processes (see plan)")
    r.add_argument("--webhooks", type=_port(allow_any=False), default=None, metavar="PORT",
                   help="receive delivery reports on 127.0.0.1:PORT (1-65535) beside the "
                        "dispatch")
    r.add_argument("--no-dlr", dest="dlr", action="store_false",
                   help="do not poll delivery status beside the dispatch, nor wait up to 5 s "
                        "after it for the built-in sandbox's reports")
    r.add_argument("--dlr-wait", type=_wait_seconds, default=0.0, metavar="SECONDS",
                   help="after sending, wait up to SECONDS for delivery reports (default 0, "
                        "at most 72 h)")
    r.set_defaults(handler=_run)

    wh = sub.add_parser("webhooks", help="receive delivery reports (runs until interrupted)")
    _config_option(wh)
    wh.add_argument("--port", type=_port(allow_any=True), default=8787,
                    help="TCP port (default 8787; 0: any)")
    wh.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (the only choice)")
    wh.set_defaults(handler=_webhooks)

    dl = sub.add_parser("dlr", help="poll delivery status once for a campaign and exit")
    dl.add_argument("campaign", help="campaign file or campaign name")
    _config_option(dl)
    dl.add_argument("--json", action="store_true", help="print one JSON object")
    dl.set_defaults(handler=_dlr)

    st = sub.add_parser("status", help="counts by state and provider, cost so far")
    st.add_argument("campaign", help="campaign file or campaign name")
    _config_option(st)
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(handler=_status)

    rp = sub.add_parser("report", help="one row per recipient: what was sent, where, cost")
    rp.add_argument("campaign", help="campaign file or campaign name")
    _config_option(rp)
    out = rp.add_mutually_exclusive_group()
    out.add_argument("--csv", type=Path, metavar="FILE",
                     help="write CSV to FILE (default: CSV on stdout)")
    out.add_argument("--json", action="store_true",
                     help="JSON lines on stdout (redirect to keep them in a file)")
    out.add_argument("--html", type=Path, metavar="FILE",
                     help="write one self-contained HTML page to FILE: headline, charts, plan "
                          "and outcome, searchable table (--state: only those rows)")
    rp.add_argument("--state", action="append", choices=REPORT_STATES, metavar="STATE",
                    help="only rows in STATE (again for more), e.g. rejected, skipped, failed")
    rp.set_defaults(handler=_report)

    s = sub.add_parser("segments", help="encoding and SMS segment count of a text")
    s.add_argument("text", help="the message text; - reads standard input")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--shift-tables", default="", help="national shift tables, e.g. tr,es")
    s.add_argument("--smart", action="store_true",
                   help="also the text smart encoding sends: before and after, each replacement")
    s.add_argument("--transliterate", action="store_true",
                   help="with --smart: letters with diacritics GSM-7 lacks too (á -> a)")
    s.set_defaults(handler=_segments)

    c = sub.add_parser("check", help="preflight: can each enabled provider be used?")
    _config_option(c)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(handler=_check)

    r = sub.add_parser("rates", help="live rate tables: refresh the cache, show the cheapest")
    rsub = r.add_subparsers(dest="rates_command", required=True, metavar="ACTION")
    rr = rsub.add_parser("refresh", help="fetch every provider's published rates now")
    _config_option(rr)
    rr.set_defaults(handler=_rates_refresh)
    rs = rsub.add_parser("show", help="cheapest provider per destination, with the runner-up")
    _config_option(rs)
    rs.add_argument("--country", help="only this ISO 3166 country, e.g. SK")
    rs.add_argument("--json", action="store_true", help="print one JSON object")
    rs.set_defaults(handler=_rates_show)

    sb = sub.add_parser("sandbox", help="serve the provider simulator on 127.0.0.1")
    from engine.sandbox import add_arguments

    add_arguments(sb)
    sb.set_defaults(handler=_sandbox)
    return parser


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help=f"provider config (default: ./{DEFAULT_CONFIG})")


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        return Path(args.config)
    path = Path(DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"no {DEFAULT_CONFIG} in {Path.cwd()}; pass --config FILE", file=path)
    return path


def _known_secrets(args: argparse.Namespace) -> tuple[str, ...]:
    """Secrets to scrub from an error: whatever the config holds, if it loads at all."""
    try:
        from engine.config import load_config

        return load_config(_config_path(args)).secrets
    except Exception:
        return tuple(v for k, v in os.environ.items() if "KEY" in k or "SECRET" in k
                     or "TOKEN" in k)


def _plan(args: argparse.Namespace) -> int:
    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.plan.planner import campaign_providers, plan_campaign, planning_workers
    from engine.rates import rate_sources, route_table_from
    from engine.report import print_plan, print_rate_sources
    from engine.store.sqlite.store import Store

    config = load_config(_config_path(args))
    campaign = load_campaign(args.campaign)
    workers = planning_workers(args.workers, campaign.recipients)
    providers = campaign_providers(config, campaign)

    async def go() -> Any:
        async with Store.open(config.database) as store:
            sources = await rate_sources(config, providers, store)
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


def _check(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.report import print_rate_checks, print_readiness
    from engine.send.preflight import preflight_all

    config = load_config(_config_path(args))
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


def _rates_refresh(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.rates import rate_sources
    from engine.store.sqlite.store import Store

    config = load_config(_config_path(args))

    async def go() -> Any:
        async with Store.open(config.database) as store:
            return await rate_sources(config, config.enabled_providers, store, refresh=True)

    sources = event_loop.run(go)
    for s in sources:
        line = f"{s.provider}: {len(s.rows)} rates ({s.origin})"
        print(line + (f": {s.warning or s.problem}" if s.warning or s.problem else ""))
    return EXIT_OK if all(s.origin in ("live", "static") and not s.problem
                          for s in sources) else EXIT_ERROR


def _rates_show(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.rates import cheapest_by_destination, rate_sources, route_table_from
    from engine.report import print_rates
    from engine.store.sqlite.store import Store

    config = load_config(_config_path(args))
    providers = config.enabled_providers

    async def go() -> Any:
        async with Store.open(config.database) as store:
            return await rate_sources(config, providers, store)

    table = route_table_from(event_loop.run(go), providers, config)
    rows = cheapest_by_destination(table, country=args.country)
    if args.json:
        print(json.dumps({"currency": config.routing.currency, "destinations": rows}, indent=2))
    else:
        print_rates(rows, config.routing.currency, Console())
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.plan.planner import planning_workers
    from engine.progress import TerminalProgress
    from engine.report import print_rate_sources, print_run, print_run_start
    from engine.run import run_campaign

    config = load_config(_config_path(args))
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


def _campaign_name(arg: str) -> str:
    path = Path(arg)
    if path.suffix == ".toml" and path.is_file():
        from engine.campaign import load_campaign

        return load_campaign(path).name
    return arg


def _on_stored_campaign(args: argparse.Namespace,
                        work: Callable[[Store, CampaignRecord], Awaitable[T]], *,
                        read_only: bool = False) -> tuple[Config, str, T]:
    """Load the config, find the campaign in its store, and run *work* on them; a
    *read_only* command opens the store so that it can neither create nor change it."""
    from engine.config import load_config
    from engine.store.sqlite.store import Store

    config = load_config(_config_path(args))
    name = _campaign_name(args.campaign)

    async def go() -> T:
        async with Store.open(config.database, read_only=read_only) as store:
            return await work(store, await store.campaign_named(name))

    return config, name, event_loop.run(go)


def _status(args: argparse.Namespace) -> int:
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

    config, name, (counts, delivery) = _on_stored_campaign(args, counts_of, read_only=True)
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


def _report(args: argparse.Namespace) -> int:
    from engine.report import write_report
    from engine.store.sqlite.campaign_reads import SqliteCampaignReads

    if args.html:
        return _html_report(args)

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

    _, _, rows = _on_stored_campaign(args, export, read_only=True)
    if args.csv:
        print(f"wrote {rows} rows to {args.csv}", file=sys.stderr)
    return EXIT_OK


def _html_report(args: argparse.Namespace) -> int:
    """``report --html FILE``: the page, with the same errors as ``--csv FILE``."""
    from engine.html_report import ReportData, gather, render
    from engine.store.sqlite.campaign_reads import SqliteCampaignReads

    path: Path = args.html

    async def read(store: Store, record: CampaignRecord) -> ReportData:
        return await gather(SqliteCampaignReads(store), record, record.currency,
                            states=args.state)

    _, _, data = _on_stored_campaign(args, read, read_only=True)
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


def _webhooks(args: argparse.Namespace) -> int:
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


def _dlr(args: argparse.Namespace) -> int:
    from engine.campaign import load_campaign
    from engine.delivery.asking import ask_once
    from engine.plan.planner import campaign_providers
    from engine.sandbox.state import state_path_for
    from engine.store.sqlite.delivery_store import DeliveryStore

    config = load_config_for(args)
    path = Path(args.campaign)
    providers = (campaign_providers(config, load_campaign(path))
                 if path.suffix == ".toml" and path.is_file() else config.enabled_providers)

    async def once(store: Store, record: CampaignRecord) -> Any:
        return await ask_once(DeliveryStore(store), record.id, providers,
                              sandbox_state=state_path_for(config.database))

    _, name, result = _on_stored_campaign(args, once)
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


def load_config_for(args: argparse.Namespace) -> Config:
    from engine.config import load_config

    return load_config(_config_path(args))


def _segments(args: argparse.Namespace) -> int:
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
        return _segments_smart(text, result, shift, transliterate=args.transliterate,
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


def _segments_smart(text: str, before: Any, shift: tuple[str, ...], *, transliterate: bool,
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


def _sandbox(args: argparse.Namespace) -> int:
    from engine.sandbox import serve, settings_from_args

    return serve(settings_from_args(args), port=args.port, loop=args.loop)
