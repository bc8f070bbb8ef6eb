"""The sandbox's bar generator: Alpaca's sessions and stamps, determinism, consistency across timeframes."""

from datetime import datetime, timezone

import numpy as np
import pytest

from signal9_devstack.sandbox.bars import BarGenerator, Bars, canonical_timeframe

FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")


def minute(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() // 60)


def collect(gen: BarGenerator, timeframe: str, start: str, end: str, **kwargs) -> Bars:
    chunks = list(gen.bars(timeframe, minute(start), minute(end), **kwargs))
    if not chunks:
        return Bars(*(np.array([]) for _ in FIELDS))
    return Bars(*(np.concatenate([getattr(c, f) for c in chunks]) for f in FIELDS))


def symbol_with(probability: float, *, crypto: bool = False, prefix: str = "S") -> str:
    return next(s for s in (f"{prefix}{i}" + ("/USD" if crypto else "") for i in range(500))
                if BarGenerator(s, crypto=crypto).trade_probability == probability)


LIQUID, THIN, ILLIQUID = symbol_with(1.0), symbol_with(0.6), symbol_with(0.03)


def new_york_minutes(bars: Bars) -> np.ndarray:
    """Minutes after midnight New York of each bar (EDT in these summer windows)."""
    return (bars.t - 240) % 1440


def regular(bars: Bars) -> np.ndarray:
    return (new_york_minutes(bars) >= 570) & (new_york_minutes(bars) < 960)


def assert_is_aggregate(coarse: Bars, minutes: Bars, bucket: np.ndarray, *, prices_from: np.ndarray | None = None):
    """Each coarse bar is its bucket's minutes: first open, extremes, last close, sums, volume-weighted vwap."""
    assert np.array_equal(np.unique(bucket), coarse.t)
    priced = np.ones(len(minutes), dtype=bool) if prices_from is None else prices_from
    for i, t in enumerate(coarse.t):
        inside, in_prices = bucket == t, (bucket == t) & priced
        assert coarse.o[i] == minutes.o[in_prices][0] and coarse.c[i] == minutes.c[in_prices][-1]
        assert coarse.h[i] == minutes.h[in_prices].max() and coarse.l[i] == minutes.l[in_prices].min()
        assert coarse.v[i] == pytest.approx(minutes.v[inside].sum()) and coarse.n[i] == minutes.n[inside].sum()
        volume = minutes.v[inside].sum()
        vwap = (minutes.vw[inside] * minutes.v[inside]).sum() / volume if volume else 0.0
        assert coarse.vw[i] == pytest.approx(vwap, abs=1e-4)


# --- equities: sessions and extended hours -----------------------------------------------------
def test_intraday_bars_cover_04_00_to_20_00_new_york_with_a_thinner_pre_and_post_market():
    bars = collect(BarGenerator(LIQUID, crypto=False), "1Min", "2024-06-03T00:00", "2024-06-08T00:00")
    local = new_york_minutes(bars)
    assert local.min() >= 240 and local.max() < 1200  # 04:00-19:59, nothing overnight
    pre, post, session = local < 570, local >= 960, regular(bars)
    assert pre.any() and post.any()
    assert (local == 960).sum() >= 1  # the 16:00 bar is post-market's first minute
    assert session.sum() == 5 * 390  # a liquid symbol trades every regular minute ...
    assert pre.sum() + post.sum() < 0.8 * 5 * 570  # ... and far fewer extended ones, with a fraction of the volume
    assert bars.v[pre | post].mean() < 0.15 * bars.v[session].mean()


def test_hour_bars_include_the_extended_hours_and_the_16_00_bar():
    bars = collect(BarGenerator(LIQUID, crypto=False), "1Hour", "2024-06-03T00:00", "2024-06-03T23:59")
    assert bars.t.tolist() == list(range(minute("2024-06-03T08:00"), minute("2024-06-04T00:00"), 60))  # 04:00-19:00 EDT


def test_early_close_days_end_the_session_at_13_00_and_extended_hours_at_17_00():
    bars = collect(BarGenerator(LIQUID, crypto=False), "1Min", "2024-11-29T00:00", "2024-11-29T23:59")
    local = (bars.t - 300) % 1440  # EST
    session = (local >= 570) & (local < 780)
    assert session.sum() == 210  # 09:30-13:00
    assert local.min() >= 240 and local.max() < 1020 and (local >= 780).any()  # post-market 13:00-17:00


def test_equities_follow_the_xnys_calendar_holidays_weekends_and_dst():
    gen = BarGenerator(LIQUID, crypto=False)
    assert len(collect(gen, "1Min", "2024-12-25T00:00", "2024-12-25T23:59")) == 0  # Christmas
    assert len(collect(gen, "1Min", "2024-11-30T00:00", "2024-12-01T23:59")) == 0  # weekend
    winter = collect(gen, "1Min", "2024-03-08T05:00", "2024-03-09T04:59")  # one New York day each
    summer = collect(gen, "1Min", "2024-03-11T04:00", "2024-03-12T03:59")
    # 04:00-20:00 EST
    assert winter.t.min() >= minute("2024-03-08T09:00") and winter.t.max() < minute("2024-03-09T01:00")
    assert summer.t.min() >= minute("2024-03-11T08:00") and summer.t.max() < minute("2024-03-12T00:00")  # EDT
    assert ((winter.t >= minute("2024-03-08T14:30")) & (winter.t < minute("2024-03-08T21:00"))).sum() == 390
    assert ((summer.t >= minute("2024-03-11T13:30")) & (summer.t < minute("2024-03-11T20:00"))).sum() == 390


def test_a_stock_minute_without_trades_has_no_bar():
    thin = collect(BarGenerator(THIN, crypto=False), "1Min", "2024-06-03T00:00", "2024-06-07T23:59")
    assert 0 < regular(thin).sum() < 5 * 390 * 0.7
    assert (thin.v > 0).all() and (thin.n >= 1).all() and (thin.vw > 0).all()
    illiquid = collect(BarGenerator(ILLIQUID, crypto=False), "1Min", "2024-06-03T00:00", "2024-06-07T23:59")
    assert len(illiquid) < 5 * 390 * 0.1


# --- aggregation -------------------------------------------------------------------------------
@pytest.mark.parametrize("timeframe,step", [("5Min", 5), ("7Min", 7), ("30Min", 30), ("1Hour", 60), ("4Hour", 240)])
@pytest.mark.parametrize("symbol", [LIQUID, THIN, "AAPL"])
@pytest.mark.parametrize("feed", ["sip", "iex"])
def test_intraday_bars_aggregate_the_minute_bars_extended_hours_included(symbol, timeframe, step, feed):
    gen = BarGenerator(symbol, crypto=False)
    minutes = collect(gen, "1Min", "2024-03-08T00:00", "2024-03-12T00:00", feed=feed)
    coarse = collect(gen, timeframe, "2024-03-08T00:00", "2024-03-12T00:00", feed=feed)
    assert_is_aggregate(coarse, minutes, minutes.t // 1440 * 1440 + minutes.t % 1440 // step * step)
    assert (~regular(minutes)).any()


@pytest.mark.parametrize("feed", ["sip", "iex"])
def test_a_daily_bar_prices_the_regular_session_and_counts_every_trade_of_the_day(feed):
    gen = BarGenerator("AAPL", crypto=False)
    day = collect(gen, "1Day", "2024-07-01T00:00", "2024-07-02T23:59", feed=feed)
    minutes = collect(gen, "1Min", "2024-07-01T00:00", "2024-07-03T03:59", feed=feed)
    assert day.t.tolist() == [minute("2024-07-01T04:00"), minute("2024-07-02T04:00")]  # midnight EDT
    assert_is_aggregate(day, minutes, (minutes.t - 240) // 1440 * 1440 + 240, prices_from=regular(minutes))
    session_volume = minutes.v[regular(minutes) & (minutes.t < minute("2024-07-02T04:00"))].sum()
    assert day.v[0] > session_volume  # pre- and post-market volume counted
    winter = collect(gen, "1Day", "2024-01-02T00:00", "2024-01-02T23:59", feed=feed)
    assert winter.t.tolist() == [minute("2024-01-02T05:00")]  # midnight EST


# --- crypto ------------------------------------------------------------------------------------
def test_every_crypto_minute_has_a_bar_and_minutes_without_trades_have_zero_volume():
    illiquid = symbol_with(0.03, crypto=True, prefix="C")
    bars = collect(BarGenerator(illiquid, crypto=True), "1Min", "2024-12-01T00:00", "2024-12-01T23:59")
    assert len(bars) == 1440 and (np.diff(bars.t) == 1).all()
    quiet = bars.v == 0
    assert 0.9 < quiet.mean() < 1.0
    assert (bars.n[quiet] == 0).all() and (bars.vw[quiet] == 0).all()
    assert (bars.l[quiet] > 0).all() and (bars.h[quiet] >= bars.l[quiet]).all()  # priced from the quotes
    hours = collect(BarGenerator(illiquid, crypto=True), "1Hour", "2024-12-01T00:00", "2024-12-01T23:59")
    assert len(hours) == 24
    assert_is_aggregate(hours, bars, bars.t // 60 * 60)


def test_crypto_daily_bars_are_utc_days_stamped_at_midnight_utc_by_default():
    gen = BarGenerator("BTC/USD", crypto=True)
    days = collect(gen, "1Day", "2024-11-30T00:00", "2024-12-02T00:00")
    assert days.t.tolist() == [minute("2024-11-30T00:00"), minute("2024-12-01T00:00"), minute("2024-12-02T00:00")]
    minutes = collect(gen, "1Min", "2024-11-30T00:00", "2024-12-02T23:59")
    assert_is_aggregate(days, minutes, minutes.t // 1440 * 1440)


@pytest.mark.parametrize("change,stamps,hours", [
    # spring forward: the 10 March Central day lasts 23 hours; fall back: the 3 November one 25
    ("2024-03-09", ["2024-03-09T06:00", "2024-03-10T06:00", "2024-03-11T05:00"], [24, 23, 24]),
    ("2024-11-02", ["2024-11-02T05:00", "2024-11-03T05:00", "2024-11-04T06:00"], [24, 25, 24]),
])
def test_crypto_daily_bars_in_us_central_mode_are_central_days_across_dst(change, stamps, hours):
    gen = BarGenerator("ETH/USD", crypto=True)
    start, end = f"{change}T00:00", stamps[-1]
    days = collect(gen, "1Day", start, end, crypto_daily="us_central")
    assert days.t.tolist() == [minute(s) for s in stamps]
    bounds = np.array([minute(s) for s in stamps] + [days.t[-1] + hours[-1] * 60])
    assert (np.diff(bounds) == np.array(hours) * 60).all()
    minutes = Bars(*(np.concatenate([getattr(c, f) for c in gen.bars("1Min", bounds[0], bounds[-1] - 1)])
                     for f in FIELDS))
    assert_is_aggregate(days, minutes, bounds[np.searchsorted(bounds, minutes.t, "right") - 1])
    intraday = collect(gen, "1Hour", start, end)
    assert intraday.t.tolist() == collect(gen, "1Hour", start, end, crypto_daily="utc").t.tolist()


# --- feeds -------------------------------------------------------------------------------------
def test_iex_is_a_thinner_subset_of_the_sip_minutes_with_the_same_prices():
    gen = BarGenerator(LIQUID, crypto=False)
    sip = collect(gen, "1Min", "2024-06-03T00:00", "2024-06-08T00:00", feed="sip")
    iex = collect(gen, "1Min", "2024-06-03T00:00", "2024-06-08T00:00", feed="iex")
    at = np.searchsorted(sip.t, iex.t)
    assert np.array_equal(sip.t[at], iex.t) and 0.2 * len(sip) < len(iex) < 0.4 * len(sip)
    for field in ("o", "h", "l", "c", "vw"):
        assert np.array_equal(getattr(sip, field)[at], getattr(iex, field))
    assert (iex.v <= sip.v[at]).all() and (iex.n <= sip.n[at]).all()
    assert 0.01 < iex.v.sum() / sip.v.sum() < 0.05  # IEX: ~2.5% of the market's volume
    assert (~regular(iex)).mean() < 0.5 * (~regular(sip)).mean()  # sparser still before the open and after the close
    sip_day = collect(gen, "1Day", "2024-06-03T00:00", "2024-06-07T23:59", feed="sip")
    iex_day = collect(gen, "1Day", "2024-06-03T00:00", "2024-06-07T23:59", feed="iex")
    assert np.array_equal(sip_day.t, iex_day.t) and (iex_day.v < sip_day.v).all()


# --- determinism and validity ------------------------------------------------------------------
def test_bars_are_a_pure_function_of_symbol_and_time():
    gen = BarGenerator("MSFT", crypto=False)
    wide = collect(gen, "1Min", "2024-05-01T00:00", "2024-05-10T00:00")
    narrow = collect(BarGenerator("MSFT", crypto=False), "1Min", "2024-05-06T00:00", "2024-05-06T23:59")
    inside = (wide.t >= narrow.t[0]) & (wide.t <= narrow.t[-1])
    assert np.array_equal(wide.c[inside], narrow.c) and np.array_equal(wide.v[inside], narrow.v)
    other = collect(BarGenerator("MSFU", crypto=False), "1Min", "2024-05-06T00:00", "2024-05-06T23:59")
    assert not np.array_equal(other.c[:10], narrow.c[:10])


@pytest.mark.parametrize("symbol,crypto", [(LIQUID, False), (THIN, False), ("BTC/USD", True)])
def test_bars_are_valid_ohlc(symbol, crypto):
    for timeframe in ("1Min", "1Day"):
        bars = collect(BarGenerator(symbol, crypto=crypto), timeframe, "2024-06-03T00:00", "2024-06-28T23:59")
        assert (bars.h >= np.maximum(bars.o, bars.c)).all() and (bars.l <= np.minimum(bars.o, bars.c)).all()
        assert (bars.l > 0).all() and (bars.v >= 0).all() and (np.diff(bars.t) > 0).all()
        traded = bars.v > 0
        if timeframe == "1Min":  # a daily vwap counts extended-hours trades, so it may leave the session's range
            assert ((bars.vw[traded] >= bars.l[traded]) & (bars.vw[traded] <= bars.h[traded])).all()


def test_timeframe_spellings_and_alpacas_limits():
    assert canonical_timeframe("5T") == "5Min" and canonical_timeframe("1H") == "1Hour"
    assert canonical_timeframe("1D") == "1Day" and canonical_timeframe("1Day") == "1Day"
    assert canonical_timeframe("7Min") == "7Min" and canonical_timeframe("59Min") == "59Min"
    assert canonical_timeframe("23Hour") == "23Hour"
    for refused in ("60Min", "24Hour", "2Day", "30Sec", "0Min", "1Week", "Min", ""):
        assert canonical_timeframe(refused) is None, refused
