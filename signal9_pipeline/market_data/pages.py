"""Alpaca's bars pages read into frames: the bars the pipeline screens, buckets and stores.

`AlpacaResource.iter_bars` yields Alpaca's pages as they come; `bar_frames` reads each into a
DataFrame with BAR_COLUMNS. A page whose envelope is not Alpaca's is refused; a bar missing or
mistyping a field costs only itself: its row carries a FAULT column for screening to hold it back.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from signal9_pipeline.market_data.screening import FAULT
from signal9_pipeline.market_data.timeframes import TIMEFRAMES
from signal9_pipeline.resources.alpaca import bars_endpoint
from signal9_pipeline.resources.alpaca_errors import AlpacaConfigError, AlpacaResponseError

if TYPE_CHECKING:
    from signal9_pipeline.resources.alpaca import AlpacaResource

BAR_COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def bar_frames(alpaca: AlpacaResource, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime, *,
               asset_class: str, adjustment: str = "raw", feed: str | None = None,
               asof: str | None = None) -> Iterator[pd.DataFrame]:
    """One DataFrame per page of `alpaca.iter_bars` (up to 10,000 bars across symbols), in the order Alpaca sent them.

    The timeframe is one the pipeline stores (TIMEFRAMES), refused before any request otherwise.
    """
    if timeframe not in TIMEFRAMES:
        raise AlpacaConfigError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    _, path = bars_endpoint(asset_class)
    requested = sorted(set(symbols))
    for page in alpaca.iter_bars(requested, timeframe, start, end, asset_class=asset_class, adjustment=adjustment,
                                 feed=feed, asof=asof):
        yield bars_page_frame(page, path, requested=requested)[0]


def bars_page_frame(page: Any, path: str, requested: Collection[str] | None = None) -> tuple[pd.DataFrame, str | None]:
    """One bars page as a DataFrame with BAR_COLUMNS, plus the next page token.

    Symbols become DynamoDB keys, so a page with bars of a symbol that was not `requested` is refused,
    as is a page whose envelope is not Alpaca's. A single bar missing or mistyping a field does not cost
    the page: its row carries a FAULT column ("field: reason") for screening to hold it back, its
    unreadable values NaN (a time that is not RFC 3339: NaT).
    """
    if not isinstance(page, dict) or "bars" not in page:
        raise AlpacaResponseError(f"{path} answered without a 'bars' object")
    bars = page["bars"] or {}
    token = page.get("next_page_token")
    if not isinstance(bars, dict) or not (token is None or isinstance(token, str)):
        raise AlpacaResponseError(f"{path} answered 'bars' of type {type(bars).__name__}, expected an object by symbol")
    unexpected = sorted(set(bars) - set(requested)) if requested is not None else []
    if unexpected:
        raise AlpacaResponseError(f"{path} answered bars of {len(unexpected)} symbol(s) not asked for, "
                                  f"e.g. {unexpected[0][:64]!r}")
    lists = [items or [] for items in bars.values()]
    wrong = next((s for s, items in zip(bars, lists) if not isinstance(items, list)), None)
    if wrong is not None:
        raise AlpacaResponseError(f"{path} answered the bars of {wrong[:64]!r} as {type(bars[wrong]).__name__}, "
                                  "expected a list")
    rows = [b for items in lists for b in items]
    symbols = np.repeat(np.array(list(bars), dtype=object), [len(items) for items in lists])
    try:
        frame = pd.DataFrame({
            "symbol": symbols,
            "timestamp": _timestamps(_field(rows, "t", (str,))),
            **{column: np.array(_field(rows, key, _NUMBER), dtype=np.float64) for column, key in _PRICES_AND_VOLUME},
            "trade_count": np.array(_field(rows, "n", (int,), default=0), dtype=np.int64),
            "vwap": np.array(_field(rows, "vw", (*_NUMBER, type(None)), default=None), dtype=np.float64),  # null: NaN
        }, columns=BAR_COLUMNS)
    except (KeyError, TypeError, ValueError, OverflowError):
        frame = _bar_by_bar(symbols, rows)  # rare: find the bars at fault, keep the others
    return frame, token or None


_NUMBER = (int, float)
_REQUIRED = object()
_UTC_NS = pa.timestamp("ns", tz="UTC")
_PRICES_AND_VOLUME = (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v"))
_INT64 = np.iinfo(np.int64)


def _bar_by_bar(symbols: np.ndarray, rows: list) -> pd.DataFrame:
    """The frame of `bars_page_frame`, parsed bar by bar: each bar's first fault named, its bad values NaN."""
    faults: list[str | None] = [None] * len(rows)

    def value(i: int, key: str, read, default: object = _REQUIRED) -> Any:
        bar = rows[i]
        if not isinstance(bar, dict):
            faults[i] = faults[i] or f"bar: a JSON {_json_type(bar)}, not an object"
            return None
        if key not in bar:
            if default is _REQUIRED:
                faults[i] = faults[i] or f"{key}: missing"
            return default if default is not _REQUIRED else None
        try:
            return read(bar[key])
        except (TypeError, ValueError, OverflowError) as exc:
            faults[i] = faults[i] or f"{key}: {exc}"
            return None

    indices = range(len(rows))
    stamps = [value(i, "t", _stamp) for i in indices]
    numbers = {column: [value(i, key, _price) for i in indices] for column, key in _PRICES_AND_VOLUME}
    counts = [value(i, "n", _count, default=0) for i in indices]
    vwaps = [value(i, "vw", _vwap, default=None) for i in indices]
    frame = pd.DataFrame({
        "symbol": symbols,
        "timestamp": pd.Series(pd.to_datetime(stamps, utc=True)),
        **{column: np.array([np.nan if x is None else x for x in xs], dtype=np.float64)
           for column, xs in numbers.items()},
        "trade_count": np.array([0 if x is None else x for x in counts], dtype=np.int64),
        "vwap": np.array([np.nan if x is None else x for x in vwaps], dtype=np.float64),
    }, columns=BAR_COLUMNS)
    frame[FAULT] = pd.Series(faults, dtype=object)
    return frame


