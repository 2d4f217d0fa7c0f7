"""The checkpoint writer's own CPU per message: a run's claims, marks and settlements
committed in this process, without the run.

    python bench/checkpoint_writer.py --messages 20000
    python bench/checkpoint_writer.py --messages 20000 --per-commit 1000
    python bench/checkpoint_writer.py --messages 20000 --without-indexes

A generated campaign is planned into a fresh SQLite file (shipped rate tables), then
:class:`~engine.store.sqlite.checkpoint_writer.CheckpointWriter`, the class the checkpoint
process runs, gets the writes of a run through every provider: claims of up to 500 messages
(straight into ``sending`` where the provider settles an unknown outcome exactly, as a lane
does), and commits of ``--per-commit`` messages taken from the lanes in turn, each with the
marks of the next messages of the lanes that mark each message before sending it and the
settlements (accepted, with a provider's message id) of the ones before. ``--without-indexes``
drops the messages table's secondary indexes first: what a settlement costs without them.

The process's CPU time per message, split into claims and writes, is the writer's share of a
dispatch run's CPU, which in a run competes for the cores with the event loop and the
sandbox (see ``bench/throughput.py``). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import generate  # noqa: E402
from engine import event_loop  # noqa: E402
from engine.campaign import load_campaign  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.plan.planner import plan_campaign  # noqa: E402
from engine.store.records import Outgoing, Settlement  # noqa: E402
from engine.store.sqlite.checkpoint_writer import CheckpointWriter  # noqa: E402
from engine.store.sqlite.store import Store  # noqa: E402
from engine.store.states import PENDING  # noqa: E402
from tests.helpers import write_config  # noqa: E402

CLAIM_ROWS: Final = 500
MARK_AHEAD: Final = ("skytelecom", "smsvoip", "voipex")
"""Providers whose lanes claim straight into ``sending`` (idempotency key or log look-up)."""
SECONDARY_INDEXES: Final = ("messages_by_state", "messages_provider_id",
                            "messages_unknown_delivery")


async def planned(folder: Path, messages: int) -> tuple[Path, int, list[str]]:
    """A fresh database with *messages* generated recipients planned: its path, the
    campaign's id and its providers."""
    generate(messages, 42, 0.0, "SK", folder / "campaign", "writer")
    config = load_config(write_config(folder))
    campaign = load_campaign(folder / "campaign/campaign.toml")
    async with Store.open(config.database) as store:
        await plan_campaign(config, campaign, store)
        record = await store.campaign_named(campaign.name)
    return config.database, record.id, [p.name for p in config.providers]


RANDOM_IDS: Final = ("voipex", "skynoo")
"""Providers whose message ids are random (UUIDs, hex), as the sandbox gives them; the others
count up."""


def accepted(row: Outgoing, number: int) -> Settlement:
    """*row* accepted, with a message id of its provider's form."""
    message_id = uuid.uuid4().hex if row.provider in RANDOM_IDS else str(number)
    return Settlement("accepted", None, None, row.provider, row.route, row.price_nanos,
                      row.cost_nanos, message_id, None, row.attempts + 1, time.time(),
                      row.line)


def measure(db: Path, campaign_id: int, providers: list[str], per_commit: int
            ) -> dict[str, Any]:
    """Claim every message a page a lane at a time as the lane's queue runs out, and commit
    marks and settlements *per_commit* messages at a time, the lanes keeping pace (the next
    message is the lowest line queued): CPU seconds of claims and of writes."""
    writer = CheckpointWriter(db, campaign_id, uuid.uuid4().hex)
    queues: dict[str, deque[Outgoing]] = {p: deque() for p in providers}
    after = dict.fromkeys(providers, 0)
    done: set[str] = set()
    claim_s = write_s = 0.0
    claims = commits = settled = 0
    unsettled: list[Settlement] = []
    while True:
        for provider in providers:
            if not queues[provider] and provider not in done:
                c0 = time.process_time()
                rows, _ = writer.claim(provider, PENDING, after[provider], CLAIM_ROWS, None,
                                       provider in MARK_AHEAD)
                claim_s += time.process_time() - c0
                claims += 1
                if rows:
                    queues[provider].extend(map(Outgoing._make, rows))
                    after[provider] = rows[-1][0]
                else:
                    done.add(provider)
        heads = [q for q in queues.values() if q]
        if not heads:
            break
        batch = [min(heads, key=lambda q: q[0].line).popleft()
                 for _ in range(per_commit) if (heads := [q for q in heads if q])]
        marks = [(time.time(), r.line) for r in batch if r.provider not in MARK_AHEAD]
        c0 = time.process_time()
        writer.write(marks, [tuple(s) for s in unsettled])
        write_s += time.process_time() - c0
        commits += 1
        settled += len(unsettled)
        unsettled = [accepted(r, settled + i) for i, r in enumerate(batch)]
    c0 = time.process_time()
    writer.write([], [tuple(s) for s in unsettled])
    write_s += time.process_time() - c0
    settled += len(unsettled)
    writer.close()
    return {"messages": settled, "claims": claims, "commits": commits + 1,
            "claim_cpu_s": claim_s, "write_cpu_s": write_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--per-commit", type=int, default=100,
                   help="messages settled a commit (a run at ~8k msg/s commits ~80)")
    p.add_argument("--without-indexes", action="store_true",
                   help="drop the messages table's secondary indexes first")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="dispatch-writer-") as tmp:
        db, campaign_id, providers = event_loop.run(planned, Path(tmp), args.messages)
        if args.without_indexes:
            with sqlite3.connect(db) as conn:
                for index in SECONDARY_INDEXES:
                    conn.execute(f"DROP INDEX {index}")
        r = measure(db, campaign_id, providers, args.per_commit)
    n = max(r["messages"], 1)
    result = {"messages": r["messages"], "per_commit": args.per_commit,
              "without_indexes": args.without_indexes, "claims": r["claims"],
              "commits": r["commits"],
              "cpu_us_per_msg": round((r["claim_cpu_s"] + r["write_cpu_s"]) / n * 1e6, 1),
              "claim_cpu_us_per_msg": round(r["claim_cpu_s"] / n * 1e6, 1),
              "write_cpu_us_per_msg": round(r["write_cpu_s"] / n * 1e6, 1)}
    print(f"{result['messages']:,} messages, {result['claims']} claims, {result['commits']} "
          f"commits: checkpoint writer CPU {result['cpu_us_per_msg']:.1f} µs a message "
          f"(claims {result['claim_cpu_us_per_msg']:.1f}, marks and settlements "
          f"{result['write_cpu_us_per_msg']:.1f})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
