"""Benchmark: OHLC bar backfills against the sandbox at Alpaca's 200 requests/min.

1. a 1Day backfill of the full listed universe (12,062 symbols) over 60 trading days, one run;
2. one 1Min day for 500 symbols;
3. one 1Min day for the whole listed universe (the 512 MB memory budget);
4. read_bars of one year of 1Min bars of one symbol (after loading that year), cold and cached.
Reports bars, requests, bars per request, the most requests in any 60 s window (from the sandbox's
own stats), the request rate while fetching, wall time, peak RSS, DynamoDB write requests, and the CPU
seconds the run's process, the sandbox and dynalite each used during it (the machine's cores are shared by
all three). Each backfill runs in a fresh process, like a run launched by Dagster.

    python -m benchmarks.ohlc_bars
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from signal9_devstack.local import stack
from signal9_pipeline.resources import metrics
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline_tests.support import max_in_any_window

LIMIT = 200


def one_backfill(timeframe: str, first: str, last: str, watchlist: str) -> None:
    """Child process: one single-run backfill; prints its figures as JSON."""
    from signal9_pipeline_tests.support import materialize_bars

    started = time.monotonic()
    result = materialize_bars(timeframe, first, last, watchlist)
    wall = time.monotonic() - started
    metadata = result.asset_materializations_for_node("ohlc_bars")[0].metadata
    print(json.dumps({"success": result.success, "wall_s": round(wall, 1),
                      **{k: metadata[k].value for k in ("bars_written", "requests_used", "bars_per_request",
                                                        "write_requests", "items_written", "largest_block_bytes",
                                                        "bars_pre_market", "bars_post_market", "bars_held_back")},
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def stack_cpu_s(home: Path) -> dict[str, float]:
    """CPU seconds (user + system) each local-stack service has used so far, from /proc (Linux)."""
    used = {}
    for name, service in json.loads((home / "stack.json").read_text()).items():
        fields = Path(f"/proc/{service['pid']}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def run(env: dict[str, str], home: Path, *args: str) -> dict:
    sandbox = env["SIGNAL9_SANDBOX_URL"]
    requests.post(f"{sandbox}/_sandbox/reset", timeout=10)
    before, children = stack_cpu_s(home), os.times()
    done = subprocess.run([sys.executable, "-m", "benchmarks.ohlc_bars", "--one", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=3600)
    after, finished = stack_cpu_s(home), os.times()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    stats = [r for r in requests.get(f"{sandbox}/_sandbox/stats", timeout=10).json()["requests"]
             if "/bars" in r["path"]]
    stamps = [r["t"] for r in stats]
    figures["max_in_60s"] = max_in_any_window(stamps)
    span = max(stamps) - min(stamps) if len(stamps) > 1 else 0
    figures["rate_per_min"] = round((len(stamps) - 1) / span * 60, 1) if span else 0
    figures["status_429"] = sum(r["status"] == 429 for r in stats)
    figures["cpu_run_s"] = round(finished.children_user + finished.children_system
                                 - children.children_user - children.children_system, 1)
    figures["cpu_sandbox_s"] = round(after["sandbox"] - before["sandbox"], 1)
    figures["cpu_dynalite_s"] = round(after["dynalite"] - before["dynalite"], 1)
    return figures


def time_reads() -> dict[str, tuple[int, float]]:
    """read_bars of the loaded year, first in a fresh process state (cold) and again (decoded days cached)."""
    from datetime import datetime

    from signal9_pipeline.market_data import read_bars

    figures = {}
    for name in ("cold", "cached"):
        started = time.perf_counter()
        bars = read_bars("SPY", "1Min", datetime(2024, 6, 5), datetime(2025, 6, 5))
        figures[name] = (len(bars), time.perf_counter() - started)
    return figures


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signal9-bench-bars-"))
    env = stack.up(home, rate_limit_per_minute=LIMIT)
    try:
        os.environ.update(env)
        subprocess.run([sys.executable, "-m", "signal9_devstack.local", "run"], env={**os.environ, **env},
                       capture_output=True, check=True, timeout=900)  # fills the assets table: the 1Day universe
        symbols = sorted(a["symbol"] for a in AlpacaResource.from_settings().list_assets(status="active")
                         if a["tradable"] and a["class"] == "us_equity")[:500]
        rows = [
            ("1Day, 12,062 symbols x 60 trading days", run(env, home, "1Day", "2024-03-01", "2024-05-28", "")),
            ("1Min, 500 symbols x 1 day", run(env, home, "1Min", "2024-06-03", "2024-06-03", ",".join(symbols))),
            ("1Min, 12,062 symbols x 1 day", run(env, home, "1Min", "2024-06-04", "2024-06-04", "all")),
            ("1Min, SPY x 1 year", run(env, home, "1Min", "2024-06-05", "2025-06-04", "SPY")),
        ]
        reads = time_reads()
    finally:
        metrics.flush()  # while the local CloudWatch still listens
        stack.down(home)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"sandbox and limiter at {LIMIT} requests/min; command: python -m benchmarks.ohlc_bars")
    print("| backfill | bars | pre/post-market bars | held back | requests | bars/request | max requests in 60 s | "
          "rate while fetching (/min) | 429s | wall (s) | peak RSS (MB) | items | bars/item | largest block (bytes) | "
          "DynamoDB write requests | CPU s: run / sandbox / dynalite |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, f in rows:
        print(f"| {name} | {f['bars_written']} | {f['bars_pre_market']}/{f['bars_post_market']} | "
              f"{f['bars_held_back']} | {f['requests_used']} | {f['bars_per_request']} | {f['max_in_60s']} | "
              f"{f['rate_per_min']} | {f['status_429']} | {f['wall_s']} | {f['peak_rss_mb']} | {f['items_written']} | "
              f"{f['bars_written'] / max(1, f['items_written']):.0f} | {f['largest_block_bytes']} | "
              f"{f['write_requests']} | {f['cpu_run_s']} / {f['cpu_sandbox_s']} / {f['cpu_dynalite_s']} |")
    print()
    print("| read_bars(\"SPY\", \"1Min\", one year) | bars | seconds |")
    print("|---|---|---|")
    for name, (count, seconds) in reads.items():
        print(f"| {name} | {count} | {seconds:.3f} |")


if __name__ == "__main__":
    if "--one" in sys.argv:
        one_backfill(*sys.argv[sys.argv.index("--one") + 1 :])
    else:
        main()
