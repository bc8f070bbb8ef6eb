"""Trading days, windows and bar validation for `ohlc_bars`. Pure logic, no I/O.

A partition's date is a New York trading date. Equities' bars belong to the
New York date of their timestamp (a daily bar is stamped midnight New York);
crypto trades around the clock and its day is the UTC day (a daily bar is
stamped midnight UTC) - the same boundary the sandbox and Alpaca's crypto
daily bars use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from signal9_pipeline.resources.alpaca import TIMEFRAMES  # noqa: F401 - the one list of timeframes

NEW_YORK = ZoneInfo("America/New_York")
STEP_MINUTES = {"1Min": 1, "5Min": 5, "15Min": 15, "30Min": 30, "1Hour": 60, "1Day": None}


def is_crypto(symbol: str) -> bool:
    return "/" in symbol


@functools.lru_cache(maxsize=1)
def _sessions() -> pd.DataFrame:
    return xcals.get_calendar("XNYS").schedule[["open", "close"]]


def is_session(day: date) -> bool:
    return pd.Timestamp(day) in _sessions().index


def fetch_window(first: date, last: date, *, crypto: bool) -> tuple[datetime, datetime]:
    """[start, end] (UTC) holding every bar of the trading days first..last."""
    zone = timezone.utc if crypto else NEW_YORK
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone) - timedelta(seconds=1)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def day_of(timestamps: pd.Series, *, crypto: bool) -> pd.Series:
    """The trading day (YYYY-MM-DD) each bar belongs to."""
    local = timestamps if crypto else timestamps.dt.tz_convert(NEW_YORK)
    return local.dt.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class BarProblem:
    symbol: str
    day: str
    timestamp: str
    reason: str

    def __str__(self) -> str:
        return f"{self.symbol} {self.timestamp}: {self.reason}"


def with_days(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars of many symbols, sorted by symbol and time, with each bar's trading `day`."""
    bars = bars.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    crypto = bars["symbol"].str.contains("/", regex=False).to_numpy()
    days = day_of(bars["timestamp"], crypto=False).to_numpy(dtype=object)
    if crypto.any():
        days[crypto] = day_of(bars.loc[crypto, "timestamp"], crypto=True).to_numpy(dtype=object)
    return bars.assign(day=days, crypto=crypto)


def bar_problems(bars: pd.DataFrame, timeframe: str) -> list[BarProblem]:
    """Why bars (from `with_days`) must not be stored: every bad bar with its reason (empty when all are sound)."""
    o, h, low, c, v, vw = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume", "vwap"))
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & np.isfinite(v)
    same_symbol = np.concatenate([[False], bars["symbol"].to_numpy()[1:] == bars["symbol"].to_numpy()[:-1]])
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    checks = [
        (~finite, "non-finite price or volume"),
        (finite & ((o <= 0) | (h <= 0) | (low <= 0) | (c <= 0)), "price not positive"),
        (finite & ((h < np.maximum(o, c)) | (low > np.minimum(o, c))), "high/low do not bound open/close"),
        (finite & (v < 0), "negative volume"),
        # A missing vwap is NaN and allowed; an infinite one is not a vwap.
        (np.isinf(vw) | (finite & np.isfinite(vw) & ((vw < low - 1e-9) | (vw > h + 1e-9))), "vwap outside [low, high]"),
        (same_symbol & (np.diff(seconds, prepend=seconds[:1]) == 0), "duplicate timestamp"),
        (~_on_grid(bars, timeframe), f"timestamp off the {timeframe} grid"),
        (~_in_session(bars, timeframe), "timestamp outside the trading session"),
    ]
    problems = []
    for mask, reason in checks:
        for row in bars.loc[mask].itertuples():
            problems.append(BarProblem(row.symbol, row.day, row.timestamp.isoformat(), reason))
    return problems


def _on_grid(bars: pd.DataFrame, timeframe: str) -> np.ndarray:
    step = STEP_MINUTES[timeframe]
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    if step is not None:
        return seconds % (step * 60) == 0
    local = bars["timestamp"].dt.tz_convert(NEW_YORK)
    ny_midnight = (local == local.dt.normalize()).to_numpy()
    return np.where(bars["crypto"].to_numpy(), seconds % 86_400 == 0, ny_midnight)


def _in_session(bars: pd.DataFrame, timeframe: str) -> np.ndarray:
    crypto = bars["crypto"].to_numpy()
    sessions = _sessions()
    keys = pd.DatetimeIndex(pd.to_datetime(bars["day"]))
    known = keys.isin(sessions.index)
    if STEP_MINUTES[timeframe] is None:
        return crypto | known
    aligned = sessions.reindex(keys)
    opens = aligned["open"].dt.tz_convert(None).to_numpy()
    closes = aligned["close"].dt.tz_convert(None).to_numpy()
    naive = bars["timestamp"].dt.tz_convert(None).to_numpy()
    # An intraday bar belongs to the session when its interval overlaps it (a 1Hour bar at 09:00 holds 09:30-09:59).
    overlaps = known & (naive < closes) & ((naive + np.timedelta64(STEP_MINUTES[timeframe], "m")) > opens)
    return crypto | overlaps
