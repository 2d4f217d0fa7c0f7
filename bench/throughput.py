"""Dispatch throughput against the bare provider clients, in one run against one sandbox.

    python bench/throughput.py                                        # 100k messages, C=16
    python bench/throughput.py --messages 20000 --concurrency 16
    python bench/throughput.py --messages 20000 --concurrency 16 --repeat 5   # median of 5
    python bench/throughput.py --messages 20000 --latency-ms 50 --concurrency 100
    python bench/throughput.py --messages 20000 --no-delivery-poll   # the dispatcher alone
    python bench/throughput.py --interleave 0                         # one phase, then the other
    python bench/throughput.py --compare-transports [--latency-ms 50]

What runs, each in a process of its own so that its CPU time and peak RSS are its own:

1. the sandbox (``python -m engine.sandbox --port 0 --wallet ...``; with ``--latency-ms X``
   every provider answers X ms late, no jitter). Sky Telecom's wallet is made large enough
   for both phases, so nothing fails over for want of money.
2. plan: a generated campaign (``bench.generate``, no bad rows) planned into a temporary
   SQLite file the way ``dispatch run`` plans (live rates from the sandbox, cached in the
   store). Timed, but not part of either figure below.
3. bare: the same messages (read from the plan) sent by the engine's own adapters, opened
   by ``engine.send.session.open_providers`` (the same transport, pool size and rate-limit
   wrapper, rate limits off), with ``concurrency`` tasks per provider calling
   ``adapter.send`` back to back (``send_batch`` with up to ``--batch`` messages for a bulk
   provider, Skynoo: the dispatcher forms its own, smaller batches, which shows in the HTTP
   request counts), with the cyclic collector as rare as ``run_campaign`` makes it
   (:mod:`engine.gc_policy`): no store, no dispatcher. This is the ceiling the dispatcher
   is measured against. Timed from opening the adapters to closing them, as the dispatch
   phase is.
4. dispatch: ``engine.run.run_campaign`` on the completed plan: it opens the store, reads
   the cached rates, finds the plan complete, runs preflight and dispatches, polling
   delivery beside it as ``dispatch run`` does (``--no-delivery-poll`` turns that off, to
   see the dispatcher alone). The timing and CPU time cover that whole call (planning
   excluded, preflight included); the dispatcher's own seconds are shown beside it. Both
   phases import the adapter modules before the clock starts.
5. raw: the same requests with a plain ``aiohttp.ClientSession`` per provider (a pool of
   ``concurrency`` connections, ``concurrency`` in flight): each message's send request as
   its adapter builds it (recorded before the clock starts, through a pool that records
   instead of sending; a Telekom login is real, for its session), Skynoo's batches made by
   its own planner and read as its adapter reads them (``batch/create``, ``batch/status``
   until not pending, ``batch/detail`` pages). Each answer read and parsed once. This is
   the HTTP client's own ceiling on this machine: ``dispatch_over_raw`` is how near the
   engine comes to it (target >= 0.7), ``bare_over_raw`` how near its adapters do.

The three phases run interleaved (``--interleave S``, default 1 s): the children start,
prepare, and are then let run in turns of S seconds, the other one stopped (SIGSTOP), until
each is done; a phase's seconds are only those it was let run. On this shared 2-core
machine the speed of everything moves by tens of percent over a minute; run one after the
other, the phases met different minutes and one run's ratio moved by ±0.2; in turns of a
second they meet the same ones. ``--interleave 0`` runs them one after the other as before.

Figures: messages/s (accepted / seconds run), CPU µs per message (user + system of the
phase's process during the phase only, every thread, plus the run's checkpoint writer
process; the event loop thread's share is shown beside it, with its waits for a CPU and its
context switches, which CPU time does not show, and its CPU per message in each 2 s window:
median, p90 and max, where slow spells show), peak RSS, the sandbox's CPU per message in
each phase (when it is near one core's worth the sandbox, not the client, set the pace),
HTTP requests per provider (a counter on the engine's aiohttp pool in bare and dispatch),
when each provider's last message was settled, ratio = dispatch / bare messages per second
(target >= 0.9), and dispatch / raw (target >= 0.7). The sandbox's CPU per message in
dispatch over that in bare comes after the ratio: it answers nearly the same requests in
both phases, so far from 1 it says the sandbox, and likely the client, ran at another speed
in one of them, which moves the ratio too. The machine's load average is printed before and
after: on a shared 2-core machine other work moves these figures by tens of percent. Every
phase is bounded by ``--messages`` and by ``--phase-timeout`` seconds; only 127.0.0.1 is
contacted; the sandbox is always stopped. The last line printed is one JSON object.

``--compare-transports`` instead measures the HTTP transport alone: SMS & Voice Platform
plain sends through its adapter over the default httpx transport
(``httpx.AsyncHTTPTransport``) and over ``httpx_aiohttp.AiohttpTransport`` at 8, 32 and 128
requests in flight, each case at most ``--compare-requests`` requests and
``--compare-seconds`` seconds; the JSON line has a ``transports`` list. That is the
evidence for the transport ``engine.providers.http`` uses.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import itertools
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import event_loop  # noqa: E402
from engine.event_loop import LOOPS  # noqa: E402

CAMPAIGN: Final = "bench-throughput"
PLANNED_DB: Final = "planned.db"
"""A copy of the database as planned, beside it, which the bare phase reads."""
WALLET_USD: Final = "100000000"
"""Sky Telecom's sandbox wallet: 100k messages at <= 0.1 USD a segment, twice, fit easily."""
STARTUP_TIMEOUT_S: Final = 20.0
WINDOW_S: Final = 2.0
"""How often each phase samples its loop thread's CPU time against messages accepted."""
WINDOW_MIN_MSGS: Final = 200
DRIFT_WARN: Final = 0.10
"""How far the sandbox's CPU per message in one phase may be from the other's before
:data:`DRIFT_NOTE` is said: it answers nearly the same requests in both (beside a dispatch it
averaged about 5% more at 100k, which the margin leaves out). On this shared 2-core machine a
phase's speed moved by up to a third, the client's and the sandbox's together."""
DRIFT_MIN_MSGS: Final = 20_000
"""Below this, the few requests besides sends (rates, preflight, polls) move the figure."""
DRIFT_NOTE: Final = ("the sandbox ran at another speed in one phase, the client likely too, "
                     "which moves the ratio: compare runs with --repeat")
INTERLEAVE_S: Final = 1.0
STOP_CHECKS: Final = 200
"""How often (every 0.5 ms) a stopped phase is checked for having stopped, at most."""
CHILD_GRACE_S: Final = 60.0
"""How much longer than its phase deadline a child may take before it is killed."""
TRANSPORT_CONCURRENCY: Final = (8, 32, 128)
ENGINE_TRANSPORT: Final = "aiohttp through engine.providers.http.Wire"


