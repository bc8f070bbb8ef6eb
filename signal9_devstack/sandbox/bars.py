"""Deterministic OHLC bars for the sandbox, shaped like the bars Alpaca really returns.

Every bar derives from one-minute bars that are a pure function of (symbol,
minute): noise comes from a counter-based hash, not a sequential random
stream, so any window of any symbol can be generated on its own, in any order,
and a coarser bar is exactly the aggregate of the one-minute bars the same
request would serve (a daily bar by the rule below). What is modelled, and
where it comes from:

- US equities trade 04:00-20:00 New York on XNYS sessions (holidays and early
  closes from exchange-calendars): pre-market 04:00-09:30, the regular session,
  post-market from the close for four hours (16:00-20:00; 13:00-17:00 on early
  closes). Every intraday timeframe includes the extended hours and the 16:00
  bar, and nothing filters them server-side.
  Sources: https://alpaca.markets/support/how-do-you-trade-in-extended-hours-with-alpaca
  (4:00-9:30 and 16:00-20:00 ET); alpacahq/alpaca-py issue 580 (maintainer: no
  server-side regular-hours filter); the 08:00Z AAPL bar in the bars example of
  alpacahq/alpaca-docs content/api-references/market-data-api/stock-pricing-data/historical.md;
  /v2/calendar answers `"session_close": "1700"` on early-close days (recorded
  calendar rows quoted in public code, e.g. 2026-11-27 open 09:30 close 13:00).
- Extended hours are thin: fewer minutes trade, most of them next to the session
  (08:00-09:30, the 90 minutes after the close), and a traded minute has a few
  per cent of a regular minute's volume (the proportions are the sandbox's own).
  An equity's price steps only at its traded minutes.
- A stock minute without a trade has no bar ("no trades - no bar", Alpaca's
  Dan Whitnable, https://forum.alpaca.markets/t/unstable-minute-bar-real-time-data-2022-03-30-googl/8996;
  "bars are only generated when there are valid trades",
  https://forum.alpaca.markets/t/alpaca-market-data-update-bars/8947).
- A crypto minute always has a bar: without a trade its prices come from the
  quote midpoint and `v`, `n` and `vw` are 0 ("If in a bar no trade happens,
  the volume will be 0, but the prices will be determined by the quote prices",
  https://docs.alpaca.markets/docs/historical-crypto-data-1; recorded
  `trade_count: 0, volume: 0, vwap: 0` bar in alpacahq/alpaca-py issue 598).
- Intraday buckets start at multiples of the bar size counted from midnight
  UTC (4Hour bars start at 00:00, 04:00, 08:00 UTC:
  https://forum.alpaca.markets/t/candles-do-not-fully-respect-start-and-end-parameters-in-historical-bars-endpoint/14632).
  Bar sizes 1-59Min and 1-23Hour are served, as Alpaca documents (historical.md above).
- A stock daily bar is stamped midnight New York. Its open/high/low/close come
  from the regular session only, while `v`, `n` and `vw` count every trade of
  the day, extended hours included: Alpaca builds daily bars by the CTS/UTP
  consolidated rules (https://forum.alpaca.markets/t/bar-calculation-cts-guidance-and-alpaca-article-discrepancy/18440),
  under which extended-hours (Form T) trades update volume but not the
  consolidated high/low/last, and the daily VWAP includes post-market trades
  and can lie outside the day's high/low
  (https://forum.alpaca.markets/t/historical-vwap-data-very-wrong/14272). A day
  whose regular session has no trade has no daily bar (not verified).
- A crypto daily bar covers one UTC day stamped at its midnight (Alpaca's
  current stamping, Lumiwealth/lumibot pull request 826, July 2025) or, in the
  older US Central mode, one America/Chicago day stamped at its midnight
  (T05:00:00Z in summer, T06:00:00Z in winter: alpacahq/alpaca-py issue 169,
  alpacahq/Alpaca-API issue 227, dailyBar 2021-12-08T06:00:00Z in
  alpacahq/alpaca-trade-api-go marketdata/rest_test.go). Intraday crypto bars
  do not depend on the mode.
- Alpaca revises recent equity days after the fact (with `reported_by`, the moment of the request; the sandbox's
  `late_reports` setting): late-reported trades reach a day's bars after it ended. Recorded daily bars of the same
  days, fetched the evening of the session and much later, differ by +0.06% to +1.6% of volume, with open, high,
  low and close unchanged (a gold ETF 6,169,585 -> 6,267,916 shares, +1.6%; two index ETFs +0.07% and +0.06%;
  a large-cap stock +0.14%). Here a day's late share is drawn per (symbol, day) from 0.06%-1.6% (uniform in its
  logarithm) and taken from its minutes' volumes (and trades) until the next session's pre-market opens; a
  quarter of it stays missing until the third session after (the two steps are the sandbox's own). One
  extended-hours minute in 400 traded only in late reports: its bar appears only the next day. Prices never
  move: a late trade here adds volume to a minute that has its prices already (Alpaca-API issue 209 and
  alpaca-trade-api-python issue 803 report minute bars missing, then fixed, then missing again). Crypto has
  no late reports.
- The IEX feed is one exchange (~2.5% of market volume: alpacahq/alpaca-docs
  content/api-references/market-data-api/_index.md): a deterministic subset of
  the SIP minutes (fewer in extended hours), with the SIP minute's prices and a
  few per cent of its volume and trades. Same prices is the sandbox's
  simplification; real IEX prints differ from the consolidated ones.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import exchange_calendars as xcals
import numpy as np

MINUTES_PER_DAY = 1440
DAILY = None  # the bar size of 1Day: one trading day, not a number of minutes
# Alpaca's spellings (`5Min`, `2Hour`, `1Day`) plus the short forms the sandbox always accepted.
_TIMEFRAME = re.compile(r"^([1-9][0-9]?)(Min|T|Hour|H|Day|D)$")
_UNIT_MINUTES = {"Min": 1, "T": 1, "Hour": 60, "H": 60}
_MAX_AMOUNT = {1: 59, 60: 23}  # historical.md: "59Min, 23Hour, 1Day, 1Week, 12Month"
# Generate at most about this many one-minute rows at a time, so memory stays bounded
# however long the requested window is.
CHUNK_MINUTES = 100_000
EXTENDED_VOLUME_SHARE = 0.05
LATE_SHARE = (0.0006, 0.016)  # a day's late-reported share of its volume (recorded: +0.06% .. +1.6%)
LATE_STEPS = ((1, 1.0), (3, 0.25))  # until the k-th next session's pre-market opens, this part of it is missing
LATE_ONLY_MINUTES = 1 / 400  # extended-hours minutes whose every trade was reported late
IEX_MINUTE_SHARE = (0.45, 0.08)  # share of the consolidated minutes IEX trades in: regular session, extended hours
UTC_MIDNIGHT, US_CENTRAL_MIDNIGHT = "utc", "us_central"
CRYPTO_DAILY_STAMPS = (UTC_MIDNIGHT, US_CENTRAL_MIDNIGHT)
_U64 = np.uint64
_NS_PER_MINUTE = 60_000_000_000
_FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")


def canonical_timeframe(value: str) -> str | None:
    """Alpaca's spelling of a bar size (`5T` -> `5Min`, `1H` -> `1Hour`), or None if Alpaca would refuse it."""
    match = _TIMEFRAME.match(value or "")
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    if unit in ("Day", "D"):
        return "1Day" if amount == 1 else None
    step = _UNIT_MINUTES[unit]
    if amount > _MAX_AMOUNT[step]:
        return None
    return f"{amount}{'Min' if step == 1 else 'Hour'}"


