"""read_bars: the bars a downstream service or notebook asks for, from the market-data table.

Bars are filed by company. A symbol is first resolved, as of a date (default today, Alpaca's own
convention), to the company that held it then (its `ASSET#{symbol}` item's holders in the assets table);
that company's whole history in the window comes back, under whatever symbols it traded. `read_asset_bars`
reads a company by its Alpaca id. One paginated Query per company-range (`series = ALPACA_ID#TIMEFRAME`,
`day` from the first range day's bucket start), each item decoded from its Arrow block into plain arrays; decoded
items are kept in an in-process LRU cache keyed by their checksum, so hot symbols are decoded once and a
re-ingested bucket is never served stale. Reads of many companies fetch their buckets with BatchGetItem and put
every company's arrays together once (one concatenation, one sort), building a single frame at the end. An item
that fails its checksum is a typed error naming it and the fix, never wrong prices.

Bars are stored raw; `adjustment` applies the corporate actions stored at the
moment of the read (one more Query, `series = ALPACA_ID#actions`: a company's actions whatever symbol
they were announced under), by the method documented in `corporate_actions.actions`.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from signal9_pipeline.corporate_actions.actions import ADJUSTMENTS, factors
from signal9_pipeline.corporate_actions.store import stored_actions
from signal9_pipeline.identity import UnknownSymbolOnDateError, observation_day, resolve
from signal9_pipeline.market_data.assemble import VALUES, Bars, Block, assemble
from signal9_pipeline.market_data.codec import CodecError, decode_columns
from signal9_pipeline.market_data.days import (
    CRYPTO,
    EQUITY,
    NEW_YORK,
    SESSIONS,
    bucket_start,
    bucket_starts,
    trading_days,
)
from signal9_pipeline.market_data.ledger import VALUE_COLUMNS, Bucket, LedgerError, as_known_at, decode_changes
from signal9_pipeline.market_data.timeframes import TIMEFRAMES
from signal9_pipeline.market_data.universe import listed_universe
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.tables.assets import AssetsTable
from signal9_pipeline.tables.market_data import MarketDataTable, bars_series, company_of
from signal9_pipeline.timestamps import utc_stamp

BARS_PROJECTION = "#d, bars, checksum, asset_class, feed, version, withdrawn"
LEDGER_PROJECTION = f"{BARS_PROJECTION}, revisions, days_stored, ledger_from, ingested_at"
READ_THREADS = 8  # concurrent DynamoDB requests of a many-symbol read
KEYS_PER_REQUEST = 100  # BatchGetItem's limit
MAX_KEYS_PER_COMPANY = 40  # beyond, a window's buckets are read with a paged Query per company


class UnknownSymbolsError(LookupError):
    """Symbols of a many-symbol read that no company held on the date asked for; all of them, with their holders."""

    def __init__(self, unknown: list[UnknownSymbolOnDateError]):
        self.symbols = [e.symbol for e in unknown]
        super().__init__(f"{len(unknown)} symbol(s) name no company on {unknown[0].day}: {', '.join(self.symbols[:20])}"
                         f"{' ...' if len(unknown) > 20 else ''}. " + " | ".join(str(e) for e in unknown[:3])
                         + "; pass missing='skip' to read the others (the frame's attrs['missing_symbols'] names them)")


@dataclass(frozen=True)
class Listed:
    """A company listed on a date (`listed_on`), under the symbol it held that day: read by its id, not its symbol."""

    alpaca_id: str
    symbol: str
    asset_class: str


def read_bars(symbols: str | Sequence[str | Listed], timeframe: str, start: datetime, end: datetime,
              dynamodb: DynamoDBResource | None = None, *, session: str = "all", adjustment: str = "raw",
              as_of: date | None = None, known_at: datetime | None = None, missing: str = "raise") -> pd.DataFrame:
    """Bars of the company each symbol meant on `as_of`, with start <= timestamp <= end (naive datetimes are UTC).

    One symbol returns its frame (COLUMNS). A sequence of symbols (or of `Listed` companies, from `listed_on`)
    returns one frame with a `symbol` column first, the symbols in the order asked, each one's bars in time order:
    exactly the one-symbol reads concatenated. Their items are fetched together (BatchGetItem, `UnprocessedKeys`
    retried, on a few threads) and decoded as they arrive. Symbols that name no company on `as_of` raise one
    UnknownSymbolsError naming all of them; with `missing="skip"` the others are read and the frame's
    `attrs["missing_symbols"]` names the skipped ones.
    `as_of` is a New York date, default the current trading day (Alpaca's convention is today): META today is
    Facebook, whose bars from before its rename (as FB) come back too; META as of 2022-01-03 is the metaverse ETF
    that held it then. A symbol no company held on `as_of` (nor before it) raises UnknownSymbolOnDateError naming
    the holders known.
    `session` selects equities' intraday bars: "all" (04:00-20:00 New York, as Alpaca serves them),
    "regular" (bars overlapping the XNYS session, early closes included) or "extended" (pre- and post-market).
    `adjustment` is "raw" (as stored), "split" (prices and volumes for splits and stock dividends),
    "dividend" (prices for cash dividends) or "all"; adjusted volumes are floats.
    `known_at` (default: now) reads the bars as they were stored at that moment, rebuilt from the ledger of
    Alpaca's revisions (`market_data.ledger`), with the corporate actions recorded by then: a backtest run last
    month reads again exactly what it read then. A moment the ledger cannot rebuild raises LedgerError naming
    the series; it never falls back to the latest values. Bars Alpaca no longer answers (withdrawn) are kept in
    the table and left out of reads from the moment they were withdrawn.
    """
    _check_arguments(timeframe, session, adjustment)
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing {missing!r} is not 'raise' or 'skip'")
    dynamodb = dynamodb or DynamoDBResource.from_settings()
    if isinstance(symbols, str):
        alpaca_id = resolve_symbol(symbols, as_of, dynamodb)
        return read_asset_bars(alpaca_id, timeframe, start, end, dynamodb, session=session, adjustment=adjustment,
                               label=symbols, known_at=known_at)
    companies, unknown = resolve_symbols(list(dict.fromkeys(symbols)), as_of, dynamodb)
    if unknown and missing == "raise":
        raise UnknownSymbolsError(unknown)
    bars = read_companies(companies, timeframe, start, end, dynamodb, session=session, adjustment=adjustment,
                          known_at=known_at)
    bars.attrs["missing_symbols"] = [e.symbol for e in unknown]
    return bars


def resolve_symbol(symbol: str, as_of: date | None, dynamodb: DynamoDBResource) -> str:
    """The Alpaca id of the company `symbol` meant on `as_of` (default: the current trading day, New York's date and,
    after the extended hours close at 20:00, the next one's: the day a list seen now belongs to)."""
    holders = AssetsTable(dynamodb).holders([symbol]).get(symbol, [])
    return resolve(symbol, holders, as_of.isoformat() if as_of else observation_day())


def resolve_symbols(symbols: list[str | Listed], as_of: date | None, dynamodb: DynamoDBResource
                    ) -> tuple[list[tuple[str, str]], list[UnknownSymbolOnDateError]]:
    """(label, Alpaca id) of each symbol as of `as_of` (one BatchGetItem of their `ASSET#` items; a `Listed` is
    its own id), in order, and the symbols that name no company then."""
    day = as_of.isoformat() if as_of else observation_day()
    holders = AssetsTable(dynamodb).holders([s for s in symbols if isinstance(s, str)])
    companies, unknown = [], []
    for symbol in symbols:
        if isinstance(symbol, Listed):
            companies.append((symbol.symbol, symbol.alpaca_id))
            continue
        try:
            companies.append((symbol, resolve(symbol, holders.get(symbol, []), day)))
        except UnknownSymbolOnDateError as exc:
            unknown.append(exc)
    return companies, unknown


def listed_on(day: date, asset_class: str | None = None, dynamodb: DynamoDBResource | None = None) -> list[Listed]:
    """The companies listed at any moment of the New York date `day`, delisted and renamed ones included, each
    under the symbol it held that day: the universe the 1Day partition of `day` holds (the same rule), so
    `read_bars(listed_on(day), ...)` reads a survivorship-free cross-section. Sorted by symbol."""
    universe = listed_universe(dynamodb or DynamoDBResource.from_settings(), [day])
    listed = [Listed(i, universe.listings[i].request(day)[0], universe.listings[i].asset_class)
              for i in universe.by_day.get(day, set())]
    return sorted((x for x in listed if asset_class in (None, x.asset_class)), key=lambda x: (x.symbol, x.alpaca_id))


def read_asset_bars(alpaca_id: str, timeframe: str, start: datetime, end: datetime,
                    dynamodb: DynamoDBResource | None = None, *, session: str = "all", adjustment: str = "raw",
                    label: str | None = None, known_at: datetime | None = None) -> pd.DataFrame:
    """Bars of the company with this Alpaca id, whatever symbols it traded under; arguments as `read_bars`."""
    _check_arguments(timeframe, session, adjustment)
    window = Window.of(timeframe, start, end, known_at)
    dynamodb = dynamodb or DynamoDBResource.from_settings()
    table = MarketDataTable(dynamodb)
    items = list(table.bars_items(alpaca_id, timeframe, window.first, window.last, window.projection()))
    label = label or alpaca_id
    blocks = [_block(table, item, alpaca_id, label, window) for item in items]
    bars = assemble([(label, alpaca_id)], {alpaca_id: blocks}, timeframe, window.start, window.end, session)
    bars = _adjusted(bars, adjustment, lambda i: stored_actions(i, dynamodb, known_at=window.moment), window)
    return bars.frame(with_symbol=False)


def read_companies(companies: list[tuple[str, str]], timeframe: str, start: datetime, end: datetime,
                   dynamodb: DynamoDBResource | None = None, *, session: str = "all", adjustment: str = "raw",
                   known_at: datetime | None = None) -> pd.DataFrame:
    """Bars of many companies, (label, Alpaca id) each, as one frame with a `symbol` column (the label): what
    `read_bars` of a list returns. Their items are fetched together and decoded as they arrive, into arrays that
    are put together once (one concatenation, one sort), not company by company."""
    _check_arguments(timeframe, session, adjustment)
    window = Window.of(timeframe, start, end, known_at)
    dynamodb = dynamodb or DynamoDBResource.from_settings()
    table = MarketDataTable(dynamodb)
    ids = list(dict.fromkeys(i for _, i in companies))
    labels = {i: label for label, i in reversed(companies)}
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="read") as pool:
        blocks = _bucket_blocks(table, pool, labels, window)
        actions = dict(zip(ids, pool.map(lambda i: stored_actions(i, dynamodb, known_at=window.moment), ids))) \
            if adjustment != "raw" else {}
    bars = assemble(companies, blocks, timeframe, window.start, window.end, session)
    bars = _adjusted(bars, adjustment, actions.__getitem__, window)
    return bars.frame(with_symbol=True)


@dataclass(frozen=True)
class Window:
    """What a read asks: its bounds (UTC), the bucket keys that can hold them, and the moment it is known at."""

    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    first: str  # the first bucket that can hold a bar of the window
    last: str
    moment: str | None  # known_at, as the ledger spells moments
    today: date | None  # the New York date whose corporate actions are in effect (None: today)

    @classmethod
    def of(cls, timeframe: str, start: datetime, end: datetime, known_at: datetime | None) -> Window:
        start, end = _utc(start), _utc(end)
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        # A trading day's bars can carry timestamps of the neighbouring UTC dates (New York evenings, crypto days);
        # an item's sort key is the first day of its bucket.
        first = bucket_start((start - timedelta(days=1)).date(), timeframe).isoformat()
        last = (end + timedelta(days=1)).date().isoformat()
        moment = utc_stamp(_utc(known_at).to_pydatetime()) if known_at is not None else None
        today = _utc(known_at).tz_convert(NEW_YORK).date() if known_at is not None else None
        return cls(timeframe, start, end, first, last, moment, today)

    def projection(self) -> str:
        return LEDGER_PROJECTION if self.moment else BARS_PROJECTION

    def buckets(self) -> list[str]:
        """Every bucket key from `first` to `last` (a key without an item is simply not found)."""
        days = pd.date_range(self.first, self.last, freq="D").strftime("%Y-%m-%d").to_numpy(dtype=object)
        return sorted(set(bucket_starts(days, self.timeframe)))


def _bucket_blocks(table: MarketDataTable, pool: ThreadPoolExecutor, labels: dict[str, str],
                   window: Window) -> dict[str, list[Block]]:
    """Each company's blocks of the window (Alpaca id -> its label), in bucket order: BatchGetItem of the known
    bucket keys, 100 a request, or a paged Query per company where a window spans more buckets than a few (a year
    of 1Min days); fetched and decoded on the pool's threads, so decoding one answer overlaps waiting for the
    next. A bucket that fails its checksum fails the read (StoredBarsError)."""
    buckets, found = window.buckets(), collections.defaultdict(list)
    projection = [a.strip().replace("#d", "day") for a in window.projection().split(",")] + ["series"]

    def blocks(items: list[dict], alpaca_id: str) -> list[tuple[str, Block]]:
        # Not through the cache of hot symbols: a universe of items would only push them out of it.
        return [(item["day"], _block(table, item, alpaca_id, labels[alpaca_id], window, cached=False))
                for item in items]

    if len(buckets) > MAX_KEYS_PER_COMPANY:
        queried = pool.map(lambda i: blocks(list(table.bars_items(i, window.timeframe, window.first, window.last,
                                                                  window.projection())), i), labels)
        return {i: [b for _, b in dated] for i, dated in zip(labels, queried)}

    def batch(chunk: list[tuple[str, str]]) -> list[tuple[str, str, Block]]:
        return [(company_of(item["series"]), *block) for item in table.get(chunk, projection=projection).values()
                for block in blocks([item], company_of(item["series"]))]

    keys = [(bars_series(i, window.timeframe), b) for i in labels for b in buckets]
    for answered in pool.map(batch, [keys[n:n + KEYS_PER_REQUEST] for n in range(0, len(keys), KEYS_PER_REQUEST)]):
        for alpaca_id, day, block in answered:
            found[alpaca_id].append((day, block))
    return {i: [b for _, b in sorted(found[i], key=lambda db: db[0])] for i in found}


def _adjusted(bars: Bars, adjustment: str, actions_of, window: Window) -> Bars:
    """The bars with each equity company's corporate actions applied (`adjusted`'s method, on its row span)."""
    if adjustment == "raw" or not len(bars.nanoseconds):
        return bars
    days = trading_days(pd.Series(bars.nanoseconds), crypto=False).astype("datetime64[D]")
    today = window.today or datetime.now(NEW_YORK).date()
    columns = {c: bars.columns[c].astype("float64") if c == "volume" else bars.columns[c].copy() for c in VALUES}
    for _, alpaca_id, first, end in bars.spans:
        if first == end or alpaca_id not in bars.equity:
            continue
        applied = factors(days[first:end], actions_of(alpaca_id), adjustment, today=today)
        for column in ("open", "high", "low", "close", "vwap"):
            columns[column][first:end] = bars.columns[column][first:end].astype("float64") * applied.price
        columns["volume"][first:end] = bars.columns["volume"][first:end].astype("float64") * applied.volume
    return bars.with_columns(columns)


def _block(table: MarketDataTable, item: dict, alpaca_id: str, label: str, window: Window, *,
           cached: bool = True) -> Block:
    """An item's bars as read now (withdrawn bars left out) or as stored at the window's moment (rebuilt from its
    ledger)."""
    decode = _decoded if cached else _decoded.__wrapped__
    seconds, columns = decode(bytes(item["bars"]), item["checksum"], label, window.timeframe, item["day"])
    crypto, bucketed = _asset_class(item) == CRYPTO, "version" in item
    if window.moment is None:
        withdrawn = [int(s) for s in item.get("withdrawn") or {}]
        if withdrawn:
            kept = ~np.isin(seconds, withdrawn)
            seconds, columns = seconds[kept], {c: a[kept] for c, a in columns.items()}
        return Block(seconds, columns, bucketed, crypto)
    series = f"{alpaca_id}#{window.timeframe}"
    keys = list(item.get("revisions") or [])
    entries = table.ledger_entries(alpaca_id, window.timeframe, keys) if keys else {}
    revisions = []
    for key in keys:
        entry = entries.get(key)
        if entry is None:
            raise _ledger_error(label, series, item["day"], f"lacks its entry {key}")
        try:
            revisions.append((entry["seen_at"], decode_changes(bytes(entry["changes"]), entry["checksum"])))
        except (LedgerError, KeyError) as exc:
            raise _ledger_error(label, series, item["day"], f"entry {key} {exc}") from None
    stamps = pd.Series(seconds.astype(np.int64) * 1_000_000_000)
    bucket = Bucket(seconds, {c: columns[c] for c in VALUE_COLUMNS}, trading_days(stamps, crypto=crypto),
                    {int(s): at for s, at in (item.get("withdrawn") or {}).items()},
                    dict(item.get("days_stored") or {}), item.get("ledger_from") or item.get("ingested_at"))
    try:
        rebuilt = as_known_at(bucket, revisions, window.moment)
    except LedgerError as exc:
        raise _ledger_error(label, series, item["day"], str(exc)) from None
    return Block(rebuilt.seconds, {c: rebuilt.columns[c] for c in VALUE_COLUMNS}, bucketed, crypto)


def _ledger_error(label: str, series: str, bucket: str, problem: str) -> LedgerError:
    return LedgerError(f"the bars of {label} (series {series}, bucket {bucket}) cannot be rebuilt as of that moment: "
                       f"their ledger {problem}; read without known_at, or restore the ledger item (#LEDGER#{series}) "
                       "from a backup of the table (point-in-time recovery)")


def _check_arguments(timeframe: str, session: str, adjustment: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    if session not in SESSIONS:
        raise ValueError(f"session {session!r} is not one of {', '.join(SESSIONS)}")
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"adjustment {adjustment!r} is not one of {', '.join(ADJUSTMENTS)}")
    if session != "all" and timeframe == "1Day":
        raise ValueError(f"session={session!r} needs an intraday timeframe: a 1Day bar covers the whole trading day")


def adjusted(bars: pd.DataFrame, actions: list, adjustment: str, today: date | None = None) -> pd.DataFrame:
    """Equity bars with `actions` in effect by `today` (default: New York's date) applied: vectorised, one factor per
    bar from its New York trading day."""
    days = trading_days(bars["timestamp"], crypto=False).astype("datetime64[D]")
    applied = factors(days, actions, adjustment, today=today or datetime.now(NEW_YORK).date())
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
def _decoded(block: bytes, checksum: str, symbol: str, timeframe: str,
             day: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A block's epoch seconds and value columns (read-only: the cache shares them between reads)."""
    try:
        seconds, columns, actual = decode_columns(block)
    except CodecError as exc:
        raise StoredBarsError(f"the stored bars of {symbol} {timeframe} from {day} cannot be decoded ({exc}); "
                              "re-materialize the partitions they cover") from None
    if actual != checksum:
        raise StoredBarsError(f"the stored bars of {symbol} {timeframe} from {day} fail their checksum "
                              f"({actual} != {checksum}); re-materialize the partitions they cover")
    for array in (seconds, *columns.values()):
        array.flags.writeable = False
    return seconds, columns


def _utc(moment: datetime) -> pd.Timestamp:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return pd.Timestamp(moment).tz_convert("UTC")