# --- shared helpers ------------------------------------------------------------------------


def cpu_s() -> float:
    """User + system CPU seconds of this whole process (every thread: aiosqlite's too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def system_s() -> float:
    """The kernel's part of :func:`cpu_s`: system calls (sockets, files) and page faults,
    which instruction counts under callgrind do not see."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: state first."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of another process (the sandbox), from /proc."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_thread() -> tuple[float, int, int]:
    """The calling thread's seconds spent runnable but waiting for a CPU, and its voluntary
    and involuntary context switches, from /proc: what instruction counts and CPU time do
    not show (another process put on the event loop's CPU, the loop giving the GIL away)."""
    wait_ns = int(Path("/proc/thread-self/schedstat").read_text().split()[1])
    status = dict(line.split(":\t", 1) for line in
                  Path("/proc/thread-self/status").read_text().splitlines() if ":\t" in line)
    return (wait_ns / 1e9, int(status["voluntary_ctxt_switches"]),
            int(status["nonvoluntary_ctxt_switches"]))


def loop_figures(before: tuple[float, int, int], accepted: int) -> dict[str, float]:
    """Per message, what :func:`loop_thread` counted since *before*."""
    wait, voluntary, involuntary = (b - a for a, b in zip(before, loop_thread(), strict=True))
    per = max(accepted, 1)
    return {"loop_wait_us_per_msg": round(wait / per * 1e6, 1),
            "loop_switches_per_1k_msgs": round(voluntary / per * 1000, 1),
            "loop_preempted_per_1k_msgs": round(involuntary / per * 1000, 1)}


@contextlib.asynccontextmanager
async def sampled_windows(accepted: Callable[[], int]) -> AsyncIterator[list[tuple[float, int]]]:
    """Inside, on the phase's loop: the event loop thread's CPU seconds and the messages
    accepted so far, every :data:`WINDOW_S` and once more on leaving (for
    :func:`window_figures`)."""
    import anyio

    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            samples.append((time.thread_time(), accepted()))
            await anyio.sleep(WINDOW_S)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        yield samples
        samples.append((time.thread_time(), accepted()))
        tg.cancel_scope.cancel()

@dataclasses.dataclass(frozen=True)
class PhaseClock:
    """The clocks a phase is measured against, read as it starts: wall, the process's CPU,
    the loop thread's CPU, the kernel's share, and the loop thread's waits and switches."""

    t0: float
    c0: float
    l0: float
    k0: float
    w0: tuple[float, int, int]

    @classmethod
    def start(cls) -> PhaseClock:
        return cls(time.perf_counter(), cpu_s(), time.thread_time(), system_s(),
                   loop_thread())

    def figures(self, accepted: int, windows: Sequence[tuple[float, int]]) -> dict[str, Any]:
        """What every phase reports for *accepted* messages, measured since the start."""
        seconds = time.perf_counter() - self.t0
        cpu, loop = cpu_s() - self.c0, time.thread_time() - self.l0
        per = max(accepted, 1)
        return {"seconds": round(seconds, 3), "span": [self.t0, self.t0 + seconds],
                "cpu_s": round(cpu, 3), "msgs_per_s": round(accepted / seconds, 1),
                "cpu_us_per_msg": round(cpu / per * 1e6, 1),
                "loop_cpu_us_per_msg": round(loop / per * 1e6, 1),
                "system_cpu_us_per_msg": round((system_s() - self.k0) / per * 1e6, 1),
                **loop_figures(self.w0, accepted), **window_figures(windows),
                "peak_rss_mb": peak_rss_mb()}



