"""The bars ingestion engine behind `ohlc_bars` and pollenation's history load: fetch, screen, encode, write.

Symbols are split by asset class (their endpoints and day boundaries differ)
and into a few large groups, each fetched as its own stream of full 10,000-bar
pages by a worker thread; the shared rate limiter keeps all of them together
under Alpaca's limit while they keep it busy. Pages are consumed as they
arrive and each symbol's days are written as soon as its last page is in, so
memory stays flat.

Every bar is screened (`days.screen`): an impossible bar is held back with its
reason and the rest of its symbol-day is stored; where an earlier run stored
a sound bar at a held-back bar's time, that bar is kept. Nothing is deleted:
a partition's manifest only ever gains symbols, and a symbol-day Alpaca now
answers without bars keeps its stored item and is flagged.
"""

from __future__ import annotations

import collections
import queue
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd

from signal9_pipeline.assets_sync.changes import asset_key
from signal9_pipeline.market_data.codec import decode, encode_columns
from signal9_pipeline.market_data.days import (
    ASSET_CLASSES, CRYPTO, POST, PRE, REGULAR, BarProblem, Screening, fetch_window, is_session, screen, with_days,
)
from signal9_pipeline.market_data.read import series_key
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource

READBACK_SAMPLE = 25_000  # items whose checksums a run reads back; a random sample beyond
BARS_PER_DAY = {"1Min": 960, "5Min": 192, "15Min": 64, "30Min": 32, "1Hour": 16, "1Day": 1}  # equities, 04:00-20:00
CRYPTO_FEED = "us"  # Alpaca's crypto location (/v1beta3/crypto/us), recorded as the items' feed
DAY_FIGURES = ("bars", "pre_market", "regular", "post_market", "zero_trade", "held_back", "kept_from_earlier")


@dataclass(frozen=True)
class IngestOptions:
    adjustment: str = "raw"
    workers: int = 4
    max_symbols_per_request: int = 2000


@dataclass
class RunTally:
    bars: int = 0
    items: int = 0
    write_requests: int = 0
    problems: list[BarProblem] = field(default_factory=list)
    vwap_outside_range: int = 0
    by_day: dict[tuple[str, str], collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))  # (timeframe, day) -> DAY_FIGURES
    symbols_with_bars: dict[str, set] = field(default_factory=lambda: collections.defaultdict(set))
    written: dict[tuple[str, str], str] = field(default_factory=dict)  # a sample of (series, day) -> checksum
    sample_keys: list[tuple[str, str]] = field(default_factory=list)
    items_seen: int = 0
    sampler: random.Random = field(default_factory=lambda: random.Random(0))

    def remember(self, key: tuple[str, str], checksum: str) -> None:
        """Reservoir sampling: a uniform sample of at most READBACK_SAMPLE written items, memory bounded."""
        self.items_seen += 1
        if len(self.sample_keys) < READBACK_SAMPLE:
            self.sample_keys.append(key)
        else:
            slot = self.sampler.randrange(self.items_seen)
            if slot >= READBACK_SAMPLE:
                return
            del self.written[self.sample_keys[slot]]
            self.sample_keys[slot] = key
        self.written[key] = checksum

    def count_screening(self, timeframe: str, bars: pd.DataFrame, verdict: Screening) -> None:
        self.problems += verdict.problems
        self.vwap_outside_range += int(verdict.vwap_outside.sum())
        sound = ~verdict.held_back
        figures = pd.DataFrame({
            "day": bars["day"].to_numpy(), "bars": sound, "held_back": verdict.held_back,
            "zero_trade": sound & verdict.zero_trade, "pre_market": sound & (verdict.session == PRE),
            "regular": sound & (verdict.session == REGULAR), "post_market": sound & (verdict.session == POST),
        }).groupby("day").sum()
        for day, row in figures.iterrows():
            self.by_day[(timeframe, day)].update({k: int(v) for k, v in row.items()})

    def totals(self) -> collections.Counter:
        total: collections.Counter = collections.Counter({k: 0 for k in DAY_FIGURES})
        for figures in self.by_day.values():
            total.update(figures)
        return total