def _json_type(value: Any) -> str:
    return {bool: "boolean", type(None): "null", str: "string", list: "array", dict: "object"}.get(
        type(value), "number")


def _price(raw: Any) -> float:
    if type(raw) not in _NUMBER:
        raise TypeError(f"a JSON {_json_type(raw)}, not a number")
    try:
        return float(raw)
    except OverflowError:
        raise OverflowError(f"an integer of {len(str(raw))} digits, beyond a 64-bit float") from None


def _vwap(raw: Any) -> float | None:
    return None if raw is None else _price(raw)


def _count(raw: Any) -> int:
    if type(raw) is not int:
        raise TypeError(f"a JSON {_json_type(raw)}, not an integer" if type(raw) is not float
                        else f"{raw!r}, not an integer")
    if not _INT64.min <= raw <= _INT64.max:
        raise OverflowError(f"an integer of {len(str(raw))} digits, beyond 64 bits")
    return raw


def _stamp(raw: Any) -> pd.Timestamp:
    if type(raw) is not str:
        raise TypeError(f"a JSON {_json_type(raw)}, not an RFC 3339 time")
    try:
        return pd.Timestamp(_timestamps([raw]).iloc[0])
    except (ValueError, pa.ArrowInvalid):
        raise ValueError(f"{raw[:40]!r} is not an RFC 3339 time") from None


def _field(rows: list[dict], name: str, types: tuple[type, ...], default: object = _REQUIRED) -> list:
    """One field of every bar; exact JSON types, since numpy would read true as 1.0 and "101.5" as 101.5."""
    try:
        values = list(map(operator.itemgetter(name), rows))
    except KeyError:
        if default is _REQUIRED:
            raise
        values = [b.get(name, default) for b in rows]  # Alpaca leaves out "n" and "vw" of some bars
    strange = set(map(type, values)) - set(types)
    if strange:
        raise TypeError(f"field {name!r} holds {', '.join(sorted(t.__name__ for t in strange))}")
    return values


def _timestamps(stamps: list[str]) -> pd.Series:
    """RFC 3339 stamps as UTC times: Arrow's parser, or pandas' ISO 8601 one for what Arrow refuses (no zone)."""
    try:
        return pa.array(stamps, type=pa.string()).cast(_UTC_NS).to_pandas()
    except pa.ArrowInvalid:
        return pd.Series(pd.to_datetime(stamps, utc=True, format="ISO8601"))