def window_figures(samples: Sequence[tuple[float, int]]) -> dict[str, dict[str, float]]:
    """The loop's CPU per message window by window (those of at least
    :data:`WINDOW_MIN_MSGS`): a phase whose median is the other's but whose p90 is not had
    slow spells, not a steady extra cost per message."""
    per = sorted((c1 - c0) / (n1 - n0) * 1e6 for (c0, n0), (c1, n1)
                 in itertools.pairwise(samples) if n1 - n0 >= WINDOW_MIN_MSGS)
    if not per:
        return {}
    return {"loop_us_per_msg_windows": {
        "median": round(per[len(per) // 2], 1), "p90": round(per[int(len(per) * 0.9)], 1),
        "max": round(per[-1], 1), "windows": len(per)}}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def child_logging() -> None:
    """The engine's log lines as JSON on stderr, which the parent keeps in a file."""
    import logging

    from engine.logs import configure_logging

    configure_logging("json", level=logging.INFO)


def preload() -> None:
    """Import every adapter module before a timed phase: ``make_adapter`` imports them on
    first use, and one of them pulls in phonenumbers' geocoder (~0.4 s), a cost of process
    start, not of sending."""
    import importlib

    from engine.providers import ADAPTERS

    for module, _ in ADAPTERS.values():
        importlib.import_module(module)


def count_requests() -> dict[str, int]:
    """Count every HTTP request the engine's aiohttp pool carries (through its fast path,
    :meth:`AiohttpPool.exchange`, or an ``httpx.Request``), by the URL's first path segment
    (the provider kind, on the sandbox): a counter, about a µs per request. The phases
    differ in requests per message where a bulk provider's batches differ."""
    from httpx_aiohttp import AiohttpTransport

    from engine.providers.http import AiohttpPool

    counts: dict[str, int] = {}

    def note(path: str) -> None:
        kind = path.split("/", 2)[1]
        counts[kind] = counts.get(kind, 0) + 1

    inner = AiohttpTransport.handle_async_request
    exchange = AiohttpPool.exchange

    async def counted(self: AiohttpTransport, request: Any) -> Any:
        note(request.url.path)
        return await inner(self, request)

    async def counted_exchange(self: AiohttpPool, method: str, url: Any, *rest: Any) -> Any:
        note(url.path)
        return await exchange(self, method, url, *rest)

    AiohttpTransport.handle_async_request = counted  # type: ignore[method-assign]
    AiohttpPool.exchange = counted_exchange  # type: ignore[method-assign,assignment]
    return counts


def load(folder: Path) -> tuple[Any, Any]:
    from engine.campaign import load_campaign
    from engine.config import load_config

    return load_config(folder / "config.toml"), load_campaign(folder / "campaign.toml")


# --- child: plan ---------------------------------------------------------------------------


def child_plan(folder: Path, loop: str) -> dict[str, Any]:
    """Plan as ``run_campaign`` does (live rates through the sandbox, cached in the store),
    so that the dispatch phase finds the plan complete and the rates fresh."""

    from engine.plan.planner import campaign_providers, plan_campaign
    from engine.rates import rate_sources, route_table_from
    from engine.send.session import open_providers
    from engine.store.sqlite.store import Store

    config, campaign = load(folder)

    async def go() -> dict[str, Any]:
        providers = campaign_providers(config, campaign)
        async with Store.open(config.database) as store, open_providers(providers) as session:
            sources = await rate_sources(config, providers, store, session=session)
            routes = route_table_from(sources, providers, config)
            t0, c0 = time.perf_counter(), cpu_s()
            summary = await plan_campaign(config, campaign, store, routes=routes)
            seconds, cpu = time.perf_counter() - t0, cpu_s() - c0
        c = summary.counts
        copy_database(config.database, config.database.with_name(PLANNED_DB))
        return {"rows": c.rows, "valid": c.valid, "rejected": c.rejected, "skipped": c.skipped,
                "segments": c.segments, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3),
                "by_provider": {k: g.messages for k, g in c.by_provider.items()},
                "rates": {s.provider: s.origin for s in sources}}

    return event_loop.run(go, loop=loop)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (WAL included), through the backup API."""
    import sqlite3

    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


# --- child: bare client --------------------------------------------------------------------


async def planned_messages(config: Any, campaign: Any) -> dict[str, list[Any]]:
    """Every valid planned message, by provider, built by the dispatcher's own
    :class:`engine.send.jobs.Messages` (so text, key, route and per-number variables are what the
    dispatch phase sends; each with the template and variables, which only the bulk
    provider reads), under another campaign name so that the idempotency keys differ
    and SMS & Voice Platform does not answer the dispatch phase from its key cache. Read
    from the copy of the plan taken before either phase ran, so the order does not matter."""
    from engine.send.jobs import Job, Messages, key_prefix
    from engine.store.sqlite.store import Store

    out: dict[str, list[Any]] = {}
    async with Store.open(config.database.with_name(PLANNED_DB)) as store:
        record = await store.campaign_named(campaign.name)
        build = Messages(campaign, f"bare-{key_prefix(record)}").build
        after = 0
        while rows := await store.outgoing(record.id, state="pending", after_line=after,
                                           limit=5000):
            for row in rows:
                out.setdefault(row.provider, []).append(
                    build(Job.of(row, campaign.message), bulk=True))
            after = rows[-1].line
    return out


async def send_all(adapter: Any, messages: Sequence[Any], concurrency: int, batch: int,
                   deadline: float, tally: dict[str, int], ends: dict[str, float]) -> None:
    """*concurrency* tasks taking the next message (or *batch* of them) until none is left
    or *deadline* (``time.monotonic``) has passed; outcomes counted in *tally*, the moment
    the last one finished in *ends* (``time.perf_counter``, by provider name)."""
    import anyio

    chunks: Iterator[Sequence[Any]] = (messages[i:i + batch]
                                       for i in range(0, len(messages), batch))

    async def worker() -> None:
        for chunk in chunks:
            if time.monotonic() >= deadline:
                tally["not_sent"] += len(chunk)
                continue
            if len(chunk) == 1:
                results = [await adapter.send(chunk[0])]
            else:
                results = await adapter.send_batch(chunk)
            for result in results:
                what = result.outcome.value
                if what != "accepted":
                    what += f" ({result.code}: {result.detail[:60]})"
                tally[what] = tally.get(what, 0) + 1

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    ends[getattr(adapter, "name", "")] = time.perf_counter()


def child_bare(folder: Path, concurrency: int, timeout_s: float, batch: int,
               go_signal: bool, loop: str) -> dict[str, Any]:
    import anyio

    from engine.gc_policy import rare_cyclic_gc
    from engine.plan.planner import campaign_providers
    from engine.send.session import open_providers

    config, campaign = load(folder)
    providers = campaign_providers(config, campaign)
    preload()

    requests = count_requests()

    async def go() -> dict[str, Any]:
        by_provider = await planned_messages(config, campaign)
        total = sum(len(v) for v in by_provider.values())
        tally = {"not_sent": 0}
        ends: dict[str, float] = {}
        wait_for_go(go_signal)
        clock = PhaseClock.start()
        deadline = time.monotonic() + timeout_s
        async with (open_providers(providers) as session,
                    sampled_windows(lambda: tally.get("accepted", 0)) as windows):
            with anyio.move_on_after(timeout_s + CHILD_GRACE_S / 2), rare_cyclic_gc():
                async with anyio.create_task_group() as tg:
                    for name, messages in by_provider.items():
                        adapter = session.adapters[name]
                        size = min(batch, adapter.max_batch) if adapter.max_batch > 1 else 1
                        tg.start_soon(send_all, adapter, messages, concurrency, size, deadline,
                                      tally, ends)
        accepted = tally.get("accepted", 0)
        return {"messages": total, "accepted": accepted, "outcomes": tally,
                **clock.figures(accepted, windows), "timed_out": time.monotonic() >= deadline,
                "provider_seconds": {k: round(v - clock.t0, 2)
                                     for k, v in sorted(ends.items())},
                "http_requests": dict(sorted(requests.items()))}

    return event_loop.run(go, loop=loop)


# --- child: raw aiohttp --------------------------------------------------------------------


@dataclasses.dataclass
class RawRequest:
    """One request as the adapter would send it: URL, headers (with authentication) and body."""

    url: Any
    headers: Any
    body: bytes


async def recorded_requests(providers: Sequence[Any], by_provider: dict[str, list[Any]],
                            sandbox_url: str) -> dict[str, list[RawRequest]]:
    """By provider, each message's send request as its adapter builds it: the adapter sends
    to a pool that records instead (a Telekom login goes to the sandbox, for a real
    session). Skynoo is left out: its batches are made in :func:`raw_skynoo`."""
    import httpx

    from engine.providers import make_adapter
    from engine.providers.http import AiohttpPool

    class Recorder(AiohttpPool):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[RawRequest] = []

        async def exchange(self, method: str, url: Any, headers: Any,
                           body: bytes | None) -> httpx.Response:
            if url.path.endswith("/auth"):
                return await super().exchange(method, url, headers, body)
            self.requests.append(RawRequest(url, headers, body or b""))
            return httpx.Response(503)

    out: dict[str, list[RawRequest]] = {}
    for p in providers:
        if p.kind == "skynoo" or p.name not in by_provider:
            continue
        recorder = Recorder()
        async with make_adapter(p, base_url=f"{sandbox_url}/{p.kind}", transport=recorder) as a:
            for message in by_provider[p.name]:
                await a.send(message)
        out[p.name] = recorder.requests
    return out


async def raw_sends(session: Any, requests: Sequence[RawRequest], concurrency: int,
                    deadline: float, tally: dict[str, int]) -> None:
    """*concurrency* tasks posting the next request with ``aiohttp`` itself: the body read
    and parsed once, a 2xx counted as accepted."""
    import anyio

    pending = iter(requests)

    async def worker() -> None:
        for r in pending:
            if time.monotonic() >= deadline:
                tally["not_sent"] += 1
                continue
            async with session.post(r.url, data=r.body, headers=r.headers) as answer:
                json.loads(await answer.read())
                what = "accepted" if 200 <= answer.status < 300 else str(answer.status)
            tally[what] = tally.get(what, 0) + 1

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


async def raw_skynoo(session: Any, base: str, headers: dict[str, str], messages: Sequence[Any],
                     concurrency: int, batch: int, deadline: float,
                     tally: dict[str, int]) -> None:
    """Skynoo's batches as its adapter sends them (``batch/create`` per task, ``batch/status``
    until the task is not pending, backing off as the adapter does, then ``batch/detail``
    pages), with ``aiohttp`` itself; a message counts as accepted when its record is read."""
    import anyio

    from engine.providers import skynoo

    chunks = iter([messages[i:i + batch] for i in range(0, len(messages), batch)])

    async def post(path: str, body: Any) -> Any:
        async with session.post(base + path, json=body, headers=headers) as answer:
            return json.loads(await answer.read()).get("data")

    async def worker() -> None:
        for chunk in chunks:
            if time.monotonic() >= deadline:
                tally["not_sent"] += len(chunk)
                continue
            for plan in skynoo.plan_tasks(enumerate(chunk)):
                task = (await post(skynoo.BATCH_CREATE_PATH, plan.body(
                    skynoo.USE_TYPE_MARKETING)))["taskId"]
                delay = skynoo.BATCH_BACKOFF_S
                while (await post(skynoo.BATCH_STATUS_PATH, {"taskId": task}))["status"] \
                        == "pending" and time.monotonic() < deadline:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, skynoo.BATCH_BACKOFF_MAX_S)
                read, page = 0, 1
                while read < len(plan.numbers):
                    data = await post(skynoo.BATCH_DETAIL_PATH, {
                        "taskId": task, "pageNo": page, "pageSize": skynoo.DETAIL_PAGE_SIZE})
                    if not data["records"]:
                        break
                    read, page = read + len(data["records"]), page + 1
                tally["accepted"] = tally.get("accepted", 0) + read

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


def child_raw(folder: Path, concurrency: int, timeout_s: float, batch: int,
              go_signal: bool, loop: str) -> dict[str, Any]:
    """The same requests as the bare phase (the adapters' own, recorded beforehand; Skynoo's
    batches made by its planner), sent with a plain ``aiohttp.ClientSession`` per provider
    (a pool of *concurrency* connections), *concurrency* in flight each: the ceiling of the
    HTTP client on this machine, which the adapters and the dispatcher are measured against.
    Not timed: recording the requests."""
    import aiohttp
    import anyio

    from engine.plan.planner import campaign_providers
    from engine.providers.skynoo import Skynoo

    config, campaign = load(folder)
    providers = campaign_providers(config, campaign)
    preload()
    sandbox_url = providers[0].base_url.rsplit("/", 1)[0]

    async def go() -> dict[str, Any]:
        by_provider = await planned_messages(config, campaign)
        recorded = await recorded_requests(providers, by_provider, sandbox_url)
        total = sum(len(v) for v in by_provider.values())
        tally = {"not_sent": 0}
        wait_for_go(go_signal)
        clock = PhaseClock.start()
        deadline = time.monotonic() + timeout_s
        async with contextlib.AsyncExitStack() as stack:
            sessions = {p.name: await stack.enter_async_context(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency))) for p in providers
                if p.name in by_provider}
            windows = await stack.enter_async_context(
                sampled_windows(lambda: tally.get("accepted", 0)))
            with anyio.move_on_after(timeout_s + CHILD_GRACE_S / 2):
                async with anyio.create_task_group() as tg:
                    for p in providers:
                        if p.name not in by_provider:
                            continue
                        if p.kind == "skynoo":
                            tg.start_soon(raw_skynoo, sessions[p.name], p.base_url,
                                          Skynoo(p).headers(),
                                          by_provider[p.name],
                                          concurrency, batch, deadline, tally)
                        else:
                            tg.start_soon(raw_sends, sessions[p.name], recorded[p.name],
                                          concurrency, deadline, tally)
        accepted = tally.get("accepted", 0)
        return {"messages": total, "accepted": accepted, "outcomes": tally,
                **clock.figures(accepted, windows), "timed_out": time.monotonic() >= deadline}

    return event_loop.run(go, loop=loop)


# --- child: dispatch -----------------------------------------------------------------------


def child_dispatch(folder: Path, timeout_s: float, poll: bool,
                   go_signal: bool, loop: str) -> dict[str, Any]:
    """``run_campaign`` on the completed plan; a dispatcher still running at the deadline is
    stopped the way SIGTERM stops it (in-flight requests finish and are checkpointed).
    Delivery polling beside the dispatch is on, as ``dispatch run`` has it, unless *poll*
    is false."""
    import anyio

    from engine.run import run_campaign
    from engine.send.dispatcher import Dispatcher

    config, campaign = load(folder)
    preload()
    requests = count_requests()
    deadline = time.monotonic() + timeout_s
    seen: list[Dispatcher] = []

    def on_progress(dispatcher: Dispatcher) -> None:
        if not seen:
            seen.append(dispatcher)
        if time.monotonic() >= deadline:
            dispatcher.stop("bench deadline")

    async def go() -> dict[str, Any]:
        wait_for_go(go_signal)
        clock = PhaseClock.start()
        requests.clear()
        def accepted() -> int:
            return seen[0].statistics().accepted if seen else 0

        with anyio.fail_after(timeout_s + CHILD_GRACE_S / 2):
            async with sampled_windows(accepted) as windows:
                outcome = await run_campaign(config, campaign, on_progress=on_progress,
                                             poll_delivery=poll)
        figures = clock.figures(outcome.stats.accepted, windows)
        stats = outcome.stats
        extra: dict[str, Any] = {}
        if seen:
            # the checkpoint writer's work behind the dispatcher's outbox (a SqliteOutbox)
            outbox = seen[0].outbox
            extra = {"checkpoint_flushes": getattr(outbox, "flushes", 0),
                     "checkpoint_rows": getattr(outbox, "rows_written", 0)}
            started = seen[0].statistics().started_at - time.monotonic() + time.perf_counter()
            extra["dispatcher_span"] = [started, started + stats.seconds]
        extra["provider_seconds"] = provider_spans(config.database, campaign.name, clock.t0)
        extra["http_requests"] = dict(sorted(requests.items()))
        return {"accepted": stats.accepted, "failed": stats.failed, "unknown": stats.unknown,
                "failed_over": stats.failed_over, "left": stats.left,
                "pending_left": outcome.pending_left, "stopped": outcome.stopped,
                "providers_left_out": outcome.skipped_providers,
                "by_provider": dict(stats.by_provider), **figures,
                "dispatcher_seconds": round(stats.seconds, 3),
                "dispatcher_msgs_per_s": round(stats.accepted / stats.seconds, 1), **extra}

    result: dict[str, Any] = event_loop.run(go, loop=loop)
    writer = resource.getrusage(resource.RUSAGE_CHILDREN)
    writer_us = (writer.ru_utime + writer.ru_stime) / max(result["accepted"], 1) * 1e6
    result["writer_cpu_us_per_msg"] = round(writer_us, 1)
    result["cpu_us_per_msg"] = round(result["cpu_us_per_msg"] + writer_us, 1)
    return result


def provider_spans(database: Path, name: str, t0: float) -> dict[str, float]:
    """By provider, when its last message was settled, in seconds after *t0*
    (``time.perf_counter``), from the rows' ``updated_at`` (wall clock)."""
    import sqlite3

    offset = time.time() - time.perf_counter()
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT provider, max(updated_at) FROM messages WHERE campaign_id = "
            "(SELECT id FROM campaigns WHERE name = ?) AND provider_message_id IS NOT NULL "
            "GROUP BY provider ORDER BY provider", (name,)).fetchall()
    finally:
        conn.close()
    return {provider: round(last - offset - t0, 2) for provider, last in rows}


