"""Trading days, windows, sessions and bar screening for `ohlc_bars`. Pure logic, no I/O.

What Alpaca really returns (the contract corpus in the tests holds the recorded
responses):
- US equities: a partition's date is the New York trading date. Intraday bars
  cover 04:00-20:00 New York in every intraday timeframe - pre-market, the
  regular session and post-market, the 16:00 bar included - and Alpaca has no
  server-side filter for regular hours; a daily bar is stamped midnight New York.
- Crypto trades around the clock; its day is the UTC day. Daily bars carry one
  of two stamps: midnight UTC (current data) or midnight US Central (older data,
  05:00Z in summer, 06:00Z in winter). Both fall on the UTC date of their own
  midnight, so both map to the same day; a day never keeps two daily bars.
- A minute without trades can come back as a bar with `v: 0, n: 0, vw: 0`: it is
  valid whatever its vwap.

A bar is held back only when it is impossible; everything else is stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

TIMEFRAMES = ("1Min", "5Min", "15Min", "30Min", "1Hour", "1Day")
STEP_MINUTES = {"1Min": 1, "5Min": 5, "15Min": 15, "30Min": 30, "1Hour": 60, "1Day": None}
NEW_YORK = ZoneInfo("America/New_York")
US_CENTRAL = "America/Chicago"
EQUITY, CRYPTO = "us_equity", "crypto"
ASSET_CLASSES = (EQUITY, CRYPTO)
# Alpaca's extended-hours window for equities, New York time: pre-market opens 04:00, post-market closes 20:00.
EXTENDED_OPEN_MINUTE, EXTENDED_CLOSE_MINUTE = 4 * 60, 20 * 60
SESSIONS = ("all", "regular", "extended")
PRE, REGULAR, POST = 0, 1, 2
# Column of a bars frame: "field: reason" for a bar that is not of Alpaca's shape (a field missing or of the
# wrong JSON type), absent or NaN otherwise. Such a bar is held back like an impossible one.
FAULT = "fault"


@functools.lru_cache(maxsize=1)
def _sessions() -> pd.DataFrame:
    return xcals.get_calendar("XNYS").schedule[["open", "close"]]


@dataclass(frozen=True)
class _Days:
    """Every calendar day 1970-2100 as arrays, so that a page's bars find their day with one searchsorted, not
    with per-bar time-zone conversions (the costliest step of a page before)."""

    names: np.ndarray  # "YYYY-MM-DD", day k = 1970-01-01 + k
    new_york_midnight: np.ndarray  # epoch seconds of each day's 00:00 New York
    central_midnight: np.ndarray  # epoch seconds of each day's 00:00 US Central
    session_open: np.ndarray  # epoch seconds of the XNYS open, -1 on days without a session
    session_close: np.ndarray


@functools.lru_cache(maxsize=1)
def _days() -> _Days:
    dates = pd.date_range("1970-01-01", "2100-12-31", freq="D")
    seconds = lambda index: index.asi8 // 1_000_000_000  # noqa: E731
    sessions = _sessions()
    position = dates.get_indexer(sessions.index)
    opens, closes = np.full(len(dates), -1, dtype=np.int64), np.full(len(dates), -1, dtype=np.int64)
    opens[position], closes[position] = seconds(pd.DatetimeIndex(sessions["open"])), seconds(pd.DatetimeIndex(sessions["close"]))
    return _Days(dates.strftime("%Y-%m-%d").to_numpy(dtype=object), seconds(dates.tz_localize(NEW_YORK)),
                 seconds(dates.tz_localize(US_CENTRAL)), opens, closes)


def _epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    return timestamps.astype("int64").to_numpy() // 1_000_000_000


def _new_york_day_index(seconds: np.ndarray) -> np.ndarray:
    return np.searchsorted(_days().new_york_midnight, seconds, side="right") - 1


def is_session(day: date) -> bool:
    return pd.Timestamp(day) in _sessions().index


def sessions_between(first: date, last: date) -> list[date]:
    """XNYS sessions from `first` to `last`, both included."""
    index = _sessions().index
    return [d.date() for d in index[(index >= pd.Timestamp(first)) & (index <= pd.Timestamp(last))]]


def previous_session(day: date) -> date:
    """The last XNYS session strictly before `day` (a cash dividend's reference close is that session's)."""
    sessions = _sessions().index
    return sessions[int(sessions.searchsorted(pd.Timestamp(day))) - 1].date()


def last_ended_day(now: datetime | None = None) -> date:
    """The latest New York date that has ended: the newest date partition of ohlc_bars at `now`.

    Not the UTC date before today: from 00:00 to 04:00/05:00 UTC New York is still on
    yesterday's UTC date, whose partition does not exist yet.
    """
    return (now or datetime.now(timezone.utc)).astimezone(NEW_YORK).date() - timedelta(days=1)


def last_session(now: datetime | None = None) -> date:
    """The latest XNYS session that has ended by `now` (New York dates)."""
    day = last_ended_day(now)
    while not is_session(day):
        day -= timedelta(days=1)
    return day


def fetch_window(first: date, last: date, *, crypto: bool) -> tuple[datetime, datetime]:
    """[start, end] (UTC) holding every bar of the trading days first..last."""
    zone = timezone.utc if crypto else NEW_YORK
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone) - timedelta(seconds=1)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def trading_days(timestamps: pd.Series, *, crypto: bool) -> np.ndarray:
    """The trading day (YYYY-MM-DD) of each bar: its New York date for equities, its UTC date for crypto."""
    seconds = _epoch_seconds(timestamps)
    return _days().names[seconds // 86_400 if crypto else _new_york_day_index(seconds)]


def with_days(bars: pd.DataFrame, *, crypto: bool) -> pd.DataFrame:
    """Bars of many symbols of one asset class, sorted by symbol and time, with each bar's trading `day`."""
    bars = bars.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    return bars.assign(day=trading_days(bars["timestamp"], crypto=crypto))


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
    """The verdict on a frame of bars (from `with_days`), row-aligned with it."""

    held_back: np.ndarray  # bool per bar: impossible, not stored
    problems: list[BarProblem]  # one per held-back bar, its first reason
    session: np.ndarray  # PRE / REGULAR / POST per bar (REGULAR for crypto and daily bars)
    zero_trade: np.ndarray  # bool per bar: v == 0
    vwap_outside: np.ndarray  # bool per bar: traded, vwap outside [low, high] - stored, counted as a warning


