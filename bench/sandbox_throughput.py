"""How many plain sends per second the sandbox answers, served from its own process.

Starts ``python -m engine.sandbox --port 0`` (one process, so one core), reads the address it
prints, then drives it from this process with a small raw HTTP/1.1 keep-alive client (cheap
enough not to be the bottleneck) for at most ``--requests`` requests and ``--seconds``
seconds, only to 127.0.0.1. The last line printed is one JSON object:
``{"requests": ..., "seconds": ..., "req_per_s": ...}``.

    python bench/sandbox_throughput.py [--requests 20000] [--seconds 30] [--connections 16]
                                       [--state] (the sandbox keeps a state file, as the one
                                       dispatch starts for base_url = "sandbox" does)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final, cast

LISTENING: Final = "sandbox listening on "
STARTUP_TIMEOUT_S: Final = 20.0
STALL_S: Final = 10.0

_BODIES: Final = {
    "smsvoip": (
        "/smsvoip/sms/send",
        "Bearer sk_test_sandbox",
        {"to": "+15551234567", "text": "Your order has shipped."},
    ),
    "skytelecom": (
        "/skytelecom/sms/send",
        "Bearer sky_test_key",
        {"to": "12025550123", "message": "Your order has shipped.", "sender_id": "Shop"},
    ),
    "voipex": (
        "/voipex/SMS",
        "Bearer voipex-sandbox-jwt",
        {"from": "+420777888999", "to": "+420607608609", "text": "Your order has shipped."},
    ),
    "telekom": (
        "/telekom/send_message",
        None,
        {"to": "421900123456", "text": "Your order has shipped.", "token": "telekom-sandbox-token"},
    ),
    "skynoo": (
        "/skynoo/api/sms/v1/send",
        "Basic " + base64.b64encode(b"app_sandbox:sec_sandbox").decode(),
        {"mobile": "+15551234567", "useType": 2, "text": "Your order has shipped."},
    ),
}


def build_request(kind: str) -> bytes:
    path, auth, payload = _BODIES[kind]
    body = json.dumps(payload).encode()
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        head.append(f"Authorization: {auth}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Budget:
    """Requests left to start and the deadline; shared by every connection."""

    def __init__(self, requests: int, seconds: float) -> None:
        self.left = requests
        self.deadline = time.perf_counter() + seconds
        self.done = 0
        self.failed = 0

    def take(self) -> bool:
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


class Connection(asyncio.Protocol):
    """One keep-alive connection sending the same request back to back."""

    def __init__(self, request: bytes, budget: Budget, finished: asyncio.Future[None]) -> None:
        self._request = request
        self._budget = budget
        self._finished = finished
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._next()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].lower()
            start = head.find(b"content-length:") + 15
            length = int(
                head[start : head.find(b"\r\n", start) if b"\r\n" in head[start:] else None]
            )
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            if head.startswith(b"http/1.1 200"):
                self._budget.done += 1
            else:
                self._budget.failed += 1
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    def _next(self) -> None:
        assert self._transport is not None
        if self._budget.take():
            self._transport.write(self._request)
        else:
            self._transport.close()


async def drive(
    port: int, request: bytes, requests: int, seconds: float, connections: int
) -> Budget:
    loop = asyncio.get_running_loop()
    budget = Budget(requests, seconds)
    finished: list[asyncio.Future[None]] = [loop.create_future() for _ in range(connections)]
    for future in finished:
        await loop.create_connection(
            functools.partial(Connection, request, budget, future), "127.0.0.1", port
        )
    await asyncio.gather(*finished)
    return budget


def start_sandbox(
    ledger: Path | None, loop: str, state: Path | None = None
) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "engine.sandbox", "--port", "0", "--loop", loop]
    if ledger is not None:
        command += ["--ledger", str(ledger)]
    if state is not None:
        command += ["--state", str(state)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith(LISTENING):
            return process, int(line.strip().rsplit(":", 1)[1])
    process.kill()
    raise SystemExit("the sandbox did not print its address")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kind", choices=sorted(_BODIES), default="smsvoip")
    parser.add_argument("--no-ledger-file", action="store_true", help="ledger in memory only")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--state", action="store_true", help="with a sandbox state file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ledger = None if args.no_ledger_file else Path(tmp) / "ledger.jsonl"
        state = Path(tmp) / "sandbox.db" if args.state else None
        process, port = start_sandbox(ledger, args.loop, state)
        try:
            request = build_request(args.kind)
            asyncio.run(asyncio.wait_for(drive(port, request, 500, 10.0, 4), 10.0 + STALL_S))
            cpu_before = cpu_seconds(process.pid)
            client_before = time.process_time()
            started = time.perf_counter()
            run = drive(port, request, args.requests, args.seconds, args.connections)
            budget = asyncio.run(asyncio.wait_for(run, args.seconds + STALL_S))
            seconds = time.perf_counter() - started
            server_cpu = cpu_seconds(process.pid) - cpu_before
            client_cpu = time.process_time() - client_before
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        lines = sum(1 for _ in ledger.open()) if ledger is not None else None
    total = budget.done + budget.failed
    print(
        f"kind={args.kind} loop={args.loop} connections={args.connections} "
        f"ok={budget.done} not_ok={budget.failed} ledger_lines={lines} exit={code}"
    )
    print(
        f"server cpu {server_cpu:.2f} s = {1e6 * server_cpu / max(total, 1):.0f} us per request "
        f"(one core could answer ~{total / max(server_cpu, 1e-9):.0f} req/s); "
        f"client cpu {client_cpu:.2f} s"
    )
    result = {
        "requests": total,
        "seconds": round(seconds, 3),
        "req_per_s": round(total / seconds, 1),
    }
    print(json.dumps(result))
    return 0 if budget.failed == 0 and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