# --- child: one transport case -------------------------------------------------------------


def child_transport(folder: Path, url: str, transport_name: str, concurrency: int,
                    requests: int, seconds: float, loop: str) -> dict[str, Any]:
    """Plain SMS & Voice Platform sends through its adapter over one transport."""
    import anyio
    import httpx

    from engine.config import load_config
    from engine.providers.base import OutboundMessage
    from engine.providers.http import AiohttpPool
    from engine.providers.smsvoip import SmsVoip

    config = load_config(folder / "config.toml")
    provider = dataclasses.replace(config.provider("smsvoip"), concurrency=concurrency,
                                   rate_limit=None)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport: httpx.AsyncBaseTransport = (
        AiohttpPool(limits=limits) if transport_name == "httpx-aiohttp"
        else httpx.AsyncHTTPTransport(limits=limits))
    messages = [OutboundMessage(key=f"tr-{transport_name}-{concurrency}-{i}",
                                to=f"+421912{i % 1_000_000:06d}", text="Your order has shipped.",
                                sender="ACME", encoding="GSM-7", segments=1)
                for i in range(requests)]

    async def go() -> dict[str, Any]:
        tally = {"not_sent": 0}
        async with SmsVoip(provider, base_url=f"{url}/smsvoip", transport=transport) as adapter:
            await adapter.send(messages[0]._replace(key="tr-warm-up"))
            t0, c0 = time.perf_counter(), cpu_s()
            deadline = time.monotonic() + seconds
            with anyio.move_on_after(seconds + 30):
                await send_all(adapter, messages, concurrency, 1, deadline, tally, {})
            elapsed, cpu = time.perf_counter() - t0, cpu_s() - c0
        done = sum(v for k, v in tally.items() if k != "not_sent")
        return {"transport": transport_name, "concurrency": concurrency, "requests": done,
                "accepted": tally.get("accepted", 0), "outcomes": tally,
                "seconds": round(elapsed, 3), "req_per_s": round(done / elapsed, 1),
                "cpu_us_per_req": round(cpu / max(done, 1) * 1e6, 1)}

    return event_loop.run(go, loop=loop)


