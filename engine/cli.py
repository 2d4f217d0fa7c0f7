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
import os
import sys
from asyncio import CancelledError
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from engine import __version__
from engine.commands.campaign import plan_command, run_command
from engine.commands.common import DEFAULT_CONFIG, config_path
from engine.commands.delivery import dlr_command, webhooks_command
from engine.commands.reads import report_command, status_command
from engine.commands.tools import (
    check_command,
    rates_refresh_command,
    rates_show_command,
    sandbox_command,
    segments_command,
)
from engine.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_STOPPED,
    DispatchError,
    OutputError,
    redact,
)
from engine.logs import configure_logging

if TYPE_CHECKING:
    pass

REPORT_STATES: Final = ("pending", "sending", "accepted", "delivered", "undelivered", "unknown",
                        "failed", "rejected", "skipped")

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
    p.set_defaults(handler=plan_command)

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
    r.set_defaults(handler=run_command)

    wh = sub.add_parser("webhooks", help="receive delivery reports (runs until interrupted)")
    _config_option(wh)
    wh.add_argument("--port", type=_port(allow_any=True), default=8787,
                    help="TCP port (default 8787; 0: any)")
    wh.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (the only choice)")
    wh.set_defaults(handler=webhooks_command)

    dl = sub.add_parser("dlr", help="poll delivery status once for a campaign and exit")
    dl.add_argument("campaign", help="campaign file or campaign name")
    _config_option(dl)
    dl.add_argument("--json", action="store_true", help="print one JSON object")
    dl.set_defaults(handler=dlr_command)

    st = sub.add_parser("status", help="counts by state and provider, cost so far")
    st.add_argument("campaign", help="campaign file or campaign name")
    _config_option(st)
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(handler=status_command)

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
    rp.set_defaults(handler=report_command)

    s = sub.add_parser("segments", help="encoding and SMS segment count of a text")
    s.add_argument("text", help="the message text; - reads standard input")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--shift-tables", default="", help="national shift tables, e.g. tr,es")
    s.add_argument("--smart", action="store_true",
                   help="also the text smart encoding sends: before and after, each replacement")
    s.add_argument("--transliterate", action="store_true",
                   help="with --smart: letters with diacritics GSM-7 lacks too (á -> a)")
    s.set_defaults(handler=segments_command)

    c = sub.add_parser("check", help="preflight: can each enabled provider be used?")
    _config_option(c)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(handler=check_command)

    r = sub.add_parser("rates", help="live rate tables: refresh the cache, show the cheapest")
    rsub = r.add_subparsers(dest="rates_command", required=True, metavar="ACTION")
    rr = rsub.add_parser("refresh", help="fetch every provider's published rates now")
    _config_option(rr)
    rr.set_defaults(handler=rates_refresh_command)
    rs = rsub.add_parser("show", help="cheapest provider per destination, with the runner-up")
    _config_option(rs)
    rs.add_argument("--country", help="only this ISO 3166 country, e.g. SK")
    rs.add_argument("--json", action="store_true", help="print one JSON object")
    rs.set_defaults(handler=rates_show_command)

    sb = sub.add_parser("sandbox", help="serve the provider simulator on 127.0.0.1")
    from engine.sandbox import add_arguments

    add_arguments(sb)
    sb.set_defaults(handler=sandbox_command)
    return parser


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help=f"provider config (default: ./{DEFAULT_CONFIG})")


def _known_secrets(args: argparse.Namespace) -> tuple[str, ...]:
    """Secrets to scrub from an error: whatever the config holds, if it loads at all."""
    try:
        from engine.config import load_config

        return load_config(config_path(args)).secrets
    except Exception:
        return tuple(v for k, v in os.environ.items() if "KEY" in k or "SECRET" in k
                     or "TOKEN" in k)


