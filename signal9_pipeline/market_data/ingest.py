"""The bars ingestion engine behind `ohlc_bars` and pollenation's history load: fetch, screen, merge, write.

Companies are split by asset class (their endpoints and day boundaries differ),
by the date their symbols are asked as of (`asof`: the run's last date, unless a
company's symbol passed to another company before it), and into a few large
groups, each fetched as its own stream of full 10,000-bar pages by a worker thread; the shared rate limiter keeps all of them together
under Alpaca's limit while they keep it busy. Pages are consumed as they
arrive and each company's bars are handed on as soon as its last page is in, so
memory stays flat. Bars are filed by company (`{alpaca_id}#{timeframe}`), never by
the symbol they were asked under.

Every bar is screened (`days.screen`): an impossible bar is held back with its
reason and the rest of its day is stored. Bars are stored in buckets sized per
timeframe (`days.BUCKETS`); `BucketWriter` merges each fetch into its stored
bucket (the fetched days replaced, the others kept, a sound bar an earlier run
stored at a held-back bar's time kept) under a conditional put on the bucket's
version. Nothing is deleted: a partition's manifest only ever gains symbols,
and a day Alpaca now answers without bars keeps what was stored and is flagged.
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from signal9_pipeline.market_data.codec import CodecError, bars_batch, decode, encode_batch, encode_columns
from signal9_pipeline.market_data.days import (
    ASSET_CLASSES,
    CRYPTO,
    FAULT,
    POST,
    PRE,
    REGULAR,
    BarProblem,
    Screening,
    bucket_starts,
    fault_parts,
    fetch_window,
    is_session,
    screen,
    trading_days,
    with_days,
)
from signal9_pipeline.market_data.ledger import (
    REFUSED,
    VALUE_COLUMNS,
    Bucket,
    Fetch,
    Merged,
    Revision,
    encode_changes,
    merge,
    summarize,
)
from signal9_pipeline.market_data.pages import bar_frames
from signal9_pipeline.market_data.universe import Listing
from signal9_pipeline.resources.alpaca import AlpacaResource
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.retry import BUCKET_CONFLICTS
from signal9_pipeline.tables.market_data import MANIFESTS_AT_ONCE, MarketDataTable, bars_series, ledger_key, ledger_series
from signal9_pipeline.timestamps import utc_stamp

RECENT_SIP_MARGIN = timedelta(minutes=16)  # Alpaca's 15 minutes, and one for clocks that disagree
READBACK_SAMPLE = 25_000  # items whose checksums a run reads back; a random sample beyond
BARS_PER_DAY = {"1Min": 960, "5Min": 192, "15Min": 64, "30Min": 32, "1Hour": 16, "1Day": 1}  # equities, 04:00-20:00
CRYPTO_FEED = "us"  # Alpaca's crypto location (/v1beta3/crypto/us), recorded as the items' feed
MAX_NAMED = 200  # restated bars named in a run's check and log
DAY_FIGURES = ("bars", "pre_market", "regular", "post_market", "zero_trade", "held_back")


@dataclass(frozen=True)
class IngestOptions:
    adjustment: str = "raw"
    workers: int = 4
    max_symbols_per_request: int = 2000
    run_id: str = ""  # recorded with each ledger entry


@dataclass
class RunTally:
    bars: int = 0
    items: int = 0
    write_requests: int = 0
    problems: list[BarProblem] = field(default_factory=list)
    vwap_outside_range: int = 0
    held_back_timeless: int = 0  # held-back bars without a readable time, so of no day
    outside_window: int = 0  # bars Alpaca answered for days the run did not ask for; not stored
    kept_from_earlier: int = 0  # stored bars kept at the times of held-back bars
    write_conflicts: int = 0  # conditional puts that lost to another run's write, then merged again
    largest_block_bytes: int = 0  # the largest `bars` attribute written (DynamoDB allows 400 KB per item)
    by_day: dict[tuple[str, str], dict[str, int]] = field(
        default_factory=lambda: collections.defaultdict(lambda: dict.fromkeys(DAY_FIGURES, 0)))  # (timeframe, day) -> DAY_FIGURES
    companies_with_bars: dict[str, set] = field(default_factory=lambda: collections.defaultdict(set))  # day -> asset ids
    labels: dict[str, str] = field(default_factory=dict)  # asset id -> the symbol its bars were asked under
    unrequested: list[str] = field(default_factory=list)  # companies no (symbol, asof) could ask for, and why
    written: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)  # a sample: key -> (version, checksum)
    sample_keys: list[tuple[str, str]] = field(default_factory=list)
    items_seen: int = 0
    revised: dict[tuple[str, str], collections.Counter] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    largest_change: dict[tuple[str, str], float] = field(default_factory=dict)  # (timeframe, day) -> relative
    beyond_tolerance: list[str] = field(default_factory=list)  # the first MAX_NAMED restated bars worth a look
    beyond_tolerance_count: int = 0
    revisions: list[Revision] = field(default_factory=list)  # one per write that changed stored bars
    sampler: random.Random = field(default_factory=lambda: random.Random(0))

    def remember(self, key: tuple[str, str], checksum) -> None:
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

    def count_revision(self, revision: Revision) -> None:
        for day, counts in revision.by_day.items():
            self.revised[(revision.timeframe, day)].update(counts)
        for day, largest in revision.largest.items():
            key = (revision.timeframe, day)
            self.largest_change[key] = max(self.largest_change.get(key, 0.0), largest)
        self.beyond_tolerance_count += revision.beyond_count
        self.beyond_tolerance += revision.beyond[:max(0, MAX_NAMED - len(self.beyond_tolerance))]
        self.revisions.append(revision.without_names())

    def count_screening(self, timeframe: str, bars: pd.DataFrame, verdict: Screening) -> None:
        self.problems += verdict.problems
        self.vwap_outside_range += int(verdict.vwap_outside.sum())
        sound = ~verdict.held_back
        index, days = pd.factorize(bars["day"].to_numpy())
        figures = {"bars": sound, "held_back": verdict.held_back, "zero_trade": sound & verdict.zero_trade,
                   "pre_market": sound & (verdict.session == PRE), "regular": sound & (verdict.session == REGULAR),
                   "post_market": sound & (verdict.session == POST)}
        names = list(figures)
        counts = np.stack([np.bincount(index, weights=figures[name], minlength=len(days)) for name in names], axis=1)
        for day, row in zip(days.tolist(), counts.astype(np.int64).tolist()):  # plain ints: a 5-year page has 1,256 days
            figures_of_day = self.by_day[(timeframe, str(day))]
            for name, count in zip(names, row):
                figures_of_day[name] += count

    def count_timeless(self, bars: pd.DataFrame) -> None:
        """Bars whose time could not be read: held back, named by symbol and fault; they belong to no day."""
        self.held_back_timeless += len(bars)
        faults = bars[FAULT].tolist() if FAULT in bars else [None] * len(bars)
        for symbol, fault in zip(bars["symbol"].tolist(), faults):
            name, reason = fault_parts(fault) if isinstance(fault, str) else ("t", "not a time")
            self.problems.append(BarProblem(symbol, "", "(no time)", name, reason))

    def totals(self) -> collections.Counter:
        total: collections.Counter = collections.Counter({k: 0 for k in DAY_FIGURES})
        for figures in self.by_day.values():
            total.update(figures)
        total["held_back"] += self.held_back_timeless
        return total


def request_groups(symbols: list[str], workers: int, cap: int, expected_bars: int) -> list[list[str]]:
    """As few groups as keep the workers busy and URLs short: only each group's last page comes back partial."""
    if not symbols:
        return []
    # Each group should span several pages, so the one partial page at its end costs little.
    count = max(-(-len(symbols) // cap), min(workers, -(-expected_bars // (8 * 10_000))), 1)
    return [symbols[i::count] for i in range(count) if symbols[i::count]]


def _fetch_concurrently(alpaca: AlpacaResource, groups: list[list[str]], asset_class: str, timeframe: str,
                        start: datetime, end: datetime, options: IngestOptions, asof: str | None = None):
    """Pages from every group as they arrive, (group index, page); at most a few pages buffered."""
    pages: queue.Queue = queue.Queue(maxsize=2 * max(1, options.workers))
    done = object()
    stop = threading.Event()

    def stream(index: int, group: list[str]) -> None:
        try:
            for page in bar_frames(alpaca, group, timeframe, start, end, asset_class=asset_class,
                                   adjustment=options.adjustment, asof=asof):
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


@dataclass
class BucketUpdate:
    """What one fetch brings to one bucket (one item): its sound bars, the days it answered, its held-back bars."""

    series: str
    bucket: str  # the bucket's first day: the item's sort key
    symbol: str  # the symbol the bars were asked under (the item's `symbol`, for people reading the table)
    alpaca_id: str
    seconds: np.ndarray  # the sound bars' start times (epoch seconds, int64), sorted
    columns: dict[str, np.ndarray]  # their VALUE_COLUMNS, aligned with `seconds`
    bar_days: np.ndarray  # their trading days, aligned with `seconds`
    days: set[str]  # days this fetch has bars for (sound or held back): their stored bars are answered again
    held: list[dict]  # {"day", "t", "field", "reason"} per held-back bar
    batch: pa.RecordBatch  # the same sound bars as Arrow (a slice of the page's batch): a new bucket's block

    @property
    def key(self) -> tuple[str, str]:
        return self.series, self.bucket

    def fetch(self) -> Fetch:
        return Fetch(self.seconds, self.columns, self.days, self.held, self.bar_days)


@dataclass(frozen=True)
class Written:
    series: str
    bucket: str
    version: int
    checksum: str
    bars: int
    kept_from_earlier: int
    block_bytes: int
    revision: Revision | None  # what this write changed in the bars stored before it


class BucketConflictError(RuntimeError):
    """Other runs kept changing a bucket between this run's read and its conditional write."""


STORED_ATTRIBUTES = ["series", "day", "bars", "checksum", "version", "held_back", "feed", "days_stored", "ledger_from",
                     "withdrawn", "revisions", "ingested_at"]


@dataclass
class _Put:
    """One bucket's write: the item, its ledger entry (None: nothing revised), the condition on the stored version."""

    item: dict
    entry: dict | None
    revision: Revision | None
    kept: int
    condition: str
    values: dict | None


class BucketWriter:
    """Merges each fetch into its stored bucket and writes it back with a conditional put on the item's version.

    Two runs touching one bucket (a backfill split into ranges, the daily schedule beside a
    backfill) cannot lose each other's bars: a put whose version moved on fails its condition,
    and the bucket is read, merged and written again. What a write changes in the bars stored before it
    (`ledger.merge`) is a ledger entry, written before the bucket (write-ahead), which lists it. Work runs on a
    few threads, so DynamoDB round trips overlap fetching; memory stays bounded.
    """

    CHUNK = 100  # BatchGetItem's limit

    def __init__(self, dynamodb: DynamoDBResource, tally: RunTally, describe: dict, crypto: bool, threads: int = 8):
        self.table, self.tally, self.describe, self.crypto = MarketDataTable(dynamodb), tally, describe, crypto
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bars-writer")
        self.buffer: list[BucketUpdate] = []
        self.pending: collections.deque = collections.deque()
        self.limit = 2 * threads

    def add(self, update: BucketUpdate) -> None:
        self.buffer.append(update)
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
        self.pending.append(self.pool.submit(self._write, chunk))

    def _collect(self, future) -> None:
        written, requests, conflicts = future.result()
        self.tally.write_requests += requests
        self.tally.write_conflicts += conflicts
        for w in written:
            self.tally.items += 1
            self.tally.bars += w.bars
            self.tally.remember((w.series, w.bucket), (w.version, w.checksum))
            self.tally.kept_from_earlier += w.kept_from_earlier
            self.tally.largest_block_bytes = max(self.tally.largest_block_bytes, w.block_bytes)
            if w.revision is not None:
                self.tally.count_revision(w.revision)

    def _write(self, updates: list[BucketUpdate]) -> tuple[list[Written], int, int]:
        pending = {u.key: u for u in updates}
        written, requests, conflicts = [], 0, 0
        for round_number in range(1, BUCKET_CONFLICTS.attempts + 1):
            stored = self.table.get(pending, projection=STORED_ATTRIBUTES)
            puts = {key: self._merged(update, stored.get(key)) for key, update in pending.items()}
            puts = {key: put for key, put in puts.items() if put is not None}
            entries = [put.entry for put in puts.values() if put.entry is not None]
            if entries:  # write-ahead: a bucket never lists an entry that is not stored
                requests += self.table.put(entries)
            lost = {}
            for key, put in puts.items():
                requests += 1
                if self.table.put_if(put.item, put.condition, {"#v": "version"}, put.values):
                    written.append(Written(key[0], key[1], put.item["version"], put.item["checksum"],
                                           len(pending[key].seconds), put.kept, len(put.item["bars"]), put.revision))
                else:
                    lost[key] = pending[key]
            if not lost:
                return written, requests, conflicts
            conflicts += len(lost)
            pending = lost
            time.sleep(BUCKET_CONFLICTS.wait_s(round_number))
        raise BucketConflictError(f"{len(pending)} bucket(s) changed by other runs {BUCKET_CONFLICTS.attempts} times while this run "
                                  f"wrote them, e.g. {next(iter(pending))}; rerun the partition")

    def _merged(self, update: BucketUpdate, stored: dict | None) -> _Put | None:
        """The bucket with this fetch's days answered again (`ledger.merge`), its ledger entry, the condition."""
        now = self.describe["ingested_at"]
        if stored is None:
            if len(update.seconds) == 0:
                return None
            block, checksum = encode_batch(update.batch)
            bucket = Bucket(update.seconds, update.columns, update.bar_days, {}, dict.fromkeys(sorted(update.days), now), now)
            return _Put(self._item(update, bucket, block, checksum, update.held, set(), [], 1), None, None, 0,
                        "attribute_not_exists(#v)", None)
        merged = merge(stored_bucket(stored, update.series, self.crypto), update.fetch(), now)
        bucket = merged.bucket
        if len(bucket.seconds) == 0:
            return None
        held = [h for h in stored.get("held_back") or [] if h["day"] not in update.days] + update.held
        untouched = not np.isin(bucket.days, list(update.days)).all()
        feeds = set(str(stored.get("feed", self.describe["feed"])).split("+")) if untouched else set()
        versioned = "version" in stored
        version = int(stored["version"]) + 1 if versioned else 1
        revisions = list(stored.get("revisions") or [])
        entry = revision = None
        if not merged.changes.empty:
            entry, revision = self._entry(update, merged, version, now)
            revisions.append(entry["day"])
        block, checksum = encode_columns(bucket.seconds, bucket.columns)
        item = self._item(update, bucket, block, checksum, held, feeds, revisions, version)
        if versioned:
            return _Put(item, entry, revision, merged.kept_at_held, "#v = :v", {":v": int(stored["version"])})
        return _Put(item, entry, revision, merged.kept_at_held, "attribute_not_exists(#v)", None)  # written before versions

    def _item(self, update: BucketUpdate, bucket: Bucket, block: bytes, checksum: str, held: list[dict], feeds: set[str],
              revisions: list[str], version: int) -> dict:
        return {"series": update.series, "day": update.bucket, "symbol": update.symbol, "alpaca_id": update.alpaca_id,
                **self.describe, "feed": "+".join(sorted(feeds | {self.describe["feed"]})), "bars": block,
                "bar_count": len(bucket.seconds), "checksum": checksum, "first_ts": utc_stamp(bucket.seconds[0]),
                "last_ts": utc_stamp(bucket.seconds[-1]), "held_back": held, "version": version,
                "days_stored": bucket.days_stored, "ledger_from": bucket.ledger_from, "revisions": revisions,
                "withdrawn": {str(second): at for second, at in sorted(bucket.withdrawn.items())}}

    def _entry(self, update: BucketUpdate, merged: Merged, version: int, now: str) -> tuple[dict, Revision]:
        """The ledger entry of one write that changed stored bars, and its summary for the run's tally."""
        block, checksum = encode_changes(merged.changes)
        key = ledger_key(update.bucket, version, checksum)
        revision = summarize(merged.changes, update.series, update.alpaca_id, update.symbol, self.describe["timeframe"],
                             key, now)
        refused = {int(pd.Timestamp(h["t"]).timestamp()): h for h in update.held}
        entry = {"series": ledger_series(update.alpaca_id, self.describe["timeframe"]), "day": key,
                 "alpaca_id": update.alpaca_id, "symbol": update.symbol, "timeframe": self.describe["timeframe"],
                 "bucket": update.bucket, "version": version, "seen_at": now, "run_id": self.describe.get("run_id", ""),
                 "changes": block, "checksum": checksum, "days": sorted(revision.days), **revision.counts(),
                 "refusals": [refused[t] for t in merged.changes.loc[merged.changes["change"] == REFUSED, "timestamp"]
                              .tolist() if t in refused]}
        return entry, revision


def stored_bucket(item: dict, series: str, crypto: bool) -> Bucket:
    """A stored bucket item as the ledger merges it; CodecError if its block fails its checksum."""
    bars, checksum = decode(bytes(item["bars"]))
    if checksum != item.get("checksum"):
        raise CodecError(f"stored bucket {series} {item['day']} fails its checksum; re-materialize the partitions it covers")
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    return Bucket(seconds, {c: bars[c].to_numpy() for c in VALUE_COLUMNS}, trading_days(bars["timestamp"], crypto=crypto),
                  {int(s): at for s, at in (item.get("withdrawn") or {}).items()}, dict(item.get("days_stored") or {}),
                  item.get("ledger_from") or item.get("ingested_at"))


@dataclass
class _Store:
    """What every bucket of one (timeframe, asset class) fetch is stored with."""

    timeframe: str
    asset_class: str
    days: set[str]
    tally: RunTally
    writer: BucketWriter

    def __call__(self, frame: pd.DataFrame, companies: dict[str, str]) -> None:
        """Screen complete symbols' bars (vectorized over many symbols) and hand each bucket's share to the writer.

        `companies` maps each symbol of the frame to the company it was asked for (one asof group: one each).
        """
        crypto = self.asset_class == CRYPTO
        timeless = frame["timestamp"].isna().to_numpy()  # a bar whose time is missing or not RFC 3339
        if timeless.any():
            self.tally.count_timeless(frame.loc[timeless])
            frame = frame.loc[~timeless]
        bars = with_days(frame, crypto=crypto)
        in_window = bars["day"].isin(self.days).to_numpy()
        if not in_window.all():  # Alpaca answered beyond the window asked: another partition's bars
            self.tally.outside_window += int((~in_window).sum())
            bars = bars.loc[in_window].reset_index(drop=True)
        if bars.empty:
            return
        verdict = screen(bars, self.timeframe, crypto=crypto)
        self.tally.count_screening(self.timeframe, bars, verdict)
        symbols, days = bars["symbol"].to_numpy(), bars["day"].to_numpy()
        buckets = bucket_starts(days, self.timeframe)
        seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
        columns = {c: bars[c].to_numpy() for c in VALUE_COLUMNS}
        batch = bars_batch(seconds, columns)  # once per page; each bucket's block is encoded from its slice
        sound = ~verdict.held_back
        held: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
        for p in verdict.problems:
            held[(p.symbol, bucket_starts(np.array([p.day]), self.timeframe)[0])].append(
                {"day": p.day, "t": p.timestamp, "field": p.field, "reason": p.reason})
        day_starts = _run_starts(symbols, days)
        with_sound = day_starts[np.add.reduceat(sound, day_starts) > 0]  # (symbol, day) runs with a sound bar
        for day, symbol in zip(days[with_sound].tolist(), symbols[with_sound].tolist()):
            self.tally.companies_with_bars[day].add(companies[symbol])
        starts = _run_starts(symbols, buckets)
        for start, end in zip(starts, np.append(starts[1:], len(bars))):
            if sound[start:end].all():
                rows, rows_batch = slice(start, end), batch.slice(start, end - start)
            else:
                rows = np.arange(start, end)[sound[start:end]]
                rows_batch = batch.take(pa.array(rows))
            symbol, bucket = symbols[start], buckets[start]
            alpaca_id = companies[symbol]
            self.writer.add(BucketUpdate(bars_series(alpaca_id, self.timeframe), bucket, symbol, alpaca_id, seconds[rows],
                                         {c: a[rows] for c, a in columns.items()}, days[rows], set(days[start:end]),
                                         held.get((symbol, bucket), []), rows_batch))


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Where a run of equal (key, ...) rows starts, in rows sorted by those keys."""
    change = np.zeros(len(keys[0]), dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def ingest(alpaca: AlpacaResource, dynamodb: DynamoDBResource, timeframe: str, dates: list[date],
           listings: dict[str, Listing], options: IngestOptions, tally: RunTally) -> None:
    """Fetch and store every bar of the companies (asset id -> Listing) on `dates`, one window per asset class."""
    now = utc_stamp()
    for asset_class in [c for c in ASSET_CLASSES if any(x.asset_class == c for x in listings.values())]:  # equities first
        describe = {"timeframe": timeframe, "asset_class": asset_class, "adjustment": options.adjustment,
                    "feed": CRYPTO_FEED if asset_class == CRYPTO else alpaca.data_feed(), "ingested_at": now,
                    "run_id": options.run_id}
        writer = BucketWriter(dynamodb, tally, describe, crypto=asset_class == CRYPTO)
        try:
            store = _Store(timeframe, asset_class, {d.isoformat() for d in dates}, tally, writer)
            for asof, companies in asked_as_of([x for x in listings.values() if x.asset_class == asset_class], max(dates),
                                               tally, crypto=asset_class == CRYPTO).items():
                _ingest_group(alpaca, timeframe, dates, companies, asof, options, store)
        finally:
            writer.close()


def asked_as_of(listings: list[Listing], last_day: date, tally: RunTally, *, crypto: bool) -> dict[str | None, dict[str, str]]:
    """asof date -> {symbol: asset id}: under which symbol, as of which date, each company's bars are asked for.

    Alpaca maps a symbol to the company holding it as of `asof` and answers that company's whole history in the
    window, so one date serves every company that holds its symbol on the run's last date: a universe without
    changes is one group of full multi-day pages. A company whose symbol passed to another before that date is
    asked as of its own last day under it. Crypto has no `asof` (None). Two companies that would be asked under
    one symbol as of one date (a table that contradicts itself) are not asked for; `tally.unrequested` names them.
    """
    groups: dict[str | None, dict[str, str]] = collections.defaultdict(dict)
    for listing in sorted(listings, key=lambda x: x.alpaca_id):
        symbol, asof = listing.request(last_day)
        group = groups[None if crypto else asof]
        if symbol in group:
            tally.unrequested.append(f"{listing.alpaca_id}: {symbol} as of {asof} already names {group[symbol]}")
            continue
        group[symbol] = listing.alpaca_id
        tally.labels[listing.alpaca_id] = symbol
    return dict(sorted(groups.items(), key=lambda g: g[0] or ""))


def _ingest_group(alpaca: AlpacaResource, timeframe: str, dates: list[date], companies: dict[str, str], asof: str | None,
                  options: IngestOptions, store: _Store) -> None:
    crypto = store.asset_class == CRYPTO
    start, end = fetch_window(min(dates), max(dates), crypto=crypto)
    if not crypto:  # "the end parameter must be at least 15 minutes old to query SIP data without a subscription"
        # (Alpaca's market-data FAQ): just after New York midnight, the window of the day that just ended reaches
        # into the last 15 minutes. Its equity bars stop at 20:00 New York, so ending the window earlier loses none.
        end = min(end, datetime.now(timezone.utc) - RECENT_SIP_MARGIN)
        if end <= start:
            return
    symbols = sorted(companies)
    per_day = BARS_PER_DAY[timeframe] * (3 if crypto and timeframe != "1Day" else 1)
    groups = request_groups(symbols, options.workers, options.max_symbols_per_request, len(symbols) * len(dates) * per_day)
    open_symbol: dict[int, tuple[str, list[pd.DataFrame]]] = {}  # per group: the symbol still receiving pages
    ready: list[pd.DataFrame] = []
    for index, page in _fetch_concurrently(alpaca, groups, store.asset_class, timeframe, start, end, options, asof):
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
            store(pd.concat(ready), companies)
            ready = []
    ready += [f for _, frames in open_symbol.values() for f in frames]
    if ready:
        store(pd.concat(ready), companies)


def record_manifests(dynamodb: DynamoDBResource, timeframe: str, dates: list[date], tally: RunTally) -> dict[str, list[str]]:
    """Add this run's companies to each date's manifest; per date, the stored companies Alpaca answered without bars now.

    Nothing is deleted: those company-days keep the items an earlier run stored. A few dates at a time, since a
    universe manifest lists 12,000 companies.
    """
    table = MarketDataTable(dynamodb)
    without_bars_now: dict[str, list[str]] = {}
    for first in range(0, len(dates), MANIFESTS_AT_ONCE):
        days = [d.isoformat() for d in dates[first:first + MANIFESTS_AT_ONCE]]
        stored = table.manifests(timeframe, days)
        manifests = {}
        for day in days:
            before, now = stored.get(day, set()), tally.companies_with_bars.get(day, set())
            if before - now:
                without_bars_now[day] = sorted(tally.labels.get(i, i) for i in before - now)
            manifests[day] = before | now
        table.put_manifests(timeframe, manifests)
    return without_bars_now


def stored_mismatches(dynamodb: DynamoDBResource, written: dict[tuple[str, str], tuple[int, str]]) -> tuple[list[str], int]:
    """Buckets (of the run's read-back sample) not stored as written, nor superseded by a later version (another
    run's merge, which holds these bars too); how many were read."""
    keys = sorted(written)
    stored = {k: (i.get("version", 0), i.get("checksum")) for k, i in MarketDataTable(dynamodb).get(
        keys, projection=["series", "day", "version", "checksum"]).items()}
    missing = (0, None)
    return [f"{s} {d}" for s, d in keys
            if stored.get((s, d), missing)[0] < written[(s, d)][0] or
            (stored.get((s, d), missing)[0] == written[(s, d)][0] and stored[(s, d)][1] != written[(s, d)][1])], len(keys)


def completeness(listings: dict[str, Listing], by_day: dict[date, set[str]], tally: RunTally) -> tuple[float, int]:
    """Share of (company, day) pairs expected to trade that have bars (extended hours count), and how many are missing."""
    expected = present = 0
    for d, companies in by_day.items():
        trading = companies if is_session(d) else {i for i in companies if listings[i].asset_class == CRYPTO}
        expected += len(trading)
        present += len(tally.companies_with_bars.get(d.isoformat(), set()) & trading)
    return (present / expected if expected else 1.0), expected - present
