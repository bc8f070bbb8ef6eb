"""ohlc_bars: every bar of a trading date and timeframe for the configured universe, in DynamoDB.

A run covers one or more (date, timeframe) partitions; a backfill over a date
range runs as one run (`BackfillPolicy.single_run()`), so one multi-symbol
request spans many days. Symbols are split into a few large groups, each
fetched as its own stream of full 10,000-bar pages by a worker thread; the
shared rate limiter keeps all of them together under Alpaca's limit while
they keep it busy. Pages are consumed as they arrive and each symbol's days
are written as soon as its last page is in, so memory stays flat. Every
symbol-day is checked before it is written; a partition's manifest names the
symbols it holds, so re-materializing replaces its items exactly.
"""

import collections
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd

from signal9_pipeline.assets_sync.changes import is_listed
from signal9_pipeline.market_data.codec import encode_columns
from signal9_pipeline.market_data.days import TIMEFRAMES, BarProblem, bar_problems, fetch_window, is_crypto, is_session, with_days
from signal9_pipeline.market_data.read import series_key
from signal9_pipeline.resources.alpaca import AlpacaResource, fail_fast_on_permanent_errors
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.resources.metrics import MetricsResource
from signal9_pipeline.settings import env_int, env_str

READBACK_SAMPLE = 25_000  # items whose checksums a run reads back; a random sample beyond
BARS_PARTITIONS = dg.MultiPartitionsDefinition({
    "date": dg.DailyPartitionsDefinition(start_date=env_str("SIGNAL9_BARS_START_DATE", "2024-01-02"),
                                         timezone="America/New_York"),
    "timeframe": dg.StaticPartitionsDefinition(list(TIMEFRAMES)),
})
CHECKS = ("ohlc_consistent", "timestamps_valid", "completeness", "stored_equals_fetched")
DEFAULT_WATCHLIST = "SPY,AAPL,MSFT,BTC/USD,ETH/USD"


class BarsConfig(dg.Config):
    intraday_watchlist: str = env_str("SIGNAL9_INTRADAY_WATCHLIST", DEFAULT_WATCHLIST)  # symbols, or "all"
    min_completeness: float = 0.9
    workers: int = env_int("SIGNAL9_BARS_WORKERS", 4)
    max_symbols_per_request: int = 2000
    adjustment: str = "raw"


@dataclass
class RunTally:
    bars: int = 0
    items: int = 0
    write_requests: int = 0
    problems: list[BarProblem] = field(default_factory=list)
    symbols_with_bars: dict[str, set] = field(default_factory=lambda: collections.defaultdict(set))
    held_back: dict[str, set] = field(default_factory=lambda: collections.defaultdict(set))  # invalid now: old items stay
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


def universe(timeframe: str, config: BarsConfig, dynamodb: DynamoDBResource) -> list[str]:
    if timeframe != "1Day" and config.intraday_watchlist.strip().lower() != "all":
        return sorted({s.strip() for s in config.intraday_watchlist.split(",") if s.strip()})
    items = dynamodb.scan(dynamodb.assets_table_name(), projection=["symbol", "status", "tradable"])
    return sorted(i["symbol"] for i in items if is_listed(i))


BARS_PER_DAY = {"1Min": 390, "5Min": 78, "15Min": 26, "30Min": 13, "1Hour": 7, "1Day": 1}


