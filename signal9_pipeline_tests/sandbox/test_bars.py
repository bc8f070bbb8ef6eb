"""The sandbox's bar generator: calendar, determinism, consistency across timeframes."""

from datetime import datetime, timezone

import numpy as np
import pytest

from signal9_pipeline.sandbox.bars import BarGenerator, Bars, canonical_timeframe


def minute(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() // 60)


def collect(gen: BarGenerator, timeframe: str, start: str, end: str) -> Bars:
    chunks = list(gen.bars(timeframe, minute(start), minute(end)))
    if not chunks:
        return Bars(*(np.array([]) for _ in range(8)))
    return Bars(*(np.concatenate([getattr(c, f) for c in chunks]) for f in ("t", "o", "h", "l", "c", "v", "n", "vw")))


def liquid_symbol(crypto: bool = False) -> str:
    return next(s for s in (f"LIQ{i}" for i in range(100)) if BarGenerator(s, crypto=crypto).trade_probability == 1.0)


def thin_symbol() -> str:
    return next(s for s in (f"THIN{i}" for i in range(200)) if BarGenerator(s, crypto=False).trade_probability < 0.1)


@pytest.mark.parametrize("timeframe,step", [("5Min", 5), ("15Min", 15), ("30Min", 30), ("1Hour", 60)])
@pytest.mark.parametrize("symbol", [liquid_symbol(), thin_symbol(), "AAPL"])
def test_intraday_bars_aggregate_the_minute_bars(symbol, timeframe, step):
    gen = BarGenerator(symbol, crypto=False)
    minutes = collect(gen, "1Min", "2024-03-08T00:00", "2024-03-12T00:00")
    coarse = collect(gen, timeframe, "2024-03-08T00:00", "2024-03-12T00:00")
    bucket = minutes.t // step * step
    assert np.array_equal(np.unique(bucket), coarse.t)
    for i, t in enumerate(coarse.t):
        inside = bucket == t
        assert coarse.o[i] == minutes.o[inside][0] and coarse.c[i] == minutes.c[inside][-1]
        assert coarse.h[i] == minutes.h[inside].max() and coarse.l[i] == minutes.l[inside].min()
        assert coarse.v[i] == minutes.v[inside].sum() and coarse.n[i] == minutes.n[inside].sum()


def test_daily_bar_aggregates_the_sessions_minutes_and_is_stamped_midnight_new_york():
    gen = BarGenerator("AAPL", crypto=False)
    day = collect(gen, "1Day", "2024-07-01T00:00", "2024-07-01T23:59")
    minutes = collect(gen, "1Min", "2024-07-01T00:00", "2024-07-01T23:59")
    assert day.t.tolist() == [minute("2024-07-01T04:00")]  # EDT midnight
    assert day.o[0] == minutes.o[0] and day.c[0] == minutes.c[-1]
    assert day.h[0] == minutes.h.max() and day.l[0] == minutes.l.min() and day.v[0] == minutes.v.sum()
    winter = collect(gen, "1Day", "2024-01-02T00:00", "2024-01-02T23:59")
    assert winter.t.tolist() == [minute("2024-01-02T05:00")]  # EST midnight


def test_equities_follow_the_xnys_calendar_holidays_early_closes_and_dst():
    gen = BarGenerator(liquid_symbol(), crypto=False)
    assert len(collect(gen, "1Min", "2024-12-25T00:00", "2024-12-25T23:59")) == 0  # Christmas
    assert len(collect(gen, "1Min", "2024-11-30T00:00", "2024-12-01T23:59")) == 0  # weekend
    black_friday = collect(gen, "1Min", "2024-11-29T00:00", "2024-11-29T23:59")
    assert black_friday.t[0] == minute("2024-11-29T14:30") and black_friday.t[-1] == minute("2024-11-29T17:59")
    assert len(black_friday) == 210  # 09:30-13:00 New York
    before_dst = collect(gen, "1Min", "2024-03-08T00:00", "2024-03-08T23:59")
    after_dst = collect(gen, "1Min", "2024-03-11T00:00", "2024-03-11T23:59")
    assert before_dst.t[0] == minute("2024-03-08T14:30") and after_dst.t[0] == minute("2024-03-11T13:30")
    assert len(before_dst) == len(after_dst) == 390


def test_crypto_trades_every_minute_and_its_day_is_a_utc_day():
    gen = BarGenerator(liquid_symbol(crypto=True), crypto=True)
    sunday = collect(gen, "1Min", "2024-12-01T00:00", "2024-12-01T23:59")
    assert len(sunday) == 1440
    days = collect(gen, "1Day", "2024-11-30T00:00", "2024-12-02T00:00")
    assert days.t.tolist() == [minute("2024-11-30T00:00"), minute("2024-12-01T00:00"), minute("2024-12-02T00:00")]
    assert days.v[1] == pytest.approx(sunday.v.sum())


def test_bars_are_a_pure_function_of_symbol_and_time():
    gen = BarGenerator("MSFT", crypto=False)
    wide = collect(gen, "1Min", "2024-05-01T00:00", "2024-05-10T00:00")
    narrow = collect(BarGenerator("MSFT", crypto=False), "1Min", "2024-05-06T00:00", "2024-05-06T23:59")
    inside = (wide.t >= narrow.t[0]) & (wide.t <= narrow.t[-1])
    assert np.array_equal(wide.c[inside], narrow.c) and np.array_equal(wide.v[inside], narrow.v)
    other = collect(BarGenerator("MSFU", crypto=False), "1Min", "2024-05-06T00:00", "2024-05-06T23:59")
    assert not np.array_equal(other.c[:10], narrow.c[:10])


def test_bars_are_valid_ohlc_and_illiquid_symbols_have_gaps():
    for symbol, crypto in ((liquid_symbol(), False), (thin_symbol(), False), ("BTC/USD", True)):
        bars = collect(BarGenerator(symbol, crypto=crypto), "1Min", "2024-06-03T00:00", "2024-06-07T23:59")
        assert (bars.h >= np.maximum(bars.o, bars.c)).all() and (bars.l <= np.minimum(bars.o, bars.c)).all()
        assert (bars.l > 0).all() and (bars.v > 0).all() and (bars.n >= 1).all()
        assert ((bars.vw >= bars.l) & (bars.vw <= bars.h)).all()
        assert (np.diff(bars.t) > 0).all()
    thin = collect(BarGenerator(thin_symbol(), crypto=False), "1Min", "2024-06-03T00:00", "2024-06-07T23:59")
    assert 0 < len(thin) < 5 * 390 * 0.2


def test_timeframe_spellings():
    assert canonical_timeframe("5T") == "5Min" and canonical_timeframe("1H") == "1Hour"
    assert canonical_timeframe("1D") == "1Day" and canonical_timeframe("1Day") == "1Day"
    assert canonical_timeframe("7Min") is None and canonical_timeframe("1Week") is None
