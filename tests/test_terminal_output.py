"""What a person reads: tables within 80 columns, the run's start and end, progress in a
terminal, log lines. The CLI runs as a subprocess against a sandbox on 127.0.0.1."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pyte
import pytest
from rich.cells import cell_len

from engine.logs import WrappingConsoleRenderer
from tests.helpers import ROOT, dispatch, write_campaign
from tests.run_fixtures import external_sandbox, run_config

EXAMPLE: Final = ROOT / "campaigns" / "spring-sale" / "campaign.toml"
PROVIDERS: Final = ("skytelecom", "smsvoip", "voipex", "telekom", "skynoo")
WIDTH: Final = 80
NARROW: Final = {"COLUMNS": str(WIDTH)}
RUN_LIMITS: Final = {kind: "300/s" for kind in PROVIDERS}
"""Slow enough that a run is shown in progress for a while, fast enough for a test."""
PTY_DEADLINE_S: Final = 120.0
ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def lines_fit(text: str) -> None:
    too_wide = [line for line in text.splitlines() if cell_len(line) > WIDTH]
    assert not too_wide, too_wide
    assert "…" not in text


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """The example campaign run once through the CLI at 80 columns: config, stdout, stderr;
    its sandbox serves the module's tests."""
    folder = tmp_path_factory.mktemp("example")
    with external_sandbox(folder) as sandbox:
        config = run_config(folder, sandbox.url, rate_limits=RUN_LIMITS)
        done = dispatch("run", str(EXAMPLE), "--config", str(config), "--no-dlr", env=NARROW)
        assert done.returncode == 0, done.stderr
        yield config, done.stdout, done.stderr


def plan_of(config: Path) -> dict[str, Any]:
    """``dispatch plan --json`` of the example (after its run: the same plan, nothing sent)."""
    done = dispatch("plan", str(EXAMPLE), "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_every_table_fits_80_columns_with_numbers_and_names_whole(
        example_run: tuple[Path, str, str]) -> None:
    """status, plan, rates show, check and the run's summary fit 80 columns, nothing cut."""
    config, run_out, _ = example_run
    lines_fit(run_out)
    status = dispatch("status", str(EXAMPLE), "--config", str(config), env=NARROW)
    assert status.returncode == 0, status.stderr
    lines_fit(status.stdout)
    data = json.loads(dispatch("status", str(EXAMPLE), "--config", str(config),
                               "--json").stdout)
    for name, group in data["delivery"]["by_provider"].items():
        row = next(line for line in status.stdout.splitlines()
                   if line.startswith(f"│ {name} ") and group["estimated_cost"] in line)
        assert group["actual_cost"] in row
    for name, n in data["by_provider"].items():
        assert re.search(rf"│ {name} +│ +{n['accepted']:,} │", status.stdout)

    plan = dispatch("plan", str(EXAMPLE), "--config", str(config), env=NARROW)
    lines_fit(plan.stdout)
    plan_json = json.loads(dispatch("plan", str(EXAMPLE), "--config", str(config),
                                    "--json").stdout)
    for name, group in plan_json["by_provider"].items():
        assert re.search(rf"│ {name} +│ +{group['messages']:,} │ +{group['segments']:,} │ +"
                         rf"{re.escape(group['cost'])} │", plan.stdout)

    rates = dispatch("rates", "show", "--config", str(config), env=NARROW)
    lines_fit(rates.stdout)
    for row in json.loads(dispatch("rates", "show", "--config", str(config),
                                   "--json").stdout)["destinations"]:
        assert re.search(rf"│ {row['country']} +│ \+{row['prefix']} +│ "
                         rf"{row['cheapest']['provider']} .*│ +{row['cheapest']['price']} │",
                         rates.stdout)

    check = dispatch("check", "--config", str(config), env=NARROW)
    lines_fit(check.stdout)
    for name in PROVIDERS:
        assert re.search(rf"│ {name} +│ yes ", check.stdout)