def request_groups(symbols: list[str], workers: int, cap: int, expected_bars: int) -> list[list[str]]:
    """As few groups as keep the workers busy and URLs short: only each group's last page comes back partial."""
    if not symbols:
        return []
    # Each group should span several pages, so the one partial page at its end costs little.
    count = max(-(-len(symbols) // cap), min(workers, -(-expected_bars // (8 * 10_000))), 1)
    return [symbols[i::count] for i in range(count) if symbols[i::count]]


def _fetch_concurrently(alpaca: AlpacaResource, groups: list[list[str]], timeframe: str, start: datetime, end: datetime,
                        config: BarsConfig):
    """Pages from every group as they arrive, (group index, page); at most a few pages buffered."""
    pages: queue.Queue = queue.Queue(maxsize=2 * max(1, config.workers))
    done = object()
    stop = threading.Event()

    def stream(index: int, group: list[str]) -> None:
        try:
            for page in alpaca.iter_bars(group, timeframe, start, end, adjustment=config.adjustment):
                if stop.is_set():
                    return
                pages.put((index, page))
        except BaseException as exc:  # handed to the consumer, which raises it in the step
            pages.put((index, exc))
        finally:
            pages.put((index, done))

    with ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="bars") as pool:
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


def _store(frame: pd.DataFrame, timeframe: str, days: set[str], tally: RunTally, items: ItemWriter,
           now: str, config: BarsConfig) -> None:
    """Check and encode complete symbols' bars (vectorized over many symbols), one item per symbol-day."""
    bars = with_days(frame)
    bars = bars.loc[bars["day"].isin(days)].reset_index(drop=True)
    if bars.empty:
        return
    problems = bar_problems(bars, timeframe)
    tally.problems += problems
    bad = {(p.symbol, p.day) for p in problems}
    for symbol, day in bad:
        tally.held_back[day].add(symbol)
    symbols, day_of_bar = bars["symbol"].to_numpy(), bars["day"].to_numpy()
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    columns = {c: bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count")}
    starts = np.flatnonzero(np.concatenate([[True], (symbols[1:] != symbols[:-1]) | (day_of_bar[1:] != day_of_bar[:-1])]))
    ends = np.append(starts[1:], len(bars))
    for start, end in zip(starts, ends):
        symbol, day = symbols[start], day_of_bar[start]
        if (symbol, day) in bad:
            continue
        block, checksum = encode_columns(seconds[start:end], {c: a[start:end] for c, a in columns.items()})
        items.add({"series": series_key(symbol, timeframe), "day": day, "symbol": symbol, "timeframe": timeframe,
                       "bars": block, "bar_count": int(end - start), "checksum": checksum,
                       "first_ts": _iso(seconds[start]), "last_ts": _iso(seconds[end - 1]),
                       "feed": "crypto" if is_crypto(symbol) else "sip", "adjustment": config.adjustment, "ingested_at": now})
        tally.remember((series_key(symbol, timeframe), day), checksum)
        tally.symbols_with_bars[day].add(symbol)
        tally.bars += int(end - start)


def _iso(epoch_seconds) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), timezone.utc).isoformat()


