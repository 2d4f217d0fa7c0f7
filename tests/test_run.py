"""`dispatch run` against a sandbox in its own process: once per recipient, whatever happens."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from bench.generate import generate
from tests.helpers import ROOT, children_of, dispatch, wait_gone
from tests.run_fixtures import digits, external_sandbox, ledger_time, run_config

EXAMPLE = ROOT / "campaigns/spring-sale/campaign.toml"
IDEMPOTENT_OR_LOOKUP = {"smsvoip", "skytelecom", "voipex"}
SENT = {"accepted", "delivered", "undelivered"}
"""Sent states: the run polls delivery while it sends, so some have their report already."""


def final_rows(db: Path) -> dict[str, tuple[str, str]]:
    """Valid recipients' (state, provider) by E.164 digits."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT phone, state, provider FROM messages WHERE state NOT IN "
                            "('rejected', 'skipped')").fetchall()
    return {digits(phone): (state, provider) for phone, state, provider in rows}


def sent_counts(entries: list[dict[str, object]]) -> Counter[str]:
    return Counter(digits(str(e["recipient"])) for e in entries)


def assert_once_or_reported(db: Path, entries: list[dict[str, object]]) -> None:
    """Every valid recipient was sent exactly once where the provider has keys or logs; any
    other was sent once or is reported unknown; nothing is left pending."""
    rows, sent = final_rows(db), sent_counts(entries)
    assert set(sent) <= set(rows)
    for phone, (state, provider) in rows.items():
        assert state != "pending", phone
        if state == "unknown":
            assert provider not in IDEMPOTENT_OR_LOOKUP, (phone, provider)
            assert sent[phone] <= 1, phone
        else:
            assert state in SENT and sent[phone] == 1, (phone, state, sent[phone])


def test_example_campaign_runs_end_to_end(tmp_path: Path) -> None:
    """Every valid recipient of the shipped example gets exactly one message; status and
    report agree with the sandbox's ledger."""
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(EXAMPLE), "--config", str(config))
        assert result.returncode == 0, result.stderr
        entries = sandbox.entries()
    rows = final_rows(tmp_path / "dispatch.db")
    assert len(rows) == 981 and all(state in SENT for state, _ in rows.values())
    assert sent_counts(entries) == Counter(rows.keys())
    status = json.loads(dispatch("status", str(EXAMPLE), "--config", str(config),
                                 "--json").stdout)
    states = status["states"]
    assert sum(states.get(s, 0) for s in SENT) == 981
    assert (states["rejected"], states["skipped"]) == (16, 4)
    report = dispatch("report", "spring-sale", "--config", str(config))
    lines = list(csv.DictReader(io.StringIO(report.stdout)))
    assert len(lines) == 1001
    accepted = [r for r in lines if r["state"] in SENT]
    assert all(r["provider_message_id"] and r["cost"] for r in accepted)
    assert {r["reason"].split(":")[0] for r in lines if r["state"] == "rejected"} >= {
        "invalid_number", "no_route", "too_long"}


def test_a_provider_refusing_the_account_is_left_out_and_its_messages_fail_over(
        tmp_path: Path) -> None:
    """A suspended Telekom fails preflight; its Slovak and Czech messages go the next way."""
    with external_sandbox(tmp_path) as sandbox:
        httpx.post(f"{sandbox.url}/_sandbox/suspend/telekom")
        config = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(EXAMPLE), "--config", str(config))
        assert result.returncode == 0, result.stderr
        entries = sandbox.entries()
    assert "left out telekom" in result.stdout
    assert not any(e["provider"] == "telekom" for e in entries)
    rows = final_rows(tmp_path / "dispatch.db")
    assert all(state in SENT and provider != "telekom" for state, provider in rows.values())
    assert sent_counts(entries) == Counter(rows.keys())


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(("smsvoip:throttle_every=4,retry_after_s=0.2",
                      "skytelecom:throttle_every=9,retry_after_s=0.1"), id="429-retry-after"),
        pytest.param(("skytelecom:error_every=5,error_status=503",
                      "voipex:error_every=6,error_status=503"), id="503-backoff"),
        pytest.param(("smsvoip:drop_after_accept_every=5", "skytelecom:drop_after_accept_every=7",
                      "voipex:drop_after_accept_every=6"), id="dropped-then-settled"),
        pytest.param(("telekom:drop_after_accept_every=10",
                      "skynoo:error_every=3,error_status=500"), id="unknown-reported"),
    ],
)
def test_faults_never_lose_or_double_a_message(tmp_path: Path, faults: tuple[str, ...]) -> None:
    """Throttles, 503s and lost answers end with one message per recipient, or a reported
    unknown where the provider can neither dedupe nor look up."""
    with external_sandbox(tmp_path, *faults) as sandbox:
        config = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(EXAMPLE), "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert_once_or_reported(tmp_path / "dispatch.db", sandbox.entries())


