"""``python -m engine.sandbox`` as its own process: prints its address, serves, stops cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

STARTUP_S = 20.0


@contextmanager
def sandbox_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the sandbox, read the address it prints; kill it if the test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + STARTUP_S
        line = ""
        while time.monotonic() < deadline and not line.startswith("sandbox listening on "):
            line = process.stdout.readline()
            if not line:
                break
        assert line.startswith("sandbox listening on http://127.0.0.1:"), line
        yield process, line.strip().removeprefix("sandbox listening on ")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_module_serves_and_exits_zero_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """It prints its address, serves with the given faults and ledger, and exits 0 on sig."""
    ledger = tmp_path / "ledger.jsonl"
    with sandbox_process("--faults", "smsvoip:throttle_every=2", "--ledger", str(ledger)) as (
        process,
        url,
    ):
        with httpx.Client(base_url=url + "/smsvoip") as client:
            headers = {"Authorization": "Bearer sk_test_sandbox"}
            body = {"to": "+15551234567", "text": "Hi!"}
            assert client.post("/sms/send", json=body, headers=headers).status_code == 200
            assert client.post("/sms/send", json=body, headers=headers).status_code == 429
            assert client.get(url + "/_sandbox/ledger").json()["count"] == 1
        process.send_signal(sig)
        assert process.wait(timeout=10) == 0
    (line,) = ledger.read_text().splitlines()
    assert json.loads(line)["recipient"] == "+15551234567"


def test_bad_fault_spec_exits_nonzero() -> None:
    """A malformed ``--faults`` is reported on stderr with a non-zero exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "engine.sandbox", "--faults", "smsvoip:warp=9"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "warp" in done.stderr


def test_standalone_sandbox_answers_late_when_told_to() -> None:
    """`--faults KIND:latency_ms=N` delays the answer in the standalone server, not refuses it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.sandbox", "--port", "0", "--faults",
         "smsvoip:latency_ms=50"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        started = time.monotonic()
        answer = httpx.post(f"{url.group(0)}/smsvoip/api/v1/sms/send",
                             headers={"Authorization": "Bearer sk_test_sandbox"},
                             json={"to": "+447400123456", "text": "hi"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started >= 0.05
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