def request_groups(symbols: list[str], workers: int, cap: int, expected_bars: int) -> list[list[str]]:
    """As few groups as keep the workers busy and URLs short: only each group's last page comes back partial."""
    if not symbols:
        return []
    # Each group should span several pages, so the one partial page at its end costs little.
    count = max(-(-len(symbols) // cap), min(workers, -(-expected_bars // (8 * 10_000))), 1)
    return [symbols[i::count] for i in range(count) if symbols[i::count]]


def _fetch_concurrently(alpaca: AlpacaResource, groups: list[list[str]], asset_class: str, timeframe: str,
                        start: datetime, end: datetime, options: IngestOptions):
    """Pages from every group as they arrive, (group index, page); at most a few pages buffered."""
    pages: queue.Queue = queue.Queue(maxsize=2 * max(1, options.workers))
    done = object()
    stop = threading.Event()

    def stream(index: int, group: list[str]) -> None:
        try:
            for page in alpaca.iter_bars(group, timeframe, start, end, asset_class=asset_class,
                                         adjustment=options.adjustment):
                if stop.is_set():
                    return
                pages.put((index, page))
        except BaseException as exc:  # handed to the consumer, which raises it in the step
            pages.put((index, exc))
        finally:
            pages.put((index, done))

    with ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="bars") as pool:
        for index, group in enumerate(groups):
            pool.submit(stream, index, group)
        remaining = len(groups)
        try:
            while remaining:
                index, page = pages.get()
                if page is done:
                    remaining -= 1
                elif isinstance(page, BaseException):
                    raise page
                else:
                    yield index, page
        finally:
            stop.set()
            while remaining:  # let blocked producers finish
                if pages.get()[1] is done:
                    remaining -= 1


class ItemWriter:
    """Buffers items and writes them on a few background threads, so DynamoDB round trips overlap fetching."""

    CHUNK = 500

    def __init__(self, dynamodb: DynamoDBResource, tally: RunTally, threads: int = 4):
        self.dynamodb, self.tally = dynamodb, tally
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bars-writer")
        self.buffer: list[dict] = []
        self.pending: collections.deque = collections.deque()
        self.limit = 2 * threads

    def add(self, item: dict) -> None:
        self.buffer.append(item)
        if len(self.buffer) >= self.CHUNK:
            self._submit()

    def close(self) -> None:
        """Write what is left and wait for every write; raises the first write error."""
        try:
            self._submit()
            while self.pending:
                self._collect(self.pending.popleft())
        finally:
            self.pool.shutdown(wait=True)

    def _submit(self) -> None:
        if not self.buffer:
            return
        while len(self.pending) >= self.limit:  # bounded: memory stays flat however fast pages arrive
            self._collect(self.pending.popleft())
        chunk, self.buffer = self.buffer, []
        self.pending.append(self.pool.submit(self.dynamodb.put_items, self.dynamodb.market_data_table_name(), chunk))
        self.tally.items += len(chunk)

    def _collect(self, future) -> None:
        self.tally.write_requests += future.result()


@dataclass
class _Store:
    """What every symbol-day of one (timeframe, asset class) fetch is stored with."""

    dynamodb: DynamoDBResource
    timeframe: str
    asset_class: str
    feed: str
    days: set[str]
    tally: RunTally
    items: ItemWriter
    adjustment: str
    now: str

    def __call__(self, frame: pd.DataFrame) -> None:
        """Screen and encode complete symbols' bars (vectorized over many symbols), one item per symbol-day."""
        bars = with_days(frame, crypto=self.asset_class == CRYPTO)
        bars = bars.loc[bars["day"].isin(self.days)].reset_index(drop=True)
        if bars.empty:
            return
        verdict = screen(bars, self.timeframe, crypto=self.asset_class == CRYPTO)
        self.tally.count_screening(self.timeframe, bars, verdict)
        held = bars.loc[verdict.held_back]
        bars = bars.loc[~verdict.held_back]
        held_back = collections.Counter(zip(held["symbol"], held["day"]))
        if held_back:
            bars = self._with_earlier_bars(bars, held)
        if bars.empty:
            return
        symbols, day_of_bar = bars["symbol"].to_numpy(), bars["day"].to_numpy()
        seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
        columns = {c: bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count")}
        starts = np.flatnonzero(np.concatenate([[True], (symbols[1:] != symbols[:-1]) | (day_of_bar[1:] != day_of_bar[:-1])]))
        ends = np.append(starts[1:], len(bars))
        for start, end in zip(starts, ends):
            symbol, day = symbols[start], day_of_bar[start]
            block, checksum = encode_columns(seconds[start:end], {c: a[start:end] for c, a in columns.items()})
            key = series_key(symbol, self.timeframe)
            self.items.add({"series": key, "day": day, "symbol": symbol, "timeframe": self.timeframe,
                            "asset_class": self.asset_class, "bars": block, "bar_count": int(end - start),
                            "checksum": checksum, "first_ts": _iso(seconds[start]), "last_ts": _iso(seconds[end - 1]),
                            "feed": self.feed, "adjustment": self.adjustment, "held_back": held_back[(symbol, day)],
                            "ingested_at": self.now})
            self.tally.remember((key, day), checksum)
            self.tally.symbols_with_bars[day].add(symbol)
            self.tally.bars += int(end - start)

    def _with_earlier_bars(self, bars: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
        """The sound bars plus, at each held-back bar's time, the bar an earlier run stored there (if any)."""
        keys = sorted({(s, d) for s, d in zip(held["symbol"], held["day"])})
        stored = self.dynamodb.get_items(self.dynamodb.market_data_table_name(),
                                         [{"series": series_key(s, self.timeframe), "day": d} for s, d in keys],
                                         projection=["series", "day", "bars"])
        earlier = []
        for item in stored:
            symbol, day = item["series"].rsplit("#", 1)[0], item["day"]
            old, _ = decode(bytes(item["bars"]))
            wanted = set(held.loc[(held["symbol"] == symbol) & (held["day"] == day), "timestamp"])
            wanted -= set(bars.loc[(bars["symbol"] == symbol) & (bars["day"] == day), "timestamp"])
            old = old.loc[old["timestamp"].isin(wanted)]
            if not old.empty:
                earlier.append(old.assign(symbol=symbol, day=day))
                self.tally.by_day[(self.timeframe, day)]["kept_from_earlier"] += len(old)
        if not earlier:
            return bars
        merged = pd.concat([bars, *earlier], ignore_index=True)
        return merged.sort_values(["symbol", "day", "timestamp"], kind="stable").reset_index(drop=True)


def _iso(epoch_seconds) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), timezone.utc).isoformat()


def ingest(alpaca: AlpacaResource, dynamodb: DynamoDBResource, timeframe: str, dates: list[date],
           listings: dict[str, str], options: IngestOptions, tally: RunTally) -> None:
    """Fetch and store every bar of the symbols (symbol -> asset class) on `dates`, one window per asset class."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    items = ItemWriter(dynamodb, tally)
    try:
        for asset_class in [c for c in ASSET_CLASSES if c in listings.values()]:  # equities, then crypto
            symbols = sorted(s for s, c in listings.items() if c == asset_class)
            feed = CRYPTO_FEED if asset_class == CRYPTO else alpaca.data_feed()
            store = _Store(dynamodb, timeframe, asset_class, feed, {d.isoformat() for d in dates}, tally, items,
                           options.adjustment, now)
            _ingest_class(alpaca, timeframe, dates, symbols, asset_class, options, store)
    finally:
        items.close()


def _ingest_class(alpaca: AlpacaResource, timeframe: str, dates: list[date], symbols: list[str], asset_class: str,
                  options: IngestOptions, store: _Store) -> None:
    crypto = asset_class == CRYPTO
    start, end = fetch_window(min(dates), max(dates), crypto=crypto)
    per_day = BARS_PER_DAY[timeframe] * (3 if crypto and timeframe != "1Day" else 1)
    groups = request_groups(symbols, options.workers, options.max_symbols_per_request,
                            len(symbols) * len(dates) * per_day)
    open_symbol: dict[int, tuple[str, list[pd.DataFrame]]] = {}  # per group: the symbol still receiving pages
    ready: list[pd.DataFrame] = []
    for index, page in _fetch_concurrently(alpaca, groups, asset_class, timeframe, start, end, options):
        if page.empty:
            continue
        last = page["symbol"].iloc[-1]  # pages are ordered by symbol: all before the last one are complete
        held = open_symbol.pop(index, None)
        if held and held[0] != page["symbol"].iloc[0]:
            ready += held[1]
            held = None
        complete = page.loc[page["symbol"] != last]
        if held and not complete.empty:
            ready += held[1]
            held = None
        ready.append(complete)
        open_symbol[index] = (last, (held[1] if held else []) + [page.loc[page["symbol"] == last]])
        if sum(len(f) for f in ready) >= 50_000:
            store(pd.concat(ready))
            ready = []
    ready += [f for _, frames in open_symbol.values() for f in frames]
    if ready:
        store(pd.concat(ready))


def record_manifests(dynamodb: DynamoDBResource, timeframe: str, dates: list[date], tally: RunTally) -> dict[str, list[str]]:
    """Add this run's symbols to each date's manifest; per date, the stored symbols Alpaca answered without bars now.

    Nothing is deleted: those symbol-days keep the items an earlier run stored.
    """
    table = dynamodb.market_data_table_name()
    series = f"#PARTITION#{timeframe}"
    holding = {d.isoformat(): set(tally.symbols_with_bars.get(d.isoformat(), set())) for d in dates}
    without_bars_now: dict[str, list[str]] = {}
    for manifest in dynamodb.get_items(table, [{"series": series, "day": d} for d in holding]):
        day, before = manifest["day"], set(manifest.get("symbols", []))
        if before - holding[day]:
            without_bars_now[day] = sorted(before - holding[day])
        holding[day] |= before
    dynamodb.put_items(table, [{"series": series, "day": day, "symbols": sorted(symbols)} for day, symbols in holding.items()])
    return without_bars_now


def stored_mismatches(dynamodb: DynamoDBResource, written: dict[tuple[str, str], str]) -> tuple[list[str], int]:
    """Items (of the run's read-back sample) whose stored checksum differs from the one written; how many were read."""
    keys = sorted(written)
    stored = {(i["series"], i["day"]): i.get("checksum") for i in dynamodb.get_items(
        dynamodb.market_data_table_name(), [{"series": s, "day": d} for s, d in keys], projection=["series", "day", "checksum"])}
    return [f"{s} {d}" for s, d in keys if stored.get((s, d)) != written[(s, d)]], len(keys)


def completeness(classes: dict[str, str], by_day: dict[date, set[str]], tally: RunTally) -> tuple[float, int]:
    """Share of (symbol, day) pairs expected to trade that have bars (extended hours count), and how many are missing."""
    expected = present = 0
    for d, symbols in by_day.items():
        trading = {s for s in symbols if classes[s] == CRYPTO or is_session(d)}
        expected += len(trading)
        present += len(tally.symbols_with_bars.get(d.isoformat(), set()) & trading)
    return (present / expected if expected else 1.0), expected - present


class UnknownSymbolError(ValueError):
    """A symbol asked for bars that the assets table does not hold, or whose asset class has no bars endpoint here."""


def asset_classes(dynamodb: DynamoDBResource, symbols: list[str], alpaca: AlpacaResource | None = None) -> dict[str, str]:
    """Symbol -> asset class: how bars are fetched. From the assets table (which keeps delisted assets too), else
    from Alpaca's asset list for symbols the table does not hold yet (a watchlist before the first sync)."""
    items = dynamodb.get_items(dynamodb.assets_table_name(), [{"asset_id": asset_key(s)} for s in sorted(set(symbols))],
                               projection=["symbol", "asset_class"])
    classes = {i["symbol"]: i.get("asset_class") for i in items}
    for symbol in sorted(set(symbols) - set(classes)) if alpaca is not None else []:
        asset = alpaca.get_asset(symbol)
        if asset is not None and asset.get("symbol") == symbol:
            classes[symbol] = asset.get("class")
    missing = sorted(set(symbols) - set(classes))
    if missing:
        raise UnknownSymbolError(
            f"{len(missing)} symbol(s) are neither in the assets table {dynamodb.assets_table_name()!r} nor in Alpaca's "
            f"asset list, e.g. {', '.join(missing[:5])}; correct or remove them in SIGNAL9_INTRADAY_WATCHLIST")
    unsupported = sorted(s for s, c in classes.items() if c not in ASSET_CLASSES)
    if unsupported:
        raise UnknownSymbolError(
            f"no bars endpoint for the asset class of {', '.join(unsupported[:5])} ({classes[unsupported[0]]!r}); "
            f"bars are fetched for {', '.join(ASSET_CLASSES)} only")
    return classes
