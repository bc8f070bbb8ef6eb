"""Deterministic OHLC bars for the sandbox, consistent across timeframes.

Every bar is derived from one-minute bars that are a pure function of
(symbol, minute): noise comes from a counter-based hash, not a sequential
random stream, so any window of any symbol can be generated on its own, in any
order, and a 5Min, 1Hour or 1Day bar is exactly the aggregate of the 1Min bars
inside it. US equities trade in XNYS regular sessions (holidays and early
closes from exchange-calendars); crypto trades every minute of every day and
its daily bar covers one UTC day. Illiquid symbols have minutes, and sometimes
whole days, without trades; Alpaca omits such bars and so does the sandbox.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import exchange_calendars as xcals
import numpy as np

# Minutes per bar; None is a whole trading day.
TIMEFRAME_MINUTES: dict[str, int | None] = {"1Min": 1, "5Min": 5, "15Min": 15, "30Min": 30, "1Hour": 60, "1Day": None}
TIMEFRAME_ALIASES = {
    "1T": "1Min", "5T": "5Min", "15T": "15Min", "30T": "30Min",
    "60Min": "1Hour", "60T": "1Hour", "1H": "1Hour", "1D": "1Day",
}
MINUTES_PER_DAY = 1440
# Generate at most this many one-minute rows at a time, so memory stays bounded
# however long the requested window is.
CHUNK_MINUTES = 100_000
_U64 = np.uint64
_NS_PER_MINUTE = 60_000_000_000


def canonical_timeframe(value: str) -> str | None:
    """The canonical spelling of an Alpaca timeframe (`5T` -> `5Min`), or None if unsupported."""
    if value in TIMEFRAME_MINUTES:
        return value
    return TIMEFRAME_ALIASES.get(value)


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

    def select(self, index) -> "Bars":
        return Bars(*(getattr(self, f)[index] for f in ("t", "o", "h", "l", "c", "v", "n", "vw")))


class Days(NamedTuple):
    """Trading days as epoch minutes: session open, session close, and the daily bar's timestamp."""

    open: np.ndarray
    close: np.ndarray
    label: np.ndarray

    def slice(self, lo: int, hi: int) -> "Days":
        return Days(self.open[lo:hi], self.close[lo:hi], self.label[lo:hi])


