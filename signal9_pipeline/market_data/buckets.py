"""Bar buckets in the market-data table: the conditional writer and its merge, the manifests, the read-back.

Bars are stored in buckets sized per timeframe (`Timeframe.bucket`); `BucketWriter` merges each fetch into its
stored bucket (the fetched days replaced, the others kept, a sound bar an earlier run stored at a held-back bar's
time kept) under a conditional put on the bucket's version. Nothing is deleted: a partition's manifest only ever
gains symbols, and a day Alpaca now answers without bars keeps what was stored and is flagged.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from signal9_pipeline.market_data.codec import CodecError, decode, encode_batch, encode_columns
from signal9_pipeline.market_data.days import trading_days
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
from signal9_pipeline.market_data.tally import RunTally
from signal9_pipeline.resources.dynamodb import DynamoDBResource
from signal9_pipeline.retry import BUCKET_CONFLICTS
from signal9_pipeline.tables.market_data import MANIFESTS_AT_ONCE, MarketDataTable, ledger_key, ledger_series
from signal9_pipeline.timestamps import utc_stamp


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
            merged = {key: self._merged(update, stored.get(key)) for key, update in pending.items()}
            puts = {key: put for key, put in merged.items() if put is not None}
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
        raise BucketConflictError(f"{len(pending)} bucket(s) changed by other runs {BUCKET_CONFLICTS.attempts} times "
                                  f"while this run wrote them, e.g. {next(iter(pending))}; rerun the partition")

    def _merged(self, update: BucketUpdate, stored: dict | None) -> _Put | None:
        """The bucket with this fetch's days answered again (`ledger.merge`), its ledger entry, the condition."""
        now = self.describe["ingested_at"]
        if stored is None:
            if len(update.seconds) == 0:
                return None
            block, checksum = encode_batch(update.batch)
            stored_days = dict.fromkeys(sorted(update.days), now)
            bucket = Bucket(update.seconds, update.columns, update.bar_days, {}, stored_days, now)
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
        # written before versions
        return _Put(item, entry, revision, merged.kept_at_held, "attribute_not_exists(#v)", None)

    def _item(self, update: BucketUpdate, bucket: Bucket, block: bytes, checksum: str, held: list[dict],
              feeds: set[str], revisions: list[str], version: int) -> dict:
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
        raise CodecError(f"stored bucket {series} {item['day']} fails its checksum; "
                         "re-materialize the partitions it covers")
    seconds = bars["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    return Bucket(seconds, {c: bars[c].to_numpy() for c in VALUE_COLUMNS},
                  trading_days(bars["timestamp"], crypto=crypto),
                  {int(s): at for s, at in (item.get("withdrawn") or {}).items()}, dict(item.get("days_stored") or {}),
                  item.get("ledger_from") or item.get("ingested_at"))


def record_manifests(dynamodb: DynamoDBResource, timeframe: str, dates: list[date],
                     tally: RunTally) -> dict[str, list[str]]:
    """Add this run's companies to each date's manifest; per date, the stored companies Alpaca answered without
    bars now.

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


def stored_mismatches(dynamodb: DynamoDBResource,
                      written: dict[tuple[str, str], tuple[int, str]]) -> tuple[list[str], int]:
    """Buckets (of the run's read-back sample) not stored as written, nor superseded by a later version (another
    run's merge, which holds these bars too); how many were read."""
    keys = sorted(written)
    stored = {k: (i.get("version", 0), i.get("checksum")) for k, i in MarketDataTable(dynamodb).get(
        keys, projection=["series", "day", "version", "checksum"]).items()}
    missing = (0, None)
    return [f"{s} {d}" for s, d in keys
            if stored.get((s, d), missing)[0] < written[(s, d)][0] or
            (stored.get((s, d), missing)[0] == written[(s, d)][0] and stored[(s, d)][1] != written[(s, d)][1])
            ], len(keys)
