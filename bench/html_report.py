"""Time `dispatch report --html` and weigh its file at 1,000 and 100,000 recipients (or --rows).

For each size: a generated campaign (``bench/generate.py``, seed 42, 2 % bad rows) is planned
into a fresh SQLite file, then outcomes are faked into it with SQL, as a run and its
delivery reports would leave them (97 % of the valid rows delivered, 2 % undelivered, 1 %
unknown; sends spread over an hour at the planned order, reports 1-60 s after). Then the
real command writes the page in a subprocess: the figure is its wall time, and the size of
the file. The last line is JSON.

    python bench/html_report.py [--rows 1000 100000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUN_TIMEOUT_S = 600
SEND_SPAN_S = 3600.0


def fake_outcomes(db: Path) -> None:
    """Turn every planned message into a sent one with an outcome, deterministically."""
    with sqlite3.connect(db) as conn:
        start = time.time() - 2 * SEND_SPAN_S
        total = conn.execute("SELECT max(line) FROM messages").fetchone()[0] or 1
        conn.execute(
            "UPDATE messages SET updated_at = ? + line * ? / ?, provider_message_id = "
            "'m' || line, actual_cost_nanos = cost_nanos, state = CASE "
            "WHEN line % 100 < 97 THEN 'delivered' WHEN line % 100 < 99 THEN 'undelivered' "
            "ELSE 'unknown' END WHERE state = 'pending'", (start, SEND_SPAN_S, total))
        conn.execute(
            "UPDATE messages SET delivered_at = updated_at + 1 + (line * 7919 % 60), "
            "delivery_state = 'delivered', delivery_status = 'DELIVRD' "
            "WHERE state = 'delivered'")
        conn.execute(
            "UPDATE messages SET delivery_state = 'undelivered', delivery_status = 'UNDELIV', "
            "delivery_reason = CASE line % 3 WHEN 0 THEN 'absent_subscriber' WHEN 1 THEN "
            "'blocked' ELSE 'expired' END WHERE state = 'undelivered'")
        conn.execute("UPDATE messages SET reason = 'timeout', detail = 'read timed out' "
                     "WHERE state = 'unknown'")


def one_size(rows: int, folder: Path) -> dict[str, object]:
    from bench.generate import generate
    from bench.plan import write_plan_config

    generate(rows, 42, 0.02, "SK", folder, f"html-{rows}")
    write_plan_config(folder)
    plan = subprocess.run([sys.executable, "-m", "engine", "plan", "campaign.toml", "--config",
                           "config.toml"], cwd=folder, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    if plan.returncode not in (0, 3):
        raise SystemExit(f"plan failed: {plan.stderr}")
    fake_outcomes(folder / "plan.db")
    out = folder / "report.html"
    t0 = time.perf_counter()
    report = subprocess.run([sys.executable, "-m", "engine", "report", f"html-{rows}",
                             "--config", "config.toml", "--html", str(out)], cwd=folder,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    seconds = time.perf_counter() - t0
    if report.returncode != 0:
        raise SystemExit(f"report failed: {report.stderr}")
    return {"rows": rows, "seconds": round(seconds, 2),
            "file_kb": round(out.stat().st_size / 1024), "stderr": report.stderr.strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000])
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="html-report-") as tmp:
            result = one_size(rows, Path(tmp))
        print(f"{rows:>9,} recipients: {result['seconds']} s to write, "
              f"{result['file_kb']:,} kB ({result['stderr']})", flush=True)
        results.append(result)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