@functools.lru_cache(maxsize=1)
def xnys_days() -> Days:
    """Every XNYS session exchange-calendars knows; a daily bar is stamped midnight New York."""
    import pandas as pd

    sched = xcals.get_calendar("XNYS").schedule
    midnight_ny = sched.index.tz_localize("America/New_York").tz_convert("UTC")
    return Days(
        open=(sched["open"].astype("int64") // _NS_PER_MINUTE).to_numpy(),
        close=(sched["close"].astype("int64") // _NS_PER_MINUTE).to_numpy(),
        label=(pd.Series(midnight_ny).astype("int64") // _NS_PER_MINUTE).to_numpy(),
    )


class BarGenerator:
    """Bars of one symbol; equities follow XNYS sessions, crypto every UTC day."""

    def __init__(self, symbol: str, *, crypto: bool):
        self.crypto = crypto
        digest = hashlib.blake2b(symbol.encode(), digest_size=16).digest()
        self.seed = int.from_bytes(digest[:8], "little")
        profile = int.from_bytes(digest[8:], "little")
        tier = profile % 10
        # Share of minutes with at least one trade: liquid, thin, illiquid.
        self.trade_probability = 1.0 if tier < 7 else (0.6 if tier < 9 else 0.03)
        self.base_price = float(np.exp(np.log(0.2 if tier == 9 else 2.0) + (profile >> 8) % 1000 / 1000 * 6.0))
        self.decimals = 4 if self.base_price < 1 else 2
        self.base_volume = 50 + (profile >> 20) % 5000
        self.phase = (profile >> 40) % 1000 / 1000 * 2 * np.pi
        self.sigma = 0.0012 if crypto else 0.0008

    def days(self, first_minute: int, last_minute: int, *, by_label: bool) -> Days:
        """Trading days whose session overlaps [first_minute, last_minute], or (by_label) whose daily bar lies in it."""
        if self.crypto:
            first_day = -(-first_minute // MINUTES_PER_DAY) if by_label else first_minute // MINUTES_PER_DAY
            label = np.arange(first_day, last_minute // MINUTES_PER_DAY + 1, dtype=np.int64) * MINUTES_PER_DAY
            return Days(label, label + MINUTES_PER_DAY, label)
        d = xnys_days()
        if by_label:
            lo, hi = np.searchsorted(d.label, first_minute, "left"), np.searchsorted(d.label, last_minute, "right")
        else:
            lo, hi = np.searchsorted(d.close, first_minute, "right"), np.searchsorted(d.open, last_minute, "right")
        return d.slice(lo, hi)

    def bars(self, timeframe: str, first_minute: int, last_minute: int) -> Iterator[Bars]:
        """Bars stamped in [first_minute, last_minute] (epoch minutes), in time order, in bounded chunks."""
        step = TIMEFRAME_MINUTES[timeframe]
        days = self.days(first_minute, last_minute, by_label=step is None)
        if len(days.open) == 0:
            return
        per_chunk = max(1, CHUNK_MINUTES // int((days.close - days.open).max()))
        for lo in range(0, len(days.open), per_chunk):
            bars = self._bars_of_days(days.slice(lo, lo + per_chunk), step)
            if step is not None:
                bars = bars.select((bars.t >= first_minute) & (bars.t <= last_minute))
            if len(bars):
                yield bars

    def _bars_of_days(self, days: Days, step: int | None) -> Bars:
        lengths = days.close - days.open
        total = int(lengths.sum())
        day_of_minute = np.repeat(np.arange(len(lengths)), lengths)
        first_index = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        t = days.open[day_of_minute] + (np.arange(total) - first_index[day_of_minute])

        # One 64-bit hash per minute, sliced into the five uniforms a minute needs.
        bits = self._hash(t)
        present = _slice_uniform(bits, 52) < self.trade_probability
        ret = (_slice_uniform(bits, 0) - 0.5) * (self.sigma * np.sqrt(12.0))
        path = np.cumsum(ret)
        path -= np.repeat(path[first_index] - ret[first_index], lengths)
        scale = self._day_anchor(days.label // MINUTES_PER_DAY)[day_of_minute]
        c = np.round(scale * np.exp(path), self.decimals)
        o = np.empty_like(c)  # a minute opens at the previous minute's close; a day at its anchor
        o[1:] = c[:-1]
        o[first_index] = np.round(scale[first_index], self.decimals)
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        h = np.maximum(np.round(top * (1 + _slice_uniform(bits, 13) * 0.0015), self.decimals), top)
        low = np.maximum(np.round(bottom * (1 - _slice_uniform(bits, 26) * 0.0015), self.decimals), 10.0**-self.decimals)
        vol_u = _slice_uniform(bits, 39)
        if self.crypto:
            v = np.round(self.base_volume / self.base_price * (0.05 + vol_u), 6)
            n = np.maximum(1, (vol_u * 40).astype(np.int64))
        else:
            v = (self.base_volume * (0.2 + vol_u * 1.8)).astype(np.int64) + 1
            n = np.maximum(1, v // 37)
        vw = np.clip(np.round((h + low + c) / 3.0, 4), low, h)
        minutes = Bars(t, o, h, low, c, v, n, vw)
        if step == 1:
            return minutes.select(present)
        bucket = days.label[day_of_minute] if step is None else t // step * step
        return _aggregate(minutes, present, bucket)

    def _day_anchor(self, day_numbers: np.ndarray) -> np.ndarray:
        """The day's opening price: seasonal swings plus daily noise, no dependence on earlier days."""
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
    return ((bits >> _U64(shift)) & _U64(0xFFF)).astype(np.float64) * (1.0 / 4096) + (0.5 / 4096)


def _aggregate(minutes: Bars, present: np.ndarray, bucket: np.ndarray) -> Bars:
    """Aggregate the traded minutes into buckets (sorted keys); buckets with no trade are omitted."""
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    index = np.arange(len(bucket))
    first = np.minimum.reduceat(np.where(present, index, len(bucket)), starts)
    last = np.maximum.reduceat(np.where(present, index, -1), starts)
    traded = first < len(bucket)
    volume = np.add.reduceat(np.where(present, minutes.v, 0), starts)
    high = np.maximum.reduceat(np.where(present, minutes.h, -np.inf), starts)
    low = np.minimum.reduceat(np.where(present, minutes.l, np.inf), starts)
    weighted = np.add.reduceat(np.where(present, minutes.vw * minutes.v, 0.0), starts)
    vw = np.clip(np.round(weighted / np.where(traded, volume, 1), 4), low, high)
    bars = Bars(
        t=bucket[starts],
        o=minutes.o[np.minimum(first, len(bucket) - 1)],
        h=high,
        l=low,
        c=minutes.c[last],
        v=volume,
        n=np.add.reduceat(np.where(present, minutes.n, 0), starts),
        vw=vw,
    )
    return bars.select(traded)
