"""Plan a generated campaign into a fresh SQLite file and print rows/s, µs per stage, peak RSS.

    python bench/plan.py --rows 1000000 --workers 1
    python bench/plan.py --rows 1000000 --workers 2
    python bench/plan.py --rows 1000000 --workers 2 --small 0 --repeat 5

Each size runs in a child process of its own, so that its peak RSS is its own; the file is
generated once per size, outside the timing, and each run plans it into a fresh database.
Stage timings come from a separate in-process pass over the first ``--stage-rows`` rows (no
store), since timing every row inside the real run would slow it down. The last line
printed is one JSON object with ``rows``, ``seconds``, ``rows_per_s``, ``peak_rss_mb`` (the
largest size) and a ``runs`` list with every run. With ``--repeat N`` the largest size is
planned N times, and its figures are the median run's; on a shared machine consecutive runs
differ by tens of percent, so every run's seconds are printed and kept (``seconds_runs``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_plan_config(folder: Path) -> None:
    """The shipped ``config.toml`` in *folder*, its database there and its static rate
    tables where they are shipped."""
    (folder / "config.toml").write_text(
        (ROOT / "config.toml").read_text()
        .replace('database = "dispatch.db"', f'database = "{folder / "plan.db"}"')
        .replace('rates = "rates/', f'rates = "{ROOT}/rates/'))


def one_run(rows: int, workers: int, folder: Path) -> dict[str, object]:
    """Plan the campaign generated in *folder* into a fresh database there, in this process;
    its figures for the parent."""
    import anyio

    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.plan.planner import plan_campaign
    from engine.store.sqlite.store import Store

    for old in folder.glob("plan.db*"):
        old.unlink()
    config = load_config(folder / "config.toml")
    campaign = load_campaign(folder / "campaign.toml")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def go() -> object:
        async with Store.open(config.database) as store:
            return await plan_campaign(config, campaign, store, workers=workers)

    t0 = time.perf_counter()
    summary = anyio.run(go)
    seconds = time.perf_counter() - t0
    counts = summary.counts  # type: ignore[attr-defined]
    return {
        "rows": rows,
        "workers": workers,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "valid": counts.valid,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "worker_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "rss_before_plan_mb": round(base_rss, 1),
        "db_mb": round((folder / "plan.db").stat().st_size / 2**20, 1),
    }


def stage_costs(rows: int) -> dict[str, float]:
    """µs per row of each planning stage, over the first *rows* rows of a generated file."""
    from bench.generate import generate
    from engine.campaign import load_campaign
    from engine.config import load_config
    from engine.phone import normalise
    from engine.plan.planner import campaign_providers, route_table
    from engine.plan.recipients import RecipientsFile
    from engine.segments import measure

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(rows, 42, 0.02, "SK", folder, "stages")
        config = load_config(ROOT / "config.toml")
        campaign = load_campaign(folder / "campaign.toml")
        table = route_table(config, campaign_providers(config, campaign))
        t = time.perf_counter()
        with RecipientsFile(campaign.recipients, campaign.phone_column) as rf:
            data = [r for r in rf.rows() if r.fields is not None]
            template = campaign.message.bind(rf.header, campaign.defaults)
            idx = rf.phone_index
        csv_s = time.perf_counter() - t
        t = time.perf_counter()
        numbers = [normalise(r.fields[idx].strip(), "SK") for r in data]  # type: ignore[index]
        phone_s = time.perf_counter() - t
        t = time.perf_counter()
        texts = [template.render(r.fields)[0] for r in data]  # type: ignore[arg-type]
        render_s = time.perf_counter() - t
        t = time.perf_counter()
        for text in texts:
            measure(text)
        seg_s = time.perf_counter() - t
        t = time.perf_counter()
        for n in numbers:
            if n:
                table.lookup(n[0][1:])
        route_s = time.perf_counter() - t
    n = len(data)
    return {
        k: round(v / n * 1e6, 2)
        for k, v in (
            ("csv", csv_s),
            ("phone", phone_s),
            ("render", render_s),
            ("segments", seg_s),
            ("route", route_s),
        )
    }


def child_run(rows: int, workers: int, folder: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), "--rows", str(rows),
         "--workers", str(workers)],
        capture_output=True, text=True, check=True, timeout=900)
    run: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return run


def main() -> int:
    p = argparse.ArgumentParser(description="bench the planner")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument(
        "--small",
        type=int,
        default=100_000,
        help="the second, smaller size, to show memory is flat (0 to skip)",
    )
    p.add_argument("--workers", type=int, default=1, help="planning processes (1 = in-process)")
    p.add_argument("--stage-rows", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=1, help="runs of the largest size (median)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_run(args.rows, args.workers, args.child)))
        return 0

    stages = stage_costs(args.stage_rows)
    print(
        f"µs per row by stage (first {args.stage_rows:,} rows, one process): "
        + ", ".join(f"{k} {v}" for k, v in stages.items())
    )
    from bench.generate import generate

    runs = []
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-plan-") as tmp:
        sizes = [r for r in (args.small, args.rows) if r]
        for rows in sizes:
            folder = Path(tmp) / str(rows)
            generate(rows, 42, 0.02, "SK", folder, f"bench-{rows}")
            write_plan_config(folder)
            for _ in range(max(1, args.repeat) if rows == sizes[-1] else 1):
                run = child_run(rows, args.workers, folder)
                runs.append(run)
                print(f"{rows:>9,} rows, {args.workers} worker(s): {run['seconds']:.1f} s, "
                      f"{run['rows_per_s']:,} rows/s, peak RSS {run['peak_rss_mb']} MB, "
                      f"db {run['db_mb']} MB")
    largest = [r for r in runs if r["rows"] == runs[-1]["rows"]]
    big = sorted(largest, key=lambda r: float(r["seconds"]))[len(largest) // 2]
    if len(largest) > 1:
        each = ", ".join(f"{float(r['seconds']):.1f}" for r in largest)
        print(f"median of {len(largest)}: {big['seconds']:.1f} s (runs {each})")
    result = {
        "rows": big["rows"],
        "seconds": big["seconds"],
        "rows_per_s": big["rows_per_s"],
        "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in largest),
        "workers": args.workers,
        "us_per_stage": stages,
        "seconds_runs": [r["seconds"] for r in largest],
        "runs": runs,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
