"""Benchmark: the daily asset sync of the sandbox's default universe against the local stack.

Measures the first sync (empty table), a no-change sync, and a change sync
(50 listings, 30 delistings, 5 reactivations, 2 renames): wall time, Alpaca
requests (from the sandbox's own stats), DynamoDB write requests, and the peak
RSS of the process running the sync. Each sync runs in a fresh process, like a
run launched by Dagster. Then the whole-process time of a no-change sync through
`dagster job execute` (what a launched run costs, start-up included), against
the time to import the code location alone, in the same run.

    python -m benchmarks.asset_sync            # prints a markdown table
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from signal9_devstack.local import stack
from signal9_devstack.sandbox.churn import churn
from signal9_devstack.sandbox.universe import build_universe


def one_sync() -> None:
    """Child process: run asset_sync_job once, print its figures as JSON."""
    from signal9_pipeline.definitions import defs

    started = time.monotonic()
    result = defs.resolve_job_def("asset_sync_job").execute_in_process(raise_on_error=False)
    wall = time.monotonic() - started
    table = result.asset_materializations_for_node("assets_table")[0].metadata
    print(json.dumps({"success": result.success, "wall_s": round(wall, 2),
                      "write_requests": table["write_requests"].value,
                      "counts": {k: table[k].value
                                 for k in ("new", "updated", "deactivated", "reactivated", "renamed", "unchanged")},
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def run_sync(env: dict[str, str]) -> dict:
    sandbox = env["SIGNAL9_SANDBOX_URL"]
    requests.post(f"{sandbox}/_sandbox/reset", timeout=10)
    done = subprocess.run([sys.executable, "-m", "benchmarks.asset_sync", "--one-sync"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["api_requests"] = len(requests.get(f"{sandbox}/_sandbox/stats", timeout=10).json()["requests"])
    return figures


def whole_process_s(env: dict[str, str], argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return round(time.monotonic() - started, 2)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signal9-bench-"))
    env = stack.up(home)  # Alpaca's real limit: 200 requests/min
    try:
        universe = build_universe(0)
        rows = [("first sync (empty table)", run_sync(env)), ("no-change sync", run_sync(env))]
        rng = random.Random(7)
        prep = churn(universe, rng, delistings=10)
        requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=prep.universe, timeout=60)
        run_sync(env)
        inactive_present = [s for s in prep.delisted if any(a["symbol"] == s for a in prep.universe)]
        day = churn(prep.universe, rng, listings=50, delistings=30, reactivations=5, renames=2,
                    reactivate_from=inactive_present)
        requests.put(f"{env['SIGNAL9_SANDBOX_URL']}/_sandbox/universe", json=day.universe, timeout=60)
        rows.append(("change sync (+50 -30 5 react. 2 ren.)", run_sync(env)))
        dagster = str(Path(sys.executable).with_name("dagster"))
        cli = whole_process_s({**env, "DAGSTER_HOME": str(home / "dagster")},
                              [dagster, "job", "execute", "-m", "signal9_pipeline.definitions", "-j", "asset_sync_job"])
        imports = whole_process_s(env, [sys.executable, "-c", "import signal9_pipeline.definitions"])
    finally:
        stack.down(home)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"command: python -m benchmarks.asset_sync")
    print("| sync | wall (s) | Alpaca requests | DynamoDB write requests | peak RSS (MB) | changes |")
    print("|---|---|---|---|---|---|")
    for name, f in rows:
        changes = ", ".join(f"{k} {v}" for k, v in f["counts"].items() if v and k != "unchanged") or "none"
        print(f"| {name} | {f['wall_s']} | {f['api_requests']} | {f['write_requests']} | {f['peak_rss_mb']} "
              f"| {changes} |")
    print(f"\nno-change sync through `dagster job execute`, whole process: {cli} s; importing the code location "
          f"alone: {imports} s")


if __name__ == "__main__":
    one_sync() if "--one-sync" in sys.argv else main()
