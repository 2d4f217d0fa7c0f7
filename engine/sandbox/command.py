"""Serving the sandbox standalone: ``python -m engine.sandbox`` and ``dispatch sandbox``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

import sniffio
import structlog

from engine.errors import SandboxError
from engine.event_loop import LOOPS, loop_factory
from engine.sandbox.settings import KINDS, SandboxSettings, default_settings, parse_fault_spec

log = structlog.get_logger("engine.sandbox")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's command-line options (shared with ``dispatch sandbox``)."""
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument(
        "--faults",
        action="append",
        default=[],
        metavar="KIND:NAME=VALUE,...",
        help=(
            "inject faults into one provider (KIND) or all; e.g. "
            "smsvoip:throttle_every=10,latency_ms=50 or telekom:rate_limit=120/60; repeatable"
        ),
    )
    parser.add_argument(
        "--ledger", type=Path, help="append every billed message to this JSONL file"
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep billed messages, ids and the wallet in this SQLite file across restarts",
    )
    parser.add_argument(
        "--delivery-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds from billing to the final delivery state (default 1)",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="Telekom session idle lifetime (default 900)",
    )
    parser.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="KIND=URL",
        help="where KIND's delivery reports go (127.0.0.1/localhost only); repeatable",
    )
    parser.add_argument(
        "--wallet",
        type=_amount,
        default=None,
        metavar="AMOUNT",
        help="Sky Telecom's starting wallet balance in USD (default 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random fault choice")
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop when serving standalone (auto: uvloop when installed)",
    )


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    """Settings from parsed :func:`add_arguments` options; bad values raise SandboxError."""
    base = default_settings(
        ledger_path=args.ledger,
        state_path=getattr(args, "state", None),
        delivery_delay_s=args.delivery_delay,
        session_ttl_s=args.session_ttl,
        seed=args.seed,
    )
    accounts = dict(base.accounts)
    for spec in args.faults:
        kinds, faults = parse_fault_spec(spec)
        for kind in kinds:
            accounts[kind] = dataclasses.replace(accounts[kind], faults=faults)
    for spec in args.callback:
        kind, sep, url = spec.partition("=")
        if not sep or kind not in KINDS:
            raise SandboxError(f"sandbox: --callback {spec!r} must look like KIND=URL")
        accounts[kind] = dataclasses.replace(accounts[kind], callback_url=url)
    if getattr(args, "wallet", None) is not None:
        accounts["skytelecom"] = dataclasses.replace(accounts["skytelecom"], wallet=args.wallet)
    return default_settings(
        accounts=accounts,
        ledger_path=args.ledger,
        state_path=getattr(args, "state", None),
        delivery_delay_s=args.delivery_delay,
        session_ttl_s=args.session_ttl,
        seed=args.seed,
    )


def _amount(text: str) -> Decimal:
    """A wallet amount: a finite decimal >= 0."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount >= 0")
    return value


def serve(settings: SandboxSettings, *, port: int, loop: str = "auto") -> int:
    """Serve until SIGINT or SIGTERM; print the address first. Returns the exit code 0.

    anyio finds its backend through sniffio, which outside a task (in the server's protocol
    callbacks, where a delayed answer is spawned) only reads this context variable:
    ``anyio.run`` sets it, a bare ``asyncio.Runner`` does not, so it is set here. Without it
    every answer delayed by a latency fault was refused as a malformed request.
    """
    token = sniffio.current_async_library_cvar.set("asyncio")
    try:
        try:
            factory = loop_factory(loop)
        except ImportError as exc:
            raise SandboxError("sandbox: --loop uvloop needs the uvloop package") from exc
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve(settings, port))
    finally:
        sniffio.current_async_library_cvar.reset(token)
    return 0


async def _serve(settings: SandboxSettings, port: int) -> None:
    try:
        from engine.sandbox.server import running_sandbox
    except ImportError as exc:
        raise SandboxError(f"sandbox: a dependency is missing: {exc}") from exc
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_sandbox(settings, port=port) as sandbox:
            print(f"sandbox listening on {sandbox.url}", flush=True)
            await stop.wait()
            log.info("sandbox.stopping", url=sandbox.url)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.sandbox",
        description="Serve the five provider APIs on 127.0.0.1 with faults and a ledger.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        return serve(settings_from_args(args), port=args.port, loop=args.loop)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
