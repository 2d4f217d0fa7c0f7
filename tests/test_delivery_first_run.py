"""Delivery reports from the built-in sandbox across commands: the README's first run shows
delivery, and a later `dispatch dlr` (another process) finds what an earlier run sent.

Real subprocesses of the CLI, real SQLite files, the sandbox over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tests.helpers import ROOT, dispatch, write_campaign, write_config

DLR_ATTEMPTS: Final = 5
"""`dispatch dlr` runs at most this many times while the sandbox still owes a decision."""


def fresh_copy(folder: Path) -> None:
    """The README's example as a user has it: campaign, config and rate tables."""
    shutil.copytree(ROOT / "campaigns" / "spring-sale", folder / "campaigns" / "spring-sale")
    shutil.copytree(ROOT / "rates", folder / "rates")
    shutil.copy(ROOT / "config.toml", folder / "config.toml")


def only_providers(folder: Path, *kinds: str) -> Path:
    """The shipped config (every provider on the built-in sandbox) with only *kinds*."""
    blocks = (ROOT / "config.toml").read_text(encoding="utf-8").split("\n\n")
    chosen = [b for b in blocks if b.startswith(tuple(f"[providers.{k}]" for k in kinds))]
    text = "\n\n".join(chosen).replace('rates = "rates/', f'rates = "{ROOT}/rates/')
    return write_config(folder, providers=text + "\n")


def example_rows(folder: Path, name: str, keep: Callable[[int, str], bool]) -> Path:
    """A campaign of the example's rows that *keep* (row number, phone) selects."""
    source = (ROOT / "campaigns" / "spring-sale" / "recipients.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(source)))
    out = io.StringIO()
    csv.writer(out).writerows([rows[0], *(r for n, r in enumerate(rows[1:]) if keep(n, r[0]))])
    return write_campaign(folder, out.getvalue(), message="{greeting} {first_name}{offer}",
                          name=name)


def delivery_status(folder: Path, name: str, config: Path) -> dict[str, Any]:
    result = dispatch("status", name, "--config", str(config), "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    delivery: dict[str, Any] = json.loads(result.stdout)["delivery"]
    return delivery


def outcomes(folder: Path) -> dict[tuple[str, str], str]:
    """(provider, provider message id) -> the delivery state dispatch stored."""
    with sqlite3.connect(folder / "dispatch.db") as conn:
        rows = conn.execute("SELECT provider, provider_message_id, delivery_state FROM messages"
                            " WHERE provider_message_id IS NOT NULL").fetchall()
    return {(p, m): s for p, m, s in rows}


def decisions(folder: Path) -> dict[tuple[str, str], str]:
    """(provider kind, message id) -> what the sandbox decided, from its state file."""
    with sqlite3.connect(folder / "dispatch.sandbox.db") as conn:
        rows = conn.execute("SELECT kind, id, delivered FROM messages").fetchall()
    return {(k, i): "delivered" if d else "undelivered" for k, i, d in rows}


def dlr_until_settled(folder: Path, campaign: str, config: str = "config.toml") -> None:
    """`dispatch dlr --json` until nothing awaits (at most DLR_ATTEMPTS runs)."""
    logs: list[str] = []
    for _ in range(DLR_ATTEMPTS):
        result = dispatch("dlr", campaign, "--config", config, "--json", cwd=folder)
        assert result.returncode == 0, result.stderr
        logs.append(result.stdout + result.stderr)
        if not any(json.loads(result.stdout)["awaiting"].values()):
            return
        time.sleep(1.0)  # the sandbox decides a message 1 s after billing it
    raise AssertionError("messages still await a report after dispatch dlr:\n" + "\n".join(logs))


def test_first_run_then_status_show_delivered_and_undelivered(tmp_path: Path) -> None:
    """The README's first command, on a fresh copy, ends with delivery figures of both
    outcomes; status shows them, and dlr leaves every sandbox decision stored."""
    fresh_copy(tmp_path)
    run = dispatch("run", "campaigns/spring-sale/campaign.toml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    summary = run.stdout.replace("\n  ", " ")
    assert "delivery so far: delivered " in summary
    assert (tmp_path / "dispatch.sandbox.db").is_file()

    status = dispatch("status", "spring-sale", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    total = json.loads(status.stdout)["delivery"]["total"]
    assert total["delivered"] > 0 and total["undelivered"] > 0
    assert total["delivered"] > 10 * total["undelivered"]  # a few percent fail, not more

    dlr_until_settled(tmp_path, "spring-sale")
    stored, decided = outcomes(tmp_path), decisions(tmp_path)
    assert stored == {key: decided[key] for key in stored}


def test_polled_providers_outcomes_reach_a_later_dlr(tmp_path: Path) -> None:
    """Sky Telecom and Skynoo are only polled: a run that does not poll leaves their messages
    awaiting, and `dispatch dlr` in another process gets each one's outcome from the sandbox
    state the run left."""
    config = only_providers(tmp_path, "skytelecom", "skynoo")
    campaign = example_rows(tmp_path, "polled", lambda n, phone: n < 300)
    run = dispatch("run", str(campaign), "--config", str(config), "--no-dlr", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    before = delivery_status(tmp_path, "polled", config)
    assert before["total"]["awaiting"] == before["total"]["sent"] > 0
    assert set(before["by_provider"]) == {"skytelecom", "skynoo"}

    dlr_until_settled(tmp_path, "polled", str(config))
    stored, decided = outcomes(tmp_path), decisions(tmp_path)
    assert len(stored) == before["total"]["sent"]
    assert stored == {key: decided[key] for key in stored}
    assert {"delivered", "undelivered"} <= set(stored.values())


def test_webhook_reports_owed_reach_a_later_dlr(tmp_path: Path) -> None:
    """SMS & Voice Platform only pushes reports: those still owed when a run ends are posted
    by the sandbox `dispatch dlr` starts from the state file, to the receiver dlr opens."""
    config = only_providers(tmp_path, "smsvoip")
    campaign = example_rows(tmp_path, "pushed", lambda n, phone: phone.startswith("+44"))
    run = dispatch("run", str(campaign), "--config", str(config), "--no-dlr", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    after_run = delivery_status(tmp_path, "pushed", config)["total"]
    assert after_run["sent"] > 0 and after_run["awaiting"] > 0

    dlr_until_settled(tmp_path, "pushed", str(config))
    stored, decided = outcomes(tmp_path), decisions(tmp_path)
    assert len(stored) == after_run["sent"] and stored == {key: decided[key] for key in stored}


def test_a_broken_sandbox_state_file_stops_before_sending(tmp_path: Path) -> None:
    """A state file that is not SQLite stops the run with exit 2 and one line naming it."""
    fresh_copy(tmp_path)
    (tmp_path / "dispatch.sandbox.db").write_bytes(b"not a database at all" * 100)
    run = dispatch("run", "campaigns/spring-sale/campaign.toml", cwd=tmp_path)
    assert run.returncode == 2
    assert "dispatch.sandbox.db" in run.stderr and "Traceback" not in run.stderr
    with sqlite3.connect(tmp_path / "dispatch.db") as conn:
        sent = conn.execute("SELECT count(*) FROM messages WHERE provider_message_id IS NOT "
                            "NULL").fetchone()[0]
    assert sent == 0