def screen(bars: pd.DataFrame, timeframe: str, *, crypto: bool) -> Screening:
    """Which bars are impossible (held back, with reasons) and how the rest break down."""
    o, h, low, c, v, vw = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume", "vwap"))
    n = bars["trade_count"].to_numpy()
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & np.isfinite(v)
    with np.errstate(invalid="ignore"):
        checks = [  # (bad mask, field, reason): the first that applies is the bar's reason
            *((~np.isfinite(x), name, "not a finite number") for x, name in ((o, "o"), (h, "h"), (low, "l"), (c, "c"), (v, "v"))),
            *((x <= 0, name, "price not positive") for x, name in ((o, "o"), (h, "h"), (low, "l"), (c, "c"))),
            (h < np.maximum(o, c), "h", "high below open or close"),
            (low > np.minimum(o, c), "l", "low above open or close"),
            (v < 0, "v", "negative volume"),
            (n < 0, "n", "negative trade count"),
            # A missing vwap (NaN) is allowed; without trades (v == 0) the vwap means nothing, so any value is.
            ((np.isinf(vw) | (vw < 0)) & (v != 0), "vw", "vwap infinite or negative"),
            (~_on_grid(bars, seconds, timeframe, crypto), "t", f"timestamp off the {timeframe} grid"),
            (~_in_trading_hours(bars, seconds, timeframe, crypto),
             "t", "outside 04:00-20:00 New York or on a day without an XNYS session"),
            *_duplicates(bars, seconds, timeframe, crypto, o, h, low, c, v, vw, n),
        ]
    checks = [*_faults(bars), *checks]  # a bar not of Alpaca's shape is held back for that, before anything else
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
    session = np.full(len(bars), REGULAR) if crypto or timeframe == "1Day" else session_codes(bars["timestamp"], timeframe)
    with np.errstate(invalid="ignore"):
        vwap_outside = finite & (v > 0) & np.isfinite(vw) & ((vw < low - 1e-9) | (vw > h + 1e-9))
    return Screening(held_back, problems, session, finite & (v == 0), vwap_outside & ~held_back)


