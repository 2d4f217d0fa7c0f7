"""Shared helpers for tests: run the real CLI, write small config and campaign files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dispatch(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m engine ARGS`` as a user would, and return what it did."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd or ROOT,
                          env=full_env, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


def write_config(folder: Path, *, extra: str = "", providers: str | None = None) -> Path:
    """A config whose rate tables are the shipped ones and whose database is in *folder*."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('database = "dispatch.db"', 'database = "dispatch.db"')
    text = text.replace('rates = "rates/', f'rates = "{ROOT}/rates/')
    if providers is not None:
        head = text[: text.index("[providers.")]
        text = head + providers
    path = folder / "config.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def write_campaign(folder: Path, csv_text: str, *, message: str = "Hi {name}, sale today!",
                   extra: str = "", name: str = "test", region: str = "SK") -> Path:
    (folder / "recipients.csv").write_text(csv_text, encoding="utf-8")
    path = folder / "campaign.toml"
    path.write_text(
        f'name = "{name}"\nrecipients = "recipients.csv"\ndefault_region = "{region}"\n'
        f'sender = "ACME"\nmessage = "{message}"\n{extra}', encoding="utf-8")
    return path


def children_of(pid: int) -> list[int]:
    """Processes whose parent is *pid* (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """Those of *pids* still alive after up to *timeout_s*."""
    deadline = time.monotonic() + timeout_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if alive(pid)]
        time.sleep(0.1)
    return pids
