"""Benchmark: adjusting one year of 1Min bars of one symbol on read (`market_data.read.adjusted`).

A year of 04:00-20:00 New York minutes (every minute of 2025's 250 XNYS sessions, 240,000 bars: more
than Alpaca sends for any stock, which skips minutes without trades), with a 4-for-1 split, a 1-for-10
reverse split and four quarterly cash dividends. Times the factor computation and the column
products, the median of several passes, against a baseline in the same run: copying the frame
(what any adjusted read must at least do).

    python -m benchmarks.adjust
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import date

import numpy as np
import pandas as pd

from signal9_pipeline.corporate_actions.actions import parse_action
from signal9_pipeline.market_data.days import sessions_between
from signal9_pipeline.market_data.read import adjusted

PASSES = 7


def year_of_minutes(year: int = 2025) -> pd.DataFrame:
    sessions = pd.DatetimeIndex(sessions_between(date(year, 1, 1), date(year, 12, 31)))
    starts = (sessions.tz_localize("America/New_York") + pd.Timedelta(hours=4)).tz_convert("UTC")
    stamps = (starts.tz_localize(None).to_numpy().reshape(-1, 1)
              + np.arange(960).reshape(1, -1) * np.timedelta64(1, "m")).ravel()
    n = len(stamps)
    rng = np.random.default_rng(1)
    close = 100 + np.cumsum(rng.normal(0, 0.05, n))
    return pd.DataFrame({"timestamp": pd.to_datetime(stamps, utc=True), "open": close, "high": close + 0.1,
                         "low": close - 0.1, "close": close, "volume": rng.integers(0, 5000, n),
                         "trade_count": rng.integers(0, 50, n), "vwap": close})


def actions(year: int = 2025) -> list:
    split = parse_action("forward_splits", {"id": "f", "symbol": "X", "cusip": "C", "new_rate": 4, "old_rate": 1,
                                            "process_date": f"{year}-06-09", "ex_date": f"{year}-06-09"})
    reverse = parse_action("reverse_splits", {"id": "r", "symbol": "X", "old_cusip": "C", "new_cusip": "D",
                                              "new_rate": 1, "old_rate": 10, "process_date": f"{year}-10-06",
                                              "ex_date": f"{year}-10-06"})
    dividends = [(parse_action("cash_dividends", {"id": f"d{m}", "symbol": "X", "cusip": "C", "rate": 0.24,
                                                  "special": False, "foreign": False,
                                                  "process_date": f"{year}-{m:02d}-20",
                                                  "ex_date": f"{year}-{m:02d}-10", "record_date": f"{year}-{m:02d}-10",
                                                  "payable_date": f"{year}-{m:02d}-20"}), 100.0) for m in (2, 5, 8, 11)]
    return [(split, None), (reverse, None), *dividends]


def median_s(run) -> float:
    times = []
    for _ in range(PASSES):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    bars, stored = year_of_minutes(), actions()
    baseline = median_s(lambda: bars.copy())
    adjusting = median_s(lambda: adjusted(bars, stored, "all"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"bars: {len(bars):,} (one year of 1Min, 04:00-20:00 New York), actions: {len(stored)}")
    print(f"adjusted(..., 'all'): {adjusting * 1000:.1f} ms (median of {PASSES}); frame copy baseline: "
          f"{baseline * 1000:.1f} ms")


if __name__ == "__main__":
    main()
