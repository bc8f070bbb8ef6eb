"""The bar block encoding and the trading-day rules (pure logic)."""

from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest

from signal9_pipeline.market_data.codec import CodecError, decode, encode
from signal9_pipeline.market_data.days import (
    POST,
    PRE,
    REGULAR,
    fetch_window,
    last_ended_day,
    last_session,
    session_codes,
    with_days,
)
from signal9_pipeline.market_data.screening import screen


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
    pd.testing.assert_frame_equal(decoded, original.drop(columns="symbol"))  # dtypes included


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


def problems(frame: pd.DataFrame, timeframe: str, *, crypto: bool = False):
    return screen(with_days(frame, crypto=crypto), timeframe, crypto=crypto).problems


def test_sound_bars_are_stored_whatever_the_session_timeframe_or_stamp():
    assert problems(bars(), "1Min") == []
    extended_day = bars(start="2024-06-03T08:00:00Z", count=960)  # 04:00-19:59 New York (EDT)
    assert problems(extended_day, "1Min") == []
    hourly = bars(start="2024-03-08T09:00:00Z", count=16, step="1h")  # 04:00-19:00 New York (EST), 16 bars
    assert problems(hourly, "1Hour") == []
    after_dst = bars(start="2024-03-11T08:00:00Z", count=16, step="1h")  # the Monday after the change: EDT
    assert problems(after_dst, "1Hour") == []
    half_day = bars(start="2024-11-29T09:00:00Z", count=660)  # early close 13:00; extended trading goes on
    assert problems(half_day, "1Min") == []
    daily = bars(start="2024-06-03T04:00:00Z", count=1, step="1D")
    assert problems(daily, "1Day") == []


@pytest.mark.parametrize("stamp", [
    "2024-06-01T00:00:00Z",  # midnight UTC, Alpaca's current convention
    "2024-06-01T05:00:00Z",  # midnight US Central in summer (CDT), older data
    "2024-01-06T06:00:00Z",  # midnight US Central in winter (CST)
    "2024-03-10T06:00:00Z",  # the day US daylight time starts: its midnight is still CST
    "2024-03-11T05:00:00Z",  # the day after: CDT
    "2024-11-03T05:00:00Z",  # the day daylight time ends: its midnight is still CDT
    "2024-11-04T06:00:00Z",  # the day after: CST
])
def test_crypto_daily_bars_of_both_conventions_are_stored_on_the_date_of_their_own_midnight(stamp):
    frame = bars("BTC/USD", start=stamp, count=1, step="1D")
    assert problems(frame, "1Day", crypto=True) == []
    assert with_days(frame, crypto=True)["day"].iloc[0] == stamp[:10]


@pytest.mark.parametrize("stamp", ["2024-03-10T05:00:00Z", "2024-11-03T06:00:00Z", "2024-06-01T04:00:00Z"])
def test_a_crypto_daily_stamp_that_is_no_midnight_of_either_convention_is_off_the_grid(stamp):
    found = problems(bars("BTC/USD", start=stamp, count=1, step="1D"), "1Day", crypto=True)
    assert [p.reason for p in found] == ["timestamp off the 1Day grid"]


def test_one_crypto_day_never_keeps_two_daily_bars():
    both = pd.concat([bars("BTC/USD", start="2024-06-01T00:00:00Z", count=1, step="1D"),
                      bars("BTC/USD", start="2024-06-01T05:00:00Z", count=1, step="1D")], ignore_index=True)
    verdict = screen(with_days(both, crypto=True), "1Day", crypto=True)
    assert verdict.held_back.tolist() == [False, True]  # the midnight-UTC bar stays
    assert "second daily bar" in verdict.problems[0].reason


@pytest.mark.parametrize("vwap", [0.0, -1.0, float("inf"), float("nan"), 10_000.0])
def test_a_minute_without_trades_is_sound_whatever_its_vwap(vwap):
    frame = bars(count=3)
    frame.loc[1, ["volume", "trade_count", "vwap"]] = [0.0, 0, vwap]  # as Alpaca serves it: v 0, n 0, vw 0
    verdict = screen(with_days(frame, crypto=False), "1Min", crypto=False)
    assert verdict.problems == [] and verdict.zero_trade.tolist() == [False, True, False]
    assert not verdict.held_back.any() and not verdict.vwap_outside.any()


def test_a_traded_vwap_outside_the_range_is_stored_and_counted_not_held_back():
    verdict = screen(with_days(bars(vwap=10_000.0), crypto=False), "1Min", crypto=False)
    assert verdict.problems == [] and int(verdict.vwap_outside.sum()) == 1