# --- parent --------------------------------------------------------------------------------


class Sandbox:
    """``python -m engine.sandbox`` in its own process; stopped on exit, whatever happens."""

    def __init__(self, folder: Path, latency_ms: float) -> None:
        args = [sys.executable, "-m", "engine.sandbox", "--port", "0", "--wallet", WALLET_USD]
        if latency_ms > 0:
            args += ["--faults", f"all:latency_ms={latency_ms:g},jitter_ms=0"]
        self._log = (folder / "sandbox.log").open("w")
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=self._log, text=True)
        self.url = ""

    def __enter__(self) -> Sandbox:
        try:
            stdout = self.process.stdout
            assert stdout is not None
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([stdout], [], [], left)[0]:
                    break
                line = stdout.readline()
                if not line:
                    break
                match = re.search(r"http://127\.0\.0\.1:\d+", line)
                if match:
                    self.url = match.group(0)
                    return self
            raise SystemExit("the sandbox did not print its address (see sandbox.log)")
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def cpu_s(self) -> float:
        return proc_cpu_s(self.process.pid)


def child_command(folder: Path, role: str, *extra: str) -> list[str]:
    return [sys.executable, __file__, "--child", role, "--folder", str(folder), *extra]


def run_child(folder: Path, role: str, timeout_s: float, *extra: str) -> dict[str, Any]:
    """Run this file as ``--child ROLE``; its last stdout line is its JSON answer."""
    log = folder / f"{role}.log"
    with log.open("w") as err:
        try:
            out = subprocess.run(
                child_command(folder, role, *extra), cwd=ROOT, stdout=subprocess.PIPE,
                stderr=err, text=True, timeout=timeout_s + CHILD_GRACE_S, check=False)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{role}: killed after {timeout_s + CHILD_GRACE_S:.0f} s") from None
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"{role} failed (exit {out.returncode}):\n{log_tail(folder, role)}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def wait_for_go(go_signal: bool) -> None:
    """With ``--wait-go``: say ``ready`` on stdout and wait for a line on stdin, so that the
    parent can start the timed part of both phases under its own control
    (:func:`interleaved`)."""
    if go_signal:
        print("ready", flush=True)
        sys.stdin.readline()


@dataclasses.dataclass
class SlicedChild:
    """A phase run by :func:`interleaved`: when it ran, and the sandbox's CPU meanwhile."""

    role: str
    process: subprocess.Popen[str]
    log: Any
    slices: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    sandbox_cpu_s: float = 0.0

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)

    def stop(self) -> None:
        """SIGSTOP, then wait (a few ms at most) until the kernel has stopped it."""
        self.signal(signal.SIGSTOP)
        for _ in range(STOP_CHECKS):
            try:
                if proc_stat(self.process.pid)[0] in "TtZX":
                    return
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.0005)

    def active_s(self, start: float, end: float) -> float:
        """Of the span *start*..*end* (``time.perf_counter``), how long it was let run."""
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.slices)


