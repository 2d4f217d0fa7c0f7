"""A sandbox in a process of its own (so its JSON-lines ledger outlives a killed run), and
configs that point every provider at it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.campaign import load_campaign
from engine.config import Config, load_config
from engine.run import RunOutcome, run_campaign
from tests.helpers import ROOT

KINDS = ("skytelecom", "smsvoip", "voipex", "telekom", "skynoo")
CREDENTIALS = {
    "skytelecom": 'api_key = "sky_test_key"\nsender = "Dispatch"\ncurrency = "USD"\n',
    "smsvoip": 'api_key = "sk_test_sandbox"\nwebhook_secret = "whsec_sandbox"\n',
    "voipex": 'token = "voipex-sandbox-jwt"\nsender = "+420777888999"\n',
    "telekom": 'token = "telekom-sandbox-token"\n',
    "skynoo": 'api_key = "app_sandbox"\napi_secret = "sec_sandbox"\n',
}


@dataclass
class ExternalSandbox:
    url: str
    ledger: Path
    process: subprocess.Popen[str]

    def count(self) -> int:
        """Billed messages so far (cheap: lines, not JSON)."""
        return self.ledger.read_bytes().count(b"\n") if self.ledger.exists() else 0

    def entries(self) -> list[dict[str, object]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]


@contextmanager
def external_sandbox(folder: Path, *faults: str) -> Iterator[ExternalSandbox]:
    ledger = folder / "ledger.jsonl"
    args = [sys.executable, "-m", "engine.sandbox", "--port", "0", "--ledger", str(ledger),
            "--delivery-delay", "0.2"]
    for spec in faults:
        args += ["--faults", spec]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, f"sandbox did not start: {line!r}"
    try:
        yield ExternalSandbox(match.group(0), ledger, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()


def run_config(folder: Path, url: str, *, rate_limits: dict[str, str] | None = None,
               concurrency: int = 8, providers: tuple[str, ...] = KINDS) -> Path:
    """A config for the sandbox at *url*, shipped rate tables, no rate limit unless given."""
    parts = ['[engine]\ndatabase = "dispatch.db"\n\n[routing]\ncurrency = "EUR"\n'
             'rate_ttl = "24h"\n\n[routing.fx]\nUSD = "0.92"\n']
    for kind in providers:
        limit = (rate_limits or {}).get(kind)
        parts.append(
            f'\n[providers.{kind}]\nkind = "{kind}"\nbase_url = "{url}/{kind}"\n'
            f"{CREDENTIALS[kind]}concurrency = {concurrency}\n"
            f'rates = "{ROOT}/rates/{kind}.csv"\n'
            + (f'rate_limit = "{limit}"\n' if limit else ""))
    path = folder / "config.toml"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def ledger_time(entry: dict[str, object]) -> float:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


async def run_and_read_texts(folder: Path, campaign: Path,
                             providers: tuple[str, ...]) -> tuple[RunOutcome, Config,
                                                                  dict[str, str]]:
    """Run *campaign* against a fresh external sandbox serving only *providers*: the outcome,
    the config, and each recipient's text as the sandbox's ledger has it (by digits)."""
    with external_sandbox(folder) as sandbox:
        config = load_config(run_config(folder, sandbox.url, providers=providers))
        outcome = await run_campaign(config, load_campaign(campaign))
        entries = sandbox.entries()
    return outcome, config, {digits(str(e["recipient"])): str(e["text"]) for e in entries}
