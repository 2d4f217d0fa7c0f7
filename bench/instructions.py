"""Instructions per message (or row) under callgrind: a measure of the code, not of the machine.

    python bench/instructions.py dispatch            # bare client and dispatch, Ir a message
    python bench/instructions.py dispatch --messages 1000
    python bench/instructions.py plan                # planning and writing, Ir a row

On a shared machine the wall-clock figures of ``bench/throughput.py`` and ``bench/plan.py``
move by 30-45% within minutes; the instructions a piece of work executes do not (planning's
repeat exactly, a dispatch run's within about 1%). Each figure is a larger run minus a
smaller one, divided by the messages or rows the larger one added, so that start-up and
imports cancel out.

``dispatch``: one sandbox (``python -m engine.sandbox``, 127.0.0.1 only); two generated
campaigns of N and 2N messages, each planned as ``bench/throughput.py`` plans; then that
script's own ``bare`` and ``dispatch`` phases (``--child``), each under callgrind. Every
thread of the phase's process is counted; the run's checkpoint writer is a process of its
own and is not. Delivery polling is off: under valgrind a run is ~50 times slower, so the
rounds that a real run of this size never reaches (the first at 30 s) would run many times.

``plan``: planning (CSV, numbers, text, segments, routes) of a generated file's first piece
and 4 more, and writing them (``PlanWriter.write``, one transaction each) into a fresh
database, against the first piece alone.

Needs ``valgrind``. Each run is bounded by ``--timeout`` seconds. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import CAMPAIGN, Sandbox, run_child  # noqa: E402

PLAN_ROWS: Final = 60_000
"""The generated file for ``plan``; only its first 5 pieces are read."""
PLAN_PIECES: Final = 4


def callgrind(args: list[str], timeout_s: float, log: Path) -> int:
    """Instructions executed by ``python ARGS`` under callgrind."""
    with log.open("w") as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, *args],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=out, timeout=timeout_s, check=False)
    text = log.read_text()
    match = re.search(r"Collected : (\d+)", text)
    if done.returncode != 0 or match is None:
        tail = "".join(text.splitlines(keepends=True)[-20:])
        raise SystemExit(f"python {' '.join(args)} failed under callgrind:\n{tail}")
    return int(match.group(1))


def dispatch(messages: int, timeout_s: float) -> dict[str, Any]:
    from bench.generate import generate
    from tests.run_fixtures import run_config

    counts: dict[str, dict[int, int]] = {"bare": {}, "dispatch": {}}
    with tempfile.TemporaryDirectory(prefix="dispatch-instructions-") as tmp:
        base = Path(tmp)
        with Sandbox(base, 0.0) as sandbox:
            for n in (messages, 2 * messages):
                folder = base / str(n)
                generate(n, 42, 0.0, "SK", folder, CAMPAIGN)
                run_config(folder, sandbox.url, concurrency=16)
                run_child(folder, "plan", timeout_s)
                for role, extra in (("bare", ["--concurrency", "16"]),
                                    ("dispatch", ["--no-delivery-poll"])):
                    counts[role][n] = callgrind(
                        [str(ROOT / "bench/throughput.py"), "--child", role, "--folder",
                         str(folder), "--phase-timeout", str(timeout_s), *extra],
                        timeout_s, folder / f"{role}.callgrind.log")
                    print(f"{role}, {n:,} messages: {counts[role][n]:,} instructions",
                          flush=True)
    per = {role: (c[2 * messages] - c[messages]) // messages for role, c in counts.items()}
    ratio = per["dispatch"] / per["bare"]
    print(f"instructions a message: bare {per['bare']:,}, dispatch {per['dispatch']:,} "
          f"({ratio:.3f} x bare)")
    return {"what": "dispatch", "messages": messages, "bare_ir_per_msg": per["bare"],
            "dispatch_ir_per_msg": per["dispatch"], "dispatch_over_bare": round(ratio, 3)}


def plan_child(folder: Path, pieces: int, write: bool) -> None:
    """Plan (and write) the first piece and then *pieces* more, under callgrind."""
    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.gc_policy import set_rare
    from engine.plan.planner import bind_message, campaign_providers, plan_context, route_table
    from engine.plan.recipients import RecipientsFile
    from engine.plan.rows import plan_piece
    from engine.store.sqlite.plan_writer import PlanWriter
    from engine.store.sqlite.store import SCHEMA

    config = load_config(folder / "config.toml")
    campaign = load_campaign(folder / "campaign.toml")
    routes = route_table(config, campaign_providers(config, campaign))
    with RecipientsFile(campaign.recipients, campaign.phone_column) as rf:
        ctx = plan_context(campaign, rf, bind_message(campaign, rf), routes)
        texts = [rf.text(p) for p in itertools.islice(rf.spans() or rf.chunks(), 1 + pieces)]
    set_rare()
    planned = [plan_piece(ctx, text, 0)[0] for text in texts]
    if write:
        import sqlite3

        db = folder / "write.db"
        with sqlite3.connect(db) as conn:
            conn.executescript(SCHEMA)
            conn.execute("INSERT INTO campaigns (id, name, fingerprint, path, currency, "
                         "created_at) VALUES (1, 'x', 'x', 'x', 'EUR', 0)")
        writer = PlanWriter(db, 1)
        for p in planned:
            writer.write(p.valid, p.not_sent, through=p.through)
        writer.close()
        db.unlink()
    rows = sum(len(p.valid) + len(p.not_sent) for p in planned[1:])
    (folder / "rows").write_text(str(rows))


def plan(timeout_s: float) -> dict[str, Any]:
    from bench.generate import generate
    from bench.plan import write_plan_config

    with tempfile.TemporaryDirectory(prefix="dispatch-instructions-") as tmp:
        folder = Path(tmp)
        generate(PLAN_ROWS, 42, 0.02, "SK", folder, "instructions")
        write_plan_config(folder)
        ir: dict[tuple[int, bool], int] = {}
        for pieces, write in itertools.product((0, PLAN_PIECES), (False, True)):
            ir[pieces, write] = callgrind(
                [__file__, "--plan-child", str(folder), "--pieces", str(pieces)]
                + (["--write"] if write else []), timeout_s, folder / "plan.callgrind.log")
        rows = int((folder / "rows").read_text())
    planning = (ir[PLAN_PIECES, False] - ir[0, False]) // rows
    writing = (ir[PLAN_PIECES, True] - ir[0, True]) // rows - planning
    print(f"instructions a row ({rows:,} rows in {PLAN_PIECES} pieces): planning {planning:,}, "
          f"writing {writing:,}")
    return {"what": "plan", "rows": rows, "plan_ir_per_row": planning,
            "write_ir_per_row": writing}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=("dispatch", "plan"))
    p.add_argument("--messages", type=int, default=2000, help="N for dispatch (and 2N)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds for each run")
    p.add_argument("--plan-child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--pieces", type=int, default=PLAN_PIECES, help=argparse.SUPPRESS)
    p.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plan_child:
        plan_child(args.plan_child, args.pieces, args.write)
        return 0
    if args.what is None:
        p.error("say what to measure: dispatch or plan")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: this bench counts instructions with "
                         "callgrind (apt install valgrind)")
    result = dispatch(args.messages, args.timeout) if args.what == "dispatch" else plan(
        args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