def ingest(alpaca: AlpacaResource, dynamodb: DynamoDBResource, timeframe: str, dates: list[date], symbols: list[str],
           config: BarsConfig, tally: RunTally) -> None:
    """Fetch and store every bar of `symbols` on `dates` (one contiguous fetch window per asset kind)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wanted = {d.isoformat() for d in dates}
    items = ItemWriter(dynamodb, tally)
    try:
        for crypto in (False, True):
            _ingest_kind(alpaca, timeframe, dates, [s for s in symbols if is_crypto(s) == crypto], crypto, config,
                         tally, items, wanted, now)
    finally:
        items.close()


def _ingest_kind(alpaca: AlpacaResource, timeframe: str, dates: list[date], kind: list[str], crypto: bool,
                 config: BarsConfig, tally: RunTally, items: ItemWriter, wanted: set[str], now: str) -> None:
    """One asset kind's symbols (stocks or crypto: their endpoints and day boundaries differ)."""
    if not kind:
        return
    start, end = fetch_window(min(dates), max(dates), crypto=crypto)
    per_day = BARS_PER_DAY[timeframe] * (1440 // 390 + 1 if crypto and timeframe != "1Day" else 1)
    groups = request_groups(kind, config.workers, config.max_symbols_per_request, len(kind) * len(dates) * per_day)
    open_symbol: dict[int, tuple[str, list[pd.DataFrame]]] = {}  # per group: the symbol still receiving pages
    ready: list[pd.DataFrame] = []
    for index, page in _fetch_concurrently(alpaca, groups, timeframe, start, end, config):
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
            _store(pd.concat(ready), timeframe, wanted, tally, items, now, config)
            ready = []
    ready += [f for _, frames in open_symbol.values() for f in frames]
    if ready:
        _store(pd.concat(ready), timeframe, wanted, tally, items, now, config)


def replace_manifests(dynamodb: DynamoDBResource, timeframe: str, dates: list[date], tally: RunTally) -> int:
    """Delete items a previous materialization left for symbols without bars now; record who has bars."""
    table = dynamodb.market_data_table_name()
    series = f"#PARTITION#{timeframe}"
    keys = [{"series": series, "day": d.isoformat()} for d in dates]
    stale = []
    holding = {d.isoformat(): set(tally.symbols_with_bars.get(d.isoformat(), set())) for d in dates}
    for manifest in dynamodb.get_items(table, keys):
        day, before = manifest["day"], set(manifest.get("symbols", []))
        holding[day] |= before & tally.held_back.get(day, set())  # a symbol-day refused now keeps its old item
        stale += [{"series": series_key(s, timeframe), "day": day} for s in sorted(before - holding[day])]
    dynamodb.write_batches(table, ({"DeleteRequest": {"Key": {k: {"S": v} for k, v in key.items()}}} for key in stale))
    dynamodb.put_items(table, [{"series": series, "day": day, "symbols": sorted(symbols)} for day, symbols in holding.items()])
    return len(stale)


def stored_mismatches(dynamodb: DynamoDBResource, written: dict[tuple[str, str], str]) -> tuple[list[str], int]:
    """Items (of the run's read-back sample) whose stored checksum differs from the one written; how many were read."""
    keys = sorted(written)
    stored = {(i["series"], i["day"]): i.get("checksum") for i in dynamodb.get_items(
        dynamodb.market_data_table_name(), [{"series": s, "day": d} for s, d in keys], projection=["series", "day", "checksum"])}
    return [f"{s} {d}" for s, d in keys if stored.get((s, d)) != written[(s, d)]], len(keys)


def completeness(symbols: list[str], dates: list[date], tally: RunTally) -> tuple[float, int]:
    """Share of (symbol, day) pairs expected to trade that have bars, and how many are missing."""
    expected = present = 0
    for d in dates:
        trading = [s for s in symbols if is_crypto(s) or is_session(d)]
        expected += len(trading)
        present += len(tally.symbols_with_bars.get(d.isoformat(), set()) & set(trading))
    return (present / expected if expected else 1.0), expected - present


@dg.asset(
    partitions_def=BARS_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run(), pool="alpaca_api",
    kinds={"alpaca", "dynamodb"}, group_name="market_data",
    description="OHLC bars per (trading date, timeframe): 1Day for every listed asset, intraday for the watchlist; "
                "one DynamoDB item per symbol-day.",
    check_specs=[dg.AssetCheckSpec(name, asset="ohlc_bars") for name in CHECKS],
)
def ohlc_bars(context: dg.AssetExecutionContext, config: BarsConfig, alpaca: AlpacaResource, dynamodb: DynamoDBResource,
              metrics: MetricsResource):
    started, requests_before = time.monotonic(), alpaca.requests_sent
    by_timeframe: dict[str, list[date]] = collections.defaultdict(list)
    for key in context.partition_keys:
        dims = dg.MultiPartitionKey.from_str(key).keys_by_dimension if not isinstance(key, dg.MultiPartitionKey) else key.keys_by_dimension
        by_timeframe[dims["timeframe"]].append(date.fromisoformat(dims["date"]))
    tally, missing, stale = RunTally(), 0, 0
    share = 1.0
    for timeframe, dates in sorted(by_timeframe.items()):
        dates.sort()
        symbols = universe(timeframe, config, dynamodb)
        with fail_fast_on_permanent_errors():
            ingest(alpaca, dynamodb, timeframe, dates, symbols, config, tally)
        stale += replace_manifests(dynamodb, timeframe, dates, tally)
        tf_share, tf_missing = completeness(symbols, dates, tally)
        share, missing = min(share, tf_share), missing + tf_missing
        tally.symbols_with_bars.clear()
        tally.held_back.clear()
        context.log.info(f"{timeframe}: {len(dates)} date(s), {len(symbols)} symbol(s), completeness {tf_share:.1%}")
    requests_used = alpaca.requests_sent - requests_before
    mismatches, read_back = stored_mismatches(dynamodb, tally.written)
    duration = time.monotonic() - started
    bars_per_request = tally.bars / requests_used if requests_used else 0.0
    metrics.put("BarsWritten", tally.bars)
    metrics.put("BarsPerRequest", bars_per_request)
    metrics.put("BarsInvalid", len(tally.problems))
    stamps = [p for p in tally.problems if "timestamp" in p.reason]
    ohlc = [p for p in tally.problems if p not in stamps]
    yield dg.MaterializeResult(
        metadata={
            "bars_written": dg.MetadataValue.int(tally.bars),
            "items_written": dg.MetadataValue.int(tally.items),
            "requests_used": dg.MetadataValue.int(requests_used),
            "bars_per_request": dg.MetadataValue.float(round(bars_per_request, 1)),
            "symbols_with_no_bars": dg.MetadataValue.int(missing),
            "stale_items_removed": dg.MetadataValue.int(stale),
            "write_requests": dg.MetadataValue.int(tally.write_requests),
            "duration_s": dg.MetadataValue.float(round(duration, 3)),
        },
        check_results=[
            dg.AssetCheckResult(check_name="ohlc_consistent", passed=not ohlc, description=_first(ohlc),
                                metadata={"invalid_bars": dg.MetadataValue.int(len(ohlc))}),
            dg.AssetCheckResult(check_name="timestamps_valid", passed=not stamps, description=_first(stamps),
                                metadata={"invalid_timestamps": dg.MetadataValue.int(len(stamps))}),
            dg.AssetCheckResult(check_name="completeness", passed=share >= config.min_completeness,
                                metadata={"share_with_bars": dg.MetadataValue.float(round(share, 4)),
                                          "missing_symbol_days": dg.MetadataValue.int(missing),
                                          "threshold": dg.MetadataValue.float(config.min_completeness)}),
            dg.AssetCheckResult(check_name="stored_equals_fetched", passed=not mismatches,
                                metadata={"items_checked": dg.MetadataValue.int(read_back),
                                          "mismatches": dg.MetadataValue.int(len(mismatches))}),
        ],
    )
    if tally.problems:  # after the checks are recorded: the sound days are written, the run still fails
        raise dg.Failure(
            description=f"{len(tally.problems)} invalid bar(s); their symbol-days were not written (the rest were): "
                        + "; ".join(str(p) for p in tally.problems[:10]),
            metadata={"problems": dg.MetadataValue.text("\n".join(str(p) for p in tally.problems[:200]))})


def _first(problems: list[BarProblem]) -> str | None:
    return "; ".join(str(p) for p in problems[:5]) or None


@dg.schedule(cron_schedule="0 5 * * *", execution_timezone="UTC", job_name="daily_bars_job",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_bars_schedule(context: dg.ScheduleEvaluationContext):
    """After the 04:00 asset sync: yesterday's New York date, every timeframe (crypto trades on weekends too)."""
    scheduled = context.scheduled_execution_time or datetime.now(timezone.utc)
    day = (pd.Timestamp(scheduled).tz_convert("America/New_York").date() - timedelta(days=1)).isoformat()
    for timeframe in TIMEFRAMES:
        yield dg.RunRequest(run_key=f"{day}|{timeframe}",
                            partition_key=dg.MultiPartitionKey({"date": day, "timeframe": timeframe}))


daily_bars_job = dg.define_asset_job("daily_bars_job", selection=[ohlc_bars])

defs = dg.Definitions(assets=[ohlc_bars], jobs=[daily_bars_job], schedules=[daily_bars_schedule])