def timeframe_minutes(timeframe: str) -> int | None:
    """Minutes per bar of a canonical timeframe; DAILY (None) for 1Day."""
    if timeframe == "1Day":
        return DAILY
    amount, unit = _TIMEFRAME.match(timeframe).groups()
    return int(amount) * _UNIT_MINUTES[unit]


@dataclass(frozen=True)
class Bars:
    """Bars of one symbol, as parallel arrays sorted by time (`t` in epoch minutes)."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - Alpaca's own field name
    c: np.ndarray
    v: np.ndarray
    n: np.ndarray
    vw: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def select(self, index) -> Bars:
        return Bars(*(getattr(self, f)[index] for f in _FIELDS))


class Days(NamedTuple):
    """Trading days as epoch minutes: first and after-last traded minute, the regular session, the daily stamp."""

    open: np.ndarray
    close: np.ndarray
    regular_open: np.ndarray
    regular_close: np.ndarray
    label: np.ndarray

    def slice(self, lo: int, hi: int) -> Days:
        return Days(*(part[lo:hi] for part in self))


@functools.lru_cache(maxsize=1)
def xnys_days() -> Days:
    """Every XNYS session exchange-calendars knows, with Alpaca's 04:00 pre-market and four-hour post-market."""
    import pandas as pd

    sched = xcals.get_calendar("XNYS").schedule
    midnight_ny = (pd.Series(sched.index.tz_localize("America/New_York").tz_convert("UTC")).astype("int64")
                   // _NS_PER_MINUTE)
    regular_open = (sched["open"].astype("int64") // _NS_PER_MINUTE).to_numpy()
    regular_close = (sched["close"].astype("int64") // _NS_PER_MINUTE).to_numpy()
    label = midnight_ny.to_numpy()
    # No DST change falls between midnight and 04:00 of a weekday, so 04:00 New York is midnight + 240.
    return Days(open=label + 240, close=regular_close + 240, regular_open=regular_open,
                regular_close=regular_close, label=label)


@functools.lru_cache(maxsize=1)
def us_central_midnights() -> np.ndarray:
    """Every America/Chicago midnight from 1970 to 2100 as epoch minutes (23- and 25-hour days at DST changes)."""
    import pandas as pd

    days = pd.date_range("1969-12-31", "2101-01-01", freq="D", tz="America/Chicago")
    return (days.tz_convert("UTC").asi8 // _NS_PER_MINUTE).astype(np.int64)


def daily_boundaries(stamp: str, first_minute: int, last_minute: int) -> np.ndarray:
    """Crypto day starts (sorted epoch minutes) from the one holding first_minute to the first after last_minute."""
    if stamp == UTC_MIDNIGHT:
        return (np.arange(first_minute // MINUTES_PER_DAY, last_minute // MINUTES_PER_DAY + 2, dtype=np.int64)
                * MINUTES_PER_DAY)
    midnights = us_central_midnights()
    lo = max(0, int(np.searchsorted(midnights, first_minute, "right")) - 1)
    hi = int(np.searchsorted(midnights, last_minute, "right")) + 1
    return midnights[lo:hi]


class BarGenerator:
    """Bars of one symbol; equities follow XNYS sessions with extended hours, crypto every UTC day."""

    def __init__(self, symbol: str, *, crypto: bool):
        self.crypto = crypto
        digest = hashlib.blake2b(symbol.encode(), digest_size=16).digest()
        self.seed = int.from_bytes(digest[:8], "little")
        profile = int.from_bytes(digest[8:], "little")
        tier = profile % 10
        # Share of minutes with at least one trade - regular session, the extended hours next to it (08:00-09:30
        # and 90 minutes after the close), the rest of them (from 04:00, until 20:00) - liquid, thin, illiquid.
        self.trade_probabilities = ((1.0, 0.5, 0.1) if tier < 7 else
                                    ((0.6, 0.1, 0.02) if tier < 9 else (0.03, 0.005, 0.001)))
        self.trade_probability = self.trade_probabilities[0]
        self.base_price = float(np.exp(np.log(0.2 if tier == 9 else 2.0) + (profile >> 8) % 1000 / 1000 * 6.0))
        self.decimals = 4 if self.base_price < 1 else 2
        self.base_volume = 50 + (profile >> 20) % 5000
        self.phase = (profile >> 40) % 1000 / 1000 * 2 * np.pi
        self.sigma = 0.0012 if crypto else 0.0008
        self.reported_by: int | None = None

    # --- what a request gets -----------------------------------------------------------------
    def bars(self, timeframe: str, first_minute: int, last_minute: int, *, feed: str = "sip",
             crypto_daily: str = UTC_MIDNIGHT, reported_by: int | None = None) -> Iterator[Bars]:
        """Bars stamped in [first_minute, last_minute] (epoch minutes), in time order, in bounded chunks.

        `feed` is "sip" or "iex" (equities only); `crypto_daily` is the crypto daily stamp mode; `reported_by` (an
        epoch minute) answers equities as known then, late reports not yet in (None: every day as finally reported).
        """
        step = timeframe_minutes(timeframe)
        iex = feed == "iex" and not self.crypto
        self.reported_by = None if self.crypto else reported_by
        if step is DAILY:
            chunks = self._crypto_daily(first_minute, last_minute, crypto_daily) if self.crypto else \
                self._equity_daily(first_minute, last_minute, iex)
        else:
            chunks = self._intraday(step, first_minute, last_minute, iex)
        for bars in chunks:
            if len(bars):
                yield bars

    def _intraday(self, step: int, first: int, last: int, iex: bool) -> Iterator[Bars]:
        # Buckets never cross midnight UTC, so chunks of whole UTC days never split one.
        per_chunk = max(1, CHUNK_MINUTES // MINUTES_PER_DAY)
        for day in range(first // MINUTES_PER_DAY, last // MINUTES_PER_DAY + 1, per_chunk):
            lo = max(day * MINUTES_PER_DAY, _bucket(first, step))
            hi = min((day + per_chunk) * MINUTES_PER_DAY, _bucket(last, step) + step,
                     (last // MINUTES_PER_DAY + 1) * MINUTES_PER_DAY)
            if hi <= lo:
                continue
            minutes = self._minutes_between(lo, hi, iex)
            bars = minutes if step == 1 else _aggregate(minutes, _bucket(minutes.t, step))
            yield bars.select((bars.t >= first) & (bars.t <= last))

    def _equity_daily(self, first: int, last: int, iex: bool) -> Iterator[Bars]:
        d = xnys_days()
        lo, hi = np.searchsorted(d.label, first, "left"), np.searchsorted(d.label, last, "right")
        per_chunk = max(1, CHUNK_MINUTES // 960)
        for start in range(lo, hi, per_chunk):
            days = d.slice(start, min(start + per_chunk, hi))
            minutes, regular, day = self._minutes(days, iex)
            if not len(minutes):
                continue
            label = days.label[day]
            everything = _aggregate(minutes, label, clip_vwap=False)
            session = _aggregate(minutes.select(regular), label[regular])
            counted = np.searchsorted(everything.t, session.t)
            yield Bars(session.t, session.o, session.h, session.l, session.c,
                       everything.v[counted], everything.n[counted], everything.vw[counted])

    def _crypto_daily(self, first: int, last: int, stamp: str) -> Iterator[Bars]:
        starts = daily_boundaries(stamp, first, last)
        wanted = np.flatnonzero((starts[:-1] >= first) & (starts[:-1] <= last))
        per_chunk = max(1, CHUNK_MINUTES // MINUTES_PER_DAY)
        for lo in range(0, len(wanted), per_chunk):
            chunk = wanted[lo:lo + per_chunk]
            minutes = self._minutes_between(int(starts[chunk[0]]), int(starts[chunk[-1] + 1]), iex=False)
            yield _aggregate(minutes, starts[np.searchsorted(starts, minutes.t, "right") - 1])

    # --- one-minute bars -------------------------------------------------------------------------
    def _days_overlapping(self, lo: int, hi: int) -> Days:
        if self.crypto:
            label = np.arange(lo // MINUTES_PER_DAY, -(-hi // MINUTES_PER_DAY), dtype=np.int64) * MINUTES_PER_DAY
            return Days(label, label + MINUTES_PER_DAY, label, label + MINUTES_PER_DAY, label)
        d = xnys_days()
        return d.slice(np.searchsorted(d.close, lo, "right"), np.searchsorted(d.open, hi, "left"))

    def _minutes_between(self, lo: int, hi: int, iex: bool) -> Bars:
        """The served one-minute bars stamped in [lo, hi)."""
        minutes, _, _ = self._minutes(self._days_overlapping(lo, hi), iex)
        return minutes.select((minutes.t >= lo) & (minutes.t < hi))

    def _minutes(self, days: Days, iex: bool) -> tuple[Bars, np.ndarray, np.ndarray]:
        """The one-minute bars of whole days as served: traded minutes for equities, every minute for crypto.

        Each day's price walks from the day's anchor, one step per served minute (an equity's price moves
        only when it trades), and a minute opens at the previous step's close.
        """
        lengths = days.close - days.open
        if not len(lengths):
            return _no_bars(), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
        if self.crypto:
            t = np.repeat(days.open - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
            regular, per_day = np.ones(len(t), dtype=bool), lengths
        else:
            t, regular, per_day = self._traded(days, lengths)
        day = np.repeat(np.arange(len(lengths)), per_day)
        first = (np.cumsum(per_day) - per_day)[per_day > 0]

        # One 64-bit hash per minute, sliced into the uniforms a minute needs.
        bits = self._hash(t)
        # (uniform - 0.5) * sigma * sqrt(12), the uniform's arithmetic folded in.
        ret = (((bits & _U64(0xFFF)).astype(np.int32) - 2047.5) * (self.sigma * np.sqrt(12.0) / 4096))
        path = np.cumsum(ret)
        path -= np.repeat(path[first] - ret[first], per_day[per_day > 0])  # each day walks from its own anchor
        traded = (bits >> _U64(52)).astype(np.int32) < _threshold(self.trade_probability) if self.crypto else None
        if iex:  # IEX's share of the consolidated minutes, chosen before pricing so only they are priced
            iex_bits = self._hash(t, stream=2)
            keep = np.flatnonzero(_slice_uniform(iex_bits, 0) < np.where(regular, *IEX_MINUTE_SHARE))
            t, bits, ret, path, regular, day, iex_bits = (a[keep] for a in (t, bits, ret, path, regular, day, iex_bits))

        scaled = self._day_anchor(days.label // MINUTES_PER_DAY)[day] * np.exp(path)
        c = np.round(scaled, self.decimals)
        # The open is the previous minute's close, exp(path - ret): exp(-ret) to third order (|ret| < 0.0021).
        o = np.round(scaled * (1.0 - ret * (1.0 - ret * (0.5 - ret / 6.0))), self.decimals)
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        h = np.maximum(np.round(top * (1 + _slice_uniform(bits, 13) * 0.0015), self.decimals), top)
        low = np.maximum(np.round(bottom * (1 - _slice_uniform(bits, 26) * 0.0015), self.decimals),
                         10.0**-self.decimals)
        vol_u = _slice_uniform(bits, 39)
        vw = np.clip(np.round((h + low + c) / 3.0, 4), low, h)
        if self.crypto:
            v = np.where(traded, np.round(self.base_volume / self.base_price * (0.05 + vol_u), 6), 0.0)
            n = np.where(traded, np.maximum(1, (vol_u * 40).astype(np.int64)), 0)
            vw = np.where(traded, vw, 0.0)
        else:
            share = np.where(regular, 1.0, EXTENDED_VOLUME_SHARE)
            v = (self.base_volume * share * (0.2 + vol_u * 1.8)).astype(np.int64) + 1
            if self.reported_by is not None:
                v, unreported = self._reported(days, day, t, regular, v)
            n = np.maximum(1, v // 37)
        if iex:  # 1-10% of the consolidated minute's volume (5.5% on average), trades in proportion
            sip_v = v
            v = np.maximum(1, (sip_v * (0.01 + _slice_uniform(iex_bits, 12) * 0.09)).astype(np.int64))
            n = np.clip(np.round(n * v / sip_v).astype(np.int64), 1, n)
        bars = Bars(t, o, h, low, c, v, n, vw)
        if self.crypto or self.reported_by is None or not unreported.any():
            return bars, regular, day
        return bars.select(~unreported), regular[~unreported], day[~unreported]

    def _reported(self, days: Days, day: np.ndarray, t: np.ndarray, regular: np.ndarray,
                  v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Minute volumes as reported by `self.reported_by`, and the minutes with no trade reported yet."""
        every = xnys_days()
        index = np.searchsorted(every.label, days.label)
        missing = np.zeros(len(index))
        for k, part in reversed(LATE_STEPS):
            later = every.open[np.minimum(index + k, len(every.open) - 1)]
            missing = np.where(self.reported_by < later, part, missing)
        low, high = np.log(LATE_SHARE[0]), np.log(LATE_SHARE[1])
        late_share = np.exp(low + _slice_uniform(self._hash(days.label // MINUTES_PER_DAY, stream=5), 0) * (high - low))
        bits = self._hash(t, stream=6)
        late = np.floor(v * (late_share * missing)[day] + _slice_uniform(bits, 0)).astype(np.int64)
        unreported = (missing[day] == 1.0) & ~regular & (_slice_uniform(bits, 12) < LATE_ONLY_MINUTES)
        return np.maximum(v - late, 1), unreported

    def _traded(self, days: Days, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """An equity's traded minutes of whole days: their stamps, regular-session flags and count per day.

        Whether a minute trades is one byte of a hash of its 8-minute block, so the minutes that do not
        trade, most of the extended hours, cost an eighth of a hash and a comparison.
        """
        block0 = int(days.open[0]) // 8
        words = self._hash(np.arange(block0, (int(days.close[-1]) - 1) // 8 + 1, dtype=np.int64), stream=3)
        trade_bytes = words.astype("<u8").view(np.uint8)  # little-endian whatever the machine, for determinism
        offsets = (days.open - block0 * 8).tolist()
        shapes = [_session_shape(*shape, self.trade_probabilities) for shape in
                  zip(lengths.tolist(), (days.regular_open - days.open).tolist(),
                      (days.regular_close - days.regular_open).tolist())]
        session_bytes = np.concatenate([trade_bytes[o:o + len(shape[0])] for o, shape in zip(offsets, shapes)])
        traded = session_bytes < np.concatenate([shape[1] for shape in shapes])
        keep = np.flatnonzero(traded)
        first_index = np.cumsum(lengths) - lengths
        per_day = np.add.reduceat(traded, first_index, dtype=np.int64)
        t = keep + np.repeat(days.open - first_index, per_day)
        return t, np.concatenate([shape[0] for shape in shapes])[keep], per_day

    def _day_anchor(self, day_numbers: np.ndarray) -> np.ndarray:
        """The day's first price: seasonal swings plus daily noise, no dependence on earlier days."""
        d = day_numbers.astype(np.float64)
        noise = _slice_uniform(self._hash(day_numbers, stream=1), 0) - 0.5
        return np.exp(
            np.log(self.base_price)
            + 0.25 * np.sin(2 * np.pi * d / 365.0 + self.phase)
            + 0.08 * np.sin(2 * np.pi * d / 41.0 + 2 * self.phase)
            + 0.03 * noise
        )

    def _hash(self, keys: np.ndarray, stream: int = 0) -> np.ndarray:
        """64 well-mixed bits per key, a pure function of (symbol, stream, key): splitmix64."""
        with np.errstate(over="ignore"):
            x = keys.astype(np.int64).view(_U64) * _U64(0x9E3779B97F4A7C15)
            x ^= _U64((self.seed + stream * 0xBF58476D1CE4E5B9) % 2**64)
            x ^= x >> _U64(30)
            x *= _U64(0xBF58476D1CE4E5B9)
            x ^= x >> _U64(27)
            x *= _U64(0x94D049BB133111EB)
            x ^= x >> _U64(31)
        return x


def _slice_uniform(bits: np.ndarray, shift: int) -> np.ndarray:
    """Uniform on (0, 1) with 12 bits of resolution, from bits[shift:shift+12]."""
    # Through int32: numpy converts uint64 to float64 without SIMD, several times slower.
    return ((bits >> _U64(shift)) & _U64(0xFFF)).astype(np.int32).astype(np.float64) * (1.0 / 4096) + (0.5 / 4096)


@functools.lru_cache(maxsize=64)
def _session_shape(minutes: int, pre_market: int, session: int,
                   probabilities: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per minute of a trading day of this shape: is it in the regular session, and its trade threshold."""
    i = np.arange(minutes)
    regular = (i >= pre_market) & (i < pre_market + session)
    near = ((i >= pre_market - 90) & (i < pre_market)) | ((i >= pre_market + session) & (i < pre_market + session + 90))
    levels = [_threshold(p, bits=8) for p in probabilities]
    return regular, np.where(regular, levels[0], np.where(near, levels[1], levels[2])).astype(np.int16)


def _threshold(probability: float, bits: int = 12) -> int:
    """The integer x such that a uniform field of `bits` bits (as _slice_uniform reads it) is below
    `probability` exactly when the field is below x."""
    return int(np.ceil(probability * 2**bits - 0.5))


def _no_bars() -> Bars:
    return Bars(*(np.zeros(0, dtype=np.int64) for _ in _FIELDS))


def _bucket(t, step: int):
    """The start of the `step`-minute bucket holding each minute, counted from that minute's midnight UTC."""
    midnight = t // MINUTES_PER_DAY * MINUTES_PER_DAY
    return midnight + (t - midnight) // step * step


def _aggregate(minutes: Bars, bucket: np.ndarray, *, clip_vwap: bool = True) -> Bars:
    """Aggregate one-minute bars into buckets (sorted keys): first open, highest high, lowest low, last close,
    summed volume and trades, volume-weighted vwap (0 where no volume traded)."""
    if not len(minutes):
        return minutes
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    ends = np.concatenate([starts[1:], [len(bucket)]]) - 1
    volume = np.add.reduceat(minutes.v, starts)
    high = np.maximum.reduceat(minutes.h, starts)
    low = np.minimum.reduceat(minutes.l, starts)
    weighted = np.add.reduceat(minutes.vw * minutes.v, starts)
    traded = volume > 0
    vw = np.round(weighted / np.where(traded, volume, 1), 4)
    if clip_vwap:
        vw = np.clip(vw, low, high)
    return Bars(
        t=bucket[starts], o=minutes.o[starts], h=high, l=low, c=minutes.c[ends], v=volume,
        n=np.add.reduceat(minutes.n, starts), vw=np.where(traded, vw, 0.0),
    )
