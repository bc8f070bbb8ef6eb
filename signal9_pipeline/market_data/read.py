"""read_bars: the bars a downstream service or notebook asks for, from the market-data table.

One paginated Query per symbol-range (`series = SYMBOL#TIMEFRAME`, `day`
from the first range day's bucket start), each item decoded from its Arrow
block; decoded items are kept in an in-process LRU cache keyed by their
checksum, so hot symbols are decoded once and a re-ingested bucket is never
served stale. An item that fails its checksum is a typed error naming it and
the fix, never wrong prices.

Bars are stored raw; `adjustment` applies the corporate actions stored at the
moment of the read (one more Query, `series = SYMBOL#actions`), by the method
documented in `corporate_actions.actions`.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone

import pandas as pd

from signal9_pipeline.corporate_actions.actions import ADJUSTMENTS, factors, from_item
from signal9_pipeline.corporate_actions.actions import series_key as actions_series
from signal9_pipeline.market_data.codec import CodecError, decode
from signal9_pipeline.market_data.days import (
    CRYPTO,
    EQUITY,
    NEW_YORK,
    REGULAR,
    SESSIONS,
    TIMEFRAMES,
    bucket_start,
    session_codes,
    trading_days,
)
from signal9_pipeline.resources.dynamodb import DynamoDBResource

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def series_key(symbol: str, timeframe: str) -> str:
    return f"{symbol}#{timeframe}"


def read_bars(symbol: str, timeframe: str, start: datetime, end: datetime,
              dynamodb: DynamoDBResource | None = None, *, session: str = "all", adjustment: str = "raw") -> pd.DataFrame:
    """Bars of `symbol` with start <= timestamp <= end (naive datetimes are UTC), sorted by time.

    `session` selects equities' intraday bars: "all" (04:00-20:00 New York, as Alpaca serves them),
    "regular" (bars overlapping the XNYS session, early closes included) or "extended" (pre- and post-market).
    `adjustment` is "raw" (as stored), "split" (prices and volumes for splits and stock dividends),
    "dividend" (prices for cash dividends) or "all"; adjusted volumes are floats.
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    if session not in SESSIONS:
        raise ValueError(f"session {session!r} is not one of {', '.join(SESSIONS)}")
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"adjustment {adjustment!r} is not one of {', '.join(ADJUSTMENTS)}")
    if session != "all" and timeframe == "1Day":
        raise ValueError(f"session={session!r} needs an intraday timeframe: a 1Day bar covers the whole trading day")
    start, end = _utc(start), _utc(end)
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    dynamodb = dynamodb or DynamoDBResource.from_settings()
    # A trading day's bars can carry timestamps of the neighbouring UTC dates (New York evenings, crypto days);
    # an item's sort key is the first day of its bucket.
    first = bucket_start((start - timedelta(days=1)).date(), timeframe).isoformat()
    last = (end + timedelta(days=1)).date().isoformat()
    items = list(dynamodb.query(dynamodb.market_data_table_name(),
                                ProjectionExpression="#d, bars, checksum, asset_class, feed, version",
                           ExpressionAttributeNames={"#s": "series", "#d": "day"},
                           KeyConditionExpression="#s = :series AND #d BETWEEN :first AND :last",
                           ExpressionAttributeValues={":series": {"S": series_key(symbol, timeframe)},
                                                      ":first": {"S": first}, ":last": {"S": last}}))
    if session != "all" and any(_asset_class(i) == CRYPTO for i in items):
        raise ValueError(f"session={session!r} applies to equities; {symbol} is crypto and trades around the clock")
    frames = [_decoded(bytes(item["bars"]), item["checksum"], symbol, timeframe, item["day"]).assign(
        bucketed="version" in item) for item in items]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "timestamp" else "float64") for c in COLUMNS})
    # Items of the symbol-day layout (no version) may lie beside the bucket that replaced them: the bucket wins.
    bars = pd.concat(frames, ignore_index=True).sort_values(["timestamp", "bucketed"], kind="stable")
    bars = bars.drop_duplicates("timestamp", keep="last")
    inside = (bars["timestamp"] >= start) & (bars["timestamp"] <= end)
    if session != "all":
        regular = session_codes(bars["timestamp"], timeframe) == REGULAR
        inside &= regular if session == "regular" else ~regular
    bars = bars.loc[inside, COLUMNS].sort_values("timestamp", kind="stable").reset_index(drop=True)
    if adjustment == "raw" or bars.empty or all(_asset_class(i) == CRYPTO for i in items):
        return bars
    return adjusted(bars, stored_actions(symbol, dynamodb), adjustment)


def stored_actions(symbol: str, dynamodb: DynamoDBResource) -> list:
    """The corporate actions stored for `symbol` now, each with its reference close (cash dividends)."""
    return [from_item(i) for i in dynamodb.query(
        dynamodb.market_data_table_name(), ExpressionAttributeNames={"#s": "series"},
        KeyConditionExpression="#s = :series", ExpressionAttributeValues={":series": {"S": actions_series(symbol)}})]


def adjusted(bars: pd.DataFrame, actions: list, adjustment: str) -> pd.DataFrame:
    """Equity bars with `actions` applied: vectorised, one factor per bar from its New York trading day."""
    days = trading_days(bars["timestamp"], crypto=False).astype("datetime64[D]")
    applied = factors(days, actions, adjustment, today=datetime.now(NEW_YORK).date())
    out = bars.copy()
    for column in ("open", "high", "low", "close", "vwap"):
        out[column] = bars[column].to_numpy(dtype="float64") * applied.price
    out["volume"] = bars["volume"].to_numpy(dtype="float64") * applied.volume
    return out


def _asset_class(item: dict) -> str:
    # Items written before asset_class was recorded name crypto by their feed ("crypto").
    return item.get("asset_class") or (CRYPTO if item.get("feed") == "crypto" else EQUITY)


class StoredBarsError(ValueError):
    """A stored item that cannot be trusted: it fails its checksum or cannot be decoded."""


@functools.lru_cache(maxsize=4096)
def _decoded(block: bytes, checksum: str, symbol: str, timeframe: str, day: str) -> pd.DataFrame:
    try:
        frame, actual = decode(block)
    except CodecError as exc:
        raise StoredBarsError(f"the stored bars of {symbol} {timeframe} from {day} cannot be decoded ({exc}); "
                              "re-materialize the partitions they cover") from None
    if actual != checksum:
        raise StoredBarsError(f"the stored bars of {symbol} {timeframe} from {day} fail their checksum "
                              f"({actual} != {checksum}); re-materialize the partitions they cover")
    return frame


def _utc(moment: datetime) -> pd.Timestamp:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return pd.Timestamp(moment).tz_convert("UTC")
