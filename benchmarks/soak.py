"""Benchmark: consecutive simulated trading days against the local stack, each checked against the model.

Each day the sandbox's universe churns (seeded: listings, delistings,
reactivations, renames), then one fresh process runs the day's asset sync,
the pollenation of what it listed and the day's ohlc_bars 1Day partition
(`signal9_pipeline_tests.reliability.trading_days`, shared with the soak test).
Per day: Alpaca requests (the sandbox's own stats), DynamoDB write requests,
pollenation runs, the day process's peak RSS and wall time, and whether the
tables equal the model built from the churn log.

    python -m benchmarks.soak --days 30            # prints a markdown table
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

from signal9_devstack.local import stack
from signal9_devstack.sandbox.universe import build_universe
from signal9_pipeline_tests.reliability.trading_days import DayFigures, TradingDays, rss_growth_mb, trading_dates
from signal9_pipeline_tests.support import small_universe


def simulate(days: int, listed: int, seed: int) -> list[DayFigures]:
    home = Path(tempfile.mkdtemp(prefix="signal9-soak-"))
    env = stack.up(home)  # Alpaca's real limit: 200 requests/min
    os.environ.update(env)  # the model's table reads and the event tap use the stack
    soak = TradingDays(env, small_universe(build_universe(0), n=listed), seed, home)
    try:
        return [soak.first_load()] + [soak.trading_day(n, d) for n, d in enumerate(trading_dates(days), start=1)]
    finally:
        soak.close()
        stack.down(home)


def print_table(figures: list[DayFigures], command: str) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"command: {command}")
    print("| day | date | changes | Alpaca requests | DynamoDB writes | pollenation runs | peak RSS (MB) | wall (s) "
          "| tables = model |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in figures:
        print(f"| {f.day} | {f.trading_date} | {f.changes} | {f.api_requests} | {f.dynamodb_writes} "
              f"| {f.pollenation_runs} | {f.peak_rss_mb} | {f.wall_s} "
              f"| {'yes' if not f.problems else 'NO: ' + '; '.join(f.problems)[:200]} |")
    days = figures[1:]
    print(f"| total (days 1-{len(days)}) | | | {sum(f.api_requests for f in days)} "
          f"| {sum(f.dynamodb_writes for f in days)} | {sum(f.pollenation_runs for f in days)} "
          f"| max {max(f.peak_rss_mb for f in days)} "
          f"| {round(sum(f.wall_s for f in days), 1)} | {sum(not f.problems for f in days)}/{len(days)} |")
    print(f"\npeak RSS trend over days 1-{len(days)}: {rss_growth_mb([f.peak_rss_mb for f in days]):+.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--listed", type=int, default=300, help="listed equities of the starting universe")
    parser.add_argument("--seed", type=int, default=30)
    args = parser.parse_args()
    figures = simulate(args.days, args.listed, args.seed)
    print_table(figures, "python -m benchmarks.soak " + " ".join(sys.argv[1:]))
    sys.exit(1 if any(f.problems for f in figures) else 0)


if __name__ == "__main__":
    main()