def interleaved(folder: Path, sandbox: Sandbox, roles: dict[str, list[str]], slice_s: float,
                timeout_s: float) -> dict[str, dict[str, Any]]:
    """Both phases at once in turns: each child prepares, then is let run *slice_s* seconds
    at a time while the other is stopped (SIGSTOP), until each is done. A shared 2-core
    machine's speed drifts by tens of percent over a minute; in turns of a second both
    phases run through the same drift, so the ratio measures the dispatcher, not the
    minute it ran in. The figures count only the time a phase was let run (the seconds of
    its slices within its own timed span), and the sandbox's CPU is charged to the phase
    whose turn it was. Bounded: each child stops itself *timeout_s* after it started
    (stopped time included), and the whole by twice that plus a grace."""
    children: list[SlicedChild] = []
    try:
        for role, extra in roles.items():
            log = (folder / f"{role}.log").open("w")
            process = subprocess.Popen(
                child_command(folder, role, "--wait-go", *extra), cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True)
            children.append(SlicedChild(role, process, log))
        for child in children:
            stdout, stdin = child.process.stdout, child.process.stdin
            assert stdout is not None and stdin is not None
            ready = select.select([stdout], [], [], CHILD_GRACE_S)[0]
            if not ready or stdout.readline().strip() != "ready":
                raise SystemExit(f"{child.role} did not get ready:\n{log_tail(folder, child.role)}")
            child.stop()
            stdin.write("go\n")
            stdin.close()
        deadline = time.perf_counter() + 2 * timeout_s + CHILD_GRACE_S
        running, turn = list(children), 0
        while running:
            child = running[turn % len(running)]
            alone = len(running) == 1
            s0, start = sandbox.cpu_s(), time.perf_counter()
            child.signal(signal.SIGCONT)
            try:
                child.process.wait(timeout=max(deadline - start, 0) if alone else slice_s)
                running.remove(child)
            except subprocess.TimeoutExpired:
                if alone:
                    raise SystemExit(f"{child.role}: not done by the deadline") from None
                child.stop()
                turn += 1
            child.slices.append((start, time.perf_counter()))
            child.sandbox_cpu_s += sandbox.cpu_s() - s0
        results = {}
        for child in children:
            assert child.process.stdout is not None
            out = child.process.stdout.read()
            if child.process.returncode != 0 or not out.strip():
                raise SystemExit(f"{child.role} failed (exit {child.process.returncode}):\n"
                                 f"{log_tail(folder, child.role)}")
            results[child.role] = running_time_only(json.loads(out.strip().splitlines()[-1]),
                                                    child)
        print(f"interleaved in turns of {slice_s:g} s: " + ", ".join(
            f"{c.role} {len(c.slices)} turns" for c in children), flush=True)
        return results
    finally:
        for child in children:
            if child.process.poll() is None:
                child.signal(signal.SIGKILL)
                child.process.wait(timeout=10)
            child.log.close()


def running_time_only(result: dict[str, Any], child: SlicedChild) -> dict[str, Any]:
    """*result* with its seconds, rates and moments counted in the time the child was let
    run; the sandbox's CPU is what it used during the child's turns."""
    t0, t1 = result["span"]
    accepted = max(result["accepted"], 1)
    result["wall_seconds"] = result["seconds"]
    result["seconds"] = round(child.active_s(t0, t1), 3)
    result["msgs_per_s"] = round(result["accepted"] / result["seconds"], 1)
    if "dispatcher_span" in result:
        d0, d1 = result["dispatcher_span"]
        result["dispatcher_seconds"] = round(child.active_s(d0, d1), 3)
        result["dispatcher_msgs_per_s"] = round(
            result["accepted"] / result["dispatcher_seconds"], 1)
    result["provider_seconds"] = {k: round(child.active_s(t0, t0 + v), 2)
                                  for k, v in result.get("provider_seconds", {}).items()}
    result["sandbox_cpu_us_per_msg"] = round(child.sandbox_cpu_s / accepted * 1e6, 1)
    result["sandbox_cpu_share"] = round(
        child.sandbox_cpu_s / max(sum(b - a for a, b in child.slices), 1e-9), 2)
    return result


def log_tail(folder: Path, role: str) -> str:
    return "".join((folder / f"{role}.log").read_text().splitlines(keepends=True)[-30:])


