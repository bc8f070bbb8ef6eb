"""The bar block encoding and the trading-day rules (pure logic)."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from signal9_pipeline.market_data.codec import CodecError, decode, encode
from signal9_pipeline.market_data.days import bar_problems, fetch_window, with_days


def bars(symbol="AAPL", start="2024-06-03T13:30:00Z", count=390, step="1min", **overrides) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    close = 100 + rng.normal(0, 0.1, count).cumsum()
    frame = pd.DataFrame({
        "symbol": symbol, "timestamp": pd.date_range(start, periods=count, freq=step, tz="UTC"),
        "open": close + 0.01, "high": close + 0.05, "low": close - 0.05, "close": close,
        "volume": rng.integers(1, 1000, count).astype(float), "trade_count": rng.integers(1, 50, count), "vwap": close,
    })
    for column, value in overrides.items():
        frame.loc[0, column] = value
    return frame


def test_blocks_round_trip_exactly_with_their_checksum():
    original = bars()
    block, checksum = encode(original)
    decoded, again = decode(block)
    assert again == checksum
    pd.testing.assert_frame_equal(decoded, original.drop(columns="symbol"), check_dtype=False)


def test_a_full_crypto_day_of_minute_bars_fits_one_item():
    block, _ = encode(bars("BTC/USD", "2024-06-02T00:00:00Z", count=1440))
    assert len(block) < 100_000


def test_corrupt_blocks_are_refused():
    block, _ = encode(bars(count=10))
    with pytest.raises(CodecError):
        decode(block[:-5])
    with pytest.raises(CodecError):
        decode(b"nonsense")
    with pytest.raises(CodecError):
        encode(bars(count=0))


def test_fetch_windows_cover_new_york_days_for_equities_and_utc_days_for_crypto():
    start, end = fetch_window(date(2024, 3, 8), date(2024, 3, 11), crypto=False)
    assert start.isoformat() == "2024-03-08T05:00:00+00:00" and end.isoformat() == "2024-03-12T03:59:59+00:00"
    start, end = fetch_window(date(2024, 3, 8), date(2024, 3, 8), crypto=True)
    assert start.isoformat() == "2024-03-08T00:00:00+00:00" and end.isoformat() == "2024-03-08T23:59:59+00:00"


def test_sound_bars_have_no_problems_across_timeframes_and_sessions():
    assert bar_problems(with_days(bars()), "1Min") == []
    hourly = bars(start="2024-06-03T13:00:00Z", count=7, step="1h")  # 09:00 New York holds 09:30-09:59
    assert bar_problems(with_days(hourly), "1Hour") == []
    early_close = bars(start="2024-11-29T14:30:00Z", count=210)
    assert bar_problems(with_days(early_close), "1Min") == []
    daily = bars(start="2024-06-03T04:00:00Z", count=1, step="1D")
    assert bar_problems(with_days(daily), "1Day") == []
    crypto_daily = bars("BTC/USD", start="2024-06-01T00:00:00Z", count=3, step="1D")  # a weekend
    assert bar_problems(with_days(crypto_daily), "1Day") == []


@pytest.mark.parametrize("overrides,reason", [
    ({"low": -1.0}, "price not positive"),
    ({"close": float("nan")}, "non-finite"),
    ({"high": 1.0}, "high/low do not bound"),
    ({"volume": -5.0}, "negative volume"),
    ({"vwap": 10_000.0}, "vwap outside"),
    ({"timestamp": pd.Timestamp("2024-06-03T13:30:30Z")}, "grid"),
    ({"timestamp": pd.Timestamp("2024-06-03T12:00:00Z")}, "outside the trading session"),
])
def test_each_kind_of_bad_bar_is_named_with_symbol_and_timestamp(overrides, reason):
    problems = bar_problems(with_days(bars(**overrides)), "1Min")
    assert problems and all(p.symbol == "AAPL" for p in problems)
    assert any(reason in p.reason for p in problems)
    assert problems[0].timestamp.startswith("2024-06-03T1")


def test_holidays_have_no_equity_session():
    christmas = bars(start="2024-12-25T14:30:00Z", count=5)
    assert {p.reason for p in bar_problems(with_days(christmas), "1Min")} == {"timestamp outside the trading session"}


def test_duplicate_timestamps_are_a_problem():
    frame = bars(count=5)
    frame.loc[1, "timestamp"] = frame.loc[0, "timestamp"]
    assert any("duplicate" in p.reason for p in bar_problems(with_days(frame), "1Min"))
