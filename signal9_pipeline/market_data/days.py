"""Trading days, windows and sessions for `ohlc_bars`: the XNYS calendar. Pure logic, no I/O.

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
  valid whatever its vwap (`screening`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from signal9_pipeline.market_data.timeframes import TIMEFRAMES

NEW_YORK = ZoneInfo("America/New_York")
US_CENTRAL = "America/Chicago"
EQUITY, CRYPTO = "us_equity", "crypto"
ASSET_CLASSES = (EQUITY, CRYPTO)
# Alpaca's extended-hours window for equities, New York time: pre-market opens 04:00, post-market closes 20:00.
EXTENDED_OPEN_MINUTE, EXTENDED_CLOSE_MINUTE = 4 * 60, 20 * 60
SESSIONS = ("all", "regular", "extended")
PRE, REGULAR, POST = 0, 1, 2


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
    opens[position], closes[position] = (seconds(pd.DatetimeIndex(sessions["open"])),
                                         seconds(pd.DatetimeIndex(sessions["close"])))
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


def at_day_start(seconds: np.ndarray, *, crypto: bool) -> np.ndarray:
    """Bool per stamp (epoch seconds): a daily bar's stamp, the midnight that starts its day.

    Midnight New York for equities; midnight UTC or midnight US Central (older data) for crypto.
    """
    days = _days()
    if not crypto:
        return days.new_york_midnight[_new_york_day_index(seconds)] == seconds
    central = days.central_midnight[np.searchsorted(days.central_midnight, seconds, side="right") - 1]
    return (seconds % 86_400 == 0) | (central == seconds)


def in_extended_hours(seconds: np.ndarray, step_minutes: int | None) -> np.ndarray:
    """Bool per equity bar start (epoch seconds): on a New York date with an XNYS session and, for intraday bars
    of `step_minutes`, inside 04:00-20:00 New York; a daily bar (None) needs only the session."""
    days, index = _days(), _new_york_day_index(seconds)
    known = days.session_open[index] >= 0
    if step_minutes is None:
        return known
    minute_of_day = (seconds - days.new_york_midnight[index]) // 60
    return known & (minute_of_day >= EXTENDED_OPEN_MINUTE) & (minute_of_day + step_minutes <= EXTENDED_CLOSE_MINUTE)


def session_codes(timestamps: pd.Series, timeframe: str) -> np.ndarray:
    """PRE, REGULAR or POST per intraday equity bar: REGULAR when its interval overlaps the XNYS session.

    So the 09:00 New York hourly bar (09:00-10:00, the opening half hour inside it)
    is regular and the 16:00 bar is post-market; half days close at 13:00.
    """
    step = TIMEFRAMES[timeframe].step_minutes
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


def bucket_starts(days: np.ndarray, timeframe: str) -> np.ndarray:
    """The first day (YYYY-MM-DD) of the bucket of each trading day (YYYY-MM-DD): the items' sort key."""
    kind = TIMEFRAMES[timeframe].bucket
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
