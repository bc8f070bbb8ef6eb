"""Benchmark: many-symbol reads (`read_bars(symbols, ...)`) against the floor of the same stack.

After a sync of the default universe (12,062 listed symbols) and a 1Day backfill of the year to 2026-10-28, plus
one 1Min day of the default watchlist, each read runs in a fresh process:
- `read_bars` of a list: 2,000 listed symbols and all listed companies (`listed_on`), over the 20 sessions
  2026-10-01..2026-10-28 and over the year; the watchlist's 1Min day;
- the floor: BatchGetItem of the very same items (100 keys a request, as many requests in flight as
  `read_bars` uses) and a decode of each, nothing else;
- the one-symbol-at-a-time loop for 2,000 symbols x 20 sessions (what a caller had before).
Each method runs twice, alternating (floor, read, floor, read), and the second pass of each is reported: the
first pass of whichever goes first pays for dynalite's cold caches. Prints bars, seconds, bars per second and
peak RSS, and each read's time against its floor. `--quick` loads and reads the 20 sessions only.

    python -m benchmarks.read [--quick]
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
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

from benchmarks.identity_requests import synced_default_universe
from benchmarks.ohlc_bars import run
from signal9_devstack.local import stack
from signal9_pipeline import settings
from signal9_pipeline.resources import metrics

LIMIT = 100_000  # the reads are measured, not the backfill: the sandbox answers as fast as it can
YEAR_FIRST, FIRST, LAST = "2025-10-29", "2026-10-01", "2026-10-28"
WINDOWS = {"20 sessions": (datetime(2026, 10, 1), datetime(2026, 10, 28, 23, 59)),
           "1 year": (datetime(2025, 10, 29), datetime(2026, 10, 28, 23, 59))}
MINUTE_DAY = (datetime(2026, 10, 28), datetime(2026, 10, 28, 23, 59))
CASES = [("2,000 symbols", "1Day", "20 sessions"), ("all listed", "1Day", "20 sessions"),
         ("2,000 symbols", "1Day", "1 year"), ("all listed", "1Day", "1 year"), ("watchlist", "1Min", "1 day")]


def companies(name: str) -> list:
    from signal9_pipeline.market_data.read import listed_on

    listed = listed_on(date.fromisoformat(LAST))
    if name == "all listed":
        return listed
    if name == "watchlist":
        return [s.strip() for s in settings.get("SIGNAL9_INTRADAY_WATCHLIST").split(",")]
    return [x.symbol for x in listed if x.asset_class == "us_equity"][:2000]


def one(name: str, timeframe: str, window: str, method: str) -> None:
    """Child process: one measured read; prints its figures as JSON."""
    from signal9_pipeline.market_data.read import read_bars

    start, end = MINUTE_DAY if window == "1 day" else WINDOWS[window]
    symbols = companies(name)
    started = time.perf_counter()
    if method == "read_bars":
        bars = len(read_bars(symbols, timeframe, start, end))
    elif method == "one at a time":
        bars = sum(len(read_bars(s, timeframe, start, end)) for s in symbols)
    else:
        bars = floor(symbols, timeframe, start, end)
    seconds = time.perf_counter() - started
    print(json.dumps({"bars": bars, "seconds": round(seconds, 3),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def floor(symbols: list, timeframe: str, start: datetime, end: datetime) -> int:
    """BatchGetItem of the items `read_bars` reads (the ids resolved beforehand, as in its own run) and a decode of
    each: the least any read of them can do. Counts the decoded bars inside the window."""
    import numpy as np

    from signal9_pipeline.market_data.codec import decode_columns
    from signal9_pipeline.market_data.read import READ_THREADS, Listed, Window, resolve_symbols
    from signal9_pipeline.resources.dynamodb import DynamoDBResource
    from signal9_pipeline.tables.market_data import MarketDataTable, bars_series

    dynamodb = DynamoDBResource.from_settings()
    ids = [s.alpaca_id if isinstance(s, Listed) else None for s in symbols]
    if None in ids:
        ids = [i for _, i in resolve_symbols(symbols, None, dynamodb)[0]]
    window, table = Window.of(timeframe, start, end, None), MarketDataTable(dynamodb)
    buckets = window.buckets()
    keys = [(bars_series(i, timeframe), b) for i in ids for b in buckets]
    lo, hi = window.start.value, window.end.value

    def fetch_and_decode(chunk) -> int:
        count = 0
        for item in table.get(chunk, projection=["series", "day", "bars", "checksum"]).values():
            stamps = decode_columns(bytes(item["bars"]))[0] * 1_000_000_000
            count += int(np.count_nonzero((stamps >= lo) & (stamps <= hi)))
        return count

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        return sum(pool.map(fetch_and_decode, [keys[n:n + 100] for n in range(0, len(keys), 100)]))


def measure(env: dict[str, str], *case: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.read", "--one", *case], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(quick: bool) -> None:
    cases = [c for c in CASES if not quick or c[2] != "1 year"]
    home = Path(tempfile.mkdtemp(prefix="signal9-bench-read-"))
    env = stack.up(home, rate_limit_per_minute=LIMIT)
    rows = []
    try:
        os.environ.update(env)
        tables = synced_default_universe(env)
        loaded = [run(tables, home, "1Day", FIRST if quick else YEAR_FIRST, LAST, ""),
                  run(tables, home, "1Min", LAST, LAST, "")]
        for name, timeframe, window in cases:
            methods = (["floor", "read_bars"]
                       + (["one at a time"] if (name, window) == ("2,000 symbols", "20 sessions") else []))
            figures = {}
            for _ in range(2):  # the second pass of each, caches warm for all
                figures = {m: measure(tables, name, timeframe, window, m) for m in methods}
            rows.append((name, timeframe, window, figures))
    finally:
        metrics.flush()
        stack.down(home)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; local stack "
          f"(dynalite); loaded: {loaded[0]['bars_written']} 1Day bars, {loaded[1]['bars_written']} 1Min bars; "
          "command: python -m benchmarks.read" + (" --quick" if quick else "") + "; second pass of each method")
    print("| read | timeframe | window | method | bars | seconds | bars/s | peak RSS (MB) | x floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, timeframe, window, figures in rows:
        base = figures["floor"]["seconds"]
        for method, f in figures.items():
            rate = round(f["bars"] / f["seconds"]) if f["seconds"] else 0
            print(f"| {name} | {timeframe} | {window} | {method} | {f['bars']} | {f['seconds']} | {rate} | "
                  f"{f['peak_rss_mb']} | {f['seconds'] / base:.2f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        one(*sys.argv[2:])
    else:
        main("--quick" in sys.argv[1:])
