"""read_bars: the bars a downstream service or notebook asks for, from the market-data table.

Bars are filed by company. A symbol is first resolved, as of a date (default today, Alpaca's own
convention), to the company that held it then (its `ASSET#{symbol}` item's holders in the assets table);
that company's whole history in the window comes back, under whatever symbols it traded. `read_asset_bars`
reads a company by its Alpaca id. One paginated Query per company-range (`series = ALPACA_ID#TIMEFRAME`,
`day` from the first range day's bucket start), each item decoded from its Arrow block; decoded items are kept in an in-process LRU cache keyed by their
checksum, so hot symbols are decoded once and a re-ingested bucket is never
served stale. An item that fails its checksum is a typed error naming it and
the fix, never wrong prices.

Bars are stored raw; `adjustment` applies the corporate actions stored at the
moment of the read (one more Query, `series = ALPACA_ID#actions`: a company's actions whatever symbol
they were announced under), by the method documented in `corporate_actions.actions`.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta, timezone

import pandas as pd

from signal9_pipeline.corporate_actions.actions import ADJUSTMENTS, factors, from_item
from signal9_pipeline.identity import observation_day, resolve
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
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline.tables.market_data import MarketDataTable

COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def read_bars(symbol: str, timeframe: str, start: datetime, end: datetime, dynamodb: DynamoDBResource | None = None, *,
              session: str = "all", adjustment: str = "raw", as_of: date | None = None) -> pd.DataFrame:
    """Bars of the company `symbol` meant on `as_of`, with start <= timestamp <= end (naive datetimes are UTC).

    `as_of` is a New York date, default the current trading day (Alpaca's convention is today): META today is Facebook, whose bars from
    before its rename (as FB) come back too; META as of 2022-01-03 is the metaverse ETF that held it then. A
    symbol no company held on `as_of` (nor before it) raises UnknownSymbolOnDateError naming the holders known.
    `session` selects equities' intraday bars: "all" (04:00-20:00 New York, as Alpaca serves them),
    "regular" (bars overlapping the XNYS session, early closes included) or "extended" (pre- and post-market).
    `adjustment` is "raw" (as stored), "split" (prices and volumes for splits and stock dividends),
    "dividend" (prices for cash dividends) or "all"; adjusted volumes are floats.
    """
    _check_arguments(timeframe, session, adjustment)
    dynamodb = dynamodb or DynamoDBResource.from_settings()
    alpaca_id = resolve_symbol(symbol, as_of, dynamodb)
    return read_asset_bars(alpaca_id, timeframe, start, end, dynamodb, session=session, adjustment=adjustment, label=symbol)


def resolve_symbol(symbol: str, as_of: date | None, dynamodb: DynamoDBResource) -> str:
    """The Alpaca id of the company `symbol` meant on `as_of` (default: the current trading day, New York's date and,
    after the extended hours close at 20:00, the next one's: the day a list seen now belongs to)."""
    holders = AssetsTable(dynamodb).holders([symbol]).get(symbol, [])
    return resolve(symbol, holders, as_of.isoformat() if as_of else observation_day())


def read_asset_bars(alpaca_id: str, timeframe: str, start: datetime, end: datetime, dynamodb: DynamoDBResource | None = None,
                    *, session: str = "all", adjustment: str = "raw", label: str | None = None) -> pd.DataFrame:
    """Bars of the company with this Alpaca id, whatever symbols it traded under; arguments as `read_bars`."""
    _check_arguments(timeframe, session, adjustment)
    label = label or alpaca_id
    start, end = _utc(start), _utc(end)
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    dynamodb = dynamodb or DynamoDBResource.from_settings()
    # A trading day's bars can carry timestamps of the neighbouring UTC dates (New York evenings, crypto days);
    # an item's sort key is the first day of its bucket.
    first = bucket_start((start - timedelta(days=1)).date(), timeframe).isoformat()
    last = (end + timedelta(days=1)).date().isoformat()
    items = list(MarketDataTable(dynamodb).bars_items(alpaca_id, timeframe, first, last))
    if session != "all" and any(_asset_class(i) == CRYPTO for i in items):
        raise ValueError(f"session={session!r} applies to equities; {label} is crypto and trades around the clock")
    frames = [_decoded(bytes(item["bars"]), item["checksum"], label, timeframe, item["day"]).assign(
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
    return adjusted(bars, stored_actions(alpaca_id, dynamodb), adjustment)


def _check_arguments(timeframe: str, session: str, adjustment: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    if session not in SESSIONS:
        raise ValueError(f"session {session!r} is not one of {', '.join(SESSIONS)}")
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"adjustment {adjustment!r} is not one of {', '.join(ADJUSTMENTS)}")
    if session != "all" and timeframe == "1Day":
        raise ValueError(f"session={session!r} needs an intraday timeframe: a 1Day bar covers the whole trading day")


def stored_actions(alpaca_id: str, dynamodb: DynamoDBResource) -> list:
    """The corporate actions stored for the company now, each with its reference close (cash dividends)."""
    return [from_item(i) for i in MarketDataTable(dynamodb).actions_of(alpaca_id)]


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
