"""Three simulated trading days in a row: after each, the tables equal a model built from the day's churn.

A day is the sandbox's universe changed by a seeded churn, then the day's asset
sync, pollenation of what it listed, and the day's ohlc_bars partition, in one
fresh process (`trading_days`). Problems from every day are collected before
asserting, so the ledger records what really happened; peak RSS may not trend
upwards from day to day beyond noise.
"""

from __future__ import annotations

import pytest

from signal9_pipeline_tests.reliability.trading_days import TradingDays, rss_growth_mb, trading_dates
from signal9_pipeline_tests.support import small_universe

pytestmark = pytest.mark.slow

DAYS = 3
SEED = 30
MAX_RSS_GROWTH_MB = 25.0  # over all days along the trend line; a day's work holds a few MB of items and frames


def test_consecutive_trading_days_keep_the_tables_equal_to_the_model(bars_env, default_universe, tmp_path, ledger):
    soak = TradingDays(bars_env, small_universe(default_universe, n=150), SEED, tmp_path)
    try:
        first = soak.first_load()
        days = [soak.trading_day(n, d) for n, d in enumerate(trading_dates(DAYS), start=1)]
    finally:
        soak.close()
    problems = [f"day {d.day} ({d.trading_date}): {p}" for d in [first, *days] for p in d.problems]
    growth = rss_growth_mb([d.peak_rss_mb for d in days])
    ledger.record("soak", f"{DAYS} trading days of churn, sync, pollenation and daily bars",
                  "tables equal the model every day" if not problems
                  else f"{len(problems)} divergence(s) from the model",
                  lost=len(problems), times=DAYS)
    assert not problems, "\n".join(problems)
    assert all(d.api_requests > 0 and d.dynamodb_writes > 0 and d.pollenation_runs >= 1 for d in days)
    assert growth < MAX_RSS_GROWTH_MB, (f"peak RSS grew by {growth:.1f} MB over {DAYS} days:"
                                        f" {[d.peak_rss_mb for d in days]}")