def test_budget_stops_the_run_before_it_passes_max_cost(tmp_path: Path) -> None:
    """A run stops (exit 3) before the spend would pass max_cost, and says how to resume."""
    campaign = tmp_path / "campaign.toml"
    text = EXAMPLE.read_text().replace('recipients = "recipients.csv"',
                                       f'recipients = "{EXAMPLE.parent}/recipients.csv"')
    text = text.replace('opt_out = "opt-out.txt"', f'opt_out = "{EXAMPLE.parent}/opt-out.txt"')
    campaign.write_text(text.replace("max_segments = 4", "max_segments = 4\nmax_cost = 5"))
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(campaign), "--config", str(config))
        entries = sandbox.entries()
    assert result.returncode == 3
    assert "stopped (budget)" in result.stderr and "dispatch run" in result.stderr
    spent = sum(float(str(e["price"])) * (0.92 if e["currency"] == "USD" else 1)
                for e in entries)
    assert 4.5 < spent <= 5


@pytest.mark.parametrize("to_group", [
    pytest.param(False, id="sigterm-to-the-run"),
    pytest.param(True, id="sigint-to-its-process-group"),
])
def test_a_signal_finishes_in_flight_and_a_rerun_completes(tmp_path: Path,
                                                            to_group: bool) -> None:
    """SIGTERM to the run, or SIGINT to its process group as a terminal's Ctrl-C sends it,
    stops a slow run with exit 3 and nothing left ``sending``: the checkpoint process, in a
    session of its own, is not signalled and takes the last flush. Running the same command
    again finishes the campaign."""
    with external_sandbox(tmp_path) as sandbox:
        slow = run_config(tmp_path, sandbox.url, rate_limits=dict.fromkeys(
            ("skytelecom", "smsvoip", "voipex", "telekom", "skynoo"), "10/s"))
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(EXAMPLE),
                                 "--config", str(slow)], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=to_group)
        deadline = time.monotonic() + 60
        while sandbox.count() < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        if to_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 3, err
        assert "stopped (interrupted)" in err
        with sqlite3.connect(tmp_path / "dispatch.db") as conn:
            states = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
        assert "sending" not in states, states
        sent_before = len(sandbox.entries())
        assert 50 <= sent_before < 980
        fast = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(EXAMPLE), "--config", str(fast))
        assert result.returncode == 0, result.stderr
        assert_once_or_reported(tmp_path / "dispatch.db", sandbox.entries())


