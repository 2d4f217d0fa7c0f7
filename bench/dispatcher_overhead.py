"""The dispatcher's own CPU per message, with adapters that accept after a short sleep.

    python bench/dispatcher_overhead.py --messages 20000
    python bench/dispatcher_overhead.py --messages 20000 --sleep-ms 2 --profile out.prof
    python bench/dispatcher_overhead.py --messages 20000 --sleep-ms 50 --concurrency 100

No HTTP and no sandbox: every provider of the shipped config is replaced by an adapter that
sleeps ``--sleep-ms`` and accepts (keyed like SMS & Voice Platform, looked up like Sky
Telecom and Voipex, neither like Telekom and Skynoo, so every kind of lane runs), with the
shipped config's concurrency per provider unless ``--concurrency`` says, and no rate limit. What is
left is the real plan, store, feeders, workers, marks, checkpoints and bookkeeping. The
event loop's thread CPU time per message is steadier than ``bench/throughput.py``'s ratio
on a shared machine, so it shows changes to the dispatcher's hot path that the ratio's
noise hides. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import generate  # noqa: E402
from engine import event_loop  # noqa: E402
from engine.campaign import load_campaign  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.event_loop import LOOPS  # noqa: E402
from engine.plan.planner import plan_campaign  # noqa: E402
from engine.providers.base import OutboundMessage, Outcome, SendResult  # noqa: E402
from engine.send.dispatcher import Dispatcher  # noqa: E402
from engine.send.worker import campaign_worker, lease_rule  # noqa: E402
from engine.store.sqlite.outbox import SqliteOutbox  # noqa: E402
from engine.store.sqlite.store import Store  # noqa: E402
from tests.helpers import write_config  # noqa: E402


class AcceptingAdapter:
    max_batch = 1

    def __init__(self, name: str, kind: str, sleep_s: float) -> None:
        self.name = name
        self.supports_idempotency = kind == "smsvoip"
        self.can_lookup = kind in ("skytelecom", "voipex")
        self._sleep_s = sleep_s

    async def send(self, message: OutboundMessage) -> SendResult:
        await anyio.sleep(self._sleep_s)
        return SendResult(Outcome.ACCEPTED, provider_message_id=f"id-{message.to}")


async def measure(folder: Path, messages: int, sleep_s: float, concurrency: int | None,
                  profile: Path | None) -> dict[str, Any]:
    generate(messages, 42, 0.0, "SK", folder / "campaign", "overhead")
    config = load_config(write_config(folder))
    config = dataclasses.replace(config, providers=tuple(
        dataclasses.replace(p, rate_limit=None, concurrency=concurrency or p.concurrency)
        for p in config.providers))
    campaign = load_campaign(folder / "campaign/campaign.toml")
    async with Store.open(config.database) as store, \
            campaign_worker(store, campaign.name) as worker:
        await plan_campaign(config, campaign, store)
        record = await store.campaign_named(campaign.name)
        adapters = {p.name: AcceptingAdapter(p.name, p.kind, sleep_s) for p in config.providers}
        dispatcher = Dispatcher(
            outbox=SqliteOutbox(store, record.id, worker.record, lease_rule()),
            record=record, campaign=campaign, providers=config.providers,
            adapters=adapters, down={}, plans=await store.rate_plans(record.id),  # type: ignore[arg-type]
            routing=config.routing)
        profiler = cProfile.Profile() if profile else None
        t0, c0 = time.perf_counter(), time.thread_time()
        if profiler:
            profiler.enable()
        stats = await dispatcher.run()
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if profiler and profile:
            profiler.dump_stats(profile)
    return {"messages": stats.accepted, "seconds": round(wall, 3),
            "msgs_per_s": round(stats.accepted / wall, 1),
            "loop_cpu_us_per_msg": round(cpu / max(stats.accepted, 1) * 1e6, 1),
            "sleep_ms": sleep_s * 1000, "concurrency": concurrency,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--sleep-ms", type=float, default=2.0, help="each adapter's answer delay")
    p.add_argument("--concurrency", type=int, help="requests in flight per provider")
    p.add_argument("--profile", type=Path, help="write cProfile stats of the dispatch here")
    p.add_argument("--loop", choices=LOOPS, default="auto",
                   help="the event loop (default: as `dispatch run`, uvloop when installed)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="dispatch-overhead-") as tmp:
        result = event_loop.run(measure, Path(tmp), args.messages, args.sleep_ms / 1000,
                                args.concurrency, args.profile, loop=args.loop)
    print(f"{result['messages']:,} messages in {result['seconds']:.2f} s = "
          f"{result['msgs_per_s']:,.0f} msg/s; event-loop thread CPU "
          f"{result['loop_cpu_us_per_msg']:.0f} µs a message")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