def write_config(folder: Path, url: str, concurrency: int) -> None:
    from tests.run_fixtures import run_config

    run_config(folder, url, concurrency=concurrency)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    from bench.generate import generate

    with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp:
        folder = Path(tmp)
        generate(args.messages, args.seed, 0.0, "SK", folder, CAMPAIGN)
        load_before = load_average()
        with Sandbox(folder, args.latency_ms) as sandbox:
            write_config(folder, sandbox.url, args.concurrency)
            print(f"load average before: {load_before}; sandbox {sandbox.url}, latency "
                  f"{args.latency_ms:g} ms, concurrency {args.concurrency} per provider, "
                  f"delivery polling {'off' if args.no_delivery_poll else 'on'}, {args.loop} loop, "
                  f"{os.cpu_count()} cores", flush=True)
            plan = run_child(folder, "plan", args.phase_timeout, "--loop", args.loop)
            print(f"plan: {plan['rows']:,} rows -> {plan['valid']:,} valid in "
                  f"{plan['seconds']:.1f} s (not part of either figure); by provider "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(plan["by_provider"].items())),
                  flush=True)
            order = (("raw", "bare", "dispatch") if args.order == "bare-first"
                     else ("dispatch", "bare", "raw"))
            roles = {role: phase_arguments(role, args) for role in order}
            if args.interleave > 0:
                phases = interleaved(folder, sandbox, roles, args.interleave,
                                     args.phase_timeout)
            else:
                phases = {}
                for role, extra in roles.items():
                    s0, t0 = sandbox.cpu_s(), time.perf_counter()
                    result = run_child(folder, role, args.phase_timeout, *extra)
                    wall = time.perf_counter() - t0
                    result["sandbox_cpu_us_per_msg"] = round(
                        (sandbox.cpu_s() - s0) / max(result["accepted"], 1) * 1e6, 1)
                    result["sandbox_cpu_share"] = round((sandbox.cpu_s() - s0) / wall, 2)
                    phases[role] = result
            for role in order:
                print(describe(role, phases[role]), flush=True)
            sandbox_rss = sandbox_rss_mb(sandbox.process.pid)
        load_after = load_average()
    bare, dispatch, raw = phases["bare"], phases["dispatch"], phases["raw"]
    if not bare["msgs_per_s"] or not raw["msgs_per_s"]:
        raise SystemExit("the bare or raw phase accepted nothing: no ratio (see its outcomes "
                         "above)")
    ratio = dispatch["msgs_per_s"] / bare["msgs_per_s"]
    over_raw = dispatch["msgs_per_s"] / raw["msgs_per_s"]
    print(f"ratio dispatch/bare: {ratio:.3f} (target >= 0.9); dispatcher alone "
          f"{dispatch['dispatcher_msgs_per_s']:,.0f} msg/s -> "
          f"{dispatch['dispatcher_msgs_per_s'] / bare['msgs_per_s']:.3f}")
    print(f"dispatch/raw: {over_raw:.3f} (target >= 0.7), bare/raw: "
          f"{bare['msgs_per_s'] / raw['msgs_per_s']:.3f}; CPU µs per message: raw "
          f"{raw['cpu_us_per_msg']:.0f}, bare {bare['cpu_us_per_msg']:.0f}, dispatch "
          f"{dispatch['cpu_us_per_msg']:.0f}")
    sandbox_drift = dispatch["sandbox_cpu_us_per_msg"] / max(bare["sandbox_cpu_us_per_msg"], 1e-9)
    drift_note = ("too few messages to tell" if dispatch["accepted"] < DRIFT_MIN_MSGS
                  else DRIFT_NOTE if abs(sandbox_drift - 1) > DRIFT_WARN else "steady")
    print(f"sandbox CPU per message dispatch/bare: {sandbox_drift:.3f} (nearly the same "
          f"requests in both phases: {drift_note})")
    print(f"load average after: {load_after}; sandbox RSS at the end {sandbox_rss} MB")
    return {
        "messages": dispatch["accepted"], "planned": plan["valid"],
        "dispatch_msgs_per_s": dispatch["msgs_per_s"], "bare_msgs_per_s": bare["msgs_per_s"],
        "raw_msgs_per_s": raw["msgs_per_s"],
        "ratio": round(ratio, 3), "dispatch_over_raw": round(over_raw, 3),
        "bare_over_raw": round(bare["msgs_per_s"] / raw["msgs_per_s"], 3),
        "sandbox_cpu_dispatch_over_bare": round(sandbox_drift, 3),
        "dispatch_cpu_us_per_msg": dispatch["cpu_us_per_msg"],
        "bare_cpu_us_per_msg": bare["cpu_us_per_msg"],
        "raw_cpu_us_per_msg": raw["cpu_us_per_msg"],
        "peak_rss_mb": dispatch["peak_rss_mb"], "bare_peak_rss_mb": bare["peak_rss_mb"],
        "latency_ms": args.latency_ms, "concurrency": args.concurrency,
        "transport": ENGINE_TRANSPORT, "loop": args.loop,
        "dispatch_seconds": dispatch["seconds"],
        "dispatcher_seconds": dispatch["dispatcher_seconds"],
        "bare_seconds": bare["seconds"], "bare_accepted": bare["accepted"],
        "raw_seconds": raw["seconds"], "raw_accepted": raw["accepted"],
        "dispatch_failed": dispatch["failed"] + dispatch["unknown"] + dispatch["pending_left"],
        "sandbox_cpu_us_per_msg": {k: v["sandbox_cpu_us_per_msg"] for k, v in phases.items()},
        "http_requests": {k: sum(v.get("http_requests", {}).values()) for k, v in phases.items()},
        "provider_seconds": {k: v.get("provider_seconds") for k, v in phases.items()},
        "loop_us_per_msg_windows": {k: v.get("loop_us_per_msg_windows")
                                    for k, v in phases.items()},
        "by_provider": plan["by_provider"], "order": args.order, "interleave_s": args.interleave,
        "delivery_poll": not args.no_delivery_poll,
        "cpu_measured": "run_campaign on a completed plan (store, cached rates, plan check, "
                        "preflight, dispatch); planning excluded",
        "load_average": {"before": load_before, "after": load_after}, "cores": os.cpu_count(),
    }


def phase_arguments(role: str, args: argparse.Namespace) -> list[str]:
    extra = ["--phase-timeout", str(args.phase_timeout), "--loop", args.loop]
    if args.no_delivery_poll:
        extra.append("--no-delivery-poll")
    if role in ("bare", "raw"):
        extra += ["--concurrency", str(args.concurrency), "--batch", str(args.batch)]
    if args.profile is not None:
        extra += ["--profile", str(args.profile.resolve())]
    return extra


def describe(role: str, r: dict[str, Any]) -> str:
    head = (f"{role:>8}: {r['accepted']:,} accepted in {r['seconds']:.2f} s = "
            f"{r['msgs_per_s']:,.0f} msg/s, CPU {r['cpu_us_per_msg']:.0f} µs/msg "
            f"(event loop thread {r['loop_cpu_us_per_msg']:.0f}, "
            f"kernel {r['system_cpu_us_per_msg']:.0f}; it waited for a CPU "
            f"{r['loop_wait_us_per_msg']:.0f} µs/msg, preempted "
            f"{r['loop_preempted_per_1k_msgs']:.0f} and slept "
            f"{r['loop_switches_per_1k_msgs']:.0f} times per 1k msgs), "
            f"peak RSS {r['peak_rss_mb']} MB, sandbox CPU {r['sandbox_cpu_us_per_msg']:.0f} "
            f"µs/msg ({r['sandbox_cpu_share']:.0%} of a core)")
    if role == "dispatch":
        head += (f"; checkpoint writer CPU {r['writer_cpu_us_per_msg']:.0f} µs/msg in "
                 f"{r.get('checkpoint_flushes', 0):,} commits"
                 f"; dispatcher alone {r['dispatcher_seconds']:.2f} s; failed {r['failed']}, "
                 f"unknown {r['unknown']}, failed over {r['failed_over']}, left "
                 f"{r['pending_left']}, stopped {r['stopped']}")
    else:
        other = {k: v for k, v in r["outcomes"].items() if k != "accepted" and v}
        head += f"; not accepted {other or 'none'}"
    windows = r.get("loop_us_per_msg_windows")
    if windows:
        head += (f"\n          event loop µs/msg by {WINDOW_S:.0f} s window "
                 f"({windows['windows']}): median {windows['median']:.0f}, p90 "
                 f"{windows['p90']:.0f}, max {windows['max']:.0f}")
    spans = r.get("provider_seconds")
    if spans:
        head += "\n          last message settled after (s): " + ", ".join(
            f"{k} {v:.1f}" for k, v in spans.items())
    calls = r.get("http_requests")
    if calls:
        head += (f"\n          HTTP requests: {sum(calls.values()):,} "
                 f"({sum(calls.values()) / max(r['accepted'], 1):.3f} per message): "
                 + ", ".join(f"{k} {v:,}" for k, v in calls.items()))
    return head


