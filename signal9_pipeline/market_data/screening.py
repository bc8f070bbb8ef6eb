"""Bar screening for `ohlc_bars`: which bars are impossible, and how the rest break down. Pure logic, no I/O.

A bar is held back only when it is impossible; everything else is stored. A minute without trades can come
back as a bar with `v: 0, n: 0, vw: 0`: it is valid whatever its vwap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from signal9_pipeline.market_data.days import REGULAR, at_day_start, in_extended_hours, session_codes
from signal9_pipeline.market_data.timeframes import TIMEFRAMES

# Column of a bars frame: "field: reason" for a bar that is not of Alpaca's shape (a field missing or of the
# wrong JSON type), absent or NaN otherwise. Such a bar is held back like an impossible one.
FAULT = "fault"


@dataclass(frozen=True)
class BarProblem:
    """Why one bar was held back: the symbol, its day and time, the field at fault and the reason."""

    symbol: str
    day: str
    timestamp: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.symbol} {self.timestamp} {self.field}: {self.reason}"


@dataclass
class Screening:
    """The verdict on a frame of bars (from `days.with_days`), row-aligned with it."""

    held_back: np.ndarray  # bool per bar: impossible, not stored
    problems: list[BarProblem]  # one per held-back bar, its first reason
    session: np.ndarray  # PRE / REGULAR / POST per bar (REGULAR for crypto and daily bars)
    zero_trade: np.ndarray  # bool per bar: v == 0
    vwap_outside: np.ndarray  # bool per bar: traded, vwap outside [low, high] - stored, counted as a warning


def screen(bars: pd.DataFrame, timeframe: str, *, crypto: bool) -> Screening:
    """Which bars are impossible (held back, with reasons) and how the rest break down."""
    o, h, low, c, v, vw = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume", "vwap"))
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & np.isfinite(v)
    held_back, problems = _held_back(bars, _checks(bars, timeframe, crypto, (o, h, low, c, v, vw)))
    if crypto or not TIMEFRAMES[timeframe].intraday:
        session = np.full(len(bars), REGULAR)
    else:
        session = session_codes(bars["timestamp"], timeframe)
    with np.errstate(invalid="ignore"):
        vwap_outside = finite & (v > 0) & np.isfinite(vw) & ((vw < low - 1e-9) | (vw > h + 1e-9))
    return Screening(held_back, problems, session, finite & (v == 0), vwap_outside & ~held_back)


Check = tuple[np.ndarray, str, str]  # (bad mask, field, reason)


def _checks(bars: pd.DataFrame, timeframe: str, crypto: bool, values: tuple[np.ndarray, ...]) -> list[Check]:
    """(bad mask, field, reason) in order: the first that applies is a bar's reason. `values`: the bars' o, h, l, c,
    v and vw as floats. A bar not of Alpaca's shape is held back for that, before anything else."""
    o, h, low, c, v, vw = values
    n = bars["trade_count"].to_numpy()
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    prices = ((o, "o"), (h, "h"), (low, "l"), (c, "c"))
    with np.errstate(invalid="ignore"):
        checks = [
            *((~np.isfinite(x), name, "not a finite number") for x, name in (*prices, (v, "v"))),
            *((x <= 0, name, "price not positive") for x, name in prices),
            (h < np.maximum(o, c), "h", "high below open or close"),
            (low > np.minimum(o, c), "l", "low above open or close"),
            (v < 0, "v", "negative volume"),
            (n < 0, "n", "negative trade count"),
            # A missing vwap (NaN) is allowed; without trades (v == 0) the vwap means nothing, so any value is.
            ((np.isinf(vw) | (vw < 0)) & (v != 0), "vw", "vwap infinite or negative"),
            (~_on_grid(seconds, timeframe, crypto), "t", f"timestamp off the {timeframe} grid"),
            (~_in_trading_hours(seconds, timeframe, crypto),
             "t", "outside 04:00-20:00 New York or on a day without an XNYS session"),
            *_duplicates(bars, seconds, timeframe, crypto, o, h, low, c, v, vw, n),
        ]
    return [*_faults(bars), *checks]


