"""How many delivery reports per second the webhook receiver stores, on one core.

Seeds a fresh database with ``--reports`` accepted messages (smsvoip, telekom, voipex), starts
``python -m engine webhooks --port 0`` on it in a process of its own (one core), then posts
one report per message from this process over keep-alive connections with a few requests
pipelined on each: signed SMS & Voice Platform ``delivery_report``s (about 80 %), Telekom
``dsn`` and Voipex webhooks. Bounded by ``--reports`` and ``--seconds``; only 127.0.0.1.
Afterwards the database is checked: every report stored and applied. The last line printed
is one JSON object: ``{"reports", "seconds", "reports_per_s", "applied"}``.

    python bench/webhooks.py [--reports 20000] [--connections 16] [--depth 8] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import anyio

ROOT: Final = Path(__file__).resolve().parent.parent
SECRET: Final = "whsec_bench"
CONFIG: Final = """[engine]
database = "{db}"
[providers.smsvoip]
kind = "smsvoip"
base_url = "sandbox"
api_key = "k"
webhook_secret = "{secret}"
[providers.telekom]
kind = "telekom"
base_url = "sandbox"
token = "t"
[providers.voipex]
kind = "voipex"
base_url = "sandbox"
token = "t"
sender = "+420777888999"
"""


def provider_of(n: int) -> str:
    return ("telekom", "voipex")[n % 2] if n % 10 < 2 else "smsvoip"


async def seed(db: Path, count: int) -> None:
    sys.path.insert(0, str(ROOT))
    from engine.store.sqlite.store import Store

    async with Store.open(db) as store:
        record = await store.open_campaign(name="bench", fingerprint="f", path=db,
                                           currency="EUR", plans=[])
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO messages (campaign_id, line, state, provider, provider_message_id, "
            "updated_at, cost_nanos) VALUES (?, ?, 'accepted', ?, ?, ?, 1000)",
            [(record.id, n + 1, provider_of(n), str(n), now) for n in range(count)])


def request(n: int, urls: dict[str, str]) -> bytes:
    from engine.sandbox.smsvoip import signature

    provider = provider_of(n)
    path = re.sub(r"^http://[^/]+", "", urls[provider])
    state = "undelivered" if n % 7 == 0 else "delivered"
    headers = ""
    if provider == "smsvoip":
        body = json.dumps({"event": "delivery_report", "message_id": str(n), "status": state,
                           "delivered_at": "2026-01-12T20:15:00Z", "cost": 0.006}).encode()
        headers = f"X-Signature: {signature(SECRET, int(time.time()), body)}\r\n"
    elif provider == "telekom":
        body = json.dumps({"delivery": {"status": state.upper()}, "messageId": n,
                           "type": "dsn", "timestamp": "2026-01-12T20:15:00.000Z"}).encode()
    else:
        body = json.dumps({"id": str(n), "from": "+1", "to": "+2", "text": "x",
                           "direction": "OUT", "state": state.upper()}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return status


async def client(port: int, work: list[bytes], depth: int, deadline: float,
                 statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for start in range(0, len(work), depth):
            if time.monotonic() > deadline:
                break
            chunk = work[start:start + depth]
            writer.write(b"".join(chunk))
            for _ in chunk:
                status = await read_response(reader)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def drive(port: int, urls: dict[str, str],
                args: argparse.Namespace) -> tuple[float, dict[int, int]]:
    work = [request(n, urls) for n in range(args.reports)]
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + args.seconds
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for c in range(args.connections):
            tg.start_soon(client, port, work[c::args.connections], args.depth, deadline,
                          statuses)
    return time.perf_counter() - started, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--depth", type=int, default=8, help="requests pipelined per connection")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        anyio.run(seed, db, args.reports)
        config = Path(folder) / "config.toml"
        config.write_text(CONFIG.format(db=db, secret=SECRET), encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "--log-format", "json", "webhooks", "--port", "0",
             "--config", str(config)], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None
        try:
            first = proc.stdout.readline()
            port = int(re.search(r"127\.0\.0\.1:(\d+)", first).group(1))  # type: ignore[union-attr]
            urls = {}
            for _ in range(3):
                name, _, url = proc.stdout.readline().strip().partition(": ")
                urls[name] = url
            seconds, statuses = anyio.run(drive, port, urls, args)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            proc.stdout.close()
        with sqlite3.connect(db) as conn:
            applied = conn.execute("SELECT count(*) FROM messages WHERE state IN "
                                   "('delivered', 'undelivered')").fetchone()[0]
    sent = sum(statuses.values())
    rate = sent / seconds if seconds else 0.0
    print(f"{sent} reports in {seconds:.2f} s: {rate:,.0f} reports/s; answers {statuses}; "
          f"applied {applied}")
    print(json.dumps({"reports": sent, "seconds": round(seconds, 3),
                      "reports_per_s": round(rate, 1), "applied": applied,
                      "statuses": {str(k): v for k, v in statuses.items()}}))
    return 0 if statuses.get(200) == sent == applied else 1


if __name__ == "__main__":
    raise SystemExit(main())
