"""Alpaca's trading and market-data APIs as the pipeline uses them: `AlpacaResource`.

Built on alpaca-py's clients (`url_override` points them at the sandbox; raw JSON, so a value Alpaca
adds to an enum never breaks a sync); every request goes through the gateway (`alpaca_gateway`):
one shared rate limit, timeouts, retries, metrics, logs, typed errors (`alpaca_errors`).

Each setting field defaults to its registered default (`settings.REGISTRY`);
`definitions.py` sets every one with `dg.EnvVar`, and scripts and notebooks
build the resource from their environment with `AlpacaResource.from_settings()`.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterator, Sequence
from datetime import date, datetime, timezone
from typing import Any, ClassVar

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import requests

from signal9_pipeline import settings
from signal9_pipeline.market_data.days import ASSET_CLASSES, CRYPTO, FAULT, TIMEFRAMES
from signal9_pipeline.resources import run_scope
from signal9_pipeline.resources.alpaca_errors import (
    AlpacaAuthError,
    AlpacaConfigError,
    AlpacaNotFoundError,
    AlpacaResponseError,
)
from signal9_pipeline.resources.alpaca_gateway import Gateway, GatewayConfig, gateway_for
from signal9_pipeline.resources.configured import FromSettings

# Stock feeds the pipeline can store (Alpaca's DataFeed values whose bars lie within 04:00-20:00 New York;
# the overnight feeds `boats` and `overnight` trade 20:00-04:00 and are not ingested). `iex` is what every
# plan may query, and Alpaca's own default on the free plan.
FEEDS = ("iex", "sip", "delayed_sip", "otc")
DEFAULT_FEED = "iex"
BAR_COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
PAGE_LIMIT = 10_000


class AlpacaResource(FromSettings, dg.ConfigurableResource):
    """Alpaca's trading and market-data APIs for the pipeline, shared limit and all."""

    SETTINGS: ClassVar[dict[str, str]] = {
        "trading_url": "ALPACA_TRADING_URL", "data_url": "ALPACA_DATA_URL", "paper": "ALPACA_PAPER",
        "credentials_secret_id": "ALPACA_SECRET_ID", "rate_limit_per_minute": "ALPACA_RATE_LIMIT_PER_MINUTE",
        "rate_limiter_url": "SIGNAL9_RATE_LIMITER_URL", "request_timeout_s": "ALPACA_REQUEST_TIMEOUT_S",
        "max_attempts": "ALPACA_MAX_ATTEMPTS", "metrics_namespace": "SIGNAL9_METRICS_NAMESPACE", "feed": "ALPACA_FEED",
    }

    trading_url: str = ""  # empty: Alpaca's paper or live host, as `paper` says
    data_url: str = ""  # empty: https://data.alpaca.markets
    paper: bool = settings.default("ALPACA_PAPER")
    credentials_secret_id: str = settings.default("ALPACA_SECRET_ID")
    credentials_ttl_s: float = 300.0
    rate_limit_per_minute: int = settings.default("ALPACA_RATE_LIMIT_PER_MINUTE")
    rate_limiter_url: str = settings.default("SIGNAL9_RATE_LIMITER_URL")
    request_timeout_s: int = settings.default("ALPACA_REQUEST_TIMEOUT_S")
    max_attempts: int = settings.default("ALPACA_MAX_ATTEMPTS")
    circuit_failure_threshold: int = 10
    circuit_reset_s: float = 30.0
    metrics_namespace: str = settings.default("SIGNAL9_METRICS_NAMESPACE")
    feed: str = settings.default("ALPACA_FEED")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run_scope.enter_from(context)

    def _gateway(self) -> Gateway:
        return gateway_for(GatewayConfig(
            trading_url=self.trading_url or None,
            data_url=self.data_url or None,
            paper=self.paper,
            secret_id=self.credentials_secret_id,
            credentials_ttl_s=self.credentials_ttl_s,
            rate_limit_per_minute=self.rate_limit_per_minute,
            rate_limiter_url=self.rate_limiter_url,
            request_timeout_s=float(self.request_timeout_s),
            max_attempts=max(1, self.max_attempts),
            circuit_failure_threshold=self.circuit_failure_threshold,
            circuit_reset_s=self.circuit_reset_s,
            metrics_namespace=self.metrics_namespace,
        ))

    def data_feed(self) -> str:
        """The stock feed sent on every stock bars request and recorded on every stored item."""
        feed = self.feed.strip().lower()
        if feed not in FEEDS:
            raise AlpacaConfigError(f"Alpaca feed {feed!r} (ALPACA_FEED) is not one of {', '.join(FEEDS)}; "
                             f"use {DEFAULT_FEED} (every plan) or sip (Algo Trader Plus)")
        return feed

    @property
    def requests_sent(self) -> int:
        """HTTP requests this process sent through this configuration (retries and pages included)."""
        return self._gateway().requests_sent

    def list_assets(self, status: str | None = None, asset_class: str | None = None) -> list[dict]:
        """Every asset Alpaca lists (optionally filtered): one request, the API's dicts with every field kept."""
        params = {k: v for k, v in (("status", status), ("asset_class", asset_class)) if v}
        assets = self._gateway().get("trading", "/assets", params)
        if not isinstance(assets, list) or not all(isinstance(a, dict) for a in assets):
            raise AlpacaResponseError(f"/v2/assets answered {type(assets).__name__}, expected a JSON array of objects")
        return assets

    def get_asset(self, symbol: str) -> dict | None:
        """One asset by symbol (`GET /v2/assets/{symbol}`, crypto pairs as BTCUSD); None when Alpaca knows none."""
        try:
            asset = self._gateway().get("trading", f"/assets/{requests.utils.quote(symbol.replace('/', ''), safe='')}")
        except AlpacaNotFoundError:
            return None
        if not isinstance(asset, dict):
            raise AlpacaResponseError(f"/v2/assets/{symbol} answered {type(asset).__name__}, expected a JSON object")
        return asset

    def get_calendar(self, start: date, end: date) -> list[dict]:
        """XNYS trading days between start and end, as Alpaca's `/v2/calendar` dicts."""
        days = self._gateway().get("trading", "/calendar", {"start": start.isoformat(), "end": end.isoformat()})
        if not isinstance(days, list):
            raise AlpacaResponseError(f"/v2/calendar answered {type(days).__name__}, expected a JSON array")
        return days

    def validate_credentials(self) -> bool:
        """True when Alpaca accepts the secret's keys (GET /v2/account), False when it refuses them."""
        try:
            account = self._gateway().get("trading", "/account")
        except AlpacaAuthError:
            return False
        return isinstance(account, dict) and "id" in account

    def iter_corporate_actions(self, start: date, end: date, *, types: Sequence[str] = ()) -> Iterator[dict]:
        """Every page of `/v1/corporate-actions` for actions processed from start to end (inclusive), all symbols.

        One unfiltered request pages through every symbol's actions (up to 1,000 per page), far fewer
        requests than asking symbol by symbol; the caller keeps the symbols it stores.
        """
        gateway, token = self._gateway(), None
        params = {"start": start.isoformat(), "end": end.isoformat(), "limit": 1000, "sort": "asc",
                  **({"types": ",".join(types)} if types else {})}
        while True:
            page = gateway.get("corporate_actions", "/corporate-actions", {**params, **({"page_token": token} if token else {})})
            if not isinstance(page, dict) or not isinstance(page.get("corporate_actions", {}), dict):
                raise AlpacaResponseError("/v1/corporate-actions answered "
                                          f"{type(page).__name__}, expected an object with a corporate_actions object")
            yield page
            token = page.get("next_page_token")
            if not token:
                return

    def iter_bars(self, symbols: Sequence[str], timeframe: str, start: datetime, end: datetime, *,
                  asset_class: str, adjustment: str = "raw", feed: str | None = None,
                  asof: str | None = None) -> Iterator[pd.DataFrame]:
        """One DataFrame per API page (up to 10,000 bars across symbols) of one asset class's endpoint.

        Stocks go to /v2/stocks/bars with this resource's feed (or `feed`), crypto to /v1beta3/crypto/us/bars:
        which one is the asset's class (from the asset list), never the spelling of its symbol. `asof`
        (YYYY-MM-DD, stocks only) is the date the symbols are meant as of: Alpaca answers, under each symbol, the
        whole history of the company that held it on that date (its default, today, answers today's holders).
        """
        if timeframe not in TIMEFRAMES:
            raise AlpacaConfigError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
        if asset_class not in ASSET_CLASSES:
            raise AlpacaConfigError(f"asset class {asset_class!r} has no bars endpoint here; use one of {', '.join(ASSET_CLASSES)}")
        symbols = sorted(set(symbols))
        if not symbols:
            return
        window = {"timeframe": timeframe, "start": _rfc3339(start), "end": _rfc3339(end), "limit": PAGE_LIMIT, "sort": "asc"}
        if asset_class == CRYPTO:
            yield from self._pages("crypto", "/crypto/us/bars", symbols, window)
        else:
            yield from self._pages("stocks", "/stocks/bars", symbols,
                                   {**window, "adjustment": adjustment, "feed": feed or self.data_feed(),
                                    **({"asof": asof} if asof else {})})

    def _pages(self, kind: str, path: str, symbols: list[str], params: dict) -> Iterator[pd.DataFrame]:
        gateway, token = self._gateway(), None
        while True:
            page = gateway.get(kind, path, {**params, "symbols": ",".join(symbols), **({"page_token": token} if token else {})})
            frame, token = bars_page_frame(page, path, requested=symbols)
            yield frame
            if not token:
                return


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


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
        raise AlpacaResponseError(f"{path} answered the bars of {wrong[:64]!r} as {type(bars[wrong]).__name__}, expected a list")
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
        **{column: np.array([np.nan if x is None else x for x in xs], dtype=np.float64) for column, xs in numbers.items()},
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
        raise TypeError(f"a JSON {_json_type(raw)}, not an integer" if type(raw) is not float else f"{raw!r}, not an integer")
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