@pytest.mark.parametrize("overrides,field,reason", [
    ({"low": -1.0}, "l", "price not positive"),
    ({"close": float("nan")}, "c", "not a finite number"),
    ({"high": 1.0}, "h", "high below open or close"),
    ({"volume": -5.0}, "v", "negative volume"),
    ({"vwap": float("inf")}, "vw", "vwap infinite or negative"),
    ({"timestamp": pd.Timestamp("2024-06-03T13:30:30Z")}, "t", "grid"),
    ({"timestamp": pd.Timestamp("2024-06-03T07:59:00Z")}, "t", "outside 04:00-20:00 New York"),  # 03:59 EDT
    ({"timestamp": pd.Timestamp("2024-06-04T00:00:00Z")}, "t", "outside 04:00-20:00 New York"),  # 20:00 EDT
])
def test_only_the_impossible_bar_is_held_back_naming_symbol_time_and_field(overrides, field, reason):
    frame = bars(**overrides)
    verdict = screen(with_days(frame, crypto=False), "1Min", crypto=False)
    assert int(verdict.held_back.sum()) == 1  # the other bars of the day stay
    (problem,) = verdict.problems
    assert problem.symbol == "AAPL" and problem.field == field and reason in problem.reason
    assert problem.timestamp == frame.sort_values("timestamp")["timestamp"].iloc[
        int(np.flatnonzero(verdict.held_back)[0])].isoformat()


def test_an_hourly_bar_may_not_reach_past_20_00_new_york():
    late = bars(start="2024-06-03T23:00:00Z", count=1, step="1h")  # 19:00 EDT: covers 19:00-20:00
    assert problems(late, "1Hour") == []
    assert problems(bars(start="2024-06-04T00:00:00Z", count=1, step="1h"), "1Hour")  # 20:00 EDT


def test_holidays_have_no_equity_session():
    christmas = bars(start="2024-12-25T14:30:00Z", count=5)
    assert {p.reason for p in problems(christmas, "1Min")} == {
        "outside 04:00-20:00 New York or on a day without an XNYS session"}


def test_duplicate_timestamps_hold_back_the_copy_and_every_conflicting_bar():
    frame = bars(count=5)
    frame.loc[1] = frame.loc[0]
    frame.loc[3, "timestamp"] = frame.loc[2, "timestamp"]
    verdict = screen(with_days(frame, crypto=False), "1Min", crypto=False)
    assert verdict.held_back.tolist() == [False, True, True, True, False]
    assert [p.reason for p in verdict.problems] == ["duplicate of the bar before it",
                                                    "two different bars at one timestamp",
                                                    "two different bars at one timestamp"]


def test_sessions_split_pre_regular_and_post_market_with_the_xnys_calendar():
    minutes = bars(start="2024-06-03T08:00:00Z", count=960)["timestamp"]
    codes = session_codes(minutes, "1Min")
    assert (codes == PRE).sum() == 330 and (codes == REGULAR).sum() == 390 and (codes == POST).sum() == 240
    half_day = session_codes(bars(start="2024-11-29T09:00:00Z", count=660)["timestamp"], "1Min")
    assert (half_day == REGULAR).sum() == 210  # 09:30-13:00
    hours = session_codes(bars(start="2024-06-03T08:00:00Z", count=16, step="1h")["timestamp"], "1Hour")
    assert hours.tolist() == [PRE] * 5 + [REGULAR] * 7 + [POST] * 4  # 09:00 holds the open; 16:00 is post


@pytest.mark.parametrize("now, ended, session", [
    ("2026-12-02T00:01:00", date(2026, 11, 30), date(2026, 11, 30)),  # UTC has turned, New York has not
    ("2026-12-02T05:01:00", date(2026, 12, 1), date(2026, 12, 1)),
    ("2026-07-02T03:59:00", date(2026, 6, 30), date(2026, 6, 30)),  # EDT: New York turns at 04:00Z
    ("2026-07-02T04:00:00", date(2026, 7, 1), date(2026, 7, 1)),
    ("2026-11-30T03:00:00", date(2026, 11, 28), date(2026, 11, 27)),  # a weekend walks back to Friday
    ("2026-11-27T12:00:00", date(2026, 11, 26), date(2026, 11, 25)),  # Thanksgiving is no session
])
def test_the_newest_partition_date_is_the_last_new_york_day_that_ended(now, ended, session):
    at = datetime.fromisoformat(now).replace(tzinfo=timezone.utc)
    assert last_ended_day(at) == ended
    assert last_session(at) == session
    from dagster._core.definitions.partitions.context import partition_loading_context

    from signal9_pipeline.market_data.assets import BARS_PARTITIONS

    with partition_loading_context(effective_dt=at):  # the partitions Dagster offers at that moment agree
        assert BARS_PARTITIONS.get_partitions_def_for_dimension("date").get_last_partition_key() == ended.isoformat()