@pytest.mark.parametrize("kill_at", [
    pytest.param("planning", id="during-planning"),
    pytest.param(150, id="early-dispatch"),
    pytest.param(1200, id="mid-dispatch"),
    pytest.param(2000, id="late-dispatch"),
])
def test_sigkill_at_any_point_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path, kill_at: str | int) -> None:
    """A real `dispatch run` killed with SIGKILL, then run again to completion: every valid
    recipient got one message where the provider dedupes or keeps logs, the rest one message
    or a reported unknown, and nobody was lost."""
    folder = tmp_path / "c"
    generate(3000, 11, 0.02, "SK", folder, "crash")
    if kill_at == "planning":
        with (folder / "recipients.csv").open("a") as f:
            f.writelines("12345,Nobody,Hi,\", nothing\",X\n" for _ in range(60000))
    campaign = folder / "campaign.toml"
    with external_sandbox(tmp_path) as sandbox:
        config = run_config(tmp_path, sandbox.url, concurrency=16)
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(campaign),
                                 "--config", str(config)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = tmp_path / "dispatch.db"
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            if kill_at == "planning":
                if _planned_through(db) > 0:
                    break
            elif sandbox.count() >= int(kill_at):
                break
            time.sleep(0.005)
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_with = sandbox.count()
        if kill_at != "planning":
            assert children, "the run must have started its checkpoint writer"
        assert not wait_gone(children), "a child process outlived the killed run"
        result = dispatch("run", str(campaign), "--config", str(config), timeout=180)
        assert result.returncode == 0, result.stderr
        entries = sandbox.entries()
    if kill_at != "planning":
        assert killed_with < len(entries), "the first run must be killed before the end"
    assert_once_or_reported(db, entries)
    assert len(final_rows(db)) > 2800


def _planned_through(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            row = conn.execute("SELECT planned_through FROM campaigns").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def test_rate_limits_hold_in_every_window_at_full_speed(tmp_path: Path) -> None:
    """With the sandbox enforcing the configured limits: no violation, and the busiest
    providers run within 10% of their limit."""
    limits = {"skytelecom": "50/s", "voipex": "20/s", "telekom": "20/s", "skynoo": "20/s",
              "smsvoip": "120/min"}
    enforce = [f"{k}:rate_limit={v.split('/')[0]}/{1 if v.endswith('/s') else 60}"
               for k, v in limits.items()]
    with external_sandbox(tmp_path, *enforce) as sandbox:
        config = run_config(tmp_path, sandbox.url, rate_limits=limits, concurrency=16)
        result = dispatch("run", str(EXAMPLE), "--config", str(config))
        assert result.returncode == 0, result.stderr
        violations = httpx.get(f"{sandbox.url}/_sandbox/violations").json()
        entries = sandbox.entries()
    assert violations.get("count", len(violations.get("violations", []))) == 0, violations
    for provider, per_s in (("skytelecom", 50), ("voipex", 20)):
        times = sorted(ledger_time(e) for e in entries if e["provider"] == provider)
        whole_s = int(times[-1] - times[0])
        assert whole_s >= 3, "the lane must be busy for several windows"
        achieved = sum(t < times[0] + whole_s for t in times) / whole_s
        assert 0.9 * per_s <= achieved <= per_s, (provider, achieved)


def test_dlr_polls_delivery_after_a_run_without_polling(tmp_path: Path) -> None:
    """`dispatch run --no-dlr` leaves messages accepted; `dispatch dlr` then reads the final
    state from every provider that can be asked, and `status` shows it."""
    with external_sandbox(tmp_path, "telekom:undelivered_share=1.0") as sandbox:
        config = run_config(tmp_path, sandbox.url)
        result = dispatch("run", str(EXAMPLE), "--config", str(config), "--no-dlr")
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while True:
            polled = dispatch("dlr", str(EXAMPLE), "--config", str(config), "--json")
            assert polled.returncode == 0, polled.stderr
            summary = json.loads(polled.stdout)
            states = {state for state, provider in final_rows(tmp_path / "dispatch.db").values()
                      if provider in ("telekom", "skynoo")}
            if "accepted" not in states or time.monotonic() > deadline:
                break
        status = json.loads(dispatch("status", str(EXAMPLE), "--config", str(config),
                                     "--json").stdout)
    assert summary["asked"] > 0
    rows = final_rows(tmp_path / "dispatch.db")
    by_provider: dict[str, Counter[str]] = {}
    for state, provider in rows.values():
        by_provider.setdefault(provider, Counter())[state] += 1
    assert set(by_provider["telekom"]) == {"undelivered"}
    assert set(by_provider["skynoo"]) == {"delivered"}
    assert set(by_provider["smsvoip"]) == {"accepted"}
    assert status["states"]["undelivered"] == by_provider["telekom"]["undelivered"]
