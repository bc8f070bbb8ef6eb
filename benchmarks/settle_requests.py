"""Benchmark: what the settle pass costs in Alpaca requests per day.

The settle pass (`settle_bars_schedule`) fetches each date's partitions again on the mornings of the sessions
SIGNAL9_SETTLE_SESSIONS after it (default 1 and 5), so on a session morning it re-fetches two dates (three on a
Monday, whose k=1 date is Friday and the weekend: crypto only on the weekend days). This measures, on the local
stack, the requests of one date fetched the first time and fetched again (the
re-fetch goes through the merge and the ledger), for the 1Day universe (12,062 listed companies), the default
intraday watchlist and a watchlist of `all`, each intraday timeframe on its own; requests are counted by the
sandbox. The settle pass's requests per session day are the re-fetch's times the number of settle offsets.

    python -m benchmarks.settle_requests
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

from benchmarks.identity_requests import synced_default_universe
from benchmarks.ohlc_bars import run
from signal9_devstack.local import stack
from signal9_pipeline import settings
from signal9_pipeline.resources import metrics

DAY = "2024-06-03"
LIMIT = 10_000  # the paid plan's: requests are counted, not waited for (their number does not depend on the limit)
INTRADAY = ("1Min", "5Min", "15Min", "30Min", "1Hour")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signal9-bench-settle-"))
    env = stack.up(home, rate_limit_per_minute=LIMIT)
    offsets = [k for k in settings.get("SIGNAL9_SETTLE_SESSIONS").split(",") if k.strip()]
    watchlist = settings.get("SIGNAL9_INTRADAY_WATCHLIST")
    rows = []
    try:
        os.environ.update(env)
        tables = synced_default_universe(env)
        cases = ([("1Day universe", "1Day", "")]
                 + [(f"watchlist ({watchlist}) {tf}", tf, watchlist) for tf in INTRADAY]
                 + [(f"all {tf}", tf, "all") for tf in INTRADAY])
        for name, timeframe, chosen in cases:
            first = run(tables, home, timeframe, DAY, DAY, chosen)
            again = run(tables, home, timeframe, DAY, DAY, chosen)
            rows.append((name, first, again))
    finally:
        metrics.flush()
        stack.down(home)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; sandbox and "
          f"limiter at {LIMIT} requests/min; one date ({DAY}); command: python -m benchmarks.settle_requests")
    print("| partition of one date | bars | requests: first fetch | requests: re-fetch | settle pass per session day "
          f"({len(offsets)} re-fetches) |")
    print("|---|---|---|---|---|")
    totals = {"1Day universe": 0, "watchlist": 0, "all": 0}
    for name, first, again in rows:
        per_day = again["requests_used"] * len(offsets)
        totals[next(k for k in totals if name.startswith(k))] += per_day
        print(f"| {name} | {first['bars_written']} | {first['requests_used']} | {again['requests_used']} | {per_day} |")
    print("\nsettle pass, requests per session day: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