def test_run_says_what_the_plan_holds_and_how_to_list_it(
        example_run: tuple[Path, str, str]) -> None:
    """Before sending, the run prints valid, rejected and skipped rows with reasons counted,
    and the command that lists them, which lists exactly those rows."""
    config, out, _ = example_run
    plan = plan_of(config)
    rejected, skipped = sum(plan["rejected"].values()), sum(plan["skipped"].values())
    assert rejected and skipped
    head = " ".join(out.split("Run of")[0].split())
    assert f"valid {plan['valid']:,}, rejected {rejected:,}, skipped {skipped:,}" in head
    for reason, n in (*plan["rejected"].items(), *plan["skipped"].items()):
        assert f"{reason} {n:,}" in head
    assert "dispatch report spring-sale --state rejected" in head
    for state, n in (("rejected", rejected), ("skipped", skipped)):
        listed = dispatch("report", "spring-sale", "--config", str(config), "--state", state)
        rows = list(csv.DictReader(io.StringIO(listed.stdout)))
        assert len(rows) == n and {row["state"] for row in rows} == {state}


def test_logs_of_a_normal_run_hold_no_per_command_noise(
        example_run: tuple[Path, str, str]) -> None:
    """A run that goes well logs its progress and its end at info, nothing about logins or
    the built-in sandbox."""
    _, _, err = example_run
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "run.finished" in events
    assert not [e for e in events if e.startswith(("telekom.", "sandbox.", "rates."))], events


def test_campaign_with_no_valid_row_stops_before_sending_with_exit_2(tmp_path: Path) -> None:
    """Every row rejected: exit 2, naming the campaign file and the reason; nothing billed."""
    campaign = write_campaign(tmp_path, "phone,name\n+421901234567,A\n+421901234568,B\n",
                              message="")
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url)
        done = dispatch("run", str(campaign), "--config", str(config), "--no-dlr")
        billed = sandbox.count()
    assert done.returncode == 2
    assert str(campaign) in done.stderr and "empty_message 2" in done.stderr
    assert "Traceback" not in done.stderr
    assert billed == 0


def run_in_terminal(args: list[str], *, cwd: Path = ROOT,
                    rows: int = 300) -> tuple[int, bytes]:
    """Run ``python -m engine ARGS`` on a pseudo-terminal WIDTH columns wide: exit code and
    every byte it wrote to the terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, WIDTH, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=cwd,
                            stdin=follower, stdout=follower, stderr=follower,
                            env={**env, "TERM": "xterm-256color"})
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + PTY_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process and its terminal are gone
                break
            if not chunk:
                break
            output += chunk
        return proc.wait(timeout=10), bytes(output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)


def test_progress_shows_done_of_total_and_leaves_no_frame_on_screen(tmp_path: Path) -> None:
    """In a terminal the run shows done of total, rate, cost and ETA while it sends, and once
    it ends the screen holds the summary and no progress line."""
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits=RUN_LIMITS)
        code, raw = run_in_terminal(["run", str(EXAMPLE), "--config", str(config), "--no-dlr"])
        valid = plan_of(config)["valid"]
    assert code == 0, raw.decode(errors="replace")
    plain = ANSI.sub("", raw.decode(errors="replace"))
    assert f"{valid:,} of {valid:,}" in plain
    assert "msg/s" in plain and "EUR" in plain and "ETA" in plain
    screen = pyte.Screen(WIDTH, 300)
    pyte.ByteStream(screen).feed(raw)
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert not [line for line in shown if "msg/s" in line or re.search(r"\d of \d", line)], shown
    assert any(line.startswith("Run of spring-sale") for line in shown), shown
    assert any(f"valid {valid:,}, rejected" in line for line in shown), shown


def test_console_log_lines_wrap_between_words_only() -> None:
    """A console log line longer than the terminal wraps at spaces: every word whole."""
    render = WrappingConsoleRenderer(colors=False, columns=40)
    event = {"event": "run.provider_left_out", "level": "warning", "timestamp": "09:50:58",
             "provider": "skytelecom",
             "reason": "API key or account refused (HTTP 401: unauthorized_missing_key)"}
    text = render(None, "warning", dict(event))
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    words = text.split()
    assert "provider=skytelecom" in words and "unauthorized_missing_key)'" in words
    assert words[:3] == ["09:50:58", "warning", "run.provider_left_out"]