def _held_back(bars: pd.DataFrame, checks: list[Check]) -> tuple[np.ndarray, list[BarProblem]]:
    """Bool per bar: failed a check; and one BarProblem per such bar, naming the first check it failed."""
    held_back = np.zeros(len(bars), dtype=bool)
    problems: list[BarProblem] = []
    for mask, name, reason in checks:
        new = mask & ~held_back
        if not new.any():
            continue
        held_back |= new
        for row in bars.loc[new, ["symbol", "day", "timestamp"]].itertuples(index=False):
            # pandas-stubs types a row's every field as any scalar: these are str, str and Timestamp
            stamp = row.timestamp.isoformat()  # type: ignore[union-attr]
            problems.append(BarProblem(row.symbol, row.day, stamp, name, reason))  # type: ignore[arg-type]
    return held_back, problems


def faulty(bars: pd.DataFrame) -> np.ndarray:
    """Bool per bar: not of Alpaca's shape (see FAULT)."""
    return bars[FAULT].notna().to_numpy() if FAULT in bars else np.zeros(len(bars), dtype=bool)


def fault_parts(fault: str) -> tuple[str, str]:
    """(field, reason) of a FAULT value."""
    field, reason = fault.split(": ", 1)
    return field, reason


def _faults(bars: pd.DataFrame) -> list[Check]:
    if not faulty(bars).any():
        return []
    faults = bars[FAULT].to_numpy()
    return [(faults == fault, *fault_parts(fault)) for fault in sorted(set(bars[FAULT].dropna()))]


def _on_grid(seconds: np.ndarray, timeframe: str, crypto: bool) -> np.ndarray:
    step = TIMEFRAMES[timeframe].step_minutes
    if step is not None:
        return seconds % (step * 60) == 0
    return at_day_start(seconds, crypto=crypto)


def _in_trading_hours(seconds: np.ndarray, timeframe: str, crypto: bool) -> np.ndarray:
    if crypto:
        return np.ones(len(seconds), dtype=bool)
    return in_extended_hours(seconds, TIMEFRAMES[timeframe].step_minutes)


def _duplicates(bars, seconds, timeframe, crypto, *values) -> list[Check]:
    """Two bars of one symbol at one time: an exact copy is held back; differing copies are all held back.

    A crypto day whose daily bar comes with both stamps (midnight UTC and US Central)
    keeps the midnight-UTC one, Alpaca's current convention.
    """
    symbols = bars["symbol"].to_numpy()
    same_symbol = np.concatenate([[False], symbols[1:] == symbols[:-1]])
    same_time = same_symbol & (np.diff(seconds, prepend=seconds[:1]) == 0)
    same_values = np.concatenate([[False], np.logical_and.reduce([_equal_next(x) for x in values])])
    copy = same_time & same_values
    conflict_start = same_time & ~same_values
    conflicting = conflict_start | np.concatenate([conflict_start[1:], [False]])
    found = [(copy, "t", "duplicate of the bar before it"), (conflicting, "t", "two different bars at one timestamp")]
    if crypto and not TIMEFRAMES[timeframe].intraday:
        days = bars["day"].to_numpy()
        same_day = np.concatenate([[False], (days[1:] == days[:-1]) & same_symbol[1:]])
        shares_day = same_day | np.concatenate([same_day[1:], [False]])
        found.append((shares_day & (seconds % 86_400 != 0), "t",
                      "second daily bar of the day (US Central stamp beside a midnight-UTC one)"))
    return found


def _equal_next(values: np.ndarray) -> np.ndarray:
    """values[i] == values[i - 1] for i >= 1 (NaN equal to NaN)."""
    a, b = values[1:], values[:-1]
    if a.dtype.kind == "f":
        return (a == b) | (np.isnan(a) & np.isnan(b))
    return a == b
