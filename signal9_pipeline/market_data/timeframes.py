"""The bar timeframes `ohlc_bars` stores: every fact about one timeframe in one row. Pure, no I/O.

A new timeframe is one more `Timeframe` here; screening, bucketing, fetching and the partitions read it from
`TIMEFRAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeframe:
    """One bar timeframe as Alpaca spells it, and how its bars are screened, stored and fetched."""

    name: str  # Alpaca's spelling, also the `timeframe` partition and the `{alpaca_id}#{timeframe}` series suffix
    step_minutes: int | None  # the grid intraday bars start on; None for daily bars (stamped at a day's midnight)
    # One DynamoDB item holds a bucket of one symbol's bars: about a symbol-day for the busiest timeframes, longer
    # where a day holds few bars, so that an item carries hundreds of bars and stays far under 400 KB (a bucket of
    # the densest series, crypto 1Min, holds 1,440 bars; an equity year of daily bars about 252).
    bucket: str  # "day", "week" (from Monday), "month" or "year": the span of one item
    bars_per_day: int  # at most, for equities (04:00-20:00 New York): sizes a run's request groups

    @property
    def intraday(self) -> bool:
        return self.step_minutes is not None


TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in (
    Timeframe("1Min", 1, "day", 960),
    Timeframe("5Min", 5, "day", 192),
    Timeframe("15Min", 15, "week", 64),
    Timeframe("30Min", 30, "week", 32),
    Timeframe("1Hour", 60, "month", 16),
    Timeframe("1Day", None, "year", 1),
)}