def faulty(bars: pd.DataFrame) -> np.ndarray:
    """Bool per bar: not of Alpaca's shape (see FAULT)."""
    return bars[FAULT].notna().to_numpy() if FAULT in bars else np.zeros(len(bars), dtype=bool)


def fault_parts(fault: str) -> tuple[str, str]:
    """(field, reason) of a FAULT value."""
    field, reason = fault.split(": ", 1)
    return field, reason


def _faults(bars: pd.DataFrame) -> list[tuple[np.ndarray, str, str]]:
    if not faulty(bars).any():
        return []
    faults = bars[FAULT].to_numpy()
    return [(faults == fault, *fault_parts(fault)) for fault in sorted(set(bars[FAULT].dropna()))]


def _on_grid(bars: pd.DataFrame, seconds: np.ndarray, timeframe: str, crypto: bool) -> np.ndarray:
    step = STEP_MINUTES[timeframe]
    if step is not None:
        return seconds % (step * 60) == 0
    days = _days()
    if not crypto:
        return days.new_york_midnight[_new_york_day_index(seconds)] == seconds
    central = days.central_midnight[np.searchsorted(days.central_midnight, seconds, side="right") - 1]
    return (seconds % 86_400 == 0) | (central == seconds)


def _in_trading_hours(bars: pd.DataFrame, seconds: np.ndarray, timeframe: str, crypto: bool) -> np.ndarray:
    if crypto:
        return np.ones(len(bars), dtype=bool)
    days, index = _days(), _new_york_day_index(seconds)
    known = days.session_open[index] >= 0
    step = STEP_MINUTES[timeframe]
    if step is None:
        return known
    minute_of_day = (seconds - days.new_york_midnight[index]) // 60
    return known & (minute_of_day >= EXTENDED_OPEN_MINUTE) & (minute_of_day + step <= EXTENDED_CLOSE_MINUTE)


def _duplicates(bars, seconds, timeframe, crypto, *values) -> list[tuple[np.ndarray, str, str]]:
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
    if crypto and timeframe == "1Day":
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


def session_codes(timestamps: pd.Series, timeframe: str) -> np.ndarray:
    """PRE, REGULAR or POST per intraday equity bar: REGULAR when its interval overlaps the XNYS session.

    So the 09:00 New York hourly bar (09:00-10:00, the opening half hour inside it)
    is regular and the 16:00 bar is post-market; half days close at 13:00.
    """
    step = STEP_MINUTES[timeframe]
    if step is None:
        raise ValueError("daily bars have no session: they cover the whole trading day")
    if len(timestamps) == 0:
        return np.zeros(0, dtype=np.int64)
    seconds = _epoch_seconds(timestamps)
    days, index = _days(), _new_york_day_index(seconds)
    opens, closes = days.session_open[index], days.session_close[index]
    known = opens >= 0
    regular = known & (seconds < closes) & (seconds + step * 60 > opens)
    before = seconds + step * 60 <= opens
    return np.where(regular, REGULAR, np.where(before, PRE, POST))


# One DynamoDB item holds a bucket of one symbol's bars: about a symbol-day for the busiest timeframes, longer
# where a day holds few bars, so that an item carries hundreds of bars and stays far under 400 KB (a bucket of
# the densest series, crypto 1Min, holds 1,440 bars; an equity year of daily bars about 252).
BUCKETS = {"1Min": "day", "5Min": "day", "15Min": "week", "30Min": "week", "1Hour": "month", "1Day": "year"}


def bucket_starts(days: np.ndarray, timeframe: str) -> np.ndarray:
    """The first day (YYYY-MM-DD) of the bucket of each trading day (YYYY-MM-DD): the items' sort key."""
    kind = BUCKETS[timeframe]
    if kind == "day":
        return np.asarray(days, dtype=object)
    codes, distinct = pd.factorize(np.asarray(days, dtype=object))  # a page holds few distinct days: parse each once
    d = np.asarray(distinct, dtype="datetime64[D]")
    if kind == "week":  # weeks start on Monday; 1970-01-01 was a Thursday
        start = d - (d.astype(np.int64) + 3) % 7
    else:
        start = d.astype("datetime64[M]" if kind == "month" else "datetime64[Y]").astype("datetime64[D]")
    return start.astype(str).astype(object)[codes]


def bucket_start(day: date, timeframe: str) -> date:
    return date.fromisoformat(bucket_starts(np.array([day.isoformat()]), timeframe)[0])