def sandbox_rss_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def compare_transports(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp:
        folder = Path(tmp)
        load_before = load_average()
        with Sandbox(folder, args.latency_ms) as sandbox:
            write_config(folder, sandbox.url, 8)
            print(f"load average before: {load_before}; sandbox {sandbox.url}, latency "
                  f"{args.latency_ms:g} ms; smsvoip plain sends, at most "
                  f"{args.compare_requests:,} requests or {args.compare_seconds:g} s per case",
                  flush=True)
            cases = []
            for concurrency in TRANSPORT_CONCURRENCY:
                for name in ("httpx", "httpx-aiohttp"):
                    s0 = sandbox.cpu_s()
                    case = run_child(folder, "transport", args.compare_seconds, "--loop", args.loop,
                                     "--url", sandbox.url, "--transport", name,
                                     "--concurrency", str(concurrency),
                                     "--requests", str(args.compare_requests),
                                     "--seconds", str(args.compare_seconds))
                    case["sandbox_cpu_us_per_req"] = round(
                        (sandbox.cpu_s() - s0) / max(case["requests"], 1) * 1e6, 1)
                    cases.append(case)
                    print(f"{name:>14} at {concurrency:>3} in flight: {case['requests']:>6,} "
                          f"requests in {case['seconds']:6.2f} s = {case['req_per_s']:>8,.0f} "
                          f"req/s, client CPU {case['cpu_us_per_req']:.0f} µs/req, sandbox CPU "
                          f"{case['sandbox_cpu_us_per_req']:.0f} µs/req", flush=True)
        load_after = load_average()
    print(f"load average after: {load_after}")
    return {"mode": "compare-transports", "transports": cases, "latency_ms": args.latency_ms,
            "transport": ENGINE_TRANSPORT,
            "load_average": {"before": load_before, "after": load_after},
            "cores": os.cpu_count()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000, help="recipients (all valid)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="sandbox answer delay")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight per provider")
    p.add_argument("--compare-transports", action="store_true",
                   help="measure the default httpx transport against httpx-aiohttp instead")
    p.add_argument("--compare-requests", type=int, default=5000)
    p.add_argument("--compare-seconds", type=float, default=30.0)
    p.add_argument("--phase-timeout", type=float, default=600.0,
                   help="seconds each phase may take (default 600)")
    p.add_argument("--batch", type=int, default=500,
                   help="messages per send_batch call of a bulk provider in the bare loop")
    p.add_argument("--order", choices=("bare-first", "dispatch-first"), default="bare-first")
    p.add_argument("--repeat", type=int, default=1,
                   help="whole runs (each its own sandbox and plan), alternating the order; "
                        "the JSON gives the median ratio and every run's")
    p.add_argument("--no-delivery-poll", action="store_true",
                   help="dispatch without the delivery polling `dispatch run` does beside it")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--interleave", type=float, default=INTERLEAVE_S, metavar="S",
                   help="run both phases in turns of S seconds (the other stopped), counting "
                        f"only each one's running time (default {INTERLEAVE_S:g}); 0: one "
                        "after the other")
    p.add_argument("--loop", choices=LOOPS, default="auto",
                   help="the event loop of every phase (default: as `dispatch run`, uvloop "
                        "when installed)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="write each phase's cProfile to DIR/ROLE.prof (slows every phase)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--wait-go", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--transport", help=argparse.SUPPRESS)
    p.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_logging()
        profile = None
        if args.profile is not None:
            profile = cProfile.Profile()
            profile.enable()
        if args.child == "plan":
            result = child_plan(args.folder, args.loop)
        elif args.child == "bare":
            result = child_bare(args.folder, args.concurrency, args.phase_timeout, args.batch,
                                args.wait_go, args.loop)
        elif args.child == "raw":
            result = child_raw(args.folder, args.concurrency, args.phase_timeout, args.batch,
                               args.wait_go, args.loop)
        elif args.child == "dispatch":
            result = child_dispatch(args.folder, args.phase_timeout, not args.no_delivery_poll,
                                    args.wait_go, args.loop)
        else:
            result = child_transport(args.folder, args.url, args.transport, args.concurrency,
                                     args.requests, args.seconds, args.loop)
        if profile is not None:
            profile.disable()
            args.profile.mkdir(parents=True, exist_ok=True)
            profile.dump_stats(args.profile / f"{args.child}.prof")
        print(json.dumps(result))
        return 0
    signal.signal(signal.SIGTERM, stop_on_term)
    result = compare_transports(args) if args.compare_transports else repeated(args)
    print(json.dumps(result))
    return 0


def stop_on_term(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so that the sandbox and the phases (stopped ones too,
    each in a session of its own) are ended on the way out."""
    raise SystemExit(128 + signum)


def repeated(args: argparse.Namespace) -> dict[str, Any]:
    """``--repeat`` runs of :func:`throughput`, the order flipping each time: on a shared
    machine one run's ratio moves by ±0.2, and the median of a few is the figure to quote."""
    if args.repeat <= 1:
        return throughput(args)
    first = args.order
    runs = []
    for k in range(args.repeat):
        flipped = "dispatch-first" if first == "bare-first" else "bare-first"
        args.order = first if k % 2 == 0 else flipped
        print(f"--- run {k + 1} of {args.repeat} ({args.order})", flush=True)
        runs.append(throughput(args))
    args.order = first
    ranked = sorted(runs, key=lambda r: float(r["ratio"]))
    median = ranked[len(ranked) // 2]
    ratios = [r["ratio"] for r in runs]
    over_raw = [r["dispatch_over_raw"] for r in runs]
    print(f"ratios {', '.join(f'{x:.3f}' for x in ratios)}; median {median['ratio']:.3f} "
          "(target >= 0.9)")
    print(f"dispatch/raw {', '.join(f'{x:.3f}' for x in over_raw)}; median "
          f"{sorted(over_raw)[len(over_raw) // 2]:.3f} (target >= 0.7)")
    return {**median, "ratios": ratios, "repeat": args.repeat,
            "dispatch_over_raw": sorted(over_raw)[len(over_raw) // 2],
            "dispatch_over_raw_runs": over_raw,
            "raw_msgs_per_s_runs": [r["raw_msgs_per_s"] for r in runs],
            "dispatch_msgs_per_s_runs": [r["dispatch_msgs_per_s"] for r in runs],
            "bare_msgs_per_s_runs": [r["bare_msgs_per_s"] for r in runs]}


if __name__ == "__main__":
    raise SystemExit(main())
